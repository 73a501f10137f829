// The benchmarks' many-symbol recordings (bench/lib/scale.ts): staggered copies must still be valid
// Binance streams, each continuing exactly from the book it is seeded with.
import { readRecording, type RecordedFrame, type Recording } from "@l2flow/recording";
import { fixtures, parseDepthDiff, parseSnapshotBody, startSimulator, TrueBook } from "@l2flow/testkit";
import { beforeAll, describe, expect, it } from "vitest";
import { scaleRecording } from "../../bench/lib/scale.js";

/**
 * Each symbol's book after replaying `recording` the simulator's way (seeded from the symbol's first
 * snapshot, wherever it sits), and whether the first diff past the seed bridges it (U <= id + 1).
 */
function replayBooks(recording: Recording) {
  const books = new Map<string, TrueBook>();
  const bridged = new Map<string, boolean>();
  for (const e of recording.events) {
    if (e.type !== "snapshot" || books.has(e.symbol)) continue;
    const book = new TrueBook();
    book.seed(parseSnapshotBody(e.body));
    books.set(e.symbol, book);
  }
  for (const e of recording.events) {
    if (e.type !== "frame" || !e.kind.startsWith("depth")) continue;
    const book = books.get(e.symbol)!;
    const diff = parseDepthDiff(e.data);
    if (!bridged.has(e.symbol) && diff.u > book.lastUpdateId)
      bridged.set(e.symbol, diff.U <= book.lastUpdateId + 1);
    book.apply(diff);
  }
  return { books, bridged };
}

const frames = (r: Recording, symbol: string) =>
  r.events.filter((e): e is RecordedFrame => e.type === "frame" && e.symbol === symbol);

describe("scaleRecording with stagger", () => {
  let base: Recording;
  beforeAll(() => {
    base = readRecording(fixtures.btcusdt);
  });

  it("starts copy c at c × stagger s into the recording, seeded with the book there", () => {
    const scaled = scaleRecording(base, { copies: 4, stagger: 30, dropKinds: ["bookTicker"] });
    expect(scaled.symbols).toEqual(["C00BTCUSDT", "C01BTCUSDT", "C02BTCUSDT", "C03BTCUSDT"]);
    const t0 = base.events.find((e) => e.type === "frame")!.receiveTimeUs;
    const baseFrames = frames(base, "BTCUSDT").filter((f) => f.kind !== "bookTicker");
    for (let c = 0; c < 4; c++) {
      const copy = frames(scaled, `C0${c}BTCUSDT`);
      const from = baseFrames.findIndex((f) => f.receiveTimeUs >= t0 + c * 30e6);
      // The same frames from there on, renamed, shifted back to the common start.
      expect(copy.length).toBe(baseFrames.length - from);
      const [first, original] = [copy[0]!, baseFrames[from]!];
      expect(first.receiveTimeUs).toBe(original.receiveTimeUs - c * 30e6);
      expect(first.data).toBe(original.data.replace('"s":"BTCUSDT"', `"s":"C0${c}BTCUSDT"`));
      expect(first.stream).toBe(`c0${c}btcusdt@${original.kind}`);
    }
    // Interleaved in time.
    const times = scaled.events.map((e) => e.receiveTimeUs);
    expect(times).toEqual([...times].sort((a, b) => a - b));
    // Every copy's first diff past its seed bridges it, and every copy ends with the recording's book.
    const { books, bridged } = replayBooks(scaled);
    const end = replayBooks(base).books.get("BTCUSDT")!.snapshot(Number.MAX_SAFE_INTEGER);
    for (const s of scaled.symbols) {
      expect(bridged.get(s)).toBe(true);
      expect(books.get(s)!.snapshot(Number.MAX_SAFE_INTEGER)).toEqual(end);
    }
    // One snapshot per copy; copy 0 keeps the recording's own, the others' are further on.
    const seeds = new Map<string, number>();
    for (const e of scaled.events)
      if (e.type === "snapshot") seeds.set(e.symbol, parseSnapshotBody(e.body).lastUpdateId);
    expect([...seeds.keys()].sort()).toEqual(scaled.symbols);
    const own = base.events.find((e) => e.type === "snapshot")!;
    expect(seeds.get("C00BTCUSDT")).toBe(
      parseSnapshotBody(own.type === "snapshot" ? own.body : "").lastUpdateId,
    );
    for (let c = 1; c < 4; c++)
      expect(seeds.get(`C0${c}BTCUSDT`)).toBeGreaterThan(seeds.get(`C0${c - 1}BTCUSDT`)!);
  });

  it("refuses a stagger the recording is too short for", () => {
    expect(() => scaleRecording(base, { copies: 100, stagger: 10 })).toThrow(/does not fit/);
  });
});

describe("a simulator replaying copies", () => {
  it("parses each recorded frame once for all its copies and still serves every copy's own book and trades", async () => {
    const base = readRecording(fixtures.btcusdt);
    const scaled = scaleRecording(base, { copies: 3, stagger: 60, dropKinds: ["bookTicker"] });
    // Every copy points at the recorded frame it was made from.
    const recorded = new Set<unknown>(base.events);
    const copies = scaled.events.filter((e) => e.type === "frame");
    expect(copies.filter((e) => !recorded.has(e.copyOf))).toEqual([]);
    const sim = await startSimulator({ recording: scaled, speed: Infinity, autoStart: false });
    try {
      sim.start();
      await sim.done;
      const end = replayBooks(base).books.get("BTCUSDT")!.snapshot(1000);
      const baseTrades = frames(base, "BTCUSDT").filter((f) => f.kind === "trade");
      for (const symbol of scaled.symbols) {
        const depth = (await (
          await fetch(`${sim.restUrl}/api/v3/depth?symbol=${symbol}&limit=1000`)
        ).json()) as { lastUpdateId: number; bids: string[][]; asks: string[][] };
        expect(depth).toEqual({ lastUpdateId: end.lastUpdateId, bids: end.bids, asks: end.asks });
        // The last trades each copy replayed: the recording's own, as every copy ends where it does.
        const trades = (await (
          await fetch(`${sim.restUrl}/api/v3/trades?symbol=${symbol}&limit=5`)
        ).json()) as { id: number; price: string }[];
        expect(trades.map((t) => [t.id, t.price])).toEqual(
          baseTrades.slice(-5).map((f) => {
            const t = JSON.parse(f.data) as { t: number; p: string };
            return [t.t, t.p];
          }),
        );
      }
    } finally {
      await sim.close();
    }
  });
});

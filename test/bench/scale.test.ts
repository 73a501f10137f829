// The benchmarks' many-symbol recordings (bench/lib/scale.ts): staggered copies must still be valid
// Binance streams, each continuing exactly from the book it is seeded with.
import { readRecording, type RecordedFrame, type Recording } from "@l2flow/recording";
import { fixtures, parseDepthDiff, parseSnapshotBody, startSimulator, TrueBook } from "@l2flow/testkit";
import { beforeAll, describe, expect, it } from "vitest";
import { CopyLayout, LOOP_GAP_S, loopStaggerLimit, scaleRecording } from "../../bench/lib/scale.js";

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

describe("scaleRecording with stagger and loop", () => {
  let base: Recording;
  beforeAll(() => {
    base = readRecording(fixtures.btcusdt);
  });
  const data = (f: RecordedFrame) => JSON.parse(f.data) as Record<string, number | string>;
  /** Seconds between the first and the last of `times` (ms) in which none falls. */
  const emptySeconds = (times: number[]) => {
    const seconds = new Set(times.map((t) => Math.floor(t / 1000)));
    return Math.max(...seconds) - Math.min(...seconds) + 1 - seconds.size;
  };

  it("takes every copy round the recording once as one valid market: ids, book and times go on across the wrap", () => {
    // bookTickers kept: each carries the update id of the book it shows, an oracle for the wrap diff.
    const scaled = scaleRecording(base, { copies: 4, stagger: 80, loop: true });
    const baseTrades = frames(base, "BTCUSDT").filter((f) => f.kind === "trade");
    const periodUs = base.events.at(-1)!.receiveTimeUs - base.events[0]!.receiveTimeUs + LOOP_GAP_S * 1e6;
    const seeds = new Map<string, string>();
    for (const e of scaled.events)
      if (e.type === "snapshot" && !seeds.has(e.symbol)) seeds.set(e.symbol, e.body);
    for (let c = 0; c < 4; c++) {
      const symbol = `C0${c}BTCUSDT`;
      const copy = frames(scaled, symbol);
      // Trades: the recording's number of them, ids consecutive across the wrap, times never back.
      const trades = copy.filter((f) => f.kind === "trade").map(data);
      expect(trades.length).toBe(baseTrades.length);
      for (let i = 1; i < trades.length; i++) {
        expect(trades[i]!.t).toBe((trades[i - 1]!.t as number) + 1);
        expect(trades[i]!.T).toBeGreaterThanOrEqual(trades[i - 1]!.T as number);
      }
      // No second of event time without trades across the wrap: only the recording's own empty ones.
      expect(emptySeconds(trades.map((t) => t.T as number))).toBeLessThanOrEqual(
        emptySeconds(baseTrades.map((f) => data(f).T as number)),
      );
      // Diffs: bridge the seed, then each follows on from the one before (U = previous u + 1).
      const book = new TrueBook();
      book.seed(parseSnapshotBody(seeds.get(symbol)!));
      let previousU: number | undefined;
      let wrapped = 0;
      let checked = 0;
      let checkedAfterWrap = 0;
      // A bookTicker arrives before the 100 ms diff that ends on its update id: look them up by id.
      const tickers = new Map(copy.filter((f) => f.kind === "bookTicker").map((f) => [data(f).u, data(f)]));
      for (const f of copy) {
        if (!f.kind.startsWith("depth")) continue;
        const diff = parseDepthDiff(f.data);
        if (diff.u <= book.lastUpdateId && previousU === undefined) continue; // older than the seed
        if (previousU === undefined) expect(diff.U).toBeLessThanOrEqual(book.lastUpdateId + 1);
        else expect(diff.U).toBe(previousU + 1);
        previousU = diff.u;
        if (f.receiveTimeUs - scaled.events[0]!.receiveTimeUs >= periodUs - c * 80e6) wrapped++;
        book.apply(diff);
        const t = tickers.get(diff.u);
        if (t === undefined) continue;
        const top = book.snapshot(1);
        expect([top.bids[0], top.asks[0]]).toEqual([
          [t.b, t.B],
          [t.a, t.A],
        ]);
        checked++;
        if (wrapped > 0) checkedAfterWrap++;
      }
      expect(checked).toBeGreaterThan(400);
      // Copy 0 starts with the recording and has no second pass; the others' go on past the wrap.
      if (c === 0) expect(wrapped).toBe(0);
      else expect(checkedAfterWrap).toBeGreaterThan(100);
      // Every copy lasts the recording and the gap (not quite: its last event is before its start).
      expect(copy.at(-1)!.receiveTimeUs - scaled.events[0]!.receiveTimeUs).toBeLessThan(periodUs);
      if (c > 0)
        expect(copy.at(-1)!.receiveTimeUs - scaled.events[0]!.receiveTimeUs).toBeGreaterThan(periodUs - 2e6);
    }
    // A second pass's frames are the same objects in every copy (the simulator parses each once).
    const twinsOf = (symbol: string) =>
      new Set(
        frames(scaled, symbol)
          .filter((f) => !base.events.includes(f.copyOf!))
          .map((f) => f.copyOf),
      );
    const [one, two] = [twinsOf("C01BTCUSDT"), twinsOf("C02BTCUSDT")];
    expect(one.size).toBeGreaterThan(0);
    expect([...one].every((f) => two.has(f))).toBe(true);
  });

  it("lays the copies out as scaleRecording replays them, event for event", () => {
    for (const options of [
      { copies: 3, stagger: 100, loop: true, dropKinds: ["bookTicker"] },
      { copies: 3, stagger: 0, loop: true, dropKinds: ["bookTicker"] },
      { copies: 2, stagger: 50, loop: true, compress: 2 },
    ]) {
      const scaled = scaleRecording(base, options);
      const layout = new CopyLayout(base, options);
      for (let c = 0; c < options.copies; c++) {
        const symbol = `C0${c}BTCUSDT`;
        const replayed = scaled.events.filter((e) => e.symbol === symbol);
        const planned = layout.copy(c);
        expect(planned.length).toBe(replayed.length);
        planned.forEach(({ event, at }, i) => {
          const r = replayed[i]!;
          expect(r.type).toBe(event.type);
          if (r.type === "snapshot" || event.type === "snapshot") return;
          if (options.stagger > 0) expect(r.receiveTimeUs).toBe(at);
          expect(r.data).toBe(event.data.replace('"s":"BTCUSDT"', `"s":"${symbol}"`));
        });
      }
    }
  });

  it("refuses copies whose starts do not fit in the recording, and says how far apart they fit", () => {
    expect(() => scaleRecording(base, { copies: 5, stagger: 80, loop: true })).toThrow(/does not fit/);
    // 400 copies of the 346 s recording: 0.8 s apart (the soak's), 0.9 s is too far.
    expect(loopStaggerLimit(base, 400)).toBe(0.8);
    expect(() => new CopyLayout(base, { copies: 400, stagger: 0.8, loop: true })).not.toThrow();
    expect(() => new CopyLayout(base, { copies: 400, stagger: 0.9, loop: true })).toThrow(/does not fit/);
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

  it("ends each looping copy with the recording's book where the copy started, its update ids moved on", async () => {
    const base = readRecording(fixtures.btcusdt);
    const options = { copies: 3, stagger: 100, loop: true, dropKinds: ["bookTicker"] };
    const scaled = scaleRecording(base, options);
    const layout = new CopyLayout(base, options);
    const sim = await startSimulator({ recording: scaled, speed: Infinity, autoStart: false });
    try {
      sim.start();
      await sim.done;
      for (let c = 1; c < 3; c++) {
        const symbol = `C0${c}BTCUSDT`;
        const seed = layout.copy(c)[0]!.event;
        if (seed.type !== "snapshot") throw new Error("a staggered copy starts with its seed");
        const start = parseSnapshotBody(seed.body);
        const depth = (await (
          await fetch(`${sim.restUrl}/api/v3/depth?symbol=${symbol}&limit=5000`)
        ).json()) as { lastUpdateId: number; bids: string[][]; asks: string[][] };
        expect({ bids: depth.bids, asks: depth.asks }).toEqual({
          bids: start.bids.slice(0, 5000),
          asks: start.asks.slice(0, 5000),
        });
        expect(depth.lastUpdateId).toBe(start.lastUpdateId + layout.shifts("BTCUSDT")!.updateId);
      }
    } finally {
      await sim.close();
    }
  });
});

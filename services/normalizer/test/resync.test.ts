// A diff Binance never delivered: the simulator withholds one diff of one symbol (its true book moves
// on), and the live pipeline — ingest, MD_RAW, normalizer — must report a gap for that symbol alone,
// resynchronise it from a fresh snapshot, and publish exact books again, other symbols untouched.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { BookSnapshot, Gap, GapReason, STREAMS, Window } from "@l2flow/contracts";
import { readRecording } from "@l2flow/recording";
import { fixtures } from "@l2flow/testkit";
import {
  checkAgainstBookTicker,
  metric,
  readStream,
  startLivePipeline,
  waitUntil,
  type LivePipeline,
} from "./support.js";

describe("a missing diff of one symbol", () => {
  const ten = readRecording(fixtures.tenSymbols);
  // The busiest symbol by diffs gets the hole.
  const counts = new Map<string, number>();
  for (const e of ten.events)
    if (e.type === "frame" && e.kind === "depth@100ms") counts.set(e.symbol, (counts.get(e.symbol) ?? 0) + 1);
  const victim = [...counts].sort((a, b) => b[1] - a[1])[0]![0];
  let p: LivePipeline;

  beforeAll(async () => {
    p = await startLivePipeline(ten, { normalizer: { RESYNC_REQUEST_TIMEOUT_MS: "5000" } });
    p.sim.start();
    await waitUntil(
      () => p.sim.progress().replayed > p.sim.progress().total * 0.3,
      30_000,
      "30% of the replay",
    );
    p.sim.skipDiffs(victim, 1);
    await p.sim.done;
    await waitUntil(
      async () =>
        (await metric(p.normalizer.opsUrl, "l2flow_normalizer_resync_requests_total", 'outcome="ok"')) >= 1,
      20_000,
      "a resync",
    );
    await new Promise((r) => setTimeout(r, 1_500));
  }, 120_000);
  afterAll(() => p?.close());

  it("reports a sequence gap for that symbol only", async () => {
    expect(p.sim.stats().diffsSkipped[victim]).toBe(1);
    const gaps = (await readStream(p.bus, STREAMS.norm, "md.gap.>")).map((m) => Gap.decode(m.data));
    const breaks = gaps.filter((g) => g.reason === GapReason.GAP_REASON_SEQUENCE_BREAK);
    expect(breaks.map((g) => g.symbol)).toEqual([victim]);
    expect(breaks[0]!.nextFirstUpdateId).toBeGreaterThan(breaks[0]!.lastUpdateId + 1);
    expect(gaps.filter((g) => g.symbol !== victim)).toEqual([]);
  });

  it("resynchronises that symbol alone and its books are exact again in the new epoch", async () => {
    // One snapshot per symbol at connect, plus the resync of the victim.
    const snapshots = await readStream(p.bus, STREAMS.raw, "md.raw.binance.snapshot.>");
    const per = new Map<string, number>();
    for (const s of snapshots)
      per.set(s.subject.split(".")[4]!, (per.get(s.subject.split(".")[4]!) ?? 0) + 1);
    expect(per.get(victim)).toBe(2);
    for (const s of ten.symbols) if (s !== victim) expect(per.get(s)).toBe(1);
    const books = await readStream(p.bus, STREAMS.norm, "md.book.>");
    const victimBooks = books
      .filter((b) => b.subject.endsWith(`.${victim}`))
      .map((b) => BookSnapshot.decode(b.data));
    const epochs = new Set(victimBooks.map((b) => b.epoch));
    expect([...epochs].sort()).toEqual([1, 2]);
    const after = books.filter(
      (b) => b.subject.endsWith(`.${victim}`) && BookSnapshot.decode(b.data).epoch === 2,
    );
    const r = checkAgainstBookTicker(ten, after, victim);
    expect(r.mismatches).toEqual([]);
    expect(r.checks).toBeGreaterThan(10);
  });

  it("marks the victim's windows incomplete from its last good diff until its book is rebuilt, and no others", async () => {
    const gap = (await readStream(p.bus, STREAMS.norm, `md.gap.binance.${victim}`))
      .map((m) => Gap.decode(m.data))
      .find((g) => g.reason === GapReason.GAP_REASON_SEQUENCE_BREAK)!;
    // From the last good diff to the first after the break.
    expect(gap.startTimeUs).toBeGreaterThan(0);
    expect(gap.startTimeUs).toBeLessThanOrEqual(gap.endTimeUs);
    const books = (await readStream(p.bus, STREAMS.norm, `md.book.binance.${victim}`)).map((m) =>
      BookSnapshot.decode(m.data),
    );
    const rebuiltMs = books.find((b) => b.epoch === 2)!.eventTimeUs / 1000;
    const fromMs = gap.startTimeUs / 1000;
    const windows = (await readStream(p.bus, STREAMS.window, "md.window.binance.1s.>")).map((m) =>
      Window.decode(m.data),
    );
    const mine = windows.filter((w) => w.symbol === victim);
    const overlapping = mine.filter((w) => w.startTimeMs < rebuiltMs && w.endTimeMs > fromMs);
    expect(overlapping.length).toBeGreaterThanOrEqual(1);
    expect(overlapping.filter((w) => w.complete)).toEqual([]);
    expect(mine.filter((w) => !overlapping.includes(w) && !w.complete)).toEqual([]);
    expect(windows.filter((w) => w.symbol !== victim && !w.complete)).toEqual([]);
  });

  it("keeps every other symbol exact and in its first epoch", async () => {
    const books = await readStream(p.bus, STREAMS.norm, "md.book.>");
    const others = books.filter((b) => !b.subject.endsWith(`.${victim}`));
    expect(others.every((b) => BookSnapshot.decode(b.data).epoch === 1)).toBe(true);
    const r = checkAgainstBookTicker(ten, others);
    expect(r.mismatches).toEqual([]);
    expect(r.crossed).toBe(0);
    expect(r.checks).toBeGreaterThan(100);
  });
});

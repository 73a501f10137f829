// Periodic refresh: the normalizer asks ingest for a fresh snapshot of every in-sync symbol on a timer,
// through the same control subject as a resync, and corrects each book with it without a gap or a new
// epoch. Over the live path (simulator, ingest, MD_RAW) with shallow snapshots, the books must stay
// exact against every bookTicker while the refreshes land. (What a refresh corrects is tested on the
// recorded diffs in libs/binance's sync tests.)
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { BookSnapshot, STREAMS } from "@l2flow/contracts";
import { readRecording } from "@l2flow/recording";
import { fixtures } from "@l2flow/testkit";
import {
  checkAgainstBookTicker,
  metric,
  readStream,
  startLivePipeline,
  type LivePipeline,
} from "./support.js";

describe("books refreshed from periodic snapshots", () => {
  const ten = readRecording(fixtures.tenSymbols);
  let p: LivePipeline;

  beforeAll(async () => {
    p = await startLivePipeline(ten, {
      ingest: { SNAPSHOT_LIMIT: "100" },
      normalizer: { BOOK_REFRESH_INTERVAL_MS: "1500" },
    });
    p.sim.start();
    await p.sim.done;
    await new Promise((r) => setTimeout(r, 1_500));
  }, 120_000);
  afterAll(() => p?.close());

  it("asks ingest for refresh snapshots, which reach MD_RAW and correct the books", async () => {
    const asked = await metric(
      p.normalizer.opsUrl,
      "l2flow_normalizer_resync_requests_total",
      'reason="refresh",outcome="ok"',
    );
    expect(asked).toBeGreaterThanOrEqual(20);
    expect(await metric(p.normalizer.opsUrl, "l2flow_normalizer_resync_requests_total", 'reason="gap"')).toBe(
      0,
    );
    const snapshots = await readStream(p.bus, STREAMS.raw, "md.raw.binance.snapshot.>");
    const per = new Map<string, number>();
    for (const s of snapshots)
      per.set(s.subject.split(".")[4]!, (per.get(s.subject.split(".")[4]!) ?? 0) + 1);
    for (const s of ten.symbols) expect(per.get(s), s).toBeGreaterThanOrEqual(2);
    // Every refresh snapshot is merged, except at most one per symbol still waiting at the end for a diff
    // that reaches its update id (and any that ingest answered "ok" but stored after the replay ended).
    const applied = await metric(p.normalizer.opsUrl, "l2flow_normalizer_book_refreshes_total");
    expect(applied).toBeGreaterThanOrEqual(asked - 2 * ten.symbols.length);
    expect(applied).toBeLessThanOrEqual(asked);
  });

  it("keeps every book exact, in its first epoch, with no gap", async () => {
    expect(await readStream(p.bus, STREAMS.norm, "md.gap.>")).toEqual([]);
    const books = await readStream(p.bus, STREAMS.norm, "md.book.>");
    expect(books.every((b) => BookSnapshot.decode(b.data).epoch === 1)).toBe(true);
    const r = checkAgainstBookTicker(ten, books);
    expect(r.mismatches).toEqual([]);
    expect(r.crossed).toBe(0);
    expect(r.checks).toBeGreaterThan(100);
  });
});

import { describe, expect, it } from "vitest";
import {
  BookSync,
  FrameError,
  parseBookTicker,
  parseDepthSnapshot,
  parseAggTrade,
  parseDepthUpdate,
  parseTrade,
  routeFrame,
  type BookSyncState,
  type DepthSnapshot,
  type DepthUpdate,
} from "@l2flow/binance";
import type { OrderBook } from "@l2flow/orderbook";
import { readRecording, type Recording } from "@l2flow/recording";
import { fixtures } from "@l2flow/testkit";

/** Replays a recording through one BookSync per symbol and checks every bookTicker with a matching u. */
function replayWithOracle(
  rec: Recording,
  mutate?: (symbol: string, d: DepthUpdate, index: number, sync: BookSync) => DepthUpdate | undefined,
) {
  const syncs = new Map<string, BookSync>();
  const get = (s: string) => syncs.get(s) ?? syncs.set(s, new BookSync()).get(s)!;
  let checked = 0;
  let crossed = 0;
  const mismatches: string[] = [];
  const gaps: { symbol: string; kind: string }[] = [];
  let index = 0;
  // bookTicker is real time and diffs come every 100 ms, so a ticker usually arrives before the diff
  // that carries its update id: collect them first, check after each applied diff.
  const tickers = new Map<string, ReturnType<typeof parseBookTicker>>();
  for (const e of rec.events) {
    if (e.type === "frame" && e.kind === "bookTicker") {
      const t = parseBookTicker(e.data);
      tickers.set(`${t.symbol}:${t.updateId}`, t);
    }
  }
  for (const e of rec.events) {
    if (e.type === "snapshot") {
      get(e.symbol).onSnapshot(parseDepthSnapshot(e.body));
      continue;
    }
    if (e.kind.startsWith("depth")) {
      let d: DepthUpdate | undefined = parseDepthUpdate(e.data);
      if (mutate) d = mutate(e.symbol, d, index++, get(e.symbol));
      if (d === undefined) continue;
      const sync = get(e.symbol);
      const r = sync.onDiff(d);
      if (r.type === "gap") gaps.push({ symbol: e.symbol, kind: r.kind });
      if (sync.book.isCrossed()) crossed++;
      const t = tickers.get(`${e.symbol}:${sync.book.lastUpdateId}`);
      if (r.type !== "applied" || t === undefined) continue;
      checked++;
      const bid = sync.book.bestBid();
      const ask = sync.book.bestAsk();
      const got = [bid?.price, bid?.quantity, ask?.price, ask?.quantity].join();
      const want = [t.bidPrice, t.bidQuantity, t.askPrice, t.askQuantity].join();
      if (got !== want) mismatches.push(`${e.symbol} u=${t.updateId}: ${got} != ${want}`);
    }
  }
  return { syncs, checked, crossed, mismatches, gaps };
}

describe("BookSync against real recordings (bookTicker oracle)", () => {
  it("BTCUSDT: bridges the late snapshot and matches every bookTicker exactly", () => {
    const rec = readRecording(fixtures.btcusdt);
    const r = replayWithOracle(rec);
    const sync = r.syncs.get("BTCUSDT")!;
    expect(r.mismatches).toEqual([]);
    expect(r.crossed).toBe(0);
    expect(r.gaps).toEqual([]);
    expect(r.checked).toBeGreaterThan(500);
    expect(sync.epoch).toBe(1);
    expect(sync.counters.applied).toBe(3451 - 2);
  });

  it("ten symbols: one book per symbol, zero mismatches, zero crossed books", () => {
    const r = replayWithOracle(readRecording(fixtures.tenSymbols));
    expect(r.mismatches).toEqual([]);
    expect(r.crossed).toBe(0);
    expect(r.gaps).toEqual([]);
    expect(r.syncs.size).toBe(10);
    for (const s of r.syncs.values()) expect(s.synced).toBe(true);
    expect(r.checked).toBeGreaterThan(500);
  });

  it("a removed diff breaks that symbol only; a later snapshot makes it exact again", () => {
    const rec = readRecording(fixtures.tenSymbols);
    // The truth: ZILUSDT's book right after its 110th diff.
    const truth = new BookSync();
    let n = 0;
    let truthAt110: ReturnType<OrderBook["toSnapshot"]> | undefined;
    for (const e of rec.events) {
      if (e.symbol !== "ZILUSDT") continue;
      if (e.type === "snapshot") truth.onSnapshot(parseDepthSnapshot(e.body));
      else if (e.kind.startsWith("depth")) {
        truth.onDiff(parseDepthUpdate(e.data));
        if (++n === 110) truthAt110 = truth.book.toSnapshot();
      }
    }
    expect(truthAt110).toBeDefined();
    // Drop ZILUSDT's 100th diff; after its 120th, hand the book a snapshot taken at the 110th.
    let zil = 0;
    let injected: string | undefined;
    const r = replayWithOracle(rec, (symbol, d, _i, sync) => {
      if (symbol !== "ZILUSDT") return d;
      zil++;
      if (zil === 100) return undefined;
      if (zil === 121) injected = sync.onSnapshot(truthAt110!).type;
      return d;
    });
    expect(r.gaps).toEqual([{ symbol: "ZILUSDT", kind: "sequence" }]);
    expect(injected).toBe("applied");
    expect(r.mismatches).toEqual([]);
    expect(r.crossed).toBe(0);
    const zilSync = r.syncs.get("ZILUSDT")!;
    expect(zilSync.synced).toBe(true);
    expect(zilSync.epoch).toBe(2);
    expect(zilSync.book.toSnapshot()).toEqual(truth.book.toSnapshot());
    for (const [sym, s] of r.syncs) if (sym !== "ZILUSDT") expect(s.epoch).toBe(1);
  });

  it("ignores a stale snapshot and asks for another", () => {
    const s = new BookSync();
    const diff = (U: number, u: number): DepthUpdate => ({
      eventTime: u,
      symbol: "X",
      firstUpdateId: U,
      finalUpdateId: u,
      bids: [["1.0", "1"]],
      asks: [["2.0", "1"]],
    });
    expect(s.onDiff(diff(100, 105)).type).toBe("buffered");
    expect(s.onSnapshot({ lastUpdateId: 90, bids: [], asks: [] }).type).toBe("snapshot-stale");
    expect(s.needsSnapshot).toBe(true);
    expect(s.onSnapshot({ lastUpdateId: 102, bids: [["0.5", "3"]], asks: [["3.0", "3"]] })).toEqual({
      type: "applied",
      bridged: true,
    });
    expect(s.epoch).toBe(1);
    expect(s.book.lastUpdateId).toBe(105);
    expect(s.onDiff(diff(100, 105)).type).toBe("duplicate");
    expect(s.onDiff(diff(106, 107)).type).toBe("applied");
    const g = s.onDiff(diff(109, 110));
    expect(g).toMatchObject({
      type: "gap",
      kind: "sequence",
      lastUpdateId: 107,
      nextFirstUpdateId: 109,
      epoch: 1,
    });
    expect(s.book.bidCount).toBe(0);
  });

  it("counts buffer overflow and survives serialize/restore", () => {
    const s = new BookSync({ maxBufferedDiffs: 3 });
    for (let i = 1; i <= 5; i++)
      s.onDiff({
        eventTime: i,
        symbol: "X",
        firstUpdateId: i * 10,
        finalUpdateId: i * 10 + 9,
        bids: [],
        asks: [],
      });
    expect(s.counters.overflowed).toBe(2);
    expect(s.bufferedDiffs).toBe(3);
    const again = BookSync.restore(
      JSON.parse(JSON.stringify(s.serialize())) as ReturnType<BookSync["serialize"]>,
    );
    expect(again.onSnapshot({ lastUpdateId: 35, bids: [["1", "1"]], asks: [["2", "1"]] })).toEqual({
      type: "applied",
      bridged: true,
    });
    expect(again.book.lastUpdateId).toBe(59);
  });

  it("reports the first overflow of each wait for a snapshot, once, across serialize/restore", () => {
    const diff = (i: number): DepthUpdate => ({
      eventTime: 1000 + i,
      symbol: "X",
      firstUpdateId: i * 10,
      finalUpdateId: i * 10 + 9,
      bids: [],
      asks: [],
    });
    const s = new BookSync({ maxBufferedDiffs: 3 });
    expect([1, 2, 3].map((i) => s.onDiff(diff(i)))).toEqual(Array(3).fill({ type: "buffered" }));
    expect(s.onDiff(diff(4))).toEqual({
      type: "buffered",
      dropped: true,
      overflow: {
        epoch: 0,
        droppedFirstUpdateId: 10,
        droppedFinalUpdateId: 19,
        nextFirstUpdateId: 20,
        droppedEventTime: 1001,
        eventTime: 1004,
      },
    });
    expect(s.onDiff(diff(5))).toEqual({ type: "buffered", dropped: true });
    // A state written after the report does not report again.
    const restored = BookSync.restore(
      JSON.parse(JSON.stringify(s.serialize())) as ReturnType<BookSync["serialize"]>,
      { maxBufferedDiffs: 3 },
    );
    expect(restored.onDiff(diff(6))).toEqual({ type: "buffered", dropped: true });
    // Synced, then broken: the next wait's first overflow is reported again, under the new epoch.
    expect(restored.onSnapshot({ lastUpdateId: 45, bids: [["1", "1"]], asks: [["2", "1"]] })).toMatchObject({
      type: "applied",
    });
    expect(restored.onDiff(diff(8))).toMatchObject({ type: "gap", kind: "sequence", epoch: 1 });
    expect([9, 10].map((i) => restored.onDiff(diff(i)))).toEqual(Array(2).fill({ type: "buffered" }));
    expect(restored.onDiff(diff(11))).toMatchObject({
      dropped: true,
      overflow: { epoch: 1, droppedFirstUpdateId: 80, nextFirstUpdateId: 90 },
    });
    // States written before the flag existed read as "not reported".
    const { overflowed: _o, ...old } = JSON.parse(JSON.stringify(s.serialize())) as BookSyncState;
    expect(_o).toBe(true);
    expect(BookSync.restore(old, { maxBufferedDiffs: 3 }).onDiff(diff(7))).toMatchObject({
      overflow: { droppedFirstUpdateId: 30 },
    });
  });

  it("keeps buffered diffs exactly: serialized while waiting for the snapshot, restored, it bridges to the same book", () => {
    // The BTCUSDT recording's snapshot arrives after its first diffs, which wait in the buffer (packed).
    const rec = readRecording(fixtures.btcusdt);
    const at = rec.events.findIndex((e) => e.type === "snapshot");
    const before = rec.events
      .slice(0, at)
      .filter((e) => e.type === "frame" && e.kind.startsWith("depth"))
      .map((e) => parseDepthUpdate((e as { data: string }).data));
    expect(before.length).toBeGreaterThanOrEqual(3);
    const plain = new BookSync();
    for (const d of before) plain.onDiff(d);
    const state = JSON.parse(JSON.stringify(plain.serialize())) as ReturnType<BookSync["serialize"]>;
    expect(state.buffer).toEqual(before);
    const restored = BookSync.restore(state);
    for (const e of rec.events.slice(at)) {
      for (const s of [plain, restored]) {
        if (e.type === "snapshot") s.onSnapshot(parseDepthSnapshot(e.body));
        else if (e.kind.startsWith("depth")) s.onDiff(parseDepthUpdate(e.data));
      }
    }
    expect(plain.synced).toBe(true);
    expect(restored.book.toSnapshot()).toEqual(plain.book.toSnapshot());
    expect(restored.counters.gaps + plain.counters.gaps).toBe(0);
  });

  describe("holding diffs that skip ahead (reorderDiffs)", () => {
    // BTCUSDT's snapshot and diffs, the diffs from the 100th on reordered as two redundant connections
    // can store them: a later diff first, then the ones before it.
    const rec = readRecording(fixtures.btcusdt);
    const snapAt = rec.events.findIndex((e) => e.type === "snapshot");
    const snapshot = parseDepthSnapshot((rec.events[snapAt] as { body: string }).body);
    const diffs = rec.events
      .filter((e) => e.type === "frame" && e.kind.startsWith("depth"))
      .map((e) => parseDepthUpdate((e as { data: string }).data));
    const inOrder = (s: BookSync, list: readonly DepthUpdate[]) => {
      s.onSnapshot(snapshot);
      return list.map((d, i) => s.onDiff(d, i + 1));
    };
    /** `list` with diffs `at`..`at + n - 1` moved after diff `at + n`, the same several times over. */
    const reordered = (n: number) => {
      const out = [...diffs];
      for (const at of [100, 300, 500, 1_000, 2_000])
        out.splice(at, n + 1, out[at + n]!, ...out.slice(at, at + n));
      return out;
    };

    it("applies them once the diffs before them come: the same book as in order, and no gap", () => {
      const plain = new BookSync();
      inOrder(plain, diffs);
      const held = new BookSync({ reorderDiffs: 3 });
      const results = inOrder(held, reordered(3));
      expect(held.counters.gaps).toBe(0);
      expect(held.counters.held).toBe(5);
      expect(results.filter((r) => r.type === "held")).toHaveLength(5);
      expect(held.book.toSnapshot()).toEqual(plain.book.toSnapshot());
      // Without holding, each reorder is a gap.
      const strict = new BookSync();
      inOrder(strict, reordered(3));
      expect(strict.counters.gaps).toBeGreaterThan(0);
    });

    it("makes a gap of a diff really lost once more diffs than it holds skip ahead", () => {
      const lost = [...diffs];
      lost.splice(200, 1);
      const held = new BookSync({ reorderDiffs: 3 });
      const results = inOrder(held, lost);
      const gap = results.findIndex((r) => r.type === "gap");
      // The three diffs after the lost one are held; the fourth makes the gap.
      expect(gap).toBe(203);
      expect(results.slice(200, 203).map((r) => r.type)).toEqual(["held", "held", "held"]);
      expect(results[gap]).toMatchObject({ kind: "sequence", nextFirstUpdateId: lost[200]!.firstUpdateId });
      expect(held.synced).toBe(false);
    });

    it("still makes a gap at once of a diff that overlaps the book (U <= last u < u)", () => {
      const held = new BookSync({ reorderDiffs: 3 });
      inOrder(held, diffs.slice(0, 50));
      const last = held.book.lastUpdateId;
      const next = diffs[50]!;
      const r = held.onDiff({
        ...next,
        firstUpdateId: last,
        finalUpdateId: Math.max(next.finalUpdateId, last + 1),
      });
      expect(r).toMatchObject({ type: "gap", kind: "sequence", nextFirstUpdateId: last });
    });

    it("continues exactly from a state serialized while it holds diffs", () => {
      const list = reordered(3);
      const whole = new BookSync({ reorderDiffs: 3 });
      inOrder(whole, list);
      const first = new BookSync({ reorderDiffs: 3 });
      first.onSnapshot(snapshot);
      // Stop in the middle of the first reorder: the later diff held, the first before it applied.
      list.slice(0, 102).forEach((d, i) => first.onDiff(d, i + 1));
      const state = JSON.parse(JSON.stringify(first.serialize())) as BookSyncState;
      expect(state.ahead).toHaveLength(1);
      const second = BookSync.restore(state, { reorderDiffs: 3 });
      list.slice(102).forEach((d, i) => second.onDiff(d, i + 103));
      expect(second.counters.gaps).toBe(0);
      expect(second.book.toSnapshot()).toEqual(whole.book.toSnapshot());
    });
  });

  it("checkpoints the book packed, and still restores a state that holds it as strings", () => {
    const rec = readRecording(fixtures.btcusdt);
    const events = rec.events.filter((e) => e.type === "snapshot" || e.kind.startsWith("depth"));
    const feed = (s: BookSync, e: (typeof events)[number]) => {
      if (e.type === "snapshot") s.onSnapshot(parseDepthSnapshot(e.body));
      else if (e.type === "frame") s.onDiff(parseDepthUpdate(e.data));
    };
    const plain = new BookSync();
    const half = Math.floor(events.length / 2);
    for (const e of events.slice(0, half)) feed(plain, e);
    expect(plain.synced).toBe(true);
    const packedJson = JSON.stringify(plain.serialize());
    const packed = JSON.parse(packedJson) as BookSyncState;
    expect(Array.isArray(packed.book.bids)).toBe(false);
    const old = { ...packed, book: plain.book.toSnapshot() };
    // Most of a book's levels are integers in the packed form, so it is much the smaller.
    expect(packedJson.length).toBeLessThan(JSON.stringify(old).length * 0.8);
    const restored = [
      BookSync.restore(packed),
      BookSync.restore(JSON.parse(JSON.stringify(old)) as BookSyncState),
    ];
    for (const r of restored) expect(r.book.toSnapshot()).toEqual(plain.book.toSnapshot());
    for (const e of events.slice(half)) for (const s of [plain, ...restored]) feed(s, e);
    for (const r of restored) {
      expect(r.book.toSnapshot()).toEqual(plain.book.toSnapshot());
      expect(r.book.topBids(20)).toEqual(plain.book.topBids(20));
      expect(r.counters.gaps).toBe(plain.counters.gaps);
    }
  });

  it("bridges from the newest buffered diffs alone: a snapshot is stored next to the diffs of when it was taken", () => {
    // BTCUSDT: three diffs before the snapshot, of which only the last has u > lastUpdateId.
    const rec = readRecording(fixtures.btcusdt);
    const full = new BookSync();
    const small = new BookSync({ maxBufferedDiffs: 1 });
    const results: string[] = [];
    for (const e of rec.events) {
      if (e.type === "snapshot") {
        full.onSnapshot(parseDepthSnapshot(e.body));
        results.push(small.onSnapshot(parseDepthSnapshot(e.body)).type);
      } else if (e.kind.startsWith("depth")) {
        full.onDiff(parseDepthUpdate(e.data));
        const r = small.onDiff(parseDepthUpdate(e.data));
        if (!small.synced || r.type !== "applied") results.push(JSON.stringify(r));
      }
    }
    expect(results.slice(0, 4).map((r) => r.replace(/,"overflow":\{[^}]*\}/, ',"overflow":…'))).toEqual([
      `{"type":"buffered"}`,
      `{"type":"buffered","dropped":true,"overflow":…}`,
      `{"type":"buffered","dropped":true}`,
      "applied",
    ]);
    expect(small.counters.overflowed).toBe(2);
    expect(small.counters.gaps + full.counters.gaps).toBe(0);
    expect(small.book.toSnapshot()).toEqual(full.book.toSnapshot());
  });

  describe("serialized with its buffer as a range", () => {
    const diff = (i: number): DepthUpdate => ({
      eventTime: i,
      symbol: "X",
      firstUpdateId: i * 10,
      finalUpdateId: i * 10 + 9,
      bids: [[`${i}.5`, "1"]],
      asks: [[`${100 + i}`, "2"]],
    });
    /** The diffs fed with their tags: 1..8, with diff 4 repeated (tag 5) and an old one (tag 8). */
    const fed: [DepthUpdate, number][] = [
      [diff(1), 1],
      [diff(2), 2],
      [diff(3), 3],
      [diff(4), 4],
      [diff(4), 5],
      [diff(5), 6],
      [diff(6), 7],
      [diff(2), 8],
      [diff(7), 9],
    ];
    const roundTrip = (s: BookSync, options = {}) =>
      BookSync.restore(
        JSON.parse(JSON.stringify(s.serialize({ bufferAsRange: true }))) as BookSyncState,
        options,
      );

    it("keeps only where the buffer starts and its length, and refilled from the log bridges to the same book", () => {
      // At most 4 buffered: the head is dropped on overflow, repeats and old diffs are not buffered.
      const plain = new BookSync({ maxBufferedDiffs: 4 });
      for (const [d, tag] of fed) plain.onDiff(d, tag);
      expect(plain.bufferedDiffs).toBe(4); // diffs 4, 5, 6, 7
      const state = JSON.parse(JSON.stringify(plain.serialize({ bufferAsRange: true }))) as BookSyncState;
      expect(state.buffer).toEqual([]);
      expect(state.bufferRange).toEqual({ fromTag: 4, count: 4 });

      const restored = BookSync.restore(state, { maxBufferedDiffs: 4 });
      expect(restored.refillRange).toEqual({ fromTag: 4, count: 4 });
      // Serialized again before the refill is over, it still stands for the whole buffer.
      expect(restored.serialize().bufferRange).toEqual({ fromTag: 4, count: 4 });
      for (const [d, tag] of fed) restored.refill(d, tag);
      expect(restored.endRefill()).toBe(true);
      expect(restored.refillRange).toBeUndefined();
      expect(restored.bufferedDiffs).toBe(4);
      const snap = { lastUpdateId: 45, bids: [["1", "1"]], asks: [["200", "1"]] } as DepthSnapshot;
      for (const s of [plain, restored])
        expect(s.onSnapshot(snap)).toEqual({ type: "applied", bridged: true });
      expect(restored.book.toSnapshot()).toEqual(plain.book.toSnapshot());
      expect(restored.book.lastUpdateId).toBe(79);
    });

    it("reports a buffer refilled short, and the hole becomes a gap when the snapshot comes", () => {
      const plain = new BookSync();
      for (const [d, tag] of fed) plain.onDiff(d, tag);
      const restored = roundTrip(plain);
      for (const [d, tag] of fed) if (tag !== 6) restored.refill(d, tag); // diff 5 no longer in the log
      expect(restored.endRefill()).toBe(false);
      const r = restored.onSnapshot({ lastUpdateId: 35, bids: [["1", "1"]], asks: [["200", "1"]] });
      expect(r).toMatchObject({ type: "gap", kind: "sequence", nextFirstUpdateId: 60 });
    });

    it("leaves an in-sync book's state as it was, and a refill ends at the next diff or snapshot", () => {
      const s = new BookSync();
      s.onSnapshot({ lastUpdateId: 9, bids: [["1", "1"]], asks: [["200", "1"]] });
      s.onDiff(diff(1), 1);
      expect(s.synced).toBe(true);
      expect(s.serialize({ bufferAsRange: true })).toEqual(s.serialize());
      expect(s.serialize().bufferRange).toBeNull();

      const waiting = new BookSync();
      waiting.onDiff(diff(1), 1);
      const restored = roundTrip(waiting);
      restored.onDiff(diff(2), 2); // a caller that did not refill: the buffer is what it has
      expect(restored.refillRange).toBeUndefined();
      expect(restored.bufferedDiffs).toBe(1);
      expect(restored.endRefill()).toBe(true);
    });
  });
});

describe("BookSync refreshing an in-sync book from later snapshots", () => {
  const rec = readRecording(fixtures.btcusdt);
  const snapshot = parseDepthSnapshot(rec.events.find((e) => e.type === "snapshot")!.body);
  const diffs = rec.events
    .flatMap((e) => (e.type === "frame" && e.kind.startsWith("depth") ? [parseDepthUpdate(e.data)] : []))
    .filter((d) => d.finalUpdateId > snapshot.lastUpdateId);
  const DEPTH = 5;
  const top = (s: BookSync) => JSON.stringify([s.book.topBids(DEPTH), s.book.topAsks(DEPTH)]);
  const shallow = (snap: DepthSnapshot) => ({
    lastUpdateId: snap.lastUpdateId,
    bids: snap.bids.slice(0, DEPTH),
    asks: snap.asks.slice(0, DEPTH),
  });
  /** The true book after every diff (from the full 1000-level snapshot), as a 5-level snapshot. */
  const truth: DepthSnapshot[] = [];
  {
    const t = new BookSync();
    t.onSnapshot(snapshot);
    for (const d of diffs) {
      t.onDiff(d);
      const b = t.book.toSnapshot();
      truth.push(shallow(b));
    }
  }

  /**
   * Replays the diffs into a book started from a 5-level snapshot (what `limit=5` returns), handing it
   * a 5-level snapshot of the truth every `every` diffs: taken `lag` diffs before it is delivered
   * (older than the book: brought forward by the kept diffs) or, with a negative lag, after (ahead:
   * merged when the diffs reach it). Counts the diffs after which its top 5 differs from the truth's.
   */
  function replay(every: number, lag: number, opts: { historyDiffs: number; restoreEvery?: number }) {
    let s = new BookSync({ historyDiffs: opts.historyDiffs });
    s.onSnapshot(shallow(snapshot));
    let wrong = 0;
    let exactAfterRefresh = 0;
    let refreshedAt = -1;
    const results: string[] = [];
    for (let i = 0; i < diffs.length; i++) {
      const r = s.onDiff(diffs[i]!);
      results.push(r.type);
      if (r.type === "applied" && r.refreshed === true) refreshedAt = i;
      if (i > 0 && i % every === 0 && i - lag >= 0 && i - lag < truth.length) {
        const out = s.onSnapshot(truth[i - lag]!);
        results.push(out.type);
        if (out.type === "refreshed") refreshedAt = i;
      }
      const same =
        top(s) ===
        JSON.stringify(
          [truth[i]!.bids, truth[i]!.asks].map((side) =>
            side.map(([price, quantity]) => ({ price, quantity })),
          ),
        );
      if (!same) wrong++;
      else if (refreshedAt === i) exactAfterRefresh++;
      if (opts.restoreEvery !== undefined && i % opts.restoreEvery === 0)
        s = BookSync.restore(JSON.parse(JSON.stringify(s.serialize())) as BookSyncState, {
          historyDiffs: opts.historyDiffs,
        });
    }
    return { s, wrong, exactAfterRefresh, results };
  }

  // The book's top 5 after each diff, against the truth's: a book from a 5-level snapshot misses the
  // levels the snapshot did not hold until a diff touches them, and is wrong whenever one of them
  // reaches the top. A refresh every 10 diffs (about a second) cannot foresee the next such level, but
  // makes the top exact at once and shortens every wrong spell.
  const EVERY = 10;
  const deliveries = (lag: number) => Math.floor((diffs.length - 1 - Math.max(0, -lag)) / EVERY);

  it("a book from a shallow snapshot is wrong at times, and snapshots are ignored when refreshing is off", () => {
    const r = replay(EVERY, 3, { historyDiffs: 0 });
    expect(r.wrong).toBeGreaterThan(100);
    expect(r.results.filter((t) => t === "snapshot-ignored")).toHaveLength(deliveries(3));
    expect(r.s.counters.refreshes).toBe(0);
  });

  it("a snapshot older than the book is brought forward by the kept diffs and makes the top exact", () => {
    const off = replay(EVERY, 3, { historyDiffs: 0 });
    const on = replay(EVERY, 3, { historyDiffs: 20 });
    expect(on.results.filter((t) => t === "refreshed")).toHaveLength(deliveries(3));
    expect(on.s.counters.refreshes).toBe(deliveries(3));
    // Exact right after (unless one of the three diffs since the snapshot took a level off the top 5
    // and revealed a sixth the snapshot did not hold).
    expect(on.exactAfterRefresh).toBeGreaterThan(deliveries(3) * 0.95);
    expect(on.wrong).toBeLessThan(off.wrong * 0.7);
    expect(on.s.epoch).toBe(1);
    expect(on.s.counters.gaps).toBe(0);
    // Older than every kept diff: ignored, the book untouched.
    const tooOld = replay(EVERY, 30, { historyDiffs: 20 });
    expect(tooOld.s.counters.refreshes).toBe(0);
    expect(tooOld.wrong).toBe(off.wrong);
  });

  it("a snapshot ahead of the book waits for the diff that spans its update id", () => {
    const off = replay(EVERY, -4, { historyDiffs: 0 });
    const on = replay(EVERY, -4, { historyDiffs: 20 });
    expect(on.results.filter((t) => t === "refresh-pending")).toHaveLength(deliveries(-4));
    expect(on.s.counters.refreshes).toBe(deliveries(-4));
    expect(on.exactAfterRefresh).toBeGreaterThan(deliveries(-4) * 0.95);
    expect(on.wrong).toBeLessThan(off.wrong * 0.7);
    expect(on.s.counters.gaps).toBe(0);
  });

  it("restoring from its serialized state at any point changes nothing", () => {
    for (const lag of [3, -4]) {
      const plain = replay(EVERY, lag, { historyDiffs: 20 });
      const restored = replay(EVERY, lag, { historyDiffs: 20, restoreEvery: 37 });
      expect(restored.results).toEqual(plain.results);
      expect(restored.wrong).toBe(plain.wrong);
      expect(restored.s.book.toSnapshot()).toEqual(plain.s.book.toSnapshot());
    }
  });

  it("keeps at most maxLevelsPerSide levels, dropping the ones furthest from the top", () => {
    const full = new BookSync();
    const capped = new BookSync({ maxLevelsPerSide: 1100 });
    full.onSnapshot(snapshot);
    capped.onSnapshot(snapshot);
    for (const d of diffs) {
      full.onDiff(d);
      capped.onDiff(d);
      expect(capped.book.bidCount).toBeLessThanOrEqual(1100);
      expect(capped.book.askCount).toBeLessThanOrEqual(1100);
      expect(capped.book.topBids(20)).toEqual(full.book.topBids(20));
      expect(capped.book.topAsks(20)).toEqual(full.book.topAsks(20));
    }
    // The recording's price range stays within 1100 levels of each side's top, so the top is unchanged;
    // with 1000 it is not (a level trimmed earlier is missing once the price falls to it).
    expect(capped.counters.trimmedLevels).toBeGreaterThan(2000);
  });
});

describe("frame parsing", () => {
  it("routes combined and raw frames without re-serialising", () => {
    const data = '{"e":"trade","E":1,"s":"BTCUSDT","t":42,"p":"1.5","q":"2","T":1,"m":true,"M":true}';
    expect(routeFrame(`{"stream":"btcusdt@trade","data":${data}}`)).toEqual({
      kind: "trade",
      symbol: "BTCUSDT",
      id: 42,
      eventTime: 1,
      data,
    });
    expect(routeFrame(data).data).toBe(data);
  });

  it.each([
    ["not json", "FRAME_NOT_JSON"],
    ['{"e":"trade","E":1,"s":"X"}', "FRAME_MISSING_FIELD"],
    ['{"e":"depthUpdate","E":1,"s":"X","U":1,"u":"NaN","b":[],"a":[]}', "FRAME_BAD_NUMBER"],
    ['{"e":"somethingElse","E":1}', "FRAME_UNKNOWN_EVENT"],
  ])("rejects %s with %s", (text, code) => {
    expect(() => routeFrame(text)).toThrow(FrameError);
    try {
      routeFrame(text);
    } catch (err) {
      expect((err as FrameError).code).toBe(code);
    }
  });

  it("gives event and trade times in milliseconds whether the frame has them in ms or in us (timeUnit=MICROSECOND)", () => {
    const trade = (E: number, T: number) =>
      `{"e":"trade","E":${E},"s":"X","t":1,"p":"1","q":"1","T":${T},"m":true}`;
    expect(parseTrade(trade(1_700_000_000_123, 1_700_000_000_122))).toMatchObject({
      eventTime: 1_700_000_000_123,
      tradeTime: 1_700_000_000_122,
    });
    const micro = parseTrade(trade(1_700_000_000_123_456, 1_700_000_000_122_999));
    expect(micro.eventTime).toBeCloseTo(1_700_000_000_123.456, 6);
    expect(Math.round(micro.tradeTime * 1000)).toBe(1_700_000_000_122_999);
    const agg = parseAggTrade(
      '{"e":"aggTrade","E":1700000000123456,"s":"X","a":1,"p":"1","q":"1","f":1,"l":1,"T":1700000000123000,"m":false}',
    );
    expect([agg.eventTime, agg.tradeTime]).toEqual([1_700_000_000_123.456, 1_700_000_000_123]);
    const diff = parseDepthUpdate(
      '{"e":"depthUpdate","E":1700000000100001,"s":"X","U":1,"u":2,"b":[],"a":[]}',
    );
    expect(Math.round(diff.eventTime * 1000)).toBe(1_700_000_000_100_001);
  });

  it("rejects negative sizes and NaN prices in diffs", () => {
    expect(() =>
      parseDepthUpdate('{"e":"depthUpdate","E":1,"s":"X","U":1,"u":2,"b":[["1.0","-1"]],"a":[]}'),
    ).toThrow(/decimals/);
    expect(() =>
      parseDepthUpdate('{"e":"depthUpdate","E":1,"s":"X","U":1,"u":2,"b":[["NaN","1"]],"a":[]}'),
    ).toThrow(/decimals/);
  });

  const tradeAt = (p: string) =>
    `{"e":"trade","E":1,"s":"X","t":1,"p":${JSON.stringify(p)},"q":"1","T":1,"m":true}`;
  const diffAt = (q: string) =>
    `{"e":"depthUpdate","E":1,"s":"X","U":1,"u":2,"b":[["1.5",${JSON.stringify(q)}]],"a":[]}`;
  it.each(["0", "7", "10", "0.5", "123.45600000", "00.10"])("takes %j as a decimal", (d) => {
    expect(parseTrade(tradeAt(d)).price).toBe(d);
    expect(parseDepthUpdate(diffAt(d)).bids).toEqual([["1.5", d]]);
  });

  it.each([
    "",
    "1.",
    ".5",
    "1.2.3",
    "-1",
    "+1",
    "1e5",
    " 1",
    "1 ",
    "0x1",
    "NaN",
    "1,5",
    "\u0661",
    "1.5a",
    ".",
  ])("refuses %j as a decimal, in a trade and in a diff", (d) => {
    expect(() => parseTrade(tradeAt(d))).toThrow(FrameError);
    expect(() => parseDepthUpdate(diffAt(d))).toThrow(/decimals/);
  });
});

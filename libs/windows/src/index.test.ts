import { describe, expect, it } from "vitest";
import { parseTrade } from "@l2flow/binance";
import { encodeWindow, Window, WindowCloseReason } from "@l2flow/contracts";
import { OrderBook } from "@l2flow/orderbook";
import { readRecording } from "@l2flow/recording";
import { fixtures } from "@l2flow/testkit";
import { WindowAggregator, type WindowAggregatorState } from "@l2flow/windows";

const btcTrades = readRecording(fixtures.btcusdt)
  .events.filter((e) => e.type === "frame" && e.kind === "trade")
  .map((e) => parseTrade((e as { data: string }).data));

/** The straightforward computation the aggregator must agree with. */
function reference(sizeMs: number) {
  const buckets = new Map<
    number,
    {
      o: number;
      h: number;
      l: number;
      c: number;
      v: number;
      qv: number;
      n: number;
      buy: number;
      sell: number;
    }
  >();
  for (const t of btcTrades) {
    const start = Math.floor(t.tradeTime / sizeMs) * sizeMs;
    const p = Number(t.price);
    const q = Number(t.quantity);
    const b = buckets.get(start) ?? { o: p, h: p, l: p, c: p, v: 0, qv: 0, n: 0, buy: 0, sell: 0 };
    b.h = Math.max(b.h, p);
    b.l = Math.min(b.l, p);
    b.c = p;
    b.v += q;
    b.qv += p * q;
    b.n++;
    if (t.buyerIsMaker) b.sell += q;
    else b.buy += q;
    buckets.set(start, b);
  }
  return buckets;
}

function aggregate(interval: string) {
  const agg = new WindowAggregator({ symbol: "BTCUSDT", interval, allowedLatenessMs: 0 });
  const out: Window[] = [];
  for (const t of btcTrades) {
    out.push(
      ...agg.onTrade({
        timeMs: t.tradeTime,
        price: Number(t.price),
        quantity: Number(t.quantity),
        buyerIsMaker: t.buyerIsMaker,
      }),
    );
  }
  out.push(...agg.closeAll());
  return out;
}

describe("WindowAggregator", () => {
  it.each([
    ["1s", 1_000],
    ["1m", 60_000],
  ])("%s OHLCV, VWAP, counts and taker volumes equal an independent computation", (interval, size) => {
    const windows = aggregate(interval);
    const ref = reference(size);
    const withTrades = windows.filter((w) => w.tradeCount > 0);
    expect(withTrades.length).toBe(ref.size);
    for (const w of withTrades) {
      const r = ref.get(w.startTimeMs)!;
      expect(r, `window ${w.startTimeMs}`).toBeDefined();
      expect([w.open, w.high, w.low, w.close, w.tradeCount]).toEqual([r.o, r.h, r.l, r.c, r.n]);
      expect(w.volume).toBeCloseTo(r.v, 9);
      expect(w.quoteVolume).toBeCloseTo(r.qv, 6);
      expect(w.vwap).toBeCloseTo(r.qv / r.v, 6);
      expect(w.takerBuyVolume).toBeCloseTo(r.buy, 9);
      expect(w.takerSellVolume).toBeCloseTo(r.sell, 9);
      expect(w.endTimeMs - w.startTimeMs).toBe(size);
    }
    // A continuous series: consecutive windows, empty ones carrying the previous close.
    for (let i = 1; i < windows.length; i++)
      expect(windows[i]!.startTimeMs - windows[i - 1]!.startTimeMs).toBe(size);
    for (const w of windows.filter((x) => x.tradeCount === 0)) expect(w.volume).toBe(0);
  });

  it("counts late events instead of merging them, and closes by watermark", () => {
    const agg = new WindowAggregator({ symbol: "X", interval: "1s", allowedLatenessMs: 100 });
    const trade = (timeMs: number, price = 1) =>
      agg.onTrade({ timeMs, price, quantity: 1, buyerIsMaker: false });
    expect(trade(1_000)).toEqual([]);
    expect(trade(2_050)).toEqual([]); // watermark 1 950 < 2 000
    expect(trade(1_990, 5)).toEqual([]); // within lateness: merged into [1000, 2000)
    const closed = trade(2_150); // watermark 2 050 closes [1000, 2000)
    expect(closed).toHaveLength(1);
    expect(closed[0]).toMatchObject({
      startTimeMs: 1_000,
      tradeCount: 2,
      high: 5,
      closeReason: WindowCloseReason.WINDOW_CLOSE_REASON_WATERMARK,
    });
    expect(trade(1_500)).toEqual([]); // late: its window is closed
    const rest = agg.closeAll();
    expect(rest[0]).toMatchObject({
      startTimeMs: 2_000,
      tradeCount: 2,
      lateEventCount: 1,
      closeReason: WindowCloseReason.WINDOW_CLOSE_REASON_IDLE,
    });
  });

  it("marks windows overlapped by a gap incomplete and takes book features at close", () => {
    const agg = new WindowAggregator({ symbol: "X", interval: "1s", allowedLatenessMs: 0, bookLevels: 2 });
    const book = new OrderBook();
    book.applySnapshot(
      [
        ["99", "2"],
        ["98", "1"],
      ],
      [
        ["101", "1"],
        ["102", "3"],
      ],
      1,
    );
    agg.beforeBookUpdate(1_100, book, 1);
    agg.onBook(1_100, book, 1);
    agg.markIncomplete(1_500);
    agg.beforeBookUpdate(2_100, book, 1);
    book.applyDiff([["100", "5"]], [], 2);
    const closed = agg.onBook(2_100, book, 1);
    expect(closed).toHaveLength(1);
    const w = closed[0]!;
    expect(w.complete).toBe(false);
    expect(w.mid).toBe(100);
    expect(w.lastUpdateId).toBe(1);
    expect(w.bids).toEqual([
      { price: "99", quantity: "2" },
      { price: "98", quantity: "1" },
    ]);
    expect(w.bookImbalance).toBeCloseTo((3 - 4) / 7, 10);
    expect(w.spreadLast).toBe(2);
    const next = agg.closeAll()[0]!;
    expect(next.complete).toBe(true);
    expect(next.mid).toBe(100.5);
    expect(next.orderFlowImbalance).toBe(5); // the best bid rose to 100 with 5
  });

  it("counts as late an event whose window the watermark passed, though that window had no event yet", () => {
    const agg = new WindowAggregator({ symbol: "X", interval: "1s", allowedLatenessMs: 250 });
    const trade = (timeMs: number) => agg.onTrade({ timeMs, price: 1, quantity: 1, buyerIsMaker: false });
    const out = [...trade(8_500), ...trade(10_300)]; // watermark 10 050: [8000, 9000) closes
    out.push(...trade(9_500)); // [9000, 10000) had nothing and ended before the watermark: late
    out.push(...trade(8_900)); // its window emitted: late
    out.push(...agg.closeAll());
    expect(out.map((w) => [w.startTimeMs, w.tradeCount])).toEqual([
      [8_000, 1],
      [9_000, 0],
      [10_000, 1],
    ]);
    expect(out.reduce((n, w) => n + w.lateEventCount, 0)).toBe(2);
  });

  it("takes open and close from the first and last trades by time and id, whatever order they arrive in", () => {
    const run = (order: readonly (readonly [number, number, number])[]) => {
      const agg = new WindowAggregator({ symbol: "X", interval: "1s", allowedLatenessMs: 250 });
      for (const [id, timeMs, price] of order)
        agg.onTrade({ timeMs, price, quantity: 1, buyerIsMaker: false, id });
      return agg.closeAll()[0]!;
    };
    const t9 = [9, 1_010, 99] as const;
    const t10 = [10, 1_050, 100] as const;
    const t11 = [11, 1_100, 101] as const;
    const t12 = [12, 1_100, 102] as const; // same time as 11, a later id
    for (const order of [
      [t9, t10, t11, t12],
      [t9, t12, t11, t10],
      [t12, t11, t10, t9],
      [t10, t12, t9, t11],
    ])
      expect(run(order)).toMatchObject({ open: 99, close: 102, high: 102, low: 99, tradeCount: 4 });
  });

  it("marks every window from a break in the book until it is rebuilt incomplete, the empty ones too", () => {
    const agg = new WindowAggregator({ symbol: "X", interval: "1s", allowedLatenessMs: 0 });
    const trade = (timeMs: number) => agg.onTrade({ timeMs, price: 1, quantity: 1, buyerIsMaker: false });
    const out = [...trade(500), ...trade(1_200)];
    agg.impair(1_400); // the last good diff at 1.4 s
    out.push(...trade(2_200), ...trade(4_300)); // [3000, 4000) gets no event
    agg.restored(5_100); // a snapshot bridged at 5.1 s
    out.push(...trade(5_500), ...trade(6_200), ...trade(7_100));
    expect(out.map((w) => [w.startTimeMs, w.complete])).toEqual([
      [0, true],
      [1_000, false],
      [2_000, false],
      [3_000, false],
      [4_000, false],
      [5_000, false],
      [6_000, true],
    ]);
    // Checkpointed while impaired, a restored aggregator goes on the same way.
    const a = new WindowAggregator({ symbol: "X", interval: "1s", allowedLatenessMs: 0 });
    a.onTrade({ timeMs: 1_200, price: 1, quantity: 1, buyerIsMaker: false });
    a.impair(1_400);
    const b = new WindowAggregator({ symbol: "X", interval: "1s", allowedLatenessMs: 0 });
    b.restore(JSON.parse(JSON.stringify(a.serialize())) as WindowAggregatorState, undefined);
    const after = [
      ...b.onTrade({ timeMs: 3_500, price: 1, quantity: 1, buyerIsMaker: false }),
      ...b.closeAll(),
    ];
    expect(after.map((w) => [w.startTimeMs, w.complete])).toEqual([
      [1_000, false],
      [2_000, false],
      [3_000, false],
    ]);
  });

  it("keeps windows after a held book open, so a gap found later still marks them", () => {
    const agg = new WindowAggregator({ symbol: "X", interval: "1s", allowedLatenessMs: 0 });
    const trade = (timeMs: number) => agg.onTrade({ timeMs, price: 1, quantity: 1, buyerIsMaker: false });
    const out = [...trade(1_200)];
    agg.hold(1_400); // diffs after the one at 1.4 s are held, waiting for a missing one
    out.push(...trade(2_300), ...trade(3_100)); // [1000, 2000) and [2000, 3000) stay open
    expect(out).toEqual([]);
    out.push(...trade(1_900)); // still open: not late
    agg.hold(undefined);
    agg.impair(1_400); // the held diffs were a gap after all
    agg.restored(3_050);
    out.push(...trade(4_100));
    expect(out.map((w) => [w.startTimeMs, w.tradeCount, w.complete])).toEqual([
      [1_000, 2, false],
      [2_000, 1, false],
      [3_000, 1, false],
    ]);
    expect(out.reduce((n, w) => n + w.lateEventCount, 0)).toBe(0);
  });

  it("gives a window without book updates the book of the previous close, not a later one", () => {
    const agg = new WindowAggregator({ symbol: "X", interval: "1s", allowedLatenessMs: 0 });
    const book = new OrderBook();
    book.applySnapshot([["99", "1"]], [["101", "1"]], 1);
    const update = (timeMs: number, bid: string, u: number) => {
      agg.beforeBookUpdate(timeMs, book, 1);
      book.applyDiff([[bid, "1"]], [], u);
      return agg.onBook(timeMs, book, 1);
    };
    const out = [...update(1_500, "99", 2)]; // mid 100
    out.push(...update(3_500, "100", 3)); // nothing happened in [2000, 3000): emitted now, empty
    out.push(...update(4_300, "100.5", 4), ...update(5_300, "100.5", 5));
    expect(out.map((w) => [w.startTimeMs, w.lastUpdateId, w.mid])).toEqual([
      [1_000, 2, 100],
      [2_000, 2, 100],
      [3_000, 3, 100.5],
      [4_000, 4, 100.75],
    ]);
  });

  it("marks nothing for a time of 0 before any event, and the latest window after", () => {
    const agg = new WindowAggregator({ symbol: "X", interval: "1s", allowedLatenessMs: 0 });
    agg.markIncomplete(0); // ingest said disconnected before this symbol's first diff
    agg.onTrade({ timeMs: 1_700_000_000_500, price: 1, quantity: 1, buyerIsMaker: false });
    agg.markIncomplete(0);
    const out = agg.closeAll();
    expect(out.map((w) => [w.startTimeMs, w.complete])).toEqual([[1_700_000_000_000, false]]);
  });

  it("takes no order flow or return across a rebuilt book (a new epoch)", () => {
    const agg = new WindowAggregator({ symbol: "X", interval: "1s", allowedLatenessMs: 0 });
    const book = new OrderBook();
    book.applySnapshot([["99", "2"]], [["101", "1"]], 1);
    agg.onBook(1_100, book, 1);
    book.applySnapshot([["150", "7"]], [["151", "1"]], 5); // rebuilt after a gap: epoch 2
    agg.beforeBookUpdate(1_900, book, 2);
    agg.onBook(1_900, book, 2);
    const w = agg.closeAll()[0]!;
    expect(w.orderFlowImbalance).toBe(0);
    expect(w.realizedVolatility).toBe(0);
    expect(w.mid).toBe(150.5);
  });

  it("is deterministic: the same input gives byte-identical windows", () => {
    const a = aggregate("1s").map((w) => Buffer.from(Window.encode(w).finish()).toString("hex"));
    const b = aggregate("1s").map((w) => Buffer.from(Window.encode(w).finish()).toString("hex"));
    expect(a).toEqual(b);
  });
});

const btcEvents = readRecording(fixtures.btcusdt).events;

/**
 * Every 1 s window of the BTCUSDT recording, its book included (trades and diffs through an
 * `OrderBook`); with `cutAt`, the aggregator is serialized through JSON and restored before that event.
 */
function recordedWindows(cutAt?: number): Window[] {
  const book = new OrderBook();
  let agg = new WindowAggregator({ symbol: "BTCUSDT", interval: "1s" });
  const out: Window[] = [];
  let i = 0;
  for (const e of btcEvents) {
    if (i++ === cutAt) {
      const state = JSON.parse(JSON.stringify(agg.serialize())) as ReturnType<WindowAggregator["serialize"]>;
      agg = new WindowAggregator({ symbol: "BTCUSDT", interval: "1s" });
      agg.restore(state, book);
    }
    if (e.type === "snapshot") {
      const s = JSON.parse(e.body) as {
        lastUpdateId: number;
        bids: [string, string][];
        asks: [string, string][];
      };
      book.applySnapshot(s.bids, s.asks, s.lastUpdateId);
      continue;
    }
    if (e.kind === "trade") {
      const t = parseTrade(e.data);
      out.push(
        ...agg.onTrade({
          timeMs: t.tradeTime,
          price: +t.price,
          quantity: +t.quantity,
          buyerIsMaker: t.buyerIsMaker,
        }),
      );
    } else if (e.kind.startsWith("depth") && book.lastUpdateId > 0) {
      const d = JSON.parse(e.data) as {
        E: number;
        u: number;
        b: [string, string][];
        a: [string, string][];
      };
      if (d.u <= book.lastUpdateId) continue;
      agg.beforeBookUpdate(d.E, book, 1);
      book.applyDiff(d.b, d.a, d.u);
      out.push(...agg.onBook(d.E, book, 1));
    }
  }
  for (const w of agg.closeAll()) out.push(w);
  return out;
}

describe("WindowAggregator checkpoints", () => {
  it("continues from serialize() → JSON → restore() with byte-identical windows", () => {
    const run = (cutAt: number | undefined) => recordedWindows(cutAt).map((w) => Window.encode(w).finish());
    const whole = run(undefined);
    expect(whole.length).toBeGreaterThan(300);
    for (const cut of [1_000, Math.floor(btcEvents.length / 2), btcEvents.length - 50])
      expect(run(cut)).toEqual(whole);
  });
});

describe("encodeWindow (the normalizer's encoder)", () => {
  it("writes the generated encoder's bytes for every window of the recording, books included", () => {
    const windows = recordedWindows();
    expect(windows.filter((w) => w.bids.length > 0 && w.depth.length > 0).length).toBeGreaterThan(300);
    for (const w of windows) expect(encodeWindow(w)).toEqual(Window.encode(w).finish());
  });
});

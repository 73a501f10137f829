import { describe, expect, it } from "vitest";
import { parseTrade } from "@l2flow/binance";
import { encodeWindow, Window, WindowCloseReason } from "@l2flow/contracts";
import { OrderBook } from "@l2flow/orderbook";
import { readRecording } from "@l2flow/recording";
import { fixtures } from "@l2flow/testkit";
import { WindowAggregator } from "@l2flow/windows";

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

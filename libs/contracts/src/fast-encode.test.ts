import { describe, expect, it } from "vitest";
import { BookSnapshot, Trade, type BookLevel, type TradeKind } from "./gen/l2flow/v1/market_data.js";
import { Window } from "./gen/l2flow/v1/window.js";
import { encodeBookSnapshot, encodeTrade, encodeWindow } from "./fast-encode.js";

/** A small deterministic PRNG (mulberry32), so a failure reproduces. */
function rng(seed: number) {
  return () => {
    seed = (seed + 0x6d2b79f5) | 0;
    let t = Math.imul(seed ^ (seed >>> 15), 1 | seed);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/**
 * Variants of a message with a symbol and book levels whose strings leave the usual short ASCII form:
 * not ASCII (the generated encoder's bytes), and long (a level's body of 127 and 128 bytes, a
 * 200-character price: two-byte lengths).
 */
function stringCases<T extends { symbol: string; bids: BookLevel[]; asks: BookLevel[] }>(base: T): T[] {
  return [
    { ...base, symbol: "BTC€" },
    { ...base, bids: [{ price: "1.0", quantity: "ü" }] },
    { ...base, asks: [...base.asks, { price: "é".repeat(3), quantity: "1.0" }] },
    { ...base, bids: [{ price: "1".repeat(61), quantity: "2".repeat(62) }, ...base.bids] },
    { ...base, bids: [{ price: "1".repeat(62), quantity: "2".repeat(62) }, ...base.bids] },
    {
      ...base,
      asks: [
        { price: "3".repeat(200), quantity: "4" },
        { price: "5", quantity: "6" },
      ],
    },
  ];
}

/**
 * Random field values from `random`: integers (zero, small, around varint boundaries, and large, up to
 * 2^53 - 1) and decimal strings as Binance writes them (now and then empty, the default).
 */
function randomValues(random: () => number) {
  return {
    int: (): number => {
      const r = random();
      if (r < 0.15) return 0;
      if (r < 0.4) return Math.floor(random() * 300);
      if (r < 0.7) return Math.floor(random() * 2 ** 35);
      return Math.floor(random() * Number.MAX_SAFE_INTEGER);
    },
    decimal: (): string =>
      random() < 0.05
        ? ""
        : `${Math.floor(random() * 100_000)}.${String(Math.floor(random() * 1e8)).padStart(8, "0")}`,
  };
}

describe("encodeBookSnapshot", () => {
  const random = rng(42);
  const { int, decimal } = randomValues(random);
  const levels = (): BookLevel[] =>
    Array.from({ length: Math.floor(random() * 25) }, () => ({ price: decimal(), quantity: decimal() }));
  const snapshot = (): BookSnapshot => ({
    exchange: random() < 0.1 ? "" : "binance",
    symbol: random() < 0.1 ? "" : "BTCUSDT".slice(0, 1 + Math.floor(random() * 7)),
    lastUpdateId: int(),
    epoch: int(),
    eventTimeUs: int(),
    receiveTimeUs: int(),
    bids: levels(),
    asks: levels(),
  });

  it("writes the generated encoder's bytes for every shape of snapshot", () => {
    for (let i = 0; i < 2_000; i++) {
      const s = snapshot();
      expect(encodeBookSnapshot(s)).toEqual(BookSnapshot.encode(s).finish());
    }
  });

  it("decodes back to the same snapshot", () => {
    const s = snapshot();
    expect(BookSnapshot.decode(encodeBookSnapshot(s))).toEqual(
      BookSnapshot.decode(BookSnapshot.encode(s).finish()),
    );
  });

  it("falls back to the generated encoder off the fast path, with the same bytes", () => {
    const base = snapshot();
    for (const s of [...stringCases(base), { ...base, epoch: -1 }, { ...base, lastUpdateId: 2 ** 60 }])
      expect(encodeBookSnapshot(s)).toEqual(BookSnapshot.encode(s).finish());
    // What the generated encoder refuses, this refuses too.
    expect(() => BookSnapshot.encode({ ...base, eventTimeUs: 1.5 })).toThrow(RangeError);
    expect(() => encodeBookSnapshot({ ...base, eventTimeUs: 1.5 })).toThrow(RangeError);
  });
});

describe("encodeTrade", () => {
  const random = rng(5);
  const { int, decimal } = randomValues(random);
  const trade = (): Trade => ({
    exchange: random() < 0.1 ? "" : "binance",
    symbol: random() < 0.1 ? "" : "ETHUSDT",
    kind: Math.floor(random() * 3),
    tradeId: int(),
    price: decimal(),
    quantity: decimal(),
    takerSide: Math.floor(random() * 3),
    tradeTimeUs: int(),
    eventTimeUs: int(),
    receiveTimeUs: int(),
    firstTradeId: int(),
    lastTradeId: int(),
  });

  it("writes the generated encoder's bytes for every shape of trade", () => {
    for (let i = 0; i < 2_000; i++) {
      const t = trade();
      expect(encodeTrade(t)).toEqual(Trade.encode(t).finish());
    }
  });

  it("falls back to the generated encoder off the fast path, with the same bytes", () => {
    const base = trade();
    for (const t of [
      { ...base, symbol: "ÉTHUSDT" },
      { ...base, price: "1€" },
      { ...base, tradeId: -5 },
      { ...base, receiveTimeUs: 2 ** 60 },
      { ...base, kind: -1 as TradeKind },
      { ...base, quantity: "9".repeat(300) },
    ])
      expect(encodeTrade(t)).toEqual(Trade.encode(t).finish());
    // What the generated encoder refuses, this refuses too, with the same error.
    for (const bad of [
      { ...base, tradeTimeUs: 1.5 },
      { ...base, takerSide: 2 ** 31 },
    ]) {
      let message = "";
      try {
        Trade.encode(bad).finish();
      } catch (err) {
        message = (err as Error).message;
      }
      expect(message).not.toBe("");
      expect(() => encodeTrade(bad)).toThrow(message);
    }
  });
});

describe("encodeWindow", () => {
  const random = rng(7);
  const pick = <T>(xs: readonly T[]) => xs[Math.floor(random() * xs.length)]!;
  const int = () => pick([0, 1, 127, 128, 16_383, 16_384, 1_733_011_200_000, Number.MAX_SAFE_INTEGER]);
  const double = () =>
    pick([0, -0, 1, -1, 0.1, 61_837.63, -3.25e-9, 1e300, Number.NaN, Infinity, -Infinity, random() * 1e5]);
  const decimal = () =>
    random() < 0.05 ? "" : `${Math.floor(random() * 100_000)}.${Math.floor(random() * 1e8)}`;
  const levels = (): BookLevel[] =>
    Array.from({ length: Math.floor(random() * 21) }, () => ({ price: decimal(), quantity: decimal() }));
  const window = (): Window => ({
    exchange: random() < 0.1 ? "" : "binance",
    symbol: random() < 0.1 ? "" : pick(["BTCUSDT", "C399BTCUSDT", "X"]),
    interval: random() < 0.1 ? "" : pick(["1s", "1m", "15m"]),
    startTimeMs: int(),
    endTimeMs: int(),
    open: double(),
    high: double(),
    low: double(),
    close: double(),
    volume: double(),
    quoteVolume: double(),
    vwap: double(),
    tradeCount: int(),
    takerBuyVolume: double(),
    takerSellVolume: double(),
    tradeFlowImbalance: double(),
    orderFlowImbalance: double(),
    spreadMean: double(),
    spreadMax: double(),
    spreadLast: double(),
    mid: double(),
    microprice: double(),
    bookImbalance: double(),
    bookLevels: pick([0, 10, 20, 2 ** 31 - 1]),
    depth: Array.from({ length: Math.floor(random() * 4) }, () => ({
      bps: pick([0, 5, 25, 300]),
      bidQuantity: double(),
      askQuantity: double(),
    })),
    realizedVolatility: double(),
    bids: levels(),
    asks: levels(),
    lastUpdateId: int(),
    bookUpdateCount: int(),
    complete: random() < 0.5,
    lateEventCount: int(),
    closeReason: pick([0, 1, 2]),
    epoch: int(),
  });

  it("writes the generated encoder's bytes for every shape of window", () => {
    for (let i = 0; i < 2_000; i++) {
      const w = window();
      expect(encodeWindow(w)).toEqual(Window.encode(w).finish());
    }
  });

  it("falls back to the generated encoder off the fast path, with the same bytes", () => {
    const base = window();
    for (const w of [
      ...stringCases(base),
      { ...base, epoch: -1 },
      { ...base, lateEventCount: 2 ** 60 },
      { ...base, bookLevels: -3 },
      { ...base, depth: [{ bps: -5, bidQuantity: 1, askQuantity: 2 }] },
    ])
      expect(encodeWindow(w)).toEqual(Window.encode(w).finish());
    // What the generated encoder refuses, this refuses too.
    for (const bad of [{ startTimeMs: 1.5 }, { bookLevels: 2 ** 31 }]) {
      expect(() => Window.encode({ ...base, ...bad })).toThrow(Error);
      expect(() => encodeWindow({ ...base, ...bad })).toThrow(Error);
    }
  });
});

import { describe, expect, it } from "vitest";
import { BookSnapshot, type BookLevel } from "./gen/l2flow/v1/market_data.js";
import { encodeBookSnapshot } from "./fast-encode.js";

/** A small deterministic PRNG (mulberry32), so a failure reproduces. */
function rng(seed: number) {
  return () => {
    seed = (seed + 0x6d2b79f5) | 0;
    let t = Math.imul(seed ^ (seed >>> 15), 1 | seed);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

describe("encodeBookSnapshot", () => {
  const random = rng(42);
  const int = () => {
    const r = random();
    // zero, small, around varint boundaries, and large (up to 2^53 - 1)
    if (r < 0.15) return 0;
    if (r < 0.4) return Math.floor(random() * 300);
    if (r < 0.7) return Math.floor(random() * 2 ** 35);
    return Math.floor(random() * Number.MAX_SAFE_INTEGER);
  };
  const decimal = () =>
    random() < 0.05
      ? ""
      : `${Math.floor(random() * 100_000)}.${String(Math.floor(random() * 1e8)).padStart(8, "0")}`;
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
    for (const s of [
      { ...base, symbol: "BTC€" },
      { ...base, bids: [{ price: "1.0", quantity: "ü" }] },
      { ...base, epoch: -1 },
      { ...base, lastUpdateId: 2 ** 60 },
    ])
      expect(encodeBookSnapshot(s)).toEqual(BookSnapshot.encode(s).finish());
    // What the generated encoder refuses, this refuses too.
    expect(() => BookSnapshot.encode({ ...base, eventTimeUs: 1.5 })).toThrow(RangeError);
    expect(() => encodeBookSnapshot({ ...base, eventTimeUs: 1.5 })).toThrow(RangeError);
  });
});

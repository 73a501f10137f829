import { describe, expect, it } from "vitest";
import { isZeroQuantity, OrderBook } from "@l2flow/orderbook";

describe("OrderBook", () => {
  const book = () => {
    const b = new OrderBook();
    b.applySnapshot(
      [
        ["100.00", "1.0"],
        ["99.50", "2.0"],
        ["99.00", "3.0"],
      ],
      [
        ["100.50", "1.5"],
        ["101.00", "2.5"],
        ["102.00", "4.0"],
      ],
      10,
    );
    return b;
  };

  it("keeps both sides sorted best first and returns the exchange's strings", () => {
    const b = book();
    expect(b.topBids(2)).toEqual([
      { price: "100.00", quantity: "1.0" },
      { price: "99.50", quantity: "2.0" },
    ]);
    expect(b.topAsks(5).map((l) => l.price)).toEqual(["100.50", "101.00", "102.00"]);
    expect(b.lastUpdateId).toBe(10);
  });

  it("applies diffs: insert, update, and quantity zero removes", () => {
    const b = book();
    b.applyDiff(
      [
        ["100.25", "0.7"],
        ["99.50", "0.00000000"],
      ],
      [
        ["100.50", "0.5"],
        ["101.00", "0"],
      ],
      11,
    );
    expect(b.topBids(3).map((l) => [l.price, l.quantity])).toEqual([
      ["100.25", "0.7"],
      ["100.00", "1.0"],
      ["99.00", "3.0"],
    ]);
    expect(b.topAsks(3).map((l) => [l.price, l.quantity])).toEqual([
      ["100.50", "0.5"],
      ["102.00", "4.0"],
    ]);
    b.applyDiff([["98.00", "0"]], [], 12);
    expect(b.bidCount).toBe(3);
    expect(b.lastUpdateId).toBe(12);
  });

  it("computes mid, spread, microprice, imbalance and depth near mid", () => {
    const b = book();
    expect(b.mid()).toBeCloseTo(100.25, 10);
    expect(b.spread()).toBeCloseTo(0.5, 10);
    expect(b.microprice()).toBeCloseTo((100 * 1.5 + 100.5 * 1.0) / 2.5, 10);
    expect(b.imbalance(1)).toBeCloseTo((1 - 1.5) / 2.5, 10);
    expect(b.imbalance(3)).toBeCloseTo((6 - 8) / 14, 10);
    // 50 bps of 100.25 ≈ 0.501: bids >= 99.749, asks <= 100.751.
    expect(b.depthWithinBps(50)).toEqual({ bidQuantity: 1.0, askQuantity: 1.5 });
  });

  it("detects a crossed book", () => {
    const b = book();
    expect(b.isCrossed()).toBe(false);
    b.setLevel("bid", "100.50", "1");
    expect(b.isCrossed()).toBe(true);
  });

  it("is empty-safe", () => {
    const b = new OrderBook();
    expect(b.bestBid()).toBeUndefined();
    expect(Number.isNaN(b.mid())).toBe(true);
    expect(b.imbalance(5)).toBe(0);
    expect(b.depthWithinBps(10)).toEqual({ bidQuantity: 0, askQuantity: 0 });
  });

  it("recognises zero quantities in any notation", () => {
    expect(isZeroQuantity("0")).toBe(true);
    expect(isZeroQuantity("0.00000000")).toBe(true);
    expect(isZeroQuantity("0.00000001")).toBe(false);
  });
});

import { BookSnapshot, encodeBookSnapshot, Trade, TradeKind, Window } from "@l2flow/contracts";
import { describe, expect, it } from "vitest";
import { TimedValues } from "../../bench/lib/histogram.js";
import { BOOK_RECEIVE_TIME_US_FIELD, peekVarintField, PeekError } from "../../bench/lib/peek.js";

const book = (receiveTimeUs: number): BookSnapshot => ({
  exchange: "binance",
  symbol: "BTCUSDT",
  lastUpdateId: 2 ** 40 + 7,
  epoch: 3,
  eventTimeUs: 1_723_075_200_123_456,
  receiveTimeUs,
  bids: [{ price: "61000.01", quantity: "0.5" }],
  asks: [{ price: "61000.02", quantity: "1.25" }],
});

describe("peekVarintField", () => {
  it("reads a book's receive time as a full decode does, from both encoders", () => {
    for (const t of [1, 127, 128, 1_723_075_200_654_321, 2 ** 53 - 1]) {
      for (const bytes of [encodeBookSnapshot(book(t)), BookSnapshot.encode(book(t)).finish()]) {
        expect(peekVarintField(bytes, BOOK_RECEIVE_TIME_US_FIELD)).toBe(
          BookSnapshot.decode(bytes).receiveTimeUs,
        );
        expect(peekVarintField(bytes, 6)).toBe(t);
        expect(peekVarintField(bytes, 3)).toBe(2 ** 40 + 7);
      }
    }
  });

  it("gives 0 for a field left out (proto3's zero), and skips fixed64 and length-delimited fields", () => {
    expect(peekVarintField(encodeBookSnapshot(book(0)), 6)).toBe(0);
    // Window carries doubles (fixed64) before and after its integer fields.
    const w = Window.fromPartial({ symbol: "X", open: 1.5, high: 2.5, tradeCount: 42, spreadMax: 0.25 });
    expect(peekVarintField(Window.encode(w).finish(), 13)).toBe(42);
    const t = Trade.fromPartial({ symbol: "X", kind: TradeKind.TRADE_KIND_AGG_TRADE, lastTradeId: 99 });
    expect(peekVarintField(Trade.encode(t).finish(), 12)).toBe(99);
  });

  it("refuses bytes that are not a protobuf message", () => {
    const bytes = encodeBookSnapshot(book(5));
    expect(() => peekVarintField(bytes.subarray(0, 5), 6)).toThrow(PeekError);
    expect(() => peekVarintField(new Uint8Array([0x0b]), 6)).toThrow(/wire type 3/);
    expect(() => peekVarintField(new Uint8Array([0x30, 0xff]), 6)).toThrow(/truncated/);
  });
});

describe("TimedValues", () => {
  it("keeps every pair across growth and returns the values from a time on, in order", () => {
    const s = new TimedValues();
    for (let i = 0; i < 10_000; i++) s.push(i, i * 0.5);
    expect(s.length).toBe(10_000);
    expect(s.valuesFrom(9_997)).toEqual([4998.5, 4999, 4999.5]);
    expect(s.valuesFrom(0)).toHaveLength(10_000);
    expect(s.valuesFrom(20_000)).toEqual([]);
  });
});

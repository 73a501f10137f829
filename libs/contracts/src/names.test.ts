import { describe, expect, it } from "vitest";
import {
  BookSnapshot,
  intervalMs,
  msgIds,
  normalizeSymbol,
  rawSubjectParts,
  subjects,
} from "@l2flow/contracts";

describe("contracts", () => {
  it("round-trips a BookSnapshot through protobuf bytes", () => {
    const book = BookSnapshot.fromPartial({
      exchange: "binance",
      symbol: "BTCUSDT",
      lastUpdateId: 50093239218,
      epoch: 2,
      bids: [{ price: "61000.01", quantity: "0.5" }],
      asks: [{ price: "61000.02", quantity: "1.25" }],
    });
    const bytes = BookSnapshot.encode(book).finish();
    expect(BookSnapshot.decode(bytes)).toEqual(book);
  });

  it("builds subjects and ids from the data", () => {
    expect(subjects.raw("depth", "BTCUSDT")).toBe("md.raw.binance.depth.BTCUSDT");
    expect(subjects.window("1s", "ETHBRL")).toBe("md.window.binance.1s.ETHBRL");
    expect(msgIds.trade("BTCUSDT", 42)).toBe("binance:trade:BTCUSDT:42");
    expect(msgIds.window("1m", "BTCUSDT", 60_000)).toBe("window:1m:BTCUSDT:60000");
  });

  it("reads kind and symbol back from a raw subject, and nothing from other subjects", () => {
    expect(rawSubjectParts(subjects.raw("depth", "BTCUSDT"))).toEqual({ kind: "depth", symbol: "BTCUSDT" });
    expect(rawSubjectParts(subjects.raw("aggtrade", "ETHBTC"))).toEqual({
      kind: "aggtrade",
      symbol: "ETHBTC",
    });
    expect(rawSubjectParts(subjects.trade("BTCUSDT"))).toBeUndefined();
    expect(rawSubjectParts("md.raw.binance.depth")).toBeUndefined();
    expect(rawSubjectParts("md.raw.other.depth.BTCUSDT")).toBeUndefined();
  });

  it("rejects symbols and intervals that cannot be subject tokens", () => {
    expect(normalizeSymbol("btcusdt")).toBe("BTCUSDT");
    expect(() => normalizeSymbol("BTC.USDT")).toThrow(/invalid symbol/);
    expect(intervalMs("1m")).toBe(60_000);
    expect(intervalMs("250ms")).toBe(250);
    expect(() => intervalMs("1 minute")).toThrow(/invalid interval/);
  });
});

import { describe, expect, it } from "vitest";
import { multiplyDecimals, significantDecimals, stepString } from "./decimal.js";
import { splitSymbol } from "./exchange-info.js";
import { canonicalStream, deliveryStreams, toMicroseconds } from "./streams.js";

describe("stream names", () => {
  it("accepts Binance's stream names (symbol lower-cased) and rejects the rest", () => {
    expect(canonicalStream("btcusdt@depth@100ms")).toBe("btcusdt@depth@100ms");
    expect(canonicalStream("BTCUSDT@aggTrade")).toBe("btcusdt@aggTrade");
    expect(canonicalStream("ethbtc@kline_1m")).toBe("ethbtc@kline_1m");
    expect(canonicalStream("ethbtc@depth20@100ms")).toBe("ethbtc@depth20@100ms");
    expect(canonicalStream("!ticker@arr")).toBe("!ticker@arr");
    for (const bad of ["btcusdt", "@trade", "btcusdt@aggtrade", "btcusdt@depth@50ms", "!nope", "a b@trade"])
      expect(canonicalStream(bad)).toBeUndefined();
  });

  it("routes recorded diffs to every diff-depth stream of the symbol", () => {
    expect(deliveryStreams("btcusdt", "depth@100ms")).toEqual([
      "btcusdt@depth@100ms",
      "btcusdt@depth",
      "btcusdt@depth@1000ms",
    ]);
    expect(deliveryStreams("btcusdt", "bookTicker")).toEqual(["btcusdt@bookTicker"]);
  });

  it("rewrites only E and T to microseconds", () => {
    expect(toMicroseconds('{"e":"trade","E":1723161255343,"t":5,"T":1723161255342,"p":"1.0"}')).toBe(
      '{"e":"trade","E":1723161255343000,"t":5,"T":1723161255342000,"p":"1.0"}',
    );
  });
});

describe("decimals and symbols", () => {
  it("computes exact quote quantities and step strings", () => {
    expect(multiplyDecimals("4.00000100", "12.00000000", 8)).toBe("48.00001200");
    expect(multiplyDecimals("61837.63000000", "0.00006000", 8)).toBe("3.71025780");
    expect(multiplyDecimals("3", "7", 0)).toBe("21");
    expect(significantDecimals("61837.63000000")).toBe(2);
    expect(significantDecimals("100")).toBe(0);
    expect(stepString(2, 8)).toBe("0.01000000");
    expect(stepString(0, 8)).toBe("1.00000000");
  });

  it("splits symbols at their quote asset", () => {
    expect(splitSymbol("BTCUSDT")).toEqual({ baseAsset: "BTC", quoteAsset: "USDT" });
    expect(splitSymbol("RENBTCETH")).toEqual({ baseAsset: "RENBTC", quoteAsset: "ETH" });
    expect(splitSymbol("BTCSTUSDT")).toEqual({ baseAsset: "BTCST", quoteAsset: "USDT" });
    expect(splitSymbol("NEOUSDC")).toEqual({ baseAsset: "NEO", quoteAsset: "USDC" });
    expect(splitSymbol("BTCAUD")).toEqual({ baseAsset: "BTC", quoteAsset: "AUD" });
    expect(splitSymbol("ETHFDUSD")).toEqual({ baseAsset: "ETH", quoteAsset: "FDUSD" });
  });
});

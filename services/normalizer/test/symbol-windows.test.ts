// What goes into a symbol's windows, through the processor, no NATS: diffs stored out of order (a
// lagging redundant connection's copy after a later one) are held until the missing one arrives, then
// applied in order, and the windows must come out exactly as from the same diffs in order, their book
// at close included; with both trade streams collected, each trade is counted once.
import { describe, expect, it } from "vitest";
import { Window } from "@l2flow/contracts";
import { SymbolProcessor, type Effects, type Output, type ProcessorOptions } from "../src/symbol.js";

const OPTIONS: ProcessorOptions = {
  bookDepth: 5,
  bookEveryNDiffs: 1,
  intervals: ["1s"],
  latenessMs: 0,
  maxBufferedDiffs: 300,
  maxLevelsPerSide: 5_000,
  refreshHistory: 0,
  reorderDiffs: 10,
};
const enc = new TextEncoder();
const S = "REORDERUSDT";

const snapshot = { lastUpdateId: 100, bids: [["100", "1"]], asks: [["101", "1"]] };
const diff = (u: number, timeMs: number, bid: string) => ({
  e: "depthUpdate",
  E: timeMs,
  s: S,
  U: u,
  u,
  b: [[bid, "1"]],
  a: [],
});
const trade = (id: number, timeMs: number) => ({
  e: "trade",
  E: timeMs,
  s: S,
  t: id,
  p: "100.5",
  q: "1",
  T: timeMs,
  m: false,
});

/** The windows the processor publishes for these raw messages, decoded. */
function windows(messages: readonly [string, unknown][]): Window[] {
  const p = new SymbolProcessor(S, OPTIONS, {});
  const out: Output[] = [];
  for (const [kind, body] of messages) {
    const fx: Effects = { resync: false, book: undefined };
    p.handle(kind, enc.encode(JSON.stringify(body)), 0, out, fx);
  }
  p.closeWindows(out);
  return out.filter((o) => o.subject.startsWith("md.window.")).map((o) => Window.decode(o.data));
}

describe("diffs held for reordering", () => {
  it("give the same windows as in order, the book at each close included", () => {
    const d101 = diff(101, 1_100, "100.1");
    const d102 = diff(102, 1_950, "100.2"); // the last diff of [1000, 2000)
    const d103 = diff(103, 2_050, "100.3");
    const d104 = diff(104, 3_100, "100.4");
    const tail: [string, unknown][] = [
      ["trade", trade(1, 2_500)],
      ["depth", d104],
      ["trade", trade(2, 3_500)],
    ];
    const inOrder = windows([
      ["snapshot", snapshot],
      ["depth", d101],
      ["depth", d102],
      ["depth", d103],
      ...tail,
    ]);
    const reordered = windows([
      ["snapshot", snapshot],
      ["depth", d101],
      ["depth", d103], // held: 102 is missing
      ["depth", d102],
      ...tail,
    ]);
    expect(inOrder.map((w) => [w.startTimeMs, w.lastUpdateId, w.mid])).toEqual([
      [1_000, 102, 100.6],
      [2_000, 103, 100.65],
      [3_000, 104, 100.7],
    ]);
    expect(reordered.map((w) => Buffer.from(Window.encode(w).finish()).toString("hex"))).toEqual(
      inOrder.map((w) => Buffer.from(Window.encode(w).finish()).toString("hex")),
    );
  });
});

describe("both trade streams collected", () => {
  it("count each trade once in the windows, aggTrades before the first @trade included", () => {
    const agg = (a: number, f: number, l: number, q: string, timeMs: number) => ({
      e: "aggTrade",
      E: timeMs,
      s: S,
      a,
      p: "100",
      q,
      f,
      l,
      T: timeMs,
      m: false,
    });
    const t = (id: number, q: string, timeMs: number) => ({ ...trade(id, timeMs), p: "100", q });
    const [w] = windows([
      ["aggtrade", agg(500, 1_000, 1_001, "3", 1_100)], // trades 1000 (1) and 1001 (2)
      ["trade", t(1_000, "1", 1_100)],
      ["trade", t(1_001, "2", 1_100)],
      ["aggtrade", agg(501, 1_002, 1_002, "1", 1_200)],
      ["trade", t(1_002, "1", 1_200)],
    ]);
    expect(w!.volume).toBe(4);
  });
});

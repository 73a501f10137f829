import { describe, expect, it } from "vitest";
import { DedupeFilter } from "./dedupe.js";

describe("DedupeFilter", () => {
  it("passes each id once when two connections interleave out of step", () => {
    const f = new DedupeFilter();
    // The new connection starts ahead of the old one, which then catches up.
    const arrivals = [100, 101, 104, 102, 105, 103, 104, 106, 105, 106, 107];
    const passed = arrivals.filter((id) => !f.seen("trade", "BTCUSDT", id));
    expect(passed).toEqual([100, 101, 104, 102, 105, 103, 106, 107]);
    expect(f.counters).toMatchObject({ passed: 8, duplicates: 3 });
  });

  it("keys by kind and symbol, and works for sparse ids like depth update ids", () => {
    const f = new DedupeFilter();
    expect(f.seen("depth", "BTCUSDT", 9_000_000_123)).toBe(false);
    expect(f.seen("depth", "ETHUSDT", 9_000_000_123)).toBe(false);
    expect(f.seen("trade", "BTCUSDT", 9_000_000_123)).toBe(false);
    expect(f.seen("depth", "BTCUSDT", 9_000_000_123)).toBe(true);
    expect(f.seen("depth", "BTCUSDT", 9_000_004_567)).toBe(false);
    f.forgetSymbol("BTCUSDT");
    expect(f.size).toBe(1);
  });

  it("stays bounded: forgets the oldest ids and keys, and never drops what it cannot prove was seen", () => {
    const f = new DedupeFilter({ windowSize: 4, maxKeys: 2 });
    for (const id of [1, 2, 3, 4, 5]) f.seen("trade", "A", id);
    expect(f.seen("trade", "A", 1)).toBe(false); // evicted from the window: passes again
    expect(f.seen("trade", "A", 5)).toBe(true);
    f.seen("trade", "B", 1);
    f.seen("trade", "C", 1);
    expect(f.size).toBe(2);
    expect(f.counters.evictedKeys).toBe(1);
    // The oldest key (A) went, the newest stayed: C's id is still known, A's passes again.
    expect(f.seen("trade", "C", 1)).toBe(true);
    expect(f.seen("trade", "A", 5)).toBe(false);
    expect(f.counters.evictedKeys).toBe(2); // A came back in place of B
  });

  it("answers like a plain list of the last windowSize ids, through growth and wrap-around", () => {
    const windowSize = 100;
    const f = new DedupeFilter({ windowSize });
    const recent: number[] = []; // the reference: ids passed, newest last, at most windowSize
    let seed = 7;
    const rand = () => (seed = (seed * 1_103_515_245 + 12_345) % 2_147_483_648) / 2_147_483_648;
    let next = 3_688_410_919; // a real BTCUSDT trade id, above 2^31
    for (let i = 0; i < 5_000; i++) {
      // Mostly new ids, some repeats from far back, some older ids never seen (backfill).
      const r = rand();
      const id =
        r < 0.6
          ? next++
          : r < 0.9
            ? next - 1 - Math.floor(rand() * 150)
            : next - 1_000 - Math.floor(rand() * 50);
      const expected = recent.includes(id);
      expect(f.seen("trade", "BTCUSDT", id), `arrival ${i}: id ${id}`).toBe(expected);
      if (!expected) {
        recent.push(id);
        if (recent.length > windowSize) recent.shift();
      }
    }
    expect(f.counters.duplicates).toBeGreaterThan(500);
  });
});

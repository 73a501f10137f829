import { describe, expect, it } from "vitest";
import { WaitingRing } from "../src/waiting.js";

/** The same pseudo-random sequence in [0, 1) for a seed on every run. */
function seededRandom(seed: number): () => number {
  return () => (seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31;
}

describe("WaitingRing", () => {
  it("answers like a Map in send order, through growth, late answers and numbers past 2^32", () => {
    for (const start of [1, 2 ** 32 - 700, 2 ** 40]) {
      const rnd = seededRandom(start % 1000);
      const ring = new WaitingRing<string>(16);
      const model = new Map<number, { cb: string; sentAt: number }>();
      let next = start;
      let now = 0;
      let answered = 0;
      for (let step = 0; step < 20_000; step++) {
        const r = rnd();
        now += rnd() < 0.1 ? 1 : 0;
        if (r < 0.5 || model.size === 0) {
          // Sometimes a burst: the ring must grow past its 16 slots.
          for (let k = rnd() < 0.01 ? 200 : 1; k > 0; k--) {
            const id = next++;
            ring.add(id, `cb${id}`, now);
            model.set(id, { cb: `cb${id}`, sentAt: now });
          }
        } else if (r < 0.93) {
          // Mostly the oldest few, sometimes one long gone or never sent.
          const ids = [...model.keys()];
          const id =
            rnd() < 0.05
              ? next - 1 - Math.floor(rnd() * (next - start))
              : ids[Math.floor(rnd() * Math.min(4, ids.length))]!;
          const want = model.get(id)?.cb;
          expect(ring.take(id)).toBe(want);
          if (want !== undefined) answered++;
          model.delete(id);
        } else if (r < 0.99) {
          const limit = now - 3;
          const want = [...model.entries()].filter(([, w]) => w.sentAt <= limit);
          expect(ring.takeSentBefore(limit)).toEqual(want.map(([, w]) => w.cb));
          for (const [id] of want) model.delete(id);
        } else {
          expect(ring.takeAll()).toEqual([...model.values()].map((w) => w.cb));
          model.clear();
        }
        expect(ring.size).toBe(model.size);
      }
      expect(answered).toBeGreaterThan(5_000);
    }
  });

  it("refuses a number that does not increase", () => {
    const ring = new WaitingRing<number>();
    ring.add(5, 5, 0);
    expect(() => ring.add(5, 5, 0)).toThrow(RangeError);
    expect(ring.take(5)).toBe(5);
    expect(ring.take(5)).toBeUndefined();
  });
});

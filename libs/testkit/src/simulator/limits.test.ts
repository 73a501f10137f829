import { describe, expect, it } from "vitest";
import { SlidingWindowCounter, WeightLimiter } from "./limits.js";

describe("SlidingWindowCounter", () => {
  it("counts within the window and remembers the maximum", () => {
    const c = new SlidingWindowCounter(1000, 100);
    expect([0, 100, 200, 999].map((t) => c.record(t))).toEqual([1, 2, 3, 4]);
    expect(c.record(1000)).toBe(4); // the event at 0 has left the window (0, 1000]
    expect(c.count(2100)).toBe(0);
    expect(c.max).toBe(4);
    expect(c.total).toBe(5);
  });

  it("keeps at most capacity timestamps", () => {
    const c = new SlidingWindowCounter(1000, 3);
    for (let i = 0; i < 10; i++) c.record(i);
    expect(c.count(10)).toBe(3);
    expect(c.total).toBe(10);
  });
});

describe("WeightLimiter", () => {
  const options = { limit: 10, windowMs: 60_000, banMs: 120_000, maxBanMs: 300_000 };

  it("answers 429 with the seconds to the window's end, then 418 to a request that did not wait", () => {
    const l = new WeightLimiter(options);
    const t = 6_000_000; // a window start
    expect(l.admit(10, t)).toEqual({ status: 200, usedWeight: 10 });
    expect(l.admit(1, t + 30_500)).toMatchObject({ status: 429, usedWeight: 11, retryAfterSec: 30 });
    expect(l.admit(1, t + 31_000)).toMatchObject({ status: 418, retryAfterSec: 120 });
    expect(l.admit(1, t + 100_000)).toMatchObject({ status: 418, retryAfterSec: 51 });
    expect(l.admit(1, t + 151_000)).toEqual({ status: 200, usedWeight: 1 });
    expect(l.bans).toBe(1);
  });

  it("doubles repeat bans up to the maximum", () => {
    const l = new WeightLimiter(options);
    let t = 6_000_000;
    const bans: number[] = [];
    for (let i = 0; i < 4; i++) {
      l.admit(11, t);
      const d = l.admit(1, t + 1);
      if (d.status === 418) bans.push(d.retryAfterSec);
      t += 3_600_000;
    }
    expect(bans).toEqual([120, 240, 300, 300]);
  });

  it("starts a fresh window after waiting Retry-After", () => {
    const l = new WeightLimiter(options);
    const t = 6_000_000;
    l.admit(11, t);
    expect(l.used(t + 60_000)).toBe(0);
    expect(l.admit(5, t + 60_000)).toEqual({ status: 200, usedWeight: 5 });
  });
});

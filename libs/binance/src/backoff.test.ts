import { describe, expect, it } from "vitest";
import { Backoff, SlidingWindowLimiter, backoffCeilingMs, fullJitterDelayMs } from "./backoff.js";

describe("full-jitter backoff", () => {
  it("draws uniformly below min(cap, base * 2^attempt)", () => {
    expect([0, 1, 2, 3, 4, 5, 6, 100].map((a) => backoffCeilingMs(a))).toEqual([
      500, 1000, 2000, 4000, 8000, 16_000, 30_000, 30_000,
    ]);
    expect(fullJitterDelayMs(3, { random: () => 0 })).toBe(0);
    expect(fullJitterDelayMs(3, { random: () => 0.5 })).toBe(2000);
    expect(fullJitterDelayMs(3, { random: () => 0.999999 })).toBeLessThanOrEqual(4000);
    for (let i = 0; i < 1000; i++) {
      const d = fullJitterDelayMs(i % 12, { baseMs: 100, capMs: 1000 });
      expect(d).toBeGreaterThanOrEqual(0);
      expect(d).toBeLessThanOrEqual(Math.min(1000, 100 * 2 ** (i % 12)));
    }
  });

  it("grows per attempt and starts over after reset", () => {
    const b = new Backoff({ baseMs: 10, capMs: 1000, random: () => 1 });
    expect([b.next(), b.next(), b.next()]).toEqual([10, 20, 40]);
    expect(b.attempt).toBe(3);
    b.reset();
    expect(b.next()).toBe(10);
  });
});

describe("SlidingWindowLimiter", () => {
  it("allows at most `limit` events in any window and says how long to wait", () => {
    let now = 0;
    const l = new SlidingWindowLimiter({ limit: 3, windowMs: 1000, now: () => now });
    expect([l.tryAcquire(), l.tryAcquire()]).toEqual([true, true]);
    now = 400;
    expect(l.tryAcquire()).toBe(true);
    expect(l.tryAcquire()).toBe(false);
    expect(l.delayMs()).toBe(600); // the event at 0 leaves the window at 1000
    now = 1000; // both events at 0 have left the window
    expect(l.tryAcquire()).toBe(true);
    expect(l.count()).toBe(2);
    l.record(); // forced: fills the window
    l.record(); // forced: exceeds it
    expect(l.count()).toBe(4);
    expect(l.tryAcquire()).toBe(false);
    // Two must leave (the event at 400, then one at 1000) before a slot frees.
    expect(l.delayMs()).toBe(1000);
    expect(l.nextExpiryMs()).toBe(400);
  });

  it("serves waiters in order as slots free up, and rejects them on close", async () => {
    const l = new SlidingWindowLimiter({ limit: 2, windowMs: 200 });
    const order: number[] = [];
    const t0 = performance.now();
    const times: number[] = [];
    await Promise.all(
      [0, 1, 2, 3, 4, 5].map((i) =>
        l.acquire().then(() => {
          order.push(i);
          times.push(performance.now() - t0);
        }),
      ),
    );
    expect(order).toEqual([0, 1, 2, 3, 4, 5]);
    expect(times[2]).toBeGreaterThanOrEqual(190);
    expect(times[4]).toBeGreaterThanOrEqual(390);
    const waiting = l.acquire();
    const aborted = new AbortController();
    const cancelled = l.acquire(aborted.signal);
    aborted.abort();
    await expect(cancelled).rejects.toMatchObject({ code: "LIMITER_ABORTED" });
    l.close();
    await expect(waiting).rejects.toMatchObject({ code: "LIMITER_CLOSED" });
  });
});

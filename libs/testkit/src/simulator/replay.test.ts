import type { RecordedEvent } from "@l2flow/recording";
import { setTimeout as sleep } from "node:timers/promises";
import { describe, expect, it } from "vitest";
import { ReplayClock, type ReplaySink } from "./replay.js";

function events(n: number, stepUs: number): RecordedEvent[] {
  return Array.from({ length: n }, (_, i) => ({
    type: "frame",
    receiveTimeUs: 1_000_000 + i * stepUs,
    stream: "x@trade",
    symbol: "X",
    kind: "trade",
    data: String(i),
  }));
}

function sink(ready = () => true) {
  const got: string[] = [];
  let ended = 0;
  let rewound = 0;
  /** How many events each flush closed (a flush with none delivered since the last is a 0). */
  const batches: number[] = [];
  let sinceFlush = 0;
  const s: ReplaySink = {
    deliver: (e) => {
      got.push(e.type === "frame" ? e.data : "");
      sinceFlush++;
    },
    ready,
    ended: () => void ended++,
    rewound: () => void rewound++,
    flush: () => {
      batches.push(sinceFlush);
      sinceFlush = 0;
    },
  };
  return { s, got, batches, ended: () => ended, rewound: () => rewound, unflushed: () => sinceFlush };
}

describe("ReplayClock", () => {
  it("replays everything in order at full speed, in batches", async () => {
    const k = sink();
    const clock = new ReplayClock(events(5000, 1000), k.s, {
      speed: Infinity,
      loop: false,
      batchMaxEvents: 100,
    });
    clock.start();
    expect(k.got).toHaveLength(0); // nothing synchronously: the first batch runs on the next turn
    await expect.poll(() => k.ended()).toBe(1);
    expect(k.got).toEqual(Array.from({ length: 5000 }, (_, i) => String(i)));
    expect(clock.progress()).toMatchObject({ replayed: 5000, total: 5000, finished: true });
    // Each batch is flushed as it ends (the simulator's sockets are corked in between): 50 of 100.
    expect(k.unflushed()).toBe(0);
    expect(k.batches.filter((n) => n > 0)).toEqual(Array.from({ length: 50 }, () => 100));
  });

  it("follows receive times at finite speed, and pause holds the position", async () => {
    const k = sink();
    // 100 events 10 ms apart = 1 s of recording; at speed 10 that is ~100 ms.
    const clock = new ReplayClock(events(100, 10_000), k.s, { speed: 10, loop: false, batchMaxEvents: 1000 });
    clock.start();
    await sleep(40);
    const early = k.got.length;
    expect(early).toBeGreaterThan(0);
    expect(early).toBeLessThan(100);
    clock.pause();
    const held = k.got.length;
    await sleep(80);
    expect(k.got.length).toBe(held);
    clock.resume();
    await expect.poll(() => k.ended()).toBe(1);
    expect(k.got).toHaveLength(100);
    clock.close();
  });

  it("with maxLagMs, a replay that fell behind slows down instead of catching up in a burst", async () => {
    /** The batch right after a 300 ms stall in delivering the sixth of 100 events 10 ms apart. */
    const afterStall = async (maxLagMs?: number) => {
      const k = sink();
      const stalling: ReplaySink = {
        ...k.s,
        deliver: (e) => {
          k.s.deliver(e);
          if (e.type === "frame" && e.data === "5") {
            const until = performance.now() + 300;
            while (performance.now() < until); // the simulator short of CPU
          }
        },
      };
      const clock = new ReplayClock(events(100, 10_000), stalling, {
        speed: 1,
        loop: false,
        batchMaxEvents: 1000,
        ...(maxLagMs === undefined ? {} : { maxLagMs }),
      });
      clock.start();
      await expect.poll(() => k.ended(), { timeout: 5_000 }).toBe(1);
      const batches = k.batches.filter((n) => n > 0);
      let seen = 0;
      const i = batches.findIndex((n) => (seen += n) >= 6); // the batch that delivered "5"
      return batches[i + 1]!;
    };
    // On the timeline, everything due during the stall goes at once: ~29 events.
    expect(await afterStall()).toBeGreaterThanOrEqual(25);
    // 50 ms behind at most: the events of the next 50 ms (10 ms apart) and no more.
    const bounded = await afterStall(50);
    expect(bounded).toBeGreaterThanOrEqual(5);
    expect(bounded).toBeLessThanOrEqual(6);
  });

  it("waits at full speed while the sink is not ready", async () => {
    let ready = false;
    const k = sink(() => ready);
    const clock = new ReplayClock(events(10, 1), k.s, { speed: Infinity, loop: false, batchMaxEvents: 1000 });
    clock.start();
    await sleep(20);
    expect(k.got).toHaveLength(0);
    ready = true;
    await expect.poll(() => k.got.length).toBe(10);
    clock.close();
  });

  it("loops, rewinding the sink each pass", async () => {
    const k = sink();
    const clock = new ReplayClock(events(10, 1), k.s, { speed: Infinity, loop: true, batchMaxEvents: 1000 });
    clock.start();
    await expect.poll(() => k.rewound()).toBeGreaterThanOrEqual(3);
    clock.close();
    expect(k.got.slice(0, 20)).toEqual([
      ...Array.from({ length: 10 }, (_, i) => String(i)),
      ...Array.from({ length: 10 }, (_, i) => String(i)),
    ]);
    expect(clock.progress().loops).toBeGreaterThanOrEqual(3);
  });
});

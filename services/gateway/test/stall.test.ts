// Unary calls while nats-server is paused (SIGSTOP: connected, but answering nothing): the call's
// deadline, GATEWAY_NATS_TIMEOUT_MS or a cancel ends it on time, and once NATS answers again the
// gateway holds nothing for it.
import { readdirSync, readFileSync } from "node:fs";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { status, type ServiceError } from "@grpc/grpc-js";
import { startTestNats, waitUntil, type TestNats } from "@l2flow/testkit";
import {
  book,
  call,
  codeOf,
  eventually,
  metricValue,
  publishWindow,
  putBook,
  startHarness,
  window,
  type Harness,
} from "./support.js";

const NATS_TIMEOUT_MS = 1_500;
const DEADLINE_MS = 300;

describe("gateway: unary calls while NATS stalls", () => {
  let nats: TestNats;
  let h: Harness;
  let paused = false;

  /**
   * SIGSTOP, then waits until every thread of nats-server is stopped: the signal is asynchronous, and
   * a call made before the last thread stopped was once answered (seen in CI on a busy machine).
   */
  const pause = async () => {
    const pid = nats.pid;
    if (pid === undefined) throw new Error("these tests pause their own nats-server: unset NATS_URL");
    process.kill(pid, "SIGSTOP");
    paused = true;
    const stopped = () =>
      readdirSync(`/proc/${pid}/task`).every((tid) => {
        try {
          // The state follows the command name in parentheses: T (stopped) or t (traced).
          const stat = readFileSync(`/proc/${pid}/task/${tid}/stat`, "utf8");
          return /^[Tt]$/.test(stat.slice(stat.lastIndexOf(")") + 2, stat.lastIndexOf(")") + 3));
        } catch {
          return true; // the thread is gone
        }
      });
    await waitUntil(stopped, 5_000, "nats-server to stop after SIGSTOP", 5);
  };
  const resume = () => {
    if (!paused) return;
    paused = false;
    if (nats.pid !== undefined) process.kill(nats.pid, "SIGCONT");
  };
  /** Runs `body` with nats-server paused, and resumes it however `body` ends. */
  const whileNatsPaused = async (body: () => Promise<void>) => {
    await pause();
    try {
      await body();
    } finally {
      resume();
    }
  };

  /** The three unary methods with a request each gets an answer for. */
  const methods = () =>
    [
      {
        name: "GetBook",
        run: (o: object) => call(h.client.getBook.bind(h.client), { symbol: "BTCUSDT", depth: 1 }, o),
      },
      {
        name: "GetWindow",
        run: (o: object) => call(h.client.getWindow.bind(h.client), { symbol: "BTCUSDT", interval: "1s" }, o),
      },
      { name: "ListSymbols", run: (o: object) => call(h.client.listSymbols.bind(h.client), {}, o) },
    ] as const;

  /** A failed call's status and how long it took. */
  const timedFailure = async (p: Promise<unknown>) => {
    const t0 = performance.now();
    const { code, details } = await codeOf(p);
    return { code, details, ms: performance.now() - t0 };
  };
  const active = (method: string) => metricValue(h.registry, "l2flow_gateway_active_unary_calls", { method });
  const natsInFlight = () => metricValue(h.registry, "l2flow_gateway_nats_requests_in_flight", {});
  const calls = (method: string, code: string) =>
    metricValue(h.registry, "l2flow_gateway_rpcs_total", { method, code });

  /** After SIGCONT: every read left behind settles, nothing runs, and the gateway answers again. */
  const expectRecovered = async () => {
    expect(await eventually(natsInFlight, (n) => n === 0, 5_000)).toBe(0);
    const res = await call(h.client.getBook.bind(h.client), { symbol: "BTCUSDT", depth: 1 });
    expect(res.book?.lastUpdateId).toBe(7);
    const win = await call(h.client.getWindow.bind(h.client), { symbol: "BTCUSDT", interval: "1s" });
    expect(win.window?.startTimeMs).toBe(1_000);
    for (const { name } of methods()) expect(await active(name)).toBe(0);
    expect(await natsInFlight()).toBe(0);
  };

  beforeAll(async () => {
    nats = await startTestNats();
    h = await startHarness(nats.url, { GATEWAY_NATS_TIMEOUT_MS: String(NATS_TIMEOUT_MS) });
    await putBook(h.bus, book("BTCUSDT", 7));
    await publishWindow(h.bus, window("BTCUSDT", "1s", 1_000));
  });
  afterEach(() => resume());
  afterAll(async () => {
    resume();
    await h?.close();
    await nats?.close();
  });

  it("a call's deadline ends it with DEADLINE_EXCEEDED, and the gateway stops waiting for NATS then", async () => {
    await whileNatsPaused(async () => {
      const t0 = performance.now();
      const ended = await Promise.all(
        methods().map((m) => timedFailure(m.run({ deadline: Date.now() + DEADLINE_MS }))),
      );
      for (const e of ended) {
        expect(e.code, e.details).toBe(status.DEADLINE_EXCEEDED);
        expect(e.ms).toBeGreaterThanOrEqual(DEADLINE_MS - 10);
        expect(e.ms).toBeLessThan(DEADLINE_MS + 400);
      }
      // Server side, with NATS still paused: no call is running any more, each ended on its deadline.
      for (const { name } of methods()) {
        expect(
          await eventually(
            () => active(name),
            (n) => n === 0,
            300,
          ),
        ).toBe(0);
        expect(await calls(name, "DEADLINE_EXCEEDED")).toBe(1);
      }
      // The reads themselves are still out: nats.js cannot take a request back.
      expect(await natsInFlight()).toBeGreaterThan(0);
      expect(performance.now() - t0).toBeLessThan(NATS_TIMEOUT_MS);
    });
    await expectRecovered();
  });

  it("a call without a deadline ends with UNAVAILABLE after GATEWAY_NATS_TIMEOUT_MS", async () => {
    await whileNatsPaused(async () => {
      const ended = await Promise.all(methods().map((m) => timedFailure(m.run({}))));
      for (const e of ended) {
        expect(e.code, e.details).toBe(status.UNAVAILABLE);
        expect(e.details).toContain(`NATS did not answer within ${NATS_TIMEOUT_MS} ms`);
        expect(e.ms).toBeGreaterThanOrEqual(NATS_TIMEOUT_MS - 10);
        expect(e.ms).toBeLessThan(NATS_TIMEOUT_MS + 500);
      }
      for (const { name } of methods()) expect(await calls(name, "UNAVAILABLE")).toBe(1);
    });
    await expectRecovered();
  });

  it("a call the client cancels stops waiting for NATS at once", async () => {
    await whileNatsPaused(async () => {
      let cancelled: ServiceError | undefined;
      const pending = h.client.getBook({ symbol: "BTCUSDT", depth: 1 }, (err) => {
        cancelled = err ?? undefined;
      });
      expect(
        await eventually(
          () => active("GetBook"),
          (n) => n === 1,
          1_000,
        ),
      ).toBe(1);
      const t0 = performance.now();
      pending.cancel();
      expect(
        await eventually(
          () => active("GetBook"),
          (n) => n === 0,
          1_000,
        ),
      ).toBe(0);
      expect(performance.now() - t0).toBeLessThan(NATS_TIMEOUT_MS / 2);
      expect(await calls("GetBook", "CANCELLED")).toBe(1);
      expect(cancelled?.code).toBe(status.CANCELLED);
    });
    await expectRecovered();
  });

  it("GATEWAY_NATS_TIMEOUT_MS above the NATS client's 5 s request timeout: UNAVAILABLE at 5 s, not INTERNAL", async () => {
    const slow = await startHarness(nats.url, { GATEWAY_NATS_TIMEOUT_MS: "8000" });
    try {
      await whileNatsPaused(async () => {
        const ended = await Promise.all([
          timedFailure(call(slow.client.getBook.bind(slow.client), { symbol: "BTCUSDT", depth: 1 })),
          timedFailure(call(slow.client.getWindow.bind(slow.client), { symbol: "BTCUSDT", interval: "1s" })),
        ]);
        for (const e of ended) {
          expect(e.code, e.details).toBe(status.UNAVAILABLE);
          expect(e.details).toContain("NATS did not answer while");
          expect(e.ms).toBeLessThan(6_000);
        }
      });
      for (const method of ["GetBook", "GetWindow"])
        expect(
          await metricValue(slow.registry, "l2flow_gateway_rpcs_total", { method, code: "INTERNAL" }),
        ).toBe(0);
    } finally {
      await slow.close();
    }
  });
});

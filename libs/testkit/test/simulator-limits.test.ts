// Binance's rules as the simulator enforces them: pings and pongs, 5 messages per second, connection
// attempts, stream count, lifetime; REST weights, 429 then 418 with Retry-After, and error answers.
import { setTimeout as sleep } from "node:timers/promises";
import { readRecording, type Recording } from "@l2flow/recording";
import WebSocket from "ws";
import { afterEach, beforeAll, describe, expect, it } from "vitest";
import { fixtures, startSimulator, type Simulator, type SimulatorOptions } from "../src/index.js";
import { connect, getJson, refusedStatus, type TestClient } from "./simulator-helpers.js";

let btc: Recording;
beforeAll(() => {
  btc = readRecording(fixtures.btcusdt);
});

const open: { sims: Simulator[]; clients: TestClient[] } = { sims: [], clients: [] };
afterEach(async () => {
  for (const c of open.clients.splice(0)) c.ws.terminate();
  await Promise.all(open.sims.splice(0).map((s) => s.close()));
});

async function sim(options: Partial<SimulatorOptions> = {}): Promise<Simulator> {
  const s = await startSimulator({ recording: btc, autoStart: false, ...options });
  open.sims.push(s);
  return s;
}

async function client(url: string, options: WebSocket.ClientOptions = {}): Promise<TestClient> {
  const c = await connect(url, options);
  open.clients.push(c);
  return c;
}

describe("WebSocket rules", () => {
  it("pings with a payload and tells an echoing client from one that answers wrongly, closing the latter", async () => {
    const s = await sim({ pingIntervalMs: 250, pongTimeoutMs: 700 });
    const echoing = await client(`${s.wsUrl}/ws/btcusdt@trade`);
    // This client answers every ping with a pong of its own making, not the ping's payload.
    const wrong = await client(`${s.wsUrl}/ws/btcusdt@trade`, { autoPong: false });
    const payloads: string[] = [];
    echoing.ws.on("ping", (data) => payloads.push(String(data)));
    wrong.ws.on("ping", () => wrong.ws.pong("not-the-payload"));
    const closed = await wrong.closed;
    expect(closed.code).toBe(1008);
    await expect.poll(() => s.stats().connections.find((c) => c.id === wrong.id)?.closedAt).toBeDefined();
    const stats = s.stats().connections;
    const e = stats.find((c) => c.id === echoing.id)!;
    const w = stats.find((c) => c.id === wrong.id)!;
    expect(payloads.length).toBeGreaterThanOrEqual(2);
    expect(new Set(payloads).size).toBe(payloads.length); // a fresh payload each time
    expect(e.pongsEchoedCorrectly).toBeGreaterThanOrEqual(2);
    expect(e.pongsEchoedCorrectly).toBe(e.pongsReceived);
    expect(e.closedAt).toBeUndefined();
    expect(w.pongsReceived).toBeGreaterThanOrEqual(2);
    expect(w.pongsEchoedCorrectly).toBe(0);
    expect(w.closeReason).toBe("pong-timeout");
    expect(w.closedAt! - w.openedAt).toBeGreaterThanOrEqual(700);
  });

  it("disconnects a client sending 10 messages per second, not one sending 4", async () => {
    const s = await sim();
    const flood = await client(`${s.wsUrl}/ws`);
    const polite = await client(`${s.wsUrl}/ws`);
    let id = 0;
    const timers = [
      setInterval(
        () =>
          flood.ws.readyState === WebSocket.OPEN &&
          flood.ws.send(`{"method":"LIST_SUBSCRIPTIONS","id":${++id}}`),
        100,
      ),
      setInterval(
        () =>
          polite.ws.readyState === WebSocket.OPEN &&
          polite.ws.send(`{"method":"LIST_SUBSCRIPTIONS","id":${++id}}`),
        250,
      ),
    ];
    try {
      const closed = await flood.closed;
      expect(closed.code).toBe(1008);
      await sleep(600);
    } finally {
      timers.forEach(clearInterval);
    }
    const stats = s.stats().connections;
    const f = stats.find((c) => c.id === flood.id)!;
    const p = stats.find((c) => c.id === polite.id)!;
    expect(f).toMatchObject({ closeReason: "rate-limit", maxMessagesInAnySecond: 6 });
    expect(f.messagesReceived).toBe(6);
    expect(p.closedAt).toBeUndefined();
    expect(p.maxMessagesInAnySecond).toBeLessThanOrEqual(5);
    expect(p.messagesReceived).toBeGreaterThanOrEqual(4);
  });

  it("pings and pongs count toward the 5 per second", async () => {
    const s = await sim();
    const c = await client(`${s.wsUrl}/ws`);
    for (let i = 0; i < 6; i++) c.ws.ping();
    expect((await c.closed).code).toBe(1008);
    expect(s.stats().connections[0]).toMatchObject({ closeReason: "rate-limit", messagesReceived: 6 });
  });

  it("counts connection attempts per 5 minutes and refuses beyond the limit with 429", async () => {
    const s = await sim({ maxConnectionAttemptsPer5Min: 3 });
    for (let i = 0; i < 3; i++) await client(`${s.wsUrl}/ws/btcusdt@trade`);
    expect(await refusedStatus(`${s.wsUrl}/ws/btcusdt@trade`)).toBe(429);
    const stats = s.stats();
    expect(stats.connectionAttempts).toBe(4);
    expect(stats.maxConnectionAttemptsIn5Min).toBe(4);
    expect(stats.connectionsRefused).toBe(1);
    expect(stats.connectionAttemptTimesMs).toHaveLength(4);
    expect(stats.connections).toHaveLength(3);
  });

  it("refuses bad paths and stream names, and more streams than allowed per connection", async () => {
    const s = await sim({ maxStreamsPerConnection: 2, maxIncomingMessagesPerSecond: 50 });
    expect(await refusedStatus(`${s.wsUrl}/nope`)).toBe(404);
    expect(await refusedStatus(`${s.wsUrl}/ws/btcusdt@bogus`)).toBe(400);
    expect(await refusedStatus(`${s.wsUrl}/stream?streams=a@trade/b@trade/c@trade`)).toBe(400);
    const c = await client(`${s.wsUrl}/stream?streams=a@trade/b@trade`);
    expect(await c.request({ method: "SUBSCRIBE", params: ["c@trade"], id: 1 })).toMatchObject({
      error: { code: 2 },
      id: 1,
    });
    expect(await c.request({ method: "SUBSCRIBE", params: ["a@trade"], id: 2 })).toEqual({
      result: null,
      id: 2,
    });
    expect(await c.request({ method: "LIST_SUBSCRIPTIONS", id: 3 })).toEqual({
      result: ["a@trade", "b@trade"],
      id: 3,
    });
    expect(s.stats().connectionsRefused).toBe(3);
  });

  it("closes connections at the maximum lifetime", async () => {
    const s = await sim({ maxConnectionLifetimeMs: 150 });
    const c = await client(`${s.wsUrl}/ws/btcusdt@trade`);
    const t0 = Date.now();
    expect((await c.closed).code).toBe(1000);
    expect(Date.now() - t0).toBeGreaterThanOrEqual(100);
    expect(s.stats().connections[0]!.closeReason).toBe("lifetime");
  });
});

describe("REST weights and bans", () => {
  it("charges Binance's depth weights by limit and reports them in X-MBX-USED-WEIGHT-1M", async () => {
    const s = await sim();
    const used: number[] = [];
    for (const limit of [5, 100, 101, 500, 1000, 5000, 9999]) {
      const r = await getJson(`${s.restUrl}/api/v3/depth?symbol=BTCUSDT&limit=${limit}`);
      expect(r.status).toBe(200);
      used.push(r.usedWeight);
    }
    for (const path of [
      "exchangeInfo",
      "ping",
      "time",
      "historicalTrades?symbol=BTCUSDT",
      "aggTrades?symbol=BTCUSDT",
    ]) {
      const r = await getJson(`${s.restUrl}/api/v3/${path}`);
      expect(r.status).toBe(200);
      used.push(r.usedWeight);
    }
    const weights = used.map((u, i) => u - (used[i - 1] ?? 0));
    // Unless a minute boundary fell in between (then the counter restarts), the steps are the weights.
    if (weights.every((w) => w > 0)) expect(weights).toEqual([5, 5, 25, 25, 50, 250, 250, 20, 1, 1, 25, 4]);
    const stats = s.stats().rest;
    expect(stats.requests.map((r) => r.weight)).toEqual([5, 5, 25, 25, 50, 250, 250, 20, 1, 1, 25, 4]);
    expect(stats.totalWeight).toBe(661);
    const deep = await getJson<{ bids: unknown[] }>(`${s.restUrl}/api/v3/depth?symbol=BTCUSDT&limit=9999`);
    expect(deep.body.bids.length).toBeLessThanOrEqual(5000);
  });

  it("answers 429 with Retry-After over the limit, 418 to a client that does not back off, and lifts the ban", async () => {
    const s = await sim({ weightLimitPerMinute: 60, weightWindowMs: 1000, banMs: 2000 });
    await sleep(1000 - (Date.now() % 1000) + 5); // start at the beginning of a window
    const url = `${s.restUrl}/api/v3/depth?symbol=BTCUSDT&limit=100`;
    for (let i = 1; i <= 12; i++) {
      const ok = await getJson(url);
      expect(ok.status).toBe(200);
      expect(ok.usedWeight).toBe(5 * i);
    }
    const limited = await getJson<{ code: number; msg: string }>(url);
    expect(limited.status).toBe(429);
    expect(limited.body.code).toBe(-1003);
    expect(Number(limited.headers.get("retry-after"))).toBe(1);
    expect(limited.usedWeight).toBe(65);

    const banned = await getJson<{ code: number }>(url); // did not wait Retry-After
    expect(banned.status).toBe(418);
    expect(banned.body.code).toBe(-1003);
    const banSec = Number(banned.headers.get("retry-after"));
    expect(banSec).toBe(2);
    const stillBanned = await getJson(url);
    expect(stillBanned.status).toBe(418);
    expect(Number(stillBanned.headers.get("retry-after"))).toBeLessThanOrEqual(banSec);

    await sleep(banSec * 1000 + 50);
    const after = await getJson(url);
    expect(after.status).toBe(200);
    expect(after.usedWeight).toBe(5);

    const rest = s.stats().rest;
    expect(rest).toMatchObject({
      rateLimited429: 1,
      banned418: 2,
      requestsWhileBanned: 2,
      bans: 1,
      maxUsedWeight: 65,
    });
    expect(rest.limitResponses.map((r) => [r.status, r.retryAfterSec])).toEqual([
      [429, 1],
      [418, 2],
      [418, expect.any(Number) as unknown],
    ]);
  });

  it("a client that honours Retry-After is never banned", async () => {
    const s = await sim({ weightLimitPerMinute: 10, weightWindowMs: 1000, banMs: 5000 });
    await sleep(1000 - (Date.now() % 1000) + 5);
    const url = `${s.restUrl}/api/v3/depth?symbol=BTCUSDT&limit=5`;
    const statuses: number[] = [];
    for (let i = 0; i < 5; i++) {
      const r = await getJson(url);
      statuses.push(r.status);
      if (r.status === 429) await sleep(Number(r.headers.get("retry-after")) * 1000);
    }
    expect(statuses).toEqual([200, 200, 429, 200, 200]);
    expect(s.stats().rest.bans).toBe(0);
  });

  it("answers bad requests with Binance's codes", async () => {
    const s = await sim();
    const cases: [string, number, number][] = [
      ["depth?symbol=NOPE", 400, -1121],
      ["depth", 400, -1102],
      ["depth?symbol=BTCUSDT&limit=abc", 400, -1100],
      ["depth?symbol=BTCUSDT&limit=0", 400, -1130],
      ["historicalTrades?symbol=BTCUSDT&fromId=x", 400, -1100],
      ["aggTrades?symbol=ETHUSDT", 400, -1121],
      ["exchangeInfo?symbol=ETHUSDT", 400, -1121],
      ['exchangeInfo?symbols=["BTCUSDT","NOPE"]', 400, -1121],
      ["exchangeInfo?symbols=notjson", 400, -1130],
      ["nothing", 404, -1000],
    ];
    for (const [path, status, code] of cases) {
      const r = await getJson<{ code: number; msg: string }>(`${s.restUrl}/api/v3/${path}`);
      expect([path, r.status, r.body.code]).toEqual([path, status, code]);
      expect(typeof r.body.msg).toBe("string");
      expect(r.headers.get("x-mbx-used-weight-1m")).not.toBeNull();
    }
  });

  it("answers in microseconds with the X-MBX-TIME-UNIT header", async () => {
    const s = await sim({ speed: Infinity });
    s.start();
    await s.done;
    const url = `${s.restUrl}/api/v3/historicalTrades?symbol=BTCUSDT&fromId=3735683259&limit=1`;
    const ms = await getJson<{ time: number }[]>(url);
    const us = await getJson<{ time: number }[]>(url, { headers: { "X-MBX-TIME-UNIT": "MICROSECOND" } });
    expect(ms.body[0]!.time).toBe(1723161255342);
    expect(us.body[0]!.time).toBe(1723161255342000);
  });

  it("exchangeInfo: Binance's shape, rate limits, and filters inferred from the recording", async () => {
    const s = await sim({ weightLimitPerMinute: 1200 });
    const r = await getJson<{
      timezone: string;
      rateLimits: { rateLimitType: string; limit: number }[];
      symbols: {
        symbol: string;
        status: string;
        baseAsset: string;
        quoteAsset: string;
        filters: Record<string, string>[];
      }[];
    }>(`${s.restUrl}/api/v3/exchangeInfo?symbols=${encodeURIComponent('["BTCUSDT"]')}`);
    expect(r.status).toBe(200);
    expect(r.body.timezone).toBe("UTC");
    expect(r.body.rateLimits[0]).toEqual({
      rateLimitType: "REQUEST_WEIGHT",
      interval: "MINUTE",
      intervalNum: 1,
      limit: 1200,
    });
    expect(r.body.rateLimits.map((l) => l.rateLimitType)).toEqual([
      "REQUEST_WEIGHT",
      "ORDERS",
      "ORDERS",
      "RAW_REQUESTS",
    ]);
    const [btcInfo] = r.body.symbols;
    expect(btcInfo).toMatchObject({
      symbol: "BTCUSDT",
      status: "TRADING",
      baseAsset: "BTC",
      quoteAsset: "USDT",
    });
    const price = btcInfo!.filters.find((f) => f.filterType === "PRICE_FILTER")!;
    expect(price.tickSize).toBe("0.01000000");
    const lot = btcInfo!.filters.find((f) => f.filterType === "LOT_SIZE")!;
    expect(lot.stepSize).toMatch(/^0\.0+10*$/);
  });
});

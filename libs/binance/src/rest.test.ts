import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { afterEach, describe, expect, it } from "vitest";
import { BinanceRestClient, BinanceRestError, depthWeight, type BinanceRestClientOptions } from "./rest.js";

type Handler = (req: IncomingMessage, res: ServerResponse, n: number) => void;

interface FakeRest {
  readonly baseUrl: string;
  /** Arrival time (Date.now()) and URL of every request. */
  readonly hits: { at: number; url: string }[];
}

const cleanups: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

async function fakeRest(handler: Handler): Promise<FakeRest> {
  const hits: { at: number; url: string }[] = [];
  const server: Server = createServer((req, res) => {
    hits.push({ at: Date.now(), url: req.url ?? "" });
    handler(req, res, hits.length);
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  cleanups.push(
    () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  );
  return { baseUrl: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, hits };
}

function client(baseUrl: string, options: BinanceRestClientOptions = {}): BinanceRestClient {
  const c = new BinanceRestClient({ baseUrl, ...options });
  cleanups.push(() => c.close());
  return c;
}

const DEPTH =
  '{"lastUpdateId":1027024,"bids":[["4.00000000","431.00000000"]],"asks":[["4.00000200","12.00000000"]]}';

function ok(res: ServerResponse, body: string, usedWeight?: number): void {
  res.writeHead(200, {
    "content-type": "application/json",
    ...(usedWeight === undefined ? {} : { "x-mbx-used-weight-1m": String(usedWeight) }),
  });
  res.end(body);
}

/** Sleeps until just after the next window boundary, so two quick requests share a window. */
async function startOfWindow(windowMs: number): Promise<void> {
  const now = Date.now();
  await new Promise((r) => setTimeout(r, (Math.floor(now / windowMs) + 1) * windowMs + 20 - now));
}

describe("depthWeight", () => {
  it("follows Binance's table for /api/v3/depth", () => {
    expect([1, 100, 101, 500, 501, 1000, 1001, 5000].map(depthWeight)).toEqual([
      5, 5, 25, 25, 50, 50, 250, 250,
    ]);
  });
});

describe("BinanceRestClient", () => {
  it("returns the body verbatim with the parsed snapshot and the used weight", async () => {
    const server = await fakeRest((_req, res) => ok(res, DEPTH, 55));
    const seen: number[] = [];
    const rest = client(server.baseUrl, { onResponse: (i) => seen.push(i.weight) });
    const r = await rest.getDepth("BTCUSDT", 1000);
    expect(r.body).toBe(DEPTH);
    expect(r.data.lastUpdateId).toBe(1027024);
    expect(r.usedWeight).toBe(55);
    expect(r.receiveTimeNs > 0n).toBe(true);
    expect(server.hits[0]?.url).toBe("/api/v3/depth?symbol=BTCUSDT&limit=1000");
    expect(seen).toEqual([50]);
    expect(rest.usedWeight).toBe(55);
  });

  it("waits for the next weight window when the header says the budget is spent", async () => {
    const windowMs = 1500;
    let reported = 90;
    const server = await fakeRest((_req, res) => ok(res, DEPTH, reported));
    const rest = client(server.baseUrl, {
      weightBudgetPerMinute: 100,
      weightWindowMs: windowMs,
      clockSkewMarginMs: 0,
    });
    await startOfWindow(windowMs);
    await rest.getDepth("BTCUSDT", 100); // weight 5; Binance reports 90 used (other processes too)
    expect(rest.usedWeight).toBe(90);
    reported = 95;
    await rest.getDepth("BTCUSDT", 100); // 90 + 5 <= 100: goes at once
    reported = 25;
    await rest.getDepth("BTCUSDT", 500); // 95 + 25 > 100: must wait for the next window
    const windows = server.hits.map((h) => Math.floor(h.at / windowMs));
    expect(windows[1]).toBe(windows[0]);
    expect(windows[2]).toBeGreaterThan(windows[1] as number);
  });

  it("counts its own weight when there is no header", async () => {
    const windowMs = 1500;
    const server = await fakeRest((_req, res) => ok(res, DEPTH));
    const rest = client(server.baseUrl, {
      weightBudgetPerMinute: 60,
      weightWindowMs: windowMs,
      clockSkewMarginMs: 0,
    });
    await Promise.all([rest.getDepth("A", 1000), rest.getDepth("B", 1000), rest.getDepth("C", 1000)]);
    const windows = server.hits.map((h) => Math.floor(h.at / windowMs));
    // 50 + 50 > 60: each request in a window of its own.
    expect(new Set(windows).size).toBe(3);
  });

  it("pauses the whole queue for Retry-After on 429, then retries and succeeds", async () => {
    const server = await fakeRest((_req, res, n) => {
      if (n === 1) {
        res.writeHead(429, { "retry-after": "1" });
        res.end('{"code":-1003,"msg":"Too many requests"}');
      } else ok(res, DEPTH);
    });
    const limited: number[] = [];
    const rest = client(server.baseUrl, { onRateLimited: (i) => limited.push(i.status) });
    const first = rest.getDepth("BTCUSDT", 100);
    await new Promise((r) => setTimeout(r, 100));
    const second = rest.getDepth("ETHUSDT", 100); // queued behind the pause
    const [a, b] = await Promise.all([first, second]);
    expect(a.body).toBe(DEPTH);
    expect(b.body).toBe(DEPTH);
    expect(server.hits).toHaveLength(3);
    const t0 = server.hits[0]?.at ?? 0;
    for (const h of server.hits.slice(1)) expect(h.at - t0).toBeGreaterThanOrEqual(950);
    expect(server.hits[1]?.url).toContain("BTCUSDT"); // the retried request goes first
    expect(limited).toEqual([429]);
    expect(rest.stats.rateLimited429).toBe(1);
  });

  it("stops every request on 418 until Retry-After has passed", async () => {
    const server = await fakeRest((_req, res, n) => {
      if (n === 1) {
        res.writeHead(418, { "retry-after": "1" });
        res.end('{"code":-1003,"msg":"Way too many requests; IP banned"}');
      } else ok(res, DEPTH);
    });
    const rest = client(server.baseUrl);
    const err = await rest.getDepth("BTCUSDT", 100).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(BinanceRestError);
    expect(err).toMatchObject({ code: "REST_BANNED", status: 418, retryAfterMs: 1000, binanceCode: -1003 });
    const banAt = Date.now();
    const later = await Promise.all([
      rest.getExchangeInfo().catch(() => undefined),
      rest.getDepth("ETHUSDT", 5),
    ]);
    expect(later[1].body).toBe(DEPTH);
    for (const h of server.hits.slice(1)) expect(h.at - banAt).toBeGreaterThanOrEqual(900);
    expect(rest.stats.banned418).toBe(1);
  });

  it("rejects with REST_QUEUE_FULL beyond maxQueueLength", async () => {
    const server = await fakeRest((_req, res) => setTimeout(() => ok(res, DEPTH), 200));
    const rest = client(server.baseUrl, { maxQueueLength: 2, maxConcurrent: 1 });
    const calls = [1, 2, 3].map(() => rest.getDepth("BTCUSDT", 5));
    await new Promise((r) => setTimeout(r, 20));
    await expect(rest.getDepth("BTCUSDT", 5)).rejects.toMatchObject({
      code: "REST_QUEUE_FULL",
      retryable: true,
    });
    await Promise.all(calls);
  });

  it("surfaces Binance's error code on 4xx, and times out or aborts a slow call", async () => {
    const server = await fakeRest((req, res) => {
      if (req.url?.includes("NOPE") === true) {
        res.writeHead(400, { "content-type": "application/json" });
        res.end('{"code":-1121,"msg":"Invalid symbol."}');
      }
      // Anything else never answers.
    });
    const rest = client(server.baseUrl, { timeoutMs: 300 });
    await expect(rest.getDepth("NOPE", 5)).rejects.toMatchObject({
      code: "REST_BAD_REQUEST",
      status: 400,
      binanceCode: -1121,
      binanceMsg: "Invalid symbol.",
      retryable: false,
    });
    await expect(rest.getHistoricalTrades("BTCUSDT", 1)).rejects.toMatchObject({
      code: "REST_TIMEOUT",
      retryable: true,
    });
    const controller = new AbortController();
    const call = rest.getAggTrades("BTCUSDT", 1, 1000, { signal: controller.signal });
    setTimeout(() => controller.abort(), 50);
    await expect(call).rejects.toMatchObject({ code: "REST_ABORTED" });
  });

  it("parses trade lists and exchange info, and sends high priority first", async () => {
    const server = await fakeRest((req, res) => {
      if (req.url?.startsWith("/api/v3/historicalTrades") === true)
        ok(
          res,
          '[{"id":28457,"price":"4.00000100","qty":"12.00000000","quoteQty":"48.000012","time":1499865549590,"isBuyerMaker":true,"isBestMatch":true}]',
        );
      else if (req.url?.startsWith("/api/v3/aggTrades") === true)
        ok(
          res,
          '[{"a":26129,"p":"0.01633102","q":"4.70443515","f":27781,"l":27781,"T":1498793709153,"m":true,"M":true}]',
        );
      else ok(res, '{"symbols":[{"symbol":"BTCUSDT","status":"TRADING"}]}');
    });
    const rest = client(server.baseUrl, { maxConcurrent: 1 });
    const slow = rest.getExchangeInfo();
    const normal = rest.getAggTrades("BTCUSDT", 26129, 500);
    const high = rest.getHistoricalTrades("BTCUSDT", 28457, 1000, { priority: "high" });
    const [info, agg, hist] = await Promise.all([slow, normal, high]);
    expect(info.data).toEqual([{ symbol: "BTCUSDT", status: "TRADING" }]);
    expect(agg.data[0]?.a).toBe(26129);
    expect(hist.data[0]?.id).toBe(28457);
    expect(server.hits.map((h) => h.url.split("?")[0])).toEqual([
      "/api/v3/exchangeInfo",
      "/api/v3/historicalTrades",
      "/api/v3/aggTrades",
    ]);
    expect(server.hits[1]?.url).toBe("/api/v3/historicalTrades?symbol=BTCUSDT&fromId=28457&limit=1000");
  });
});

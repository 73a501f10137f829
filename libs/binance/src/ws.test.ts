import { afterEach, describe, expect, it, vi } from "vitest";
import { FakeBinanceWs, maxInWindow } from "../test/fake-binance-ws.js";
import {
  BinanceStreamConnection,
  BinanceWsError,
  combinedStreamUrl,
  epochNowNs,
  type CloseInfo,
  type StreamConnectionOptions,
} from "./ws.js";

const cleanups: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

async function fake(options?: Parameters<typeof FakeBinanceWs.start>[0]): Promise<FakeBinanceWs> {
  const f = await FakeBinanceWs.start(options);
  cleanups.push(() => f.close());
  return f;
}

function connection(
  server: FakeBinanceWs,
  options: Partial<StreamConnectionOptions> = {},
): { conn: BinanceStreamConnection; frames: Buffer[]; closes: CloseInfo[] } {
  const frames: Buffer[] = [];
  const closes: CloseInfo[] = [];
  const conn = new BinanceStreamConnection({
    wsBaseUrl: server.url,
    streams: ["btcusdt@trade"],
    onFrame: (bytes) => frames.push(Buffer.from(bytes)),
    onClose: (info) => closes.push(info),
    ...options,
  });
  cleanups.push(() => conn.close());
  return { conn, frames, closes };
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe("BinanceStreamConnection", () => {
  it("builds Binance's combined-stream URL, with timeUnit when asked", () => {
    expect(combinedStreamUrl("wss://stream.binance.com:9443/", ["a@trade", "b@depth@100ms"])).toBe(
      "wss://stream.binance.com:9443/stream?streams=a@trade/b@depth@100ms",
    );
    expect(combinedStreamUrl("ws://127.0.0.1:1", ["a@trade"], "MICROSECOND")).toBe(
      "ws://127.0.0.1:1/stream?streams=a@trade&timeUnit=MICROSECOND",
    );
  });

  it("delivers frames verbatim, as Buffers, with an epoch receive time", async () => {
    const server = await fake();
    const times: bigint[] = [];
    const { conn, frames } = connection(server, {
      streams: ["btcusdt@trade", "btcusdt@depth@100ms"],
      onFrame: (bytes, ns) => {
        expect(Buffer.isBuffer(bytes)).toBe(true);
        frames.push(Buffer.from(bytes));
        times.push(ns);
      },
    });
    await conn.open();
    expect(server.conns[0]?.urlStreams).toEqual(["btcusdt@trade", "btcusdt@depth@100ms"]);
    const sent = [
      '{"stream":"btcusdt@trade","data":{"e":"trade","s":"BTCUSDT","t":1,"p":"1.5","q":"2"}}',
      '{"stream":"btcusdt@depth@100ms","data":{"e":"depthUpdate","s":"BTCUSDT","U":5,"u":7,"b":[["1","0"]],"a":[]}}',
      '{"stream":"btcusdt@trade","data":{"e":"trade","s":"BTCUSDT","t":2,"p":"ünïcode","q":"2"}}',
    ];
    const before = BigInt(Date.now()) * 1_000_000n;
    for (const s of sent) server.conns[0]?.ws.send(s);
    await server.waitFor(() => frames.length === 3, 2000, "3 frames");
    const after = BigInt(Date.now()) * 1_000_000n;
    expect(frames.map((f) => f.toString("utf8"))).toEqual(sent);
    for (const t of times) {
      expect(t >= before - 50_000_000n).toBe(true);
      expect(t <= after + 50_000_000n).toBe(true);
    }
    expect(conn.stats.frames).toBe(3);
    expect(conn.openedAt).toBeGreaterThan(0);
  });

  it("answers a ping with a pong carrying the same payload", async () => {
    const server = await fake();
    const { conn } = connection(server);
    await conn.open();
    server.conns[0]?.ws.ping(Buffer.from("payload-1712345"));
    await server.waitFor(() => (server.conns[0]?.inbound.length ?? 0) > 0, 2000, "pong");
    expect(server.conns[0]?.inbound[0]).toMatchObject({ type: "pong", text: "payload-1712345" });
    expect(conn.stats.pings).toBe(1);
  });

  it.each([4, 5])(
    "paces requests at maxMessagesPerSecond=%i so requests plus pongs never exceed Binance's 5 per second",
    async (maxMessagesPerSecond) => {
      const server = await fake();
      const { conn } = connection(server, { maxMessagesPerSecond });
      await conn.open();
      const c0 = server.conns[0];
      if (c0 === undefined) throw new Error("no connection");
      // Pings much more often than Binance's 20 s (still under one per second, as Binance's are), so
      // that pongs compete with the requests.
      const pinger = setInterval(() => c0.ws.ping("p"), 1100);
      cleanups.push(() => clearInterval(pinger));
      const started = performance.now();
      await Promise.all(Array.from({ length: 14 }, (_, i) => conn.subscribe([`s${i}usdt@trade`])));
      clearInterval(pinger);
      const elapsed = performance.now() - started;
      const requests = c0.inbound.filter((m) => m.type === "message").map((m) => m.at);
      const all = c0.inbound.map((m) => m.at);
      expect(requests).toHaveLength(14);
      expect(all.length - requests.length).toBeGreaterThanOrEqual(2);
      // Server-side arrival times; 950 ms rather than 1000 absorbs loopback scheduling jitter.
      expect(maxInWindow(all, 950)).toBeLessThanOrEqual(5);
      // When a request arrives, it and everything in the second before it (pongs included) fit the limit.
      for (const t of requests)
        expect(all.filter((a) => a <= t && a > t - 950).length).toBeLessThanOrEqual(maxMessagesPerSecond);
      expect(elapsed).toBeGreaterThan(2500);
      expect(conn.streams.size).toBe(15);
    },
  );

  it("subscribes, unsubscribes and lists with request ids; an error reply rejects with a typed error", async () => {
    const server = await fake({
      errorFor: (method, params) =>
        method === "SUBSCRIBE" && params.includes("bad@trade")
          ? { code: 2, msg: "Invalid request" }
          : undefined,
    });
    const { conn } = connection(server);
    await conn.open();
    await conn.subscribe(["ethusdt@trade", "ethusdt@depth@100ms"]);
    await conn.unsubscribe(["btcusdt@trade"]);
    expect((await conn.listSubscriptions()).sort()).toEqual(["ethusdt@depth@100ms", "ethusdt@trade"]);
    expect([...conn.streams].sort()).toEqual(["ethusdt@depth@100ms", "ethusdt@trade"]);
    const err = await conn.subscribe(["bad@trade"]).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(BinanceWsError);
    expect(err).toMatchObject({ code: "WS_REQUEST_REJECTED", binanceCode: 2, binanceMsg: "Invalid request" });
    expect(conn.streams.has("bad@trade")).toBe(false);
    const sent = server.conns[0]?.inbound
      .filter((m) => m.type === "message")
      .map((m) => JSON.parse(m.text) as object);
    expect(sent?.[0]).toEqual({
      method: "SUBSCRIBE",
      params: ["ethusdt@trade", "ethusdt@depth@100ms"],
      id: 1,
    });
    expect(sent?.[2]).toEqual({ method: "LIST_SUBSCRIPTIONS", id: 3 });
  });

  it("fails a request that gets no reply, and fails pending requests on close", async () => {
    const server = await fake({ ignoreMethods: ["SUBSCRIBE"] });
    const { conn, closes } = connection(server, { requestTimeoutMs: 200 });
    await conn.open();
    await expect(conn.subscribe(["x@trade"])).rejects.toMatchObject({
      code: "WS_REQUEST_TIMEOUT",
      retryable: true,
    });
    const pending = conn.subscribe(["y@trade"]);
    conn.close();
    conn.close();
    await expect(pending).rejects.toMatchObject({ code: "WS_CLOSED" });
    await conn.closed;
    expect(closes).toHaveLength(1);
    expect(closes[0]?.kind).toBe("local");
    await server.waitFor(() => server.conns[0]?.closeCode === 1000, 2000, "close frame");
  });

  it("rejects more than 1024 streams and a message rate above Binance's", () => {
    const streams = Array.from({ length: 1025 }, (_, i) => `s${i}@trade`);
    expect(() => new BinanceStreamConnection({ streams, onFrame: () => {} })).toThrow(
      expect.objectContaining({ code: "WS_TOO_MANY_STREAMS" }) as Error,
    );
    expect(
      () => new BinanceStreamConnection({ streams: ["a@trade"], maxMessagesPerSecond: 6, onFrame: () => {} }),
    ).toThrow(expect.objectContaining({ code: "WS_BAD_OPTIONS" }) as Error);
  });

  it("subscribes the streams that do not fit a short URL right after open", async () => {
    const server = await fake();
    const streams = Array.from({ length: 30 }, (_, i) => `sym${i}usdt@depth@100ms`);
    const { conn } = connection(server, { streams, maxUrlLength: 300 });
    expect(conn.url.length).toBeLessThanOrEqual(300);
    await conn.open();
    const c0 = server.conns[0];
    expect(c0?.urlStreams.length).toBeLessThan(30);
    expect(c0?.inbound.some((m) => m.text.includes("SUBSCRIBE"))).toBe(true);
    expect([...(c0?.streams ?? [])].sort()).toEqual([...streams].sort());
    expect((await conn.listSubscriptions()).sort()).toEqual([...streams].sort());
  });

  it("reports serverShutdown (combined and raw) without passing it as a frame", async () => {
    const server = await fake();
    const shutdowns: number[] = [];
    const { conn, frames } = connection(server, { onServerShutdown: (e) => shutdowns.push(e) });
    await conn.open();
    const ws = server.conns[0]?.ws;
    ws?.send('{"stream":"!serverShutdown","data":{"e":"serverShutdown","E":1770123456789}}');
    ws?.send('{"e":"serverShutdown","E":1770123456790}');
    ws?.send('{"stream":"btcusdt@trade","data":{"e":"trade","t":9}}');
    await server.waitFor(() => frames.length === 1 && shutdowns.length === 2, 2000, "events");
    expect(shutdowns).toEqual([1770123456789, 1770123456790]);
    expect(frames[0]?.toString()).toContain('"t":9');
  });

  it("terminates a silent connection, and pings alone keep it alive", async () => {
    const server = await fake();
    const { conn, closes } = connection(server, { silenceTimeoutMs: 300 });
    await conn.open();
    const c0 = server.conns[0];
    const pinger = setInterval(() => c0?.ws.ping(), 100);
    cleanups.push(() => clearInterval(pinger));
    await sleep(900);
    expect(closes).toHaveLength(0);
    clearInterval(pinger);
    const silentFrom = performance.now();
    await server.waitFor(() => closes.length === 1, 3000, "silence close");
    expect(closes[0]?.kind).toBe("silence");
    expect(performance.now() - silentFrom).toBeGreaterThanOrEqual(150);
    expect(conn.state).toBe("closed");
  });

  it("announces the end of its lifetime rotateBeforeMs early", async () => {
    const server = await fake();
    let nearEndAt = 0;
    const { conn } = connection(server, {
      maxLifetimeMs: 1000,
      rotateBeforeMs: 600,
      onLifetimeNearEnd: () => {
        nearEndAt = Date.now();
      },
    });
    await conn.open();
    await server.waitFor(() => nearEndAt > 0, 3000, "lifetime callback");
    const after = nearEndAt - (conn.openedAt ?? 0);
    expect(after).toBeGreaterThanOrEqual(350);
    expect(after).toBeLessThan(1000);
  });

  it("reports a connection that cannot open as an error", async () => {
    const server = await fake();
    const port = new URL(server.url).port;
    await server.close();
    const closes: CloseInfo[] = [];
    const conn = new BinanceStreamConnection({
      wsBaseUrl: `ws://127.0.0.1:${port}`,
      streams: ["a@trade"],
      onFrame: () => {},
      onClose: (i) => closes.push(i),
    });
    await expect(conn.open()).rejects.toMatchObject({ code: "WS_CONNECT_FAILED", retryable: true });
    expect(closes[0]?.kind).toBe("error");
  });
});

describe("epochNowNs", () => {
  const MINUTE_NS = 61_000_000_000n;
  /** The offset from the monotonic clock in use now, in ms. */
  const offsetMs = () => Number(epochNowNs(1n) - 1n) / 1e6;

  it("follows a step of the wall clock at its next check, and keeps its offset for less than 2 ms", () => {
    const realNow = Date.now.bind(Date);
    expect(Math.abs(Number(epochNowNs() / 1_000_000n) - realNow())).toBeLessThan(5);
    const before = offsetMs();
    let stepMs = 3_600_000; // NTP sets the clock an hour on
    const spy = vi.spyOn(Date, "now").mockImplementation(() => realNow() + stepMs);
    try {
      expect(Math.abs(Number(epochNowNs() / 1_000_000n) - realNow())).toBeLessThan(5); // not checked yet
      epochNowNs(process.hrtime.bigint() + MINUTE_NS); // a minute later: checked
      expect(Math.abs(Number(epochNowNs() / 1_000_000n) - Date.now())).toBeLessThan(5);
      expect(offsetMs() - before).toBeCloseTo(stepMs, -1);
      // A millisecond more is Date.now()'s own resolution: the offset stays.
      const after = offsetMs();
      stepMs += 1;
      epochNowNs(process.hrtime.bigint() + MINUTE_NS);
      expect(offsetMs()).toBe(after);
    } finally {
      spy.mockRestore();
      epochNowNs(process.hrtime.bigint() + MINUTE_NS); // back to the real clock for later tests
    }
    expect(Math.abs(offsetMs() - before)).toBeLessThan(3);
  });
});

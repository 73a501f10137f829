// The gRPC MarketData API against a running gateway over a real nats-server, with the generated client.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { status, type ClientReadableStream } from "@grpc/grpc-js";
import {
  STREAMS,
  StreamWindowsRequest,
  type StreamSignalsResponse,
  type StreamWindowsResponse,
} from "@l2flow/contracts";
import { startTestNats, type TestNats } from "@l2flow/testkit";
import {
  book,
  call,
  codeOf,
  consumerCount,
  consumerFilters,
  eventually,
  metricValue,
  publishSignal,
  publishWindow,
  putBook,
  rawServerStream,
  reflect,
  startHarness,
  stringField,
  window,
  within,
  type Harness,
} from "./support.js";

/** Collects `n` messages of a stream (or fails after `timeoutMs`), then cancels it. */
function take<T>(stream: ClientReadableStream<T>, n: number, timeoutMs = 10_000): Promise<T[]> {
  const got: T[] = [];
  return new Promise<T[]>((resolve, reject) => {
    const timer = setTimeout(() => {
      stream.cancel();
      reject(new Error(`got ${got.length} of ${n} messages in ${timeoutMs} ms`));
    }, timeoutMs);
    stream.on("data", (m: T) => {
      got.push(m);
      if (got.length === n) {
        clearTimeout(timer);
        stream.cancel();
        resolve(got);
      }
    });
    stream.on("error", (err: Error & { code?: number }) => {
      if (err.code === status.CANCELLED) return;
      clearTimeout(timer);
      reject(err);
    });
  });
}

/** The status a stream ends with, and how many messages came before it. */
function ending<T>(
  stream: ClientReadableStream<T>,
): Promise<{ code: number; details: string; messages: number }> {
  let messages = 0;
  return new Promise((resolve) => {
    stream.on("data", () => messages++);
    stream.on("error", (err: Error & { code: number; details: string }) =>
      resolve({ code: err.code, details: err.details, messages }),
    );
    stream.on("end", () => resolve({ code: status.OK, details: "", messages }));
  });
}

describe("gateway: MarketData over JetStream", () => {
  let nats: TestNats;
  let h: Harness;

  beforeAll(async () => {
    nats = await startTestNats();
    h = await startHarness(nats.url, { GATEWAY_SLOW_CLIENT_TIMEOUT_MS: "500", GATEWAY_STREAM_BUFFER: "32" });
    await putBook(h.bus, book("BTCUSDT", 101, 20));
    await putBook(h.bus, book("ETHUSDT", 202, 5));
  });
  afterAll(async () => {
    await h?.close();
    await nats?.close();
  });

  it("GetBook returns the stored book, cut to depth (0 = every level)", async () => {
    const all = await call(h.client.getBook.bind(h.client), { symbol: "BTCUSDT", depth: 0 });
    expect(all.book?.lastUpdateId).toBe(101);
    expect(all.book?.bids).toHaveLength(20);
    const top = await call(h.client.getBook.bind(h.client), { symbol: "btcusdt", depth: 3 });
    expect(top.book?.bids).toEqual(book("BTCUSDT", 101).bids.slice(0, 3));
    expect(top.book?.asks).toEqual(book("BTCUSDT", 101).asks.slice(0, 3));
    expect(top.book?.symbol).toBe("BTCUSDT");
  });

  it("GetBook: unknown symbol NOT_FOUND; bad symbol or depth INVALID_ARGUMENT saying what is accepted", async () => {
    const missing = await codeOf(call(h.client.getBook.bind(h.client), { symbol: "XRPUSDT", depth: 5 }));
    expect(missing.code).toBe(status.NOT_FOUND);
    expect(missing.details).toContain("XRPUSDT");
    const badSymbol = await codeOf(call(h.client.getBook.bind(h.client), { symbol: "BTC-USDT", depth: 5 }));
    expect(badSymbol.code).toBe(status.INVALID_ARGUMENT);
    expect(badSymbol.details).toContain("letters or digits");
    const empty = await codeOf(call(h.client.getBook.bind(h.client), { symbol: "", depth: 5 }));
    expect(empty.code).toBe(status.INVALID_ARGUMENT);
    for (const depth of [-1, 1001]) {
      const bad = await codeOf(call(h.client.getBook.bind(h.client), { symbol: "BTCUSDT", depth }));
      expect(bad.code).toBe(status.INVALID_ARGUMENT);
      expect(bad.details).toContain("1-1000");
    }
  });

  it("GetWindow returns the latest window of the symbol and interval", async () => {
    for (const start of [1_000, 2_000, 3_000]) await publishWindow(h.bus, window("BTCUSDT", "1s", start));
    await publishWindow(h.bus, window("BTCUSDT", "1m", 60_000));
    await publishWindow(h.bus, window("ETHUSDT", "1s", 4_000));
    const res = await call(h.client.getWindow.bind(h.client), { symbol: "BTCUSDT", interval: "1s" });
    expect(res.window?.startTimeMs).toBe(3_000);
    expect(res.window?.symbol).toBe("BTCUSDT");
    const minute = await call(h.client.getWindow.bind(h.client), { symbol: "BTCUSDT", interval: "1m" });
    expect(minute.window?.startTimeMs).toBe(60_000);

    const none = await codeOf(call(h.client.getWindow.bind(h.client), { symbol: "BTCUSDT", interval: "5m" }));
    expect(none.code).toBe(status.NOT_FOUND);
    const bad = await codeOf(call(h.client.getWindow.bind(h.client), { symbol: "BTCUSDT", interval: "5x" }));
    expect(bad.code).toBe(status.INVALID_ARGUMENT);
    expect(bad.details).toContain("1s or 1m");
  });

  it("ListSymbols lists the symbols with a stored book", async () => {
    const res = await call(h.client.listSymbols.bind(h.client), {});
    expect(res.symbols).toEqual([
      {
        exchange: "binance",
        symbol: "BTCUSDT",
        lastUpdateId: 101,
        eventTimeUs: book("BTCUSDT", 101).eventTimeUs,
      },
      {
        exchange: "binance",
        symbol: "ETHUSDT",
        lastUpdateId: 202,
        eventTimeUs: book("ETHUSDT", 202).eventTimeUs,
      },
    ]);
  });

  it("StreamWindows from a start time: only messages stored since, filtered by symbols and interval", async () => {
    await publishWindow(h.bus, window("BTCUSDT", "1s", 10_000)); // before the start time
    await new Promise((r) => setTimeout(r, 30));
    const startTimeMs = Date.now();
    await new Promise((r) => setTimeout(r, 30));
    await publishWindow(h.bus, window("BTCUSDT", "1s", 11_000));
    await publishWindow(h.bus, window("SOLUSDT", "1s", 11_000)); // symbol not asked
    await publishWindow(h.bus, window("ETHUSDT", "1m", 60_000 * 5)); // interval not asked
    await publishWindow(h.bus, window("ETHUSDT", "1s", 12_000));
    // Two symbols: a wildcard on the server, the rest filtered in the gateway.
    const got = await take<StreamWindowsResponse>(
      h.client.streamWindows({ symbols: ["BTCUSDT", "ethusdt"], intervals: ["1s"], startTimeMs }),
      2,
    );
    expect(got.map((r) => `${r.window?.symbol} ${r.window?.interval} ${r.window?.startTimeMs}`)).toEqual([
      "BTCUSDT 1s 11000",
      "ETHUSDT 1s 12000",
    ]);
    // One symbol, every interval.
    const eth = await take<StreamWindowsResponse>(
      h.client.streamWindows({ symbols: ["ETHUSDT"], intervals: [], startTimeMs }),
      2,
    );
    expect(eth.map((r) => `${r.window?.interval} ${r.window?.startTimeMs}`)).toEqual([
      "1m 300000",
      "1s 12000",
    ]);
  });

  it("StreamWindows from now delivers what is published after the call, then live", async () => {
    await publishWindow(h.bus, window("BTCUSDT", "1s", 19_000)); // stored before the call: not sent
    const stream = h.client.streamWindows({ symbols: ["BTCUSDT"], intervals: ["1s"], startTimeMs: 0 });
    const got = take<StreamWindowsResponse>(stream, 2);
    // The call has its consumer once one filters on exactly this symbol and interval.
    await eventually(
      () => consumerFilters(h.bus, STREAMS.window),
      (filters) => filters.includes("md.window.binance.1s.BTCUSDT"),
    );
    await publishWindow(h.bus, window("BTCUSDT", "1s", 20_000));
    await publishWindow(h.bus, window("BTCUSDT", "1s", 21_000));
    expect((await got).map((r) => r.window?.startTimeMs)).toEqual([20_000, 21_000]);
  });

  it("StreamSignals from a start time", async () => {
    const startTimeMs = Date.now() - 1;
    await publishSignal(h.bus, "BTCUSDT", "1m", 60_000);
    await publishSignal(h.bus, "ETHUSDT", "1m", 60_000);
    await publishSignal(h.bus, "BTCUSDT", "1m", 120_000);
    const got = await take<StreamSignalsResponse>(
      h.client.streamSignals({ symbols: ["BTCUSDT"], intervals: ["1m"], startTimeMs }),
      2,
    );
    expect(
      got.map((r) => `${r.signal?.symbol} ${r.signal?.windowStartTimeMs} ${r.signal?.rationale}`),
    ).toEqual(["BTCUSDT 60000 test 60000", "BTCUSDT 120000 test 120000"]);
  });

  it("streams reject malformed symbols, intervals and start times with INVALID_ARGUMENT", async () => {
    const cases = [
      { symbols: ["BTCUSDT", "no way"], intervals: [], startTimeMs: 0, says: "symbols[1]" },
      { symbols: [], intervals: ["1 minute"], startTimeMs: 0, says: "intervals[0]" },
      { symbols: [], intervals: [], startTimeMs: -5, says: "start_time_ms" },
      // Microseconds, and past the range of a date: the units are wrong.
      { symbols: [], intervals: [], startTimeMs: Date.now() * 1000, says: "not micro- or nanoseconds" },
      { symbols: [], intervals: [], startTimeMs: 9e15, says: "in the future" },
    ];
    for (const c of cases) {
      const end = await ending(h.client.streamSignals(c));
      expect(end.code).toBe(status.INVALID_ARGUMENT);
      expect(end.details).toContain(c.says);
    }
  });

  it("a cancelled stream frees its JetStream consumer", async () => {
    const before = await consumerCount(h.bus, STREAMS.signals);
    const stream = h.client.streamSignals({ symbols: [], intervals: [], startTimeMs: 0 });
    stream.on("error", () => undefined);
    expect(
      await eventually(
        () => consumerCount(h.bus, STREAMS.signals),
        (n) => n === before + 1,
      ),
    ).toBe(before + 1);
    expect(await metricValue(h.registry, "l2flow_gateway_active_streams", { method: "StreamSignals" })).toBe(
      1,
    );
    stream.cancel();
    expect(
      await eventually(
        () => consumerCount(h.bus, STREAMS.signals),
        (n) => n === before,
      ),
    ).toBe(before);
    expect(
      await eventually(
        () => metricValue(h.registry, "l2flow_gateway_active_streams", { method: "StreamSignals" }),
        (n) => n === 0,
      ),
    ).toBe(0);
  });

  it("a stream's deadline ends it with DEADLINE_EXCEEDED and frees its consumer", async () => {
    const before = await consumerCount(h.bus, STREAMS.window);
    const [metadata, options] = within(400);
    const end = await ending(
      h.client.streamWindows({ symbols: [], intervals: [], startTimeMs: 0 }, metadata, options),
    );
    expect(end.code).toBe(status.DEADLINE_EXCEEDED);
    expect(
      await eventually(
        () => consumerCount(h.bus, STREAMS.window),
        (n) => n === before,
      ),
    ).toBe(before);
  });

  it("a client that stops reading is dropped with RESOURCE_EXHAUSTED after a bounded backlog", async () => {
    const startTimeMs = Date.now();
    const total = 1_500; // ~2 MB of windows: far more than HTTP/2 flow control lets through unread
    for (let i = 0; i < total; i++)
      await publishWindow(h.bus, window("ADAUSDT", "1s", 1_000_000 + i * 1_000));
    // A raw HTTP/2 client that reads nothing: the gateway sees a full flow-control window (grpc-js's
    // own client keeps reading into memory even when its stream is paused).
    const stuck = rawServerStream(
      h.gateway.grpcTarget,
      "/l2flow.v1.MarketData/StreamWindows",
      StreamWindowsRequest.encode({ symbols: ["ADAUSDT"], intervals: [], startTimeMs }).finish(),
    );
    expect(
      await eventually(
        () => metricValue(h.registry, "l2flow_gateway_dropped_clients_total", { method: "StreamWindows" }),
        (n) => n === 1,
      ),
    ).toBe(1);
    expect(await metricValue(h.registry, "l2flow_gateway_active_streams", { method: "StreamWindows" })).toBe(
      0,
    );
    const sent = await metricValue(h.registry, "l2flow_gateway_stream_messages_total", {
      method: "StreamWindows",
    });
    const result = await stuck.readToEnd();
    expect(result.status).toBe(String(status.RESOURCE_EXHAUSTED));
    expect(result.message).toContain("read nothing");
    expect(result.messages).toBeGreaterThan(0);
    // What reached the client is what the gateway had written before it stopped pulling.
    expect(result.messages).toBeLessThan(total / 2);
    expect(sent).toBeLessThan(total / 2);
  });

  it("counts calls by method and code", async () => {
    expect(
      await metricValue(h.registry, "l2flow_gateway_rpcs_total", { method: "GetBook", code: "OK" }),
    ).toBe(2);
    expect(
      await metricValue(h.registry, "l2flow_gateway_rpcs_total", {
        method: "GetBook",
        code: "INVALID_ARGUMENT",
      }),
    ).toBe(4);
    expect(
      await metricValue(h.registry, "l2flow_gateway_rpcs_total", { method: "GetBook", code: "NOT_FOUND" }),
    ).toBe(1);
    const text = await (await fetch(`${h.gateway.opsUrl}/metrics`)).text();
    expect(text).toMatch(/l2flow_gateway_rpc_seconds_count\{[^}]*method="GetWindow",code="OK"[^}]*\} 2/);
  });

  it("serves reflection: lists MarketData and returns its file descriptor", async () => {
    const list = await reflect(h.gateway.grpcTarget, stringField(7, "*"));
    expect(list.includes(Buffer.from("l2flow.v1.MarketData"))).toBe(true);
    const file = await reflect(h.gateway.grpcTarget, stringField(4, "l2flow.v1.MarketData"));
    expect(file.includes(Buffer.from("l2flow/v1/market_data_service.proto"))).toBe(true);
    expect(file.includes(Buffer.from("StreamWindows"))).toBe(true);
    // The imports come along, so a client can resolve every message type.
    expect(file.includes(Buffer.from("l2flow/v1/window.proto"))).toBe(true);
  });
});

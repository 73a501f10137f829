// Shared pieces of the gateway tests: a gateway over a real nats-server, promisified client calls,
// raw gRPC health and reflection calls, and data stored as the normalizer and analyzer store it.
import { connect } from "node:http2";
import { Client, credentials, Metadata, type CallOptions, type ServiceError } from "@grpc/grpc-js";
import { connectBus, listConsumers, openKv, provisionTopology, publish, type Bus } from "@l2flow/bus";
import {
  BookSnapshot,
  BUCKETS,
  bookKey,
  EXCHANGE,
  MarketDataClient,
  msgIds,
  Signal,
  subjects,
  Window,
} from "@l2flow/contracts";
import { loadConfig, startGateway, type GatewayService } from "@l2flow/gateway";
import { createLogger, createMetricsRegistry, type Registry } from "@l2flow/runtime";

/** A gateway, a client of it and a bus to seed data, over one nats-server. */
export interface Harness {
  readonly gateway: GatewayService;
  readonly client: MarketDataClient;
  readonly bus: Bus;
  readonly registry: Registry;
  close(): Promise<void>;
}

/** Options of `startHarness`. */
export interface HarnessOptions {
  /** Receives the gateway's log lines (info and above) as parsed JSON. Default: logs are dropped. */
  readonly logs?: Record<string, unknown>[];
}

/** Starts a gateway on free ports against `natsUrl`, with extra environment. */
export async function startHarness(
  natsUrl: string,
  env: Record<string, string> = {},
  options: HarnessOptions = {},
): Promise<Harness> {
  const registry = createMetricsRegistry({ service: "gateway", defaultMetrics: false });
  const { logs } = options;
  const logger = createLogger({
    service: "gateway-test",
    level: logs === undefined ? "warn" : "info",
    destination: {
      write: (line: string) => void logs?.push(JSON.parse(line) as Record<string, unknown>),
    },
  });
  const gateway = await startGateway(
    loadConfig({ NATS_URL: natsUrl, GRPC_PORT: "0", GRPC_HOST: "127.0.0.1", METRICS_PORT: "0", ...env }),
    { logger, registry },
  );
  const client = new MarketDataClient(gateway.grpcTarget, credentials.createInsecure());
  const bus = await connectBus({ servers: natsUrl, name: "gateway-test" });
  await provisionTopology(bus);
  return {
    gateway,
    client,
    bus,
    registry,
    close: async () => {
      client.close();
      await gateway.close();
      await bus.close();
    },
  };
}

/** Turns a unary client method (bound to its client) into a promise, with optional call options. */
export function call<Req, Res>(
  method: (
    req: Req,
    metadata: Metadata,
    options: Partial<CallOptions>,
    callback: (err: ServiceError | null, res: Res) => void,
  ) => unknown,
  request: Req,
  options: Partial<CallOptions> = {},
): Promise<Res> {
  return new Promise<Res>((resolve, reject) => {
    method(request, new Metadata(), options, (err, res) => (err ? reject(err) : resolve(res)));
  });
}

/** Call options with a deadline `ms` from now. */
export const within = (ms: number): [Metadata, { deadline: number }] => [
  new Metadata(),
  { deadline: Date.now() + ms },
];

/** The status code of a failed call (or of anything thrown). */
export async function codeOf(promise: Promise<unknown>): Promise<{ code: number; details: string }> {
  try {
    await promise;
  } catch (err) {
    const e = err as ServiceError;
    return { code: e.code, details: e.details };
  }
  throw new Error("the call succeeded; expected an error");
}

const identity = (b: Buffer) => b;

/** grpc.health.v1.Health/Check with hand-encoded protobuf: 1 SERVING, 2 NOT_SERVING, 0 UNKNOWN. */
export function healthCheck(target: string, service: string): Promise<number> {
  const client = new Client(target, credentials.createInsecure());
  const name = Buffer.from(service, "utf8");
  const request = service === "" ? Buffer.alloc(0) : Buffer.concat([Buffer.from([0x0a, name.length]), name]);
  return new Promise<number>((resolve, reject) => {
    client.makeUnaryRequest(
      "/grpc.health.v1.Health/Check",
      identity,
      identity,
      request,
      new Metadata(),
      { deadline: Date.now() + 2_000 },
      (err, res) => {
        client.close();
        if (err) reject(err);
        // HealthCheckResponse { ServingStatus status = 1; }: an empty message is UNKNOWN (0).
        else resolve(res !== undefined && res.length >= 2 && res[0] === 0x08 ? res[1]! : 0);
      },
    );
  });
}

/** One ServerReflectionInfo exchange (grpc.reflection.v1) with a raw request body; returns the raw answer. */
export function reflect(target: string, request: Buffer): Promise<Buffer> {
  const client = new Client(target, credentials.createInsecure());
  return new Promise<Buffer>((resolve, reject) => {
    const stream = client.makeBidiStreamRequest(
      "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
      identity,
      identity,
      new Metadata(),
      { deadline: Date.now() + 5_000 },
    );
    stream.once("data", (b: Buffer) => {
      resolve(b);
      stream.cancel();
      client.close();
    });
    stream.once("error", (err) => {
      client.close();
      reject(err);
    });
    stream.write(request);
  });
}

/** A string field of a protobuf message: tag, length, bytes (length < 128). */
export function stringField(field: number, value: string): Buffer {
  const bytes = Buffer.from(value, "utf8");
  return Buffer.concat([Buffer.from([(field << 3) | 2, bytes.length]), bytes]);
}

/** A book of `levels` levels a side, as the normalizer stores it. */
export function book(symbol: string, lastUpdateId: number, levels = 20): BookSnapshot {
  const side = (base: number, step: number) =>
    Array.from({ length: levels }, (_, i) => ({
      price: (base + i * step).toFixed(2),
      quantity: `${i + 1}.5`,
    }));
  return BookSnapshot.fromPartial({
    exchange: EXCHANGE,
    symbol,
    lastUpdateId,
    epoch: 1,
    eventTimeUs: 1_723_161_255_208_000 + lastUpdateId,
    bids: side(60_000, -0.5),
    asks: side(60_000.5, 0.5),
  });
}

/** Puts a book into KV `md_book` as the normalizer does. */
export async function putBook(bus: Bus, b: BookSnapshot): Promise<void> {
  const kv = await openKv(bus, BUCKETS.book);
  await kv.put(bookKey(b.symbol), BookSnapshot.encode(b).finish());
}

/** A window with a 20-level book (about 1.5 kB encoded). */
export function window(symbol: string, interval: string, startTimeMs: number): Window {
  const b = book(symbol, startTimeMs);
  return Window.fromPartial({
    exchange: EXCHANGE,
    symbol,
    interval,
    startTimeMs,
    endTimeMs: startTimeMs + 1_000,
    close: 60_000 + (startTimeMs % 100),
    tradeCount: 3,
    complete: true,
    bids: b.bids,
    asks: b.asks,
  });
}

/** Publishes a window into MD_WINDOW with its message id. */
export async function publishWindow(bus: Bus, w: Window): Promise<void> {
  await publish(bus, subjects.window(w.interval, w.symbol), Window.encode(w).finish(), {
    msgId: msgIds.window(w.interval, w.symbol, w.startTimeMs),
  });
}

/** Publishes a signal into SIGNALS with its message id. */
export async function publishSignal(
  bus: Bus,
  symbol: string,
  interval: string,
  startMs: number,
): Promise<void> {
  const s = Signal.fromPartial({
    exchange: EXCHANGE,
    symbol,
    interval,
    windowStartTimeMs: startMs,
    windowEndTimeMs: startMs + 60_000,
    confidence: 0.5,
    provider: "rules",
    rationale: `test ${startMs}`,
  });
  await publish(bus, subjects.signal(interval, symbol), Signal.encode(s).finish(), {
    msgId: msgIds.signal(interval, symbol, startMs),
  });
}

/** Consumers on a stream now. */
export async function consumerCount(bus: Bus, stream: string): Promise<number> {
  return (await bus.jsm.streams.info(stream)).state.consumer_count;
}

/** The filter subjects of the consumers on a stream now. */
export async function consumerFilters(bus: Bus, stream: string): Promise<string[]> {
  const out: string[] = [];
  for await (const c of listConsumers(bus, stream)) out.push(c.config.filter_subject ?? "");
  return out;
}

/**
 * A server-streaming gRPC call over a bare HTTP/2 stream that reads nothing until `readToEnd()`, so
 * the server meets a full flow-control window, as with a stuck client.
 */
export function rawServerStream(
  target: string,
  path: string,
  request: Uint8Array,
): { readToEnd(): Promise<{ messages: number; status: string; message: string }> } {
  const session = connect(`http://${target}`);
  session.on("error", () => undefined);
  const req = session.request({
    ":method": "POST",
    ":path": path,
    "content-type": "application/grpc",
    te: "trailers",
  });
  const frame = Buffer.alloc(5 + request.length);
  frame.writeUInt32BE(request.length, 1);
  frame.set(request, 5);
  req.end(frame);
  req.pause();
  const trailers = new Promise<Record<string, unknown>>((resolve) =>
    req.once("trailers", (t: Record<string, unknown>) => resolve(t)),
  );
  return {
    readToEnd: async () => {
      const chunks: Buffer[] = [];
      req.on("data", (b: Buffer) => chunks.push(b));
      req.resume();
      const t = await trailers;
      session.close();
      const body = Buffer.concat(chunks);
      let messages = 0;
      for (let pos = 0; pos + 5 <= body.length; pos += 5 + body.readUInt32BE(pos + 1)) messages++;
      return {
        messages,
        status: String(t["grpc-status"]),
        message: decodeURIComponent(typeof t["grpc-message"] === "string" ? t["grpc-message"] : ""),
      };
    },
  };
}

/** Polls `check` until it holds or `timeoutMs` passes; returns its last value. */
export async function eventually<T>(
  read: () => Promise<T> | T,
  check: (v: T) => boolean,
  timeoutMs = 10_000,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await read();
    if (check(v) || Date.now() > deadline) return v;
    await new Promise((r) => setTimeout(r, 25));
  }
}

/** The value of one metric series (0 when absent). */
export async function metricValue(
  registry: Registry,
  name: string,
  labels: Record<string, string>,
): Promise<number> {
  const metric = await registry.getSingleMetric(name)?.get();
  const match = metric?.values.find((v) =>
    Object.entries(labels).every(([k, val]) => (v.labels as Record<string, unknown>)[k] === val),
  );
  return match?.value ?? 0;
}

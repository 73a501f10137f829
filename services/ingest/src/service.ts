import { connectBus, provisionTopology, type Bus } from "@l2flow/bus";
import {
  BinanceRestClient,
  BinanceStreams,
  DedupeFilter,
  FrameError,
  routeFrame,
  type CloseInfo,
  type StreamKind,
} from "@l2flow/binance";
import { HEADERS, msgIds, subjects } from "@l2flow/contracts";
import {
  Counter,
  createMetricsRegistry,
  Gauge,
  Histogram,
  LogLimiter,
  natsOptions,
  ResourceStack,
  startOpsServer,
  type Logger,
  type Registry,
} from "@l2flow/runtime";
import type { IngestConfig } from "./config.js";
import { RawQueue } from "./raw-queue.js";

/** A running ingest. */
export interface IngestService {
  /** Base URL of `/metrics`, `/healthz`, `/readyz`. */
  readonly opsUrl: string;
  /** Connections up now. */
  connectionsUp(): number;
  /** Stops the streams, stores what was accepted, then closes NATS and the ops server. Idempotent. */
  close(): Promise<void>;
}

/** Dependencies the composition root passes in. */
export interface IngestDeps {
  readonly logger: Logger;
  /** Default: a new registry with Node's default metrics. */
  readonly registry?: Registry;
}

const KIND_STREAM: Record<string, StreamKind> = {
  trade: "trade",
  aggTrade: "aggTrade",
  depth: "depth@100ms",
};
const encoder = new TextEncoder();

/**
 * Starts ingest: Binance combined streams → `MD_RAW` (the exchange's bytes verbatim, message ids from
 * the exchange's ids), REST depth snapshots through one weight-aware queue (at start, after every
 * reconnect, and on request of the normalizer), and connection status events.
 */
export async function startIngest(config: IngestConfig, deps: IngestDeps): Promise<IngestService> {
  const { logger } = deps;
  const registry = deps.registry ?? createMetricsRegistry({ service: "ingest" });
  const registers = [registry];
  const m = {
    frames: new Counter({
      name: "l2flow_ingest_frames_total",
      help: "Frames received, by kind",
      labelNames: ["kind"],
      registers,
    }),
    stored: new Counter({
      name: "l2flow_ingest_stored_total",
      help: "Messages stored in MD_RAW, by kind and whether JetStream found a duplicate",
      labelNames: ["kind", "duplicate"],
      registers,
    }),
    bad: new Counter({
      name: "l2flow_ingest_bad_frames_total",
      help: "Frames rejected, by code",
      labelNames: ["code"],
      registers,
    }),
    deduped: new Counter({
      name: "l2flow_ingest_deduplicated_total",
      help: "Frames dropped locally as repeats (rotation overlap)",
      registers,
    }),
    dropped: new Counter({
      name: "l2flow_ingest_frames_dropped_total",
      help: "Frames dropped because the outage buffer was full",
      registers,
    }),
    publishErrors: new Counter({
      name: "l2flow_ingest_publish_errors_total",
      help: "Publishes that failed and were retried",
      registers,
    }),
    bufferBytes: new Gauge({
      name: "l2flow_ingest_buffer_bytes",
      help: "Bytes waiting to be stored",
      registers,
    }),
    lag: new Histogram({
      name: "l2flow_ingest_event_lag_seconds",
      help: "Receive time minus the exchange's event time E",
      buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5],
      registers,
    }),
    connections: new Gauge({
      name: "l2flow_ingest_connections_up",
      help: "WebSocket connections up",
      registers,
    }),
    reconnects: new Counter({
      name: "l2flow_ingest_reconnects_total",
      help: "Connections lost and re-established",
      registers,
    }),
    rotations: new Counter({
      name: "l2flow_ingest_rotations_total",
      help: "Make-before-break rotations, by cause",
      labelNames: ["cause"],
      registers,
    }),
    snapshots: new Counter({
      name: "l2flow_ingest_snapshots_total",
      help: "Depth snapshots stored, by trigger",
      labelNames: ["trigger"],
      registers,
    }),
    weight: new Gauge({
      name: "l2flow_ingest_rest_weight_used",
      help: "Binance request weight used in the current minute",
      registers,
    }),
    rateLimited: new Counter({
      name: "l2flow_ingest_rest_rate_limited_total",
      help: "REST answers 429 and 418",
      labelNames: ["status"],
      registers,
    }),
  };
  const limiter = new LogLimiter();
  const resources = new ResourceStack();

  try {
    const bus: Bus = await connectBus({ ...natsOptions(config, "ingest"), logger });
    resources.defer(() => bus.drain());
    await provisionTopology(bus);

    // Symbols whose frames the outage buffer dropped, reported as a gap once NATS is back.
    const droppedSymbols = new Set<string>();
    const queue = new RawQueue(bus, {
      maxInFlight: config.PUBLISH_MAX_IN_FLIGHT,
      maxBytes: config.OUTAGE_BUFFER_BYTES,
      onStored: (item, duplicate) =>
        m.stored.inc({ kind: item.subject.split(".")[3] ?? "?", duplicate: String(duplicate) }),
      onDropped: (item) => {
        m.dropped.inc();
        const symbol = item.subject.split(".")[4];
        if (symbol !== undefined) droppedSymbols.add(symbol);
        if (limiter.take("dropped") >= 0)
          logger.error(
            { bufferBytes: config.OUTAGE_BUFFER_BYTES },
            "outage buffer full: dropping the oldest frames; they will be reported as a gap",
          );
      },
      onPublishError: (err) => {
        m.publishErrors.inc();
        if (limiter.take("publish") >= 0)
          logger.warn({ err }, "publish to MD_RAW failed; retrying (frames wait in the bounded buffer)");
      },
    });
    resources.defer(() => queue.close());
    bus.onConnectionChange((up) => {
      if (!up || droppedSymbols.size === 0) return;
      for (const symbol of droppedSymbols)
        status(symbol, "gap", "rest", { reason: "outage buffer overflowed while NATS was unreachable" });
      droppedSymbols.clear();
    });
    const bufferTimer = setInterval(() => m.bufferBytes.set(queue.bytes), 1_000);
    resources.defer(() => clearInterval(bufferTimer));

    const status = (
      symbol: string,
      type: string,
      connection: string,
      extra: Record<string, unknown> = {},
    ) => {
      const timeUs = Date.now() * 1000;
      queue.push({
        subject: subjects.raw("status", symbol),
        data: encoder.encode(JSON.stringify({ type, connection, symbol, timeUs, ...extra })),
        msgId: `status:${connection}:${symbol}:${type}:${timeUs}`,
        headers: { [HEADERS.receiveNs]: `${timeUs}000`, [HEADERS.connection]: connection },
      });
    };

    const rest = new BinanceRestClient({
      baseUrl: config.BINANCE_REST_URL,
      weightBudgetPerMinute: config.REST_WEIGHT_PER_MIN,
      onResponse: (i) => m.weight.set(i.usedWeight ?? i.estimatedWeight),
      onRateLimited: (i) => {
        m.rateLimited.inc({ status: String(i.status) });
        logger.warn(
          { status: i.status, endpoint: i.endpoint, retryAfterMs: i.retryAfterMs },
          i.status === 418
            ? "Binance banned this IP: REST paused until Retry-After"
            : "Binance rate limit hit: backing off",
        );
      },
    });
    resources.defer(() => rest.close());

    const wantsDepth = config.STREAM_KINDS.includes("depth");
    const fetchSnapshot = async (symbol: string, trigger: string): Promise<number> => {
      const res = await rest.getDepth(symbol, config.SNAPSHOT_LIMIT, {
        priority: trigger === "resync" ? "high" : "normal",
      });
      await new Promise<void>((resolve, reject) =>
        queue.push({
          subject: subjects.raw("snapshot", symbol),
          data: encoder.encode(res.body),
          msgId: msgIds.snapshot(symbol, res.data.lastUpdateId),
          headers: {
            [HEADERS.receiveNs]: String(res.receiveTimeNs),
            [HEADERS.connection]: "rest",
            [HEADERS.snapshotLimit]: String(config.SNAPSHOT_LIMIT),
          },
          settle: (err) => (err ? reject(err) : resolve()),
        }),
      );
      m.snapshots.inc({ trigger });
      return res.data.lastUpdateId;
    };
    const snapshotLater = (symbol: string, trigger: string) => {
      if (!wantsDepth) return;
      fetchSnapshot(symbol, trigger).catch((err: unknown) => {
        logger.error({ err, symbol }, "depth snapshot failed; the normalizer will ask again");
      });
    };

    const dedupe = new DedupeFilter();
    const onFrame = (bytes: Buffer, receiveTimeNs: bigint, connId: string) => {
      let route;
      try {
        route = routeFrame(bytes.toString("utf8"));
      } catch (err) {
        const code = err instanceof FrameError ? err.code : "FRAME_UNKNOWN";
        m.bad.inc({ code });
        if (limiter.take(code) >= 0)
          logger.warn(
            { code, connection: connId, sample: bytes.subarray(0, 120).toString("utf8") },
            "rejected a malformed frame; the connection stays up",
          );
        return;
      }
      if (route.kind === "shutdown" || route.kind === "bookticker") {
        m.frames.inc({ kind: route.kind });
        return;
      }
      m.frames.inc({ kind: route.kind });
      if (route.eventTime > 0)
        m.lag.observe(Math.max(0, Number(receiveTimeNs / 1_000_000n) - route.eventTime) / 1000);
      if (dedupe.seen(route.kind, route.symbol, route.id)) {
        m.deduped.inc();
        return;
      }
      const msgId =
        route.kind === "trade"
          ? msgIds.trade(route.symbol, route.id)
          : route.kind === "aggtrade"
            ? msgIds.aggTrade(route.symbol, route.id)
            : msgIds.depth(route.symbol, route.id);
      queue.push({
        subject: subjects.raw(route.kind, route.symbol),
        data: encoder.encode(route.data),
        msgId,
        headers: { [HEADERS.receiveNs]: String(receiveTimeNs), [HEADERS.connection]: connId },
      });
    };

    const symbolsOf = (streams: readonly string[]) => [
      ...new Set(streams.map((s) => s.split("@")[0]!.toUpperCase())),
    ];
    const streams = new BinanceStreams({
      symbols: config.SYMBOLS,
      kinds: config.STREAM_KINDS.map((k) => KIND_STREAM[k]!),
      wsBaseUrl: config.BINANCE_WS_URL,
      streamsPerConnection: config.STREAMS_PER_CONNECTION,
      connection: {
        silenceTimeoutMs: config.SILENCE_TIMEOUT_MS,
        maxLifetimeMs: config.CONNECTION_LIFETIME_MS,
        rotateBeforeMs: config.ROTATE_BEFORE_MS,
        ...(config.MICROSECOND_TIMESTAMPS ? { timeUnit: "MICROSECOND" as const } : {}),
      },
      logger,
      onFrame,
      onConnectionUp: (connId, list) => {
        m.connections.set(streams.stats.connectionsOpen);
        logger.info({ connection: connId, streams: list.length }, "Binance connection up");
        for (const symbol of symbolsOf(list)) {
          status(symbol, "connected", connId);
          snapshotLater(symbol, "connect");
        }
      },
      onConnectionDown: (connId, list, reason: CloseInfo) => {
        m.connections.set(streams.stats.connectionsOpen);
        m.reconnects.inc();
        logger.warn(
          { connection: connId, kind: reason.kind, code: reason.code },
          "Binance connection lost; reconnecting with backoff",
        );
        for (const symbol of symbolsOf(list)) status(symbol, "disconnected", connId, { reason: reason.kind });
      },
      onRotation: (oldId, newId, cause) => {
        m.rotations.inc({ cause });
        logger.info({ old: oldId, new: newId, cause }, "connection rotated without a gap");
      },
    });
    streams.start();
    resources.defer(() => streams.close());

    // Resync requests from the normalizer: any replica answers (queue group).
    const sub = bus.nc.subscribe(subjects.resyncRequest("*"), {
      queue: "ingest",
      callback: (err, msg) => {
        if (err) return;
        const symbol = msg.subject.split(".").pop() ?? "";
        if (!config.SYMBOLS.includes(symbol)) {
          msg.respond(
            encoder.encode(JSON.stringify({ ok: false, error: `${symbol} is not collected by this ingest` })),
          );
          return;
        }
        fetchSnapshot(symbol, "resync").then(
          (lastUpdateId) => msg.respond(encoder.encode(JSON.stringify({ ok: true, lastUpdateId }))),
          (e: unknown) =>
            msg.respond(
              encoder.encode(
                JSON.stringify({ ok: false, error: e instanceof Error ? e.message : String(e) }),
              ),
            ),
        );
      },
    });
    resources.defer(() => sub.unsubscribe());

    const ops = await startOpsServer({
      port: config.METRICS_PORT,
      registry,
      logger,
      readiness: () => {
        if (!bus.isConnected()) return { ready: false, reason: "NATS is not connected" };
        if (streams.stats.connectionsOpen === 0)
          return { ready: false, reason: "no Binance connection is up" };
        return { ready: true };
      },
    });
    resources.push(ops);
    logger.info(
      { symbols: config.SYMBOLS, ws: config.BINANCE_WS_URL, rest: config.BINANCE_REST_URL, ops: ops.url },
      "ingest started",
    );

    return {
      opsUrl: ops.url,
      connectionsUp: () => streams.stats.connectionsOpen,
      close: () => resources.close(),
    };
  } catch (err) {
    await resources.close();
    throw err;
  }
}

import { connectBus, provisionTopology, PublishQueue, type Bus } from "@l2flow/bus";
import {
  BinanceRestClient,
  BinanceRestError,
  BinanceStreams,
  DedupeFilter,
  FrameError,
  parseAggTrade,
  parseTrade,
  routeFrame,
  scanFrame,
  SlidingWindowLimiter,
  type CloseInfo,
  type FrameRoute,
  type ScannedFrame,
  type StreamKind,
} from "@l2flow/binance";
import {
  HEADERS,
  isSymbol,
  msgIds,
  normalizeSymbol,
  rawSubjectParts,
  STREAMS,
  subjects,
} from "@l2flow/contracts";
import {
  createMetricsRegistry,
  LogLimiter,
  natsOptions,
  ResourceStack,
  startOpsServer,
  talliesBy,
  type Tally,
  type Logger,
  type Registry,
} from "@l2flow/runtime";
import { TradeBackfill, type TradeKind } from "./backfill.js";
import type { IngestConfig } from "./config.js";
import { ingestMetrics } from "./metrics.js";

/** A running ingest. */
export interface IngestService {
  /** Base URL of `/metrics`, `/healthz`, `/readyz`. */
  readonly opsUrl: string;
  /** Connections up now (all redundant sets). */
  connectionsUp(): number;
  /** Symbols collected now (changes with the symbols control subject). */
  symbols(): readonly string[];
  /** Resolves when no trade backfill is waiting (tests, shutdown). */
  backfillSettled(timeoutMs?: number): Promise<void>;
  /** Stops the streams, stores what was accepted, then closes NATS and the ops server. Idempotent. */
  close(): Promise<void>;
}

/** Dependencies the composition root passes in. */
export interface IngestDeps {
  readonly logger: Logger;
  /** Default: a new registry with Node's default metrics. */
  readonly registry?: Registry;
  /** Called when JetStream acked a message (benchmarks measure send-to-stored latency with it). */
  readonly onStored?: (subject: string, msgId: string | undefined, duplicate: boolean) => void;
}

const KIND_STREAM: Record<string, StreamKind> = {
  trade: "trade",
  aggTrade: "aggTrade",
  depth: "depth@100ms",
};
const encoder = new TextEncoder();
const FIVE_MINUTES_MS = 5 * 60_000;

/**
 * Starts ingest: Binance combined streams (one or two redundant connection sets) → `MD_RAW` (the
 * exchange's bytes verbatim, message ids from the exchange's ids, every message acked by the stream),
 * REST depth snapshots and trade backfill through one weight-aware queue, resync requests answered
 * for the normalizer, symbols changed at run time, and connection status events.
 */
export async function startIngest(config: IngestConfig, deps: IngestDeps): Promise<IngestService> {
  const { logger } = deps;
  const registry = deps.registry ?? createMetricsRegistry({ service: "ingest" });
  const m = ingestMetrics(registry);
  const limiter = new LogLimiter();
  const resources = new ResourceStack();
  const symbols = new Set(config.SYMBOLS);

  try {
    const bus: Bus = await connectBus({ ...natsOptions(config, "ingest"), logger });
    resources.defer(() => bus.drain());
    await provisionTopology(bus, { replicas: config.STREAM_REPLICAS });

    // Symbols whose frames were never stored, reported as a gap once NATS is back.
    const lostSymbols = new Set<string>();
    // Per-frame counts are tallies (plain additions, handed to prom-client at each scrape), one per label
    // set, found by subject so that no subject is parsed per ack.
    const storedFresh = talliesBy(m.stored, "kind", { duplicate: "false" });
    const storedDuplicate = talliesBy(m.stored, "kind", { duplicate: "true" });
    const fenced = talliesBy(m.fenced, "outcome");
    const storedBySubject = new Map<string, [Tally, Tally]>();
    const storedCounter = (subject: string, duplicate: boolean) => {
      let pair = storedBySubject.get(subject);
      if (pair === undefined) {
        if (storedBySubject.size > 100_000) storedBySubject.clear();
        const kind = rawSubjectParts(subject)?.kind ?? "?";
        pair = [storedFresh(kind), storedDuplicate(kind)];
        storedBySubject.set(subject, pair);
      }
      return pair[duplicate ? 1 : 0];
    };
    const queue = new PublishQueue(bus, {
      maxInFlight: config.PUBLISH_MAX_IN_FLIGHT,
      maxBytes: config.OUTAGE_BUFFER_BYTES,
      ackTimeoutMs: config.PUBLISH_ACK_TIMEOUT_MS,
      // Everything goes to MD_RAW, which only ingest writes: a batch is confirmed by one ack (with a
      // second replica storing the same frames most fences prove nothing: an ack each again).
      fences: true,
      onFenced: (outcome, n) => fenced(outcome).inc(n),
      onStored: (item, duplicate) => {
        storedCounter(item.subject, duplicate).inc();
        deps.onStored?.(item.subject, item.msgId, duplicate);
      },
      onDropped: (item, reason, err) => {
        m.dropped.inc({ reason });
        const raw = rawSubjectParts(item.subject);
        if (raw !== undefined) {
          lostSymbols.add(raw.symbol);
          // A dropped trade is fetched back over REST once NATS is back (its id ends the message id).
          const id = Number(item.msgId?.slice(item.msgId.lastIndexOf(":") + 1));
          if (
            reason === "overflow" &&
            (raw.kind === "trade" || raw.kind === "aggtrade") &&
            Number.isSafeInteger(id)
          )
            backfill.lost(raw.kind, raw.symbol, id);
        }
        const suppressed = limiter.take(`dropped-${reason}`);
        if (suppressed >= 0)
          logger.error(
            { suppressed, reason, bufferBytes: config.OUTAGE_BUFFER_BYTES, subject: item.subject, err },
            reason === "overflow"
              ? "outage buffer full: dropping the oldest frames; they will be reported as a gap"
              : "JetStream refused a frame every time it was sent; it is dropped and will be reported as a gap",
          );
      },
      onPublishError: (err) => {
        m.publishErrors.inc({ code: err.code });
        const suppressed = limiter.take("publish");
        if (suppressed >= 0)
          logger.warn(
            { suppressed, err },
            "publish to MD_RAW failed; sending again (frames wait in the bounded buffer)",
          );
      },
    });
    resources.defer(() => queue.close());
    const reportLost = () => {
      if (!bus.isConnected() || lostSymbols.size === 0) return;
      backfill.release();
      for (const symbol of lostSymbols)
        status(symbol, "gap", "rest", { reason: "frames were dropped while NATS was unreachable" });
      lostSymbols.clear();
    };
    bus.onConnectionChange((up) => {
      if (up) reportLost();
    });
    m.bufferLimit.set(config.OUTAGE_BUFFER_BYTES);
    const gauges = setInterval(() => {
      m.bufferBytes.set(queue.bytes);
      m.bufferMemory.set(queue.packedMemory);
      m.inFlight.set(queue.pending);
      reportLost();
    }, 1_000);
    resources.defer(() => clearInterval(gauges));

    /**
     * Stores a status event. `key` is its message id when the event has an identity of its own (trade
     * ids missing: the same hole seen by two replicas, or again after a restart, is stored once);
     * otherwise it is an observation of this process (a connection of its own up or down, frames it
     * dropped), told apart by the time it was made.
     */
    const status = (
      symbol: string,
      type: string,
      connection: string,
      extra: Record<string, unknown> = {},
      key?: string,
    ) => {
      const timeUs = Date.now() * 1000;
      queue.push({
        subject: subjects.raw("status", symbol),
        data: encoder.encode(JSON.stringify({ type, connection, symbol, timeUs, ...extra })),
        msgId: key ?? `status:${connection}:${symbol}:${type}:${timeUs}`,
        headers: { [HEADERS.receiveNs]: `${timeUs}000`, [HEADERS.connection]: connection },
      });
    };

    const rest = new BinanceRestClient({
      baseUrl: config.BINANCE_REST_URL,
      weightBudgetPerMinute: config.REST_WEIGHT_PER_MIN,
      ...(config.BINANCE_API_KEY !== undefined ? { apiKey: config.BINANCE_API_KEY } : {}),
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
    /**
     * Snapshot fetches not sent to Binance yet, by symbol. A request for a symbol whose fetch still
     * waits in the REST queue shares it: during a 429 or 418 pause, a normalizer asking again every
     * RESYNC_REQUEST_TIMEOUT_MS (or several asking at once) would otherwise queue a weight-50 request
     * each time, all sent when the pause ends. Once sent, a new request fetches anew: a snapshot taken
     * before the ask may be older than the diffs the asker buffered.
     */
    const waiting = new Map<string, { readonly fetch: Promise<number>; sent: boolean }>();
    const fetchSnapshot = (symbol: string, trigger: string): Promise<number> => {
      const pending = waiting.get(symbol);
      if (pending !== undefined && !pending.sent) return pending.fetch;
      const entry: { fetch: Promise<number>; sent: boolean } = { fetch: Promise.resolve(0), sent: false };
      entry.fetch = fetchSnapshotNow(symbol, trigger, (sent) => (entry.sent = sent)).finally(() => {
        if (waiting.get(symbol) === entry) waiting.delete(symbol);
      });
      waiting.set(symbol, entry);
      return entry.fetch;
    };
    const fetchSnapshotNow = async (
      symbol: string,
      trigger: string,
      onSent: (sent: boolean) => void,
    ): Promise<number> => {
      const res = await withRateLimitRetry(() => {
        onSent(false); // a new attempt waits in the queue again
        return rest.getDepth(symbol, config.SNAPSHOT_LIMIT, {
          priority: trigger === "resync" ? "high" : "normal",
          onSent,
        });
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
    const backfill = new TradeBackfill({
      rest,
      dedupe,
      delayMs: config.BACKFILL_DELAY_MS,
      maxIdsPerGap: config.BACKFILL_MAX_IDS,
      timeScale: config.MICROSECOND_TIMESTAMPS ? 1000 : 1,
      publish: (kind, symbol, id, json, receiveTimeNs, liveHigh) =>
        queue.push({
          subject: subjects.raw(kind, symbol),
          data: encoder.encode(json),
          msgId: tradeMsgId(kind, symbol, id),
          headers: {
            [HEADERS.receiveNs]: String(receiveTimeNs),
            [HEADERS.connection]: "rest",
            [HEADERS.source]: "rest-backfill",
            [HEADERS.liveHigh]: String(liveHigh),
          },
        }),
      onRecovered: (kind, symbol, count) => {
        m.backfilled.inc({ kind }, count);
        logger.info({ kind, symbol, count }, "recovered trades every connection missed");
      },
      onUnrecoverable: (kind, symbol, fromId, toId, reason) => {
        m.unrecoverable.inc({ kind }, toId - fromId + 1);
        logger.warn({ kind, symbol, fromId, toId, reason }, "trades lost for good; reported as a gap");
        status(
          symbol,
          "trades-missing",
          "rest",
          { kind, fromId, toId, reason },
          `status:${symbol}:trades-missing:${kind}:${fromId}-${toId}`,
        );
      },
      onError: (err, kind, symbol) => {
        const suppressed = limiter.take("backfill");
        if (suppressed >= 0) logger.warn({ suppressed, err, kind, symbol }, "trade backfill failed");
      },
    });

    const tradeKinds = (["trade", "aggtrade"] as const).filter((k) =>
      config.STREAM_KINDS.includes(k === "trade" ? "trade" : "aggTrade"),
    );
    /**
     * Trade continuity across restarts: each symbol's last trade id in MD_RAW seeds the backfill, so
     * the trades made while no ingest collected the symbol (a restart of a single replica, a rollout,
     * a symbol removed and added again) are fetched back over REST or reported, not silently missing.
     * A last stored trade that was itself recovered over REST need not be the highest stored (the
     * backfill stores after later live trades): it carries the highest live id of then
     * (`L2-Live-High`), which the seed continues from; one without (stored by an older ingest) leaves
     * the symbol unseeded, since a lower seed would fetch and store again ids MD_RAW already holds.
     */
    const seedTradeIds = async (list: readonly string[]): Promise<void> => {
      const jobs = list.flatMap((symbol) => tradeKinds.map((kind) => ({ symbol, kind })));
      let seeded = 0;
      let failed: unknown;
      // Stops at the first failure: with NATS gone each read would wait out its timeout.
      for (let i = 0; i < jobs.length && failed === undefined; i += 64)
        await Promise.all(
          jobs.slice(i, i + 64).map(async ({ symbol, kind }) => {
            let last;
            try {
              // null when nothing is stored for it yet: continuity starts at its first live trade.
              last = await bus.jsm.streams.getMessage(STREAMS.raw, {
                last_by_subj: subjects.raw(kind, symbol),
              });
            } catch (err) {
              failed = err; // NATS unreachable, or a user without $JS.API.STREAM.MSG.GET.MD_RAW
              return;
            }
            if (last === null) return;
            const recovered = last.header?.get(HEADERS.source) === "rest-backfill";
            const liveHigh = recovered ? Number(last.header?.get(HEADERS.liveHigh) || NaN) : NaN;
            if (recovered && !Number.isSafeInteger(liveHigh)) return;
            try {
              const id =
                kind === "trade" ? parseTrade(last.data).tradeId : parseAggTrade(last.data).aggTradeId;
              backfill.seed(kind, symbol, recovered ? Math.max(id, liveHigh) : id);
              seeded++;
            } catch {
              // Not a trade frame we can read: nothing to continue from.
            }
          }),
        );
      if (seeded > 0) logger.info({ seeded }, "trade ids continue from MD_RAW's last stored trades");
      if (failed !== undefined)
        logger.warn(
          { err: failed },
          "could not read MD_RAW's last stored trades: trades made while no ingest ran are not fetched back (the NATS user needs $JS.API.STREAM.MSG.GET.MD_RAW)",
        );
    };
    resources.defer(() => backfill.close());

    const framesCounter = talliesBy(m.frames, "kind");
    // Per kind and symbol, the strings every frame of it needs, made once: building them per frame
    // (template literals) left several strings per message alive until its ack, for the GC to copy.
    const lanes = new Map<string, Map<string, Lane>>();
    /** The lane of a frame's symbol; undefined when the symbol cannot be a subject token (not stored). */
    const laneOf = (kind: "trade" | "aggtrade" | "depth", symbol: string): Lane | undefined => {
      let bySymbol = lanes.get(kind);
      if (bySymbol === undefined) lanes.set(kind, (bySymbol = new Map<string, Lane>()));
      let lane = bySymbol.get(symbol);
      if (lane !== undefined) return lane;
      // Binance's symbols are upper case; anything else (a dot, a wildcard) would name other subjects.
      if (symbol !== symbol.toUpperCase() || !isSymbol(symbol)) return undefined;
      // Bounded whatever symbols frames name: past the bound the cache starts again.
      if (bySymbol.size >= MAX_LANES_PER_KIND) bySymbol.clear();
      lane = {
        symbol,
        subject: subjects.raw(kind, symbol),
        msgIdPrefix: kind === "depth" ? msgIds.depth(symbol, "") : tradeMsgId(kind, symbol, ""),
      };
      bySymbol.set(symbol, lane);
      return lane;
    };
    const onFrame = (bytes: Buffer, receiveTimeNs: bigint, connId: string) => {
      // The usual frame is routed from its bytes; JSON.parse (routeFrame) sees only what the scan
      // cannot vouch for, and says exactly what is wrong with the malformed.
      let route: ScannedFrame | FrameRoute | undefined = scanFrame(bytes);
      let text = "";
      if (route === undefined) {
        try {
          text = bytes.toString("utf8");
          route = routeFrame(text);
        } catch (err) {
          const code = err instanceof FrameError ? err.code : "FRAME_UNKNOWN";
          m.bad.inc({ code });
          const suppressed = limiter.take(code);
          if (suppressed >= 0)
            logger.warn(
              { suppressed, code, connection: connId, sample: bytes.subarray(0, 120).toString("utf8") },
              "rejected a malformed frame; the connection stays up",
            );
          return;
        }
      }
      framesCounter(route.kind).inc();
      if (route.kind === "shutdown" || route.kind === "bookticker") return;
      if (route.eventTime > 0) {
        const eventMs = config.MICROSECOND_TIMESTAMPS ? route.eventTime / 1000 : route.eventTime;
        // Millisecond lag: the receive time's nanoseconds are not needed for it (and BigInt division is not free).
        m.lag.observe(Math.max(0, Date.now() - eventMs) / 1000);
      }
      const lane = laneOf(route.kind, route.symbol);
      if (lane === undefined) {
        m.bad.inc({ code: "FRAME_BAD_SYMBOL" });
        const suppressed = limiter.take("FRAME_BAD_SYMBOL");
        if (suppressed >= 0)
          logger.warn(
            { suppressed, code: "FRAME_BAD_SYMBOL", connection: connId, symbol: route.symbol.slice(0, 40) },
            "rejected a frame whose symbol cannot be a subject token; the connection stays up",
          );
        return;
      }
      if (dedupe.seen(route.kind, lane.symbol, route.id)) {
        m.deduped.inc();
        return;
      }
      if (route.kind !== "depth") backfill.observe(route.kind, lane.symbol, route.id);
      queue.push({
        subject: lane.subject,
        data:
          "data" in route
            ? payloadBytes(bytes, text, route.data)
            : Buffer.from(bytes.subarray(route.dataStart, route.dataEnd)),
        msgId: lane.msgIdPrefix + route.id,
        headers: { [HEADERS.receiveNs]: String(receiveTimeNs), [HEADERS.connection]: connId },
      });
    };

    // Which live connections carry each symbol: a symbol is "disconnected" only when none does.
    const coverage = new Map<string, Set<string>>();
    const symbolsOf = (streams: readonly string[]) => [
      ...new Set(streams.map((s) => s.split("@")[0]!.toUpperCase())),
    ];
    const covered = (connId: string, streams: readonly string[]) => {
      for (const symbol of symbolsOf(streams)) {
        let set = coverage.get(symbol);
        if (set === undefined) coverage.set(symbol, (set = new Set()));
        if (set.size === 0) {
          status(symbol, "connected", connId);
          snapshotLater(symbol, "connect");
        }
        set.add(connId);
      }
    };
    const uncovered = (connId: string, reason: string) => {
      for (const [symbol, set] of coverage) {
        if (!set.delete(connId) || set.size > 0) continue;
        status(symbol, "disconnected", connId, { reason });
      }
    };

    // One limiter for every connection of the process: Binance counts attempts per IP (replicas
    // sharing one IP split the 300 with WS_CONNECT_ATTEMPTS_PER_5MIN).
    const attempts = new SlidingWindowLimiter({
      limit: config.WS_CONNECT_ATTEMPTS_PER_5MIN,
      windowMs: FIVE_MINUTES_MS,
    });
    const sets: BinanceStreams[] = [];
    for (let i = 0; i < config.WS_REDUNDANCY; i++) {
      const set: BinanceStreams = new BinanceStreams({
        symbols: [...symbols],
        kinds: config.STREAM_KINDS.map((k) => KIND_STREAM[k]!),
        wsBaseUrl: config.BINANCE_WS_URL,
        streamsPerConnection: config.STREAMS_PER_CONNECTION,
        attemptLimiter: attempts,
        idPrefix: config.WS_REDUNDANCY > 1 ? `${"ab"[i]}` : "ws",
        connection: {
          silenceTimeoutMs: config.SILENCE_TIMEOUT_MS,
          dataSilenceTimeoutMs: config.DATA_SILENCE_TIMEOUT_MS,
          maxLifetimeMs: config.CONNECTION_LIFETIME_MS,
          rotateBeforeMs: config.ROTATE_BEFORE_MS,
          ...(config.MICROSECOND_TIMESTAMPS ? { timeUnit: "MICROSECOND" as const } : {}),
        },
        logger,
        onFrame,
        onConnectionUp: (connId, list) => {
          m.connections.set(connectionsUp());
          logger.info({ connection: connId, streams: list.length }, "Binance connection up");
          covered(connId, list);
        },
        // Symbols added to a connection already up: "connected", and a snapshot, as at connect.
        onStreamsAdded: (connId, list) => covered(connId, list),
        onConnectionDown: (connId, _list, reason: CloseInfo) => {
          m.connections.set(connectionsUp());
          m.reconnects.inc();
          logger.warn(
            { connection: connId, kind: reason.kind, code: reason.code },
            "Binance connection lost; reconnecting with backoff",
          );
          uncovered(connId, reason.kind);
        },
        onRotation: (oldId, newId, cause) => {
          m.rotations.inc({ cause });
          uncovered(oldId, "rotated");
          logger.info({ old: oldId, new: newId, cause }, "connection rotated without a gap");
        },
      });
      sets.push(set);
    }
    const connectionsUp = () => sets.reduce((n, s) => n + s.stats.connectionsOpen, 0);
    await seedTradeIds([...symbols]);
    for (const set of sets) set.start();
    resources.defer(() => Promise.all(sets.map((s) => s.close())).then(() => undefined));

    // Resync requests from the normalizer: any replica answers (queue group).
    const reply = (msg: { respond(data: Uint8Array): boolean }, body: unknown) =>
      msg.respond(encoder.encode(JSON.stringify(body)));
    const resyncSub = bus.nc.subscribe(subjects.resyncRequest("*"), {
      queue: "ingest",
      callback: (err, msg) => {
        if (err) return;
        const symbol = msg.subject.split(".").pop() ?? "";
        if (!symbols.has(symbol)) {
          reply(msg, { ok: false, error: `${symbol} is not collected by this ingest` });
          return;
        }
        fetchSnapshot(symbol, "resync").then(
          (lastUpdateId) => reply(msg, { ok: true, lastUpdateId }),
          (e: unknown) => reply(msg, { ok: false, error: e instanceof Error ? e.message : String(e) }),
        );
      },
    });
    resources.defer(() => resyncSub.unsubscribe());

    // Symbols added or removed at run time: every replica applies the change (no queue group).
    const changeSymbols = async (add: string[], remove: string[]) => {
      const adding = add.filter((s) => !symbols.has(s));
      const removing = remove.filter((s) => symbols.has(s));
      for (const s of adding) symbols.add(s);
      for (const s of removing) symbols.delete(s);
      await seedTradeIds(adding);
      await Promise.all(
        sets.flatMap((set) => [
          ...(adding.length > 0 ? [set.addSymbols(adding)] : []),
          ...(removing.length > 0 ? [set.removeSymbols(removing)] : []),
        ]),
      );
      for (const s of removing) {
        for (const bySymbol of lanes.values()) bySymbol.delete(s);
        backfill.forget(s);
        dedupe.forgetSymbol(s);
        coverage.delete(s);
      }
      logger.info({ added: adding, removed: removing, symbols: [...symbols] }, "symbol set changed");
    };
    const controlSub = bus.nc.subscribe(subjects.ingestSymbols, {
      callback: (err, msg) => {
        if (err) return;
        let parsed: ReturnType<typeof parseSymbolChange>;
        try {
          parsed = parseSymbolChange(msg.data);
        } catch (e) {
          // Never let a bad request throw inside the NATS client's reader.
          parsed = e instanceof Error ? e.message : String(e);
        }
        if (typeof parsed === "string") {
          reply(msg, { ok: false, error: parsed });
          return;
        }
        changeSymbols(parsed.add, parsed.remove).then(
          () => reply(msg, { ok: true, symbols: [...symbols] }),
          (e: unknown) => reply(msg, { ok: false, error: e instanceof Error ? e.message : String(e) }),
        );
      },
    });
    resources.defer(() => controlSub.unsubscribe());

    const ops = await startOpsServer({
      port: config.METRICS_PORT,
      registry,
      logger,
      readiness: () => {
        if (!bus.isConnected()) return { ready: false, reason: "NATS is not connected" };
        if (connectionsUp() === 0) return { ready: false, reason: "no Binance connection is up" };
        return { ready: true };
      },
    });
    resources.push(ops);
    logger.info(
      {
        symbols: [...symbols],
        ws: config.BINANCE_WS_URL,
        rest: config.BINANCE_REST_URL,
        redundancy: config.WS_REDUNDANCY,
        ops: ops.url,
      },
      "ingest started",
    );

    return {
      opsUrl: ops.url,
      connectionsUp,
      symbols: () => [...symbols],
      backfillSettled: (timeoutMs) => backfill.settled(timeoutMs),
      close: () => resources.close(),
    };
  } catch (err) {
    await resources.close();
    throw err;
  }
}

/**
 * Runs a REST call again after a 429 that outlasted the client's retries or a 418: the client's
 * queue is paused until `Retry-After`, so the next attempt waits for the ban to end instead of
 * failing the caller (a resync stays answered, only later).
 */
async function withRateLimitRetry<T>(call: () => Promise<T>, attempts = 3): Promise<T> {
  for (let i = 1; ; i++) {
    try {
      return await call();
    } catch (err) {
      const code = err instanceof BinanceRestError ? err.code : undefined;
      if (i >= attempts || (code !== "REST_BANNED" && code !== "REST_RATE_LIMITED")) throw err;
    }
  }
}

/**
 * The inner `data` of a frame as bytes. Binance's market data is ASCII, so the string's offsets are
 * byte offsets and the payload is copied straight from the received buffer (no re-encoding). A copy,
 * not a view: a view would pin the whole socket read (often 64 KB) while the frame waits, so the
 * outage buffer's byte bound would understate memory many times over.
 */
function payloadBytes(bytes: Buffer, text: string, data: string): Uint8Array {
  if (bytes.length !== text.length) return encoder.encode(data);
  // A combined frame ends with the data object and one closing brace.
  const end = data.length === text.length ? text.length : text.length - 1;
  return Buffer.from(bytes.subarray(end - data.length, end));
}

/** Symbols whose strings are kept per kind (the dedupe filter keeps as many keys). */
const MAX_LANES_PER_KIND = 8192;

/** What every frame of one kind and symbol shares. */
interface Lane {
  /** The symbol, one string for all its frames. */
  readonly symbol: string;
  /** Its `MD_RAW` subject. */
  readonly subject: string;
  /** Its message id without the frame's id. */
  readonly msgIdPrefix: string;
}

function tradeMsgId(kind: TradeKind, symbol: string, id: number | string): string {
  return kind === "trade" ? msgIds.trade(symbol, id) : msgIds.aggTrade(symbol, id);
}

/** `{"add":[...],"remove":[...]}` → normalized symbols, or what is wrong with the request. */
function parseSymbolChange(data: Uint8Array): { add: string[]; remove: string[] } | string {
  let o: unknown;
  try {
    o = JSON.parse(new TextDecoder().decode(data));
  } catch {
    return 'expected JSON like {"add":["SOLUSDT"],"remove":["XRPUSDT"]}';
  }
  const r = (o ?? {}) as { add?: unknown; remove?: unknown };
  const list = (v: unknown, field: string): string[] | string => {
    if (v === undefined) return [];
    if (!Array.isArray(v) || !v.every((s) => typeof s === "string"))
      return `"${field}" must be an array of symbol strings`;
    const out: string[] = [];
    for (const raw of v) {
      const s = raw.trim().toUpperCase();
      if (!isSymbol(s)) return `"${raw}" is not a valid symbol (expected e.g. BTCUSDT)`;
      out.push(normalizeSymbol(s));
    }
    return out;
  };
  const add = list(r.add, "add");
  if (typeof add === "string") return add;
  const remove = list(r.remove, "remove");
  if (typeof remove === "string") return remove;
  if (add.length === 0 && remove.length === 0) return 'nothing to do: give "add" and/or "remove"';
  return { add, remove };
}

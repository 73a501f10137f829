import {
  connectBus,
  openKv,
  provisionTopology,
  publish,
  startConsumer,
  type Bus,
  type JsMsg,
  type KV,
} from "@l2flow/bus";
import {
  BookSync,
  FrameError,
  parseAggTrade,
  parseDepthSnapshot,
  parseDepthUpdate,
  parseTrade,
  type SyncResult,
} from "@l2flow/binance";
import {
  BookSnapshot,
  bookKey,
  BUCKETS,
  EXCHANGE,
  Gap,
  GapReason,
  HEADERS,
  msgIds,
  Side,
  STREAMS,
  subjects,
  Trade,
  TradeKind,
  Window,
} from "@l2flow/contracts";
import {
  Counter,
  createMetricsRegistry,
  Gauge,
  L2flowError,
  LogLimiter,
  natsOptions,
  ResourceStack,
  startOpsServer,
  type Logger,
  type Registry,
} from "@l2flow/runtime";
import { WindowAggregator } from "@l2flow/windows";
import type { NormalizerConfig } from "./config.js";

/** A running normalizer. */
export interface NormalizerService {
  /** Base URL of `/metrics`, `/healthz`, `/readyz`. */
  readonly opsUrl: string;
  /** Stops consuming (the message in hand finishes and is acked), then closes NATS and the ops server. Idempotent. */
  close(): Promise<void>;
}

/** Dependencies the composition root passes in. */
export interface NormalizerDeps {
  readonly logger: Logger;
  /** Default: a new registry with Node's default metrics. */
  readonly registry?: Registry;
}

interface Out {
  readonly subject: string;
  readonly data: Uint8Array;
  readonly msgId: string;
}

interface SymbolState {
  readonly sync: BookSync;
  readonly windows: WindowAggregator[];
  diffsSinceBook: number;
  lastTradeId: number;
  lastAggId: number;
  lastEventWallMs: number;
  resyncInFlight: boolean;
  lastKvPutMs: number;
}

class PoisonRaw extends L2flowError {
  constructor(code: string, message: string, cause?: unknown) {
    super(code, message, { retryable: false, cause });
  }
}

/**
 * Starts the normalizer: a pure function of `MD_RAW`. Per symbol it rebuilds the exact book by
 * Binance's rules and publishes a top-N `BookSnapshot` after every applied diff, normalized trades,
 * gap events (asking ingest for a resync of that symbol alone) and closed windows. A raw message is
 * acked only after everything it produced is acked by JetStream.
 */
export async function startNormalizer(
  config: NormalizerConfig,
  deps: NormalizerDeps,
): Promise<NormalizerService> {
  const { logger } = deps;
  const registry = deps.registry ?? createMetricsRegistry({ service: "normalizer" });
  const registers = [registry];
  const m = {
    raw: new Counter({
      name: "l2flow_normalizer_raw_messages_total",
      help: "Raw messages handled, by kind",
      labelNames: ["kind"],
      registers,
    }),
    bad: new Counter({
      name: "l2flow_normalizer_bad_messages_total",
      help: "Raw messages that could not be used (terminated), by code",
      labelNames: ["code"],
      registers,
    }),
    bookUpdates: new Counter({
      name: "l2flow_normalizer_book_updates_total",
      help: "Diffs applied to books",
      registers,
    }),
    books: new Counter({
      name: "l2flow_normalizer_book_snapshots_total",
      help: "Book snapshots published",
      registers,
    }),
    gaps: new Counter({
      name: "l2flow_normalizer_gaps_total",
      help: "Gaps detected, by reason",
      labelNames: ["reason"],
      registers,
    }),
    resyncs: new Counter({
      name: "l2flow_normalizer_resync_requests_total",
      help: "Snapshots asked of ingest, by outcome",
      labelNames: ["outcome"],
      registers,
    }),
    crossed: new Counter({
      name: "l2flow_normalizer_crossed_books_total",
      help: "Crossed books detected",
      registers,
    }),
    windows: new Counter({
      name: "l2flow_normalizer_windows_total",
      help: "Windows closed, by interval and reason",
      labelNames: ["interval", "reason"],
      registers,
    }),
    late: new Counter({
      name: "l2flow_normalizer_late_events_total",
      help: "Events that arrived after their window closed",
      registers,
    }),
    windowLag: new Gauge({
      name: "l2flow_normalizer_window_lag_seconds",
      help: "Wall clock minus the end of the last closed window",
      registers,
    }),
    symbols: new Gauge({ name: "l2flow_normalizer_symbols", help: "Symbols with state", registers }),
  };
  const limiter = new LogLimiter();
  const resources = new ResourceStack();
  const onlySymbols = new Set(config.NORMALIZER_SYMBOLS);

  try {
    const bus: Bus = await connectBus({ ...natsOptions(config, "normalizer"), logger });
    resources.defer(() => bus.drain());
    await provisionTopology(bus);
    const kv: KV = await openKv(bus, BUCKETS.book);

    const states = new Map<string, SymbolState>();
    const stateOf = (symbol: string): SymbolState => {
      let s = states.get(symbol);
      if (s === undefined) {
        s = {
          sync: new BookSync({ maxBufferedDiffs: config.MAX_BUFFERED_DIFFS }),
          windows: config.WINDOW_INTERVALS.map(
            (interval) =>
              new WindowAggregator({
                symbol,
                interval,
                exchange: EXCHANGE,
                allowedLatenessMs: config.WINDOW_LATENESS_MS,
                bookLevels: config.BOOK_DEPTH,
              }),
          ),
          diffsSinceBook: 0,
          lastTradeId: 0,
          lastAggId: 0,
          lastEventWallMs: Date.now(),
          resyncInFlight: false,
          lastKvPutMs: 0,
        };
        states.set(symbol, s);
        m.symbols.set(states.size);
      }
      return s;
    };

    const windowOuts = (out: Out[], closed: readonly Window[]) => {
      for (const w of closed) {
        out.push({
          subject: subjects.window(w.interval, w.symbol),
          data: Window.encode(w).finish(),
          msgId: msgIds.window(w.interval, w.symbol, w.startTimeMs),
        });
        m.windows.inc({ interval: w.interval, reason: String(w.closeReason) });
        if (w.lateEventCount > 0) m.late.inc(w.lateEventCount);
        m.windowLag.set(Math.max(0, (Date.now() - w.endTimeMs) / 1000));
      }
    };

    const requestResync = (symbol: string, s: SymbolState) => {
      if (s.resyncInFlight) return;
      s.resyncInFlight = true;
      bus.nc
        .request(subjects.resyncRequest(symbol), new Uint8Array(0), {
          timeout: config.RESYNC_REQUEST_TIMEOUT_MS,
        })
        .then(
          (reply) => {
            const r = reply.json<{ ok: boolean; error?: string }>();
            m.resyncs.inc({ outcome: r.ok ? "ok" : "refused" });
            if (!r.ok) logger.warn({ symbol, error: r.error }, "ingest could not provide a snapshot");
          },
          (err: unknown) => {
            m.resyncs.inc({ outcome: "no-answer" });
            if (limiter.take(`resync:${symbol}`) >= 0)
              logger.warn(
                { symbol, err },
                "no ingest answered the resync request; waiting for a snapshot in MD_RAW",
              );
          },
        )
        .finally(() => {
          s.resyncInFlight = false;
        });
    };

    const bookOut = (out: Out[], symbol: string, s: SymbolState, receiveTimeUs: number) => {
      const book = s.sync.book;
      const snap: BookSnapshot = {
        exchange: EXCHANGE,
        symbol,
        lastUpdateId: book.lastUpdateId,
        epoch: s.sync.epoch,
        eventTimeUs: s.sync.lastEventTime * 1000,
        receiveTimeUs,
        bids: book.topBids(config.BOOK_DEPTH),
        asks: book.topAsks(config.BOOK_DEPTH),
      };
      const data = BookSnapshot.encode(snap).finish();
      out.push({
        subject: subjects.book(symbol),
        data,
        msgId: msgIds.book(symbol, s.sync.epoch, book.lastUpdateId),
      });
      m.books.inc();
      s.diffsSinceBook = 0;
      const now = Date.now();
      if (now - s.lastKvPutMs >= 250) {
        s.lastKvPutMs = now;
        kv.put(bookKey(symbol), data).catch((err: unknown) => {
          if (limiter.take("kv") >= 0) logger.warn({ err }, "could not update KV md_book");
        });
      }
    };

    const gapOut = (out: Out[], symbol: string, g: Gap) => {
      out.push({
        subject: subjects.gap(symbol),
        data: Gap.encode(g).finish(),
        msgId: msgIds.gap(
          symbol,
          g.epoch,
          GapReason[g.reason] ?? String(g.reason),
          g.nextFirstUpdateId || g.endTimeUs,
        ),
      });
      m.gaps.inc({ reason: GapReason[g.reason] ?? String(g.reason) });
    };

    const onSync = (
      out: Out[],
      symbol: string,
      s: SymbolState,
      r: SyncResult,
      eventTimeMs: number,
      receiveTimeUs: number,
    ) => {
      switch (r.type) {
        case "applied":
          m.bookUpdates.inc();
          if (r.bridged || ++s.diffsSinceBook >= config.BOOK_EVERY_N_DIFFS)
            bookOut(out, symbol, s, receiveTimeUs);
          for (const w of s.windows)
            windowOuts(out, w.onBook(s.sync.lastEventTime || eventTimeMs, s.sync.book, s.sync.epoch));
          return;
        case "gap": {
          if (r.kind === "crossed") m.crossed.inc();
          const reason =
            r.kind === "crossed"
              ? GapReason.GAP_REASON_CROSSED_BOOK
              : r.kind === "overflow"
                ? GapReason.GAP_REASON_BUFFER_OVERFLOW
                : GapReason.GAP_REASON_SEQUENCE_BREAK;
          gapOut(out, symbol, {
            exchange: EXCHANGE,
            symbol,
            reason,
            epoch: r.epoch,
            lastUpdateId: r.lastUpdateId,
            nextFirstUpdateId: r.nextFirstUpdateId,
            firstMissingTradeId: 0,
            lastMissingTradeId: 0,
            startTimeUs: eventTimeMs * 1000,
            endTimeUs: r.eventTime * 1000,
            detail: `${r.kind}: last applied u=${r.lastUpdateId}, next U=${r.nextFirstUpdateId}; resynchronising ${symbol} from a new snapshot`,
          });
          for (const w of s.windows) w.markIncomplete(r.eventTime);
          logger.warn(
            { symbol, kind: r.kind, lastUpdateId: r.lastUpdateId, nextFirstUpdateId: r.nextFirstUpdateId },
            "book lost sync; resynchronising this symbol only",
          );
          requestResync(symbol, s);
          return;
        }
        case "snapshot-stale":
          requestResync(symbol, s);
          return;
        case "buffered":
        case "duplicate":
        case "snapshot-pending":
        case "snapshot-ignored":
          return;
      }
    };

    /** Publishes a normalized trade (from @trade or @aggTrade) and feeds it to the windows. */
    const tradeOut = (
      out: Out[],
      symbol: string,
      s: SymbolState,
      kind: TradeKind,
      id: number,
      t: { price: string; quantity: string; buyerIsMaker: boolean; tradeTime: number; eventTime: number },
      receiveTimeUs: number,
      firstTradeId: number,
      lastTradeId: number,
      intoWindows: boolean,
    ) => {
      const trade: Trade = {
        exchange: EXCHANGE,
        symbol,
        kind,
        tradeId: id,
        price: t.price,
        quantity: t.quantity,
        takerSide: t.buyerIsMaker ? Side.SIDE_SELL : Side.SIDE_BUY,
        tradeTimeUs: t.tradeTime * 1000,
        eventTimeUs: t.eventTime * 1000,
        receiveTimeUs,
        firstTradeId,
        lastTradeId,
      };
      const tag = kind === TradeKind.TRADE_KIND_TRADE ? "trade" : "aggtrade";
      out.push({
        subject: subjects.trade(symbol),
        data: Trade.encode(trade).finish(),
        msgId: msgIds.normTrade(symbol, tag, id),
      });
      if (!intoWindows) return;
      const w = { timeMs: t.tradeTime, price: +t.price, quantity: +t.quantity, buyerIsMaker: t.buyerIsMaker };
      for (const agg of s.windows) windowOuts(out, agg.onTrade(w));
    };

    const handle = (msg: JsMsg): Out[] => {
      const parts = msg.subject.split(".");
      const kind = parts[3] ?? "";
      const symbol = parts[4] ?? "";
      const out: Out[] = [];
      if (onlySymbols.size > 0 && !onlySymbols.has(symbol)) return out;
      m.raw.inc({ kind });
      const s = stateOf(symbol);
      s.lastEventWallMs = Date.now();
      const recvNs = msg.headers?.get(HEADERS.receiveNs);
      const receiveTimeUs =
        recvNs !== undefined && /^[0-9]+$/.test(recvNs) ? Number(BigInt(recvNs) / 1000n) : 0;
      switch (kind) {
        case "depth": {
          const d = parseDepthUpdate(msg.data);
          for (const w of s.windows) w.beforeBookUpdate(d.eventTime, s.sync.book, s.sync.epoch);
          onSync(out, symbol, s, s.sync.onDiff(d), d.eventTime, receiveTimeUs);
          return out;
        }
        case "snapshot": {
          const snap = parseDepthSnapshot(msg.data);
          onSync(out, symbol, s, s.sync.onSnapshot(snap), s.sync.lastEventTime, receiveTimeUs);
          return out;
        }
        case "trade": {
          const t = parseTrade(msg.data);
          if (t.tradeId <= s.lastTradeId) return out;
          s.lastTradeId = t.tradeId;
          tradeOut(out, symbol, s, TradeKind.TRADE_KIND_TRADE, t.tradeId, t, receiveTimeUs, 0, 0, true);
          return out;
        }
        case "aggtrade": {
          const a = parseAggTrade(msg.data);
          if (a.aggTradeId <= s.lastAggId) return out;
          s.lastAggId = a.aggTradeId;
          // A symbol collected with both streams would count its trades twice; windows use @trade when present.
          tradeOut(
            out,
            symbol,
            s,
            TradeKind.TRADE_KIND_AGG_TRADE,
            a.aggTradeId,
            a,
            receiveTimeUs,
            a.firstTradeId,
            a.lastTradeId,
            s.lastTradeId === 0,
          );
          return out;
        }
        case "status": {
          let st: { type?: string; reason?: string; timeUs?: number };
          try {
            st = msg.json();
          } catch (err) {
            throw new PoisonRaw("STATUS_NOT_JSON", "status event is not JSON", err);
          }
          if (st.type === "disconnected" || st.type === "gap") {
            const at = s.sync.lastEventTime;
            for (const w of s.windows) w.markIncomplete(at);
            gapOut(out, symbol, {
              exchange: EXCHANGE,
              symbol,
              reason:
                st.type === "gap" ? GapReason.GAP_REASON_BUFFER_OVERFLOW : GapReason.GAP_REASON_DISCONNECT,
              epoch: s.sync.epoch,
              lastUpdateId: s.sync.book.lastUpdateId,
              nextFirstUpdateId: 0,
              firstMissingTradeId: 0,
              lastMissingTradeId: 0,
              startTimeUs: at * 1000,
              endTimeUs: st.timeUs ?? 0,
              detail: `ingest reported ${st.type}${st.reason !== undefined ? ` (${st.reason})` : ""}`,
            });
          }
          return out;
        }
        default:
          throw new PoisonRaw("UNKNOWN_RAW_KIND", `unknown raw subject ${msg.subject}`);
      }
    };

    const consumer = await startConsumer(bus, {
      stream: STREAMS.raw,
      durable: config.NORMALIZER_DURABLE,
      filterSubject: onlySymbols.size === 1 ? subjects.rawAll([...onlySymbols][0]!) : `md.raw.${EXCHANGE}.>`,
      concurrency: 1,
      maxAckPending: 2_000,
      logger,
      handler: async (msg) => {
        let out: Out[];
        try {
          out = handle(msg);
        } catch (err) {
          const code = err instanceof FrameError || err instanceof L2flowError ? err.code : "UNEXPECTED";
          m.bad.inc({ code });
          if (limiter.take(code) >= 0)
            logger.warn(
              { err, subject: msg.subject, seq: msg.seq },
              "skipping a raw message that cannot be used",
            );
          throw err instanceof FrameError || err instanceof L2flowError
            ? err
            : new PoisonRaw(code, "unexpected failure", err);
        }
        await Promise.all(out.map((o) => publish(bus, o.subject, o.data, { msgId: o.msgId })));
      },
    });
    resources.defer(() => consumer.stop());

    // Idle close: a symbol silent for the idle timeout closes its open windows.
    const idleTimer = setInterval(() => {
      const now = Date.now();
      for (const [symbol, s] of states) {
        if (now - s.lastEventWallMs < config.WINDOW_IDLE_TIMEOUT_MS) continue;
        const out: Out[] = [];
        for (const w of s.windows) windowOuts(out, w.closeAll());
        s.lastEventWallMs = now;
        if (out.length === 0) continue;
        Promise.all(out.map((o) => publish(bus, o.subject, o.data, { msgId: o.msgId }))).catch(
          (err: unknown) => {
            logger.warn({ err, symbol }, "could not publish idle-closed windows");
          },
        );
      }
    }, 1_000);
    resources.defer(() => clearInterval(idleTimer));

    const ops = await startOpsServer({
      port: config.METRICS_PORT,
      registry,
      logger,
      readiness: () =>
        bus.isConnected() ? { ready: true } : { ready: false, reason: "NATS is not connected" },
    });
    resources.push(ops);
    logger.info(
      { intervals: config.WINDOW_INTERVALS, symbols: config.NORMALIZER_SYMBOLS, ops: ops.url },
      "normalizer started",
    );
    return { opsUrl: ops.url, close: () => resources.close() };
  } catch (err) {
    await resources.close();
    throw err;
  }
}

import { DeliverPolicy, type Consumer, type ConsumerMessages, type MsgRequest } from "@nats-io/jetstream";
import {
  AckPipeline,
  connectBus,
  listConsumers,
  openKv,
  provisionTopology,
  PublishQueue,
  PULL_EXPIRES_MS,
  type Bus,
  type BusError,
  type QueuedMessage,
} from "@l2flow/bus";
import {
  BUCKETS,
  bookKey,
  kvSubject,
  isSymbol,
  rawSubjectParts,
  STREAM_SUBJECTS,
  STREAMS,
  subjects,
} from "@l2flow/contracts";
import {
  createMetricsRegistry,
  LogLimiter,
  natsOptions,
  ResourceStack,
  startOpsServer,
  type Logger,
  type Registry,
} from "@l2flow/runtime";
import type { NormalizerConfig } from "./config.js";
import { normalizerMetrics, processorEvents } from "./metrics.js";
import { ownsSymbol } from "./partition.js";
import { LocalHost, type ProcessorHost } from "./port.js";
import type { ProcessorOptions } from "./symbol.js";
import { startProcessingThread } from "./thread-host.js";
import { SymbolWorker, type WorkerContext } from "./worker.js";

/** Subjects of MD_WINDOW start so (`md.window.binance.`). */
const WINDOW_PREFIX = STREAM_SUBJECTS[STREAMS.window][0].replace(/>$/, "");

/**
 * Applied diffs each book keeps while refreshing is on, so that a refresh snapshot older than the
 * book (taken before the diffs ahead of it in MD_RAW were applied) still corrects it: 10 s of 100 ms
 * diffs. A snapshot sits in MD_RAW next to the diffs ingest stored while fetching it, whatever the
 * normalizer's own lag.
 */
const REFRESH_HISTORY_DIFFS = 100;

/** Every raw subject of Binance: the normalizer reads them with one consumer. */
export const RAW_FILTER = STREAM_SUBJECTS[STREAMS.raw][0];
/**
 * Messages the consumer pulls at a time. Each waiting message keeps the socket chunk it was read from
 * alive, so this bounds what a normalizer far behind holds (one consumer for every symbol).
 */
export const CONSUME_WINDOW = 2_048;
/**
 * Nothing delivered for this long and nothing waiting in the client, a normalizer that is not caught
 * up asks nats-server whether anything is left to read (each message's own count of what follows it
 * can be stale, see `checkCaughtUp`).
 */
const QUIET_CHECK_MS = 1_000;
/** Outputs waiting on JetStream beyond which reading MD_RAW pauses. */
const MAX_OUTPUTS_IN_FLIGHT = 50_000;
/** Raw messages handed to the processing thread and not yet processed beyond which reading pauses. */
const MAX_RAW_IN_PROCESSING = 8_192;
/**
 * How long nats-server keeps this normalizer's consumer of MD_RAW once nothing pulls from it: what a
 * SIGKILLed normalizer leaves behind goes this much later. nats.js gives an ordered consumer 5 min and
 * its replacements (after a reconnect) 5 min whatever it was asked for, so each replacement is
 * updated to this too. Reading pulls every few seconds (PULL_EXPIRES_MS); one that stops for longer
 * (its buffer full while the outputs wait) loses the consumer and nats.js makes another from the
 * position reached.
 */
export const CONSUMER_INACTIVE_MS = 30_000;

/** A running normalizer. */
export interface NormalizerService {
  /** Base URL of `/metrics`, `/healthz`, `/readyz`. */
  readonly opsUrl: string;
  /** Symbols this instance normalizes now. */
  symbols(): readonly string[];
  /** Stops consuming, stores the outputs in hand, writes final checkpoints, closes NATS. Idempotent. */
  close(): Promise<void>;
}

/** Dependencies the composition root passes in. */
export interface NormalizerDeps {
  readonly logger: Logger;
  /** Default: a new registry with Node's default metrics. */
  readonly registry?: Registry;
  /**
   * Told when the normalizer cannot go on (its processing thread died): the composition root stops
   * the process, and a restart continues from the checkpoints. Until then `/healthz` fails.
   */
  readonly onFatal?: (err: Error) => void;
  /**
   * Starts the processing thread (NORMALIZER_THREAD=on). Default: `startProcessingThread`; a test
   * wraps it to reach the running thread.
   */
  readonly startThread?: typeof startProcessingThread;
}

/**
 * Starts the normalizer: a pure function of `MD_RAW`. One ordered consumer reads every raw subject in
 * stream order, from the oldest position any owned symbol's checkpoint needs; each symbol it owns (its
 * partition, by a stable hash, or an explicit list) gets a worker: exact books by Binance's rules,
 * trades, gaps and windows published through acked queues, and checkpoints in KV `md_state`.
 *
 * One consumer, not one per symbol: nats-server 2.9 finds a filtered consumer's next message by
 * scanning the stream, so 400 per-symbol consumers cost it 400 scans of MD_RAW (measured: 10× the
 * server CPU and 7× slower delivery than one consumer over 410 symbols).
 */
export async function startNormalizer(
  config: NormalizerConfig,
  deps: NormalizerDeps,
): Promise<NormalizerService> {
  const { logger } = deps;
  const registry = deps.registry ?? createMetricsRegistry({ service: "normalizer" });
  const m = normalizerMetrics(registry);
  const limiter = new LogLimiter();
  const resources = new ResourceStack();
  const explicit = new Set(config.NORMALIZER_SYMBOLS);
  const owns = (symbol: string) =>
    explicit.size > 0
      ? explicit.has(symbol)
      : ownsSymbol(symbol, config.NORMALIZER_PARTITION, config.NORMALIZER_PARTITIONS);

  try {
    const options: ProcessorOptions = {
      bookDepth: config.BOOK_DEPTH,
      bookEveryNDiffs: config.BOOK_EVERY_N_DIFFS,
      intervals: config.WINDOW_INTERVALS,
      latenessMs: config.WINDOW_LATENESS_MS,
      maxBufferedDiffs: config.MAX_BUFFERED_DIFFS,
      maxLevelsPerSide: config.BOOK_MAX_LEVELS,
      refreshHistory: config.BOOK_REFRESH_INTERVAL_MS > 0 ? REFRESH_HISTORY_DIFFS : 0,
      reorderDiffs: config.DIFF_REORDER_WINDOW,
    };
    // The thread loads its code while NATS is connected to. It is closed last, after the workers
    // stopped (ResourceStack closes in reverse order): their last checkpoints come from it.
    const hostStarting: Promise<ProcessorHost> =
      config.NORMALIZER_THREAD === "on"
        ? (deps.startThread ?? startProcessingThread)(options, processorEvents(m), {
            onFailure: (err) => {
              logger.fatal(
                { err },
                "the processing thread stopped; nothing more is normalized (a restart continues from the checkpoints)",
              );
              deps.onFatal?.(err);
            },
            onHeap: (h) => {
              m.threadHeap.set({ what: "used" }, h.used);
              m.threadHeap.set({ what: "committed" }, h.committed);
              m.threadHeap.set({ what: "external" }, h.external);
            },
          })
        : Promise.resolve(new LocalHost(options, processorEvents(m)));
    const hostOrNone = hostStarting.catch(() => undefined); // (its failure is thrown where awaited)
    resources.defer(async () => (await hostOrNone)?.close());
    const bus: Bus = await connectBus({ ...natsOptions(config, "normalizer"), logger });
    resources.defer(() => bus.drain());
    await provisionTopology(bus, { replicas: config.STREAM_REPLICAS });
    // md_book is opened only so it exists; it is written below as plain acked publishes.
    const [stateKv] = await Promise.all([openKv(bus, BUCKETS.state), openKv(bus, BUCKETS.book)]);
    // A KV put is a JetStream publish to `$KV.<bucket>.<key>`; through nats.js's KV client each is a
    // request of its own (an inbox, a timer and an Error for the stack), which cost a normalizer of
    // 400 symbols (4 books a second each) about 5% of its CPU. A checkpoint's JSON (hundreds of KiB
    // for a deep book) also went through a separate encoded copy and nats.js's concatenation.
    const kvPipe = new AckPipeline(bus, { maxInFlight: 4_096 });
    resources.defer(async () => {
      await kvPipe.idle(2_000);
      kvPipe.close();
    });
    const putState = async (key: string, json: string): Promise<void> => {
      await kvPipe.publish(kvSubject(BUCKETS.state, key), json);
    };
    const putBook = (symbol: string, bytes: Uint8Array, failed: () => void): boolean => {
      if (!kvPipe.ready) return false;
      kvPipe.send(kvSubject(BUCKETS.book, bookKey(symbol)), bytes, undefined, (err) => {
        if (err === undefined) return;
        failed();
        const suppressed = limiter.take("kv");
        if (suppressed >= 0) logger.warn({ suppressed, err, symbol }, "could not update KV md_book");
      });
      return true;
    };

    const queueOptions = {
      maxInFlight: 8_192,
      maxBytes: Number.POSITIVE_INFINITY, // bounded by the workers' backpressure instead of dropping
      maxRefusals: Number.POSITIVE_INFINITY,
      onPublishError: (err: BusError) => {
        m.publishErrors.inc({ code: err.code });
        const suppressed = limiter.take("publish");
        if (suppressed >= 0) logger.warn({ suppressed, err }, "publishing outputs failed; sending again");
      },
    };
    // Trades, books and gaps (nearly every output) go to MD_NORM, windows to MD_WINDOW: a queue each,
    // since a fence answers only for its own stream. Each batch is confirmed by one fence while this
    // normalizer is the stream's only publisher (with partitions the fences mostly prove nothing and
    // it falls back to an ack each, see AckPipeline).
    const fencedQueue = (stream: string) =>
      new PublishQueue(bus, {
        ...queueOptions,
        fences: true,
        onFenced: (outcome, n) => m.outputsFenced.inc({ stream, outcome }, n),
      });
    const normQueue = fencedQueue(STREAMS.norm);
    const windowQueue = fencedQueue(STREAMS.window);
    const queue = {
      push: (item: QueuedMessage) =>
        (item.subject.startsWith(WINDOW_PREFIX) ? windowQueue : normQueue).push(item),
      get pending() {
        return normQueue.pending + windowQueue.pending;
      },
    };
    resources.defer(async () => {
      await Promise.all([normQueue.close(10_000), windowQueue.close(10_000)]);
    });

    const host = await hostStarting;

    const context: WorkerContext = {
      position: { seq: 0, caughtUp: false, pending: 0 },
      bus,
      queue,
      stateKv,
      putState,
      putBook,
      host,
      refreshIntervalMs: config.BOOK_REFRESH_INTERVAL_MS,
      name: config.NORMALIZER_NAME,
      checkpointIntervalMs: config.CHECKPOINT_INTERVAL_MS,
      idleTimeoutMs: config.WINDOW_IDLE_TIMEOUT_MS,
      resyncTimeoutMs: config.RESYNC_REQUEST_TIMEOUT_MS,
      maxRefillMessages: config.MAX_REFILL_MESSAGES,
      logger,
      limiter,
      m,
    };
    const workers = new Map<string, SymbolWorker>();
    /** Symbols seen on MD_RAW that another partition owns. */
    const others = new Set<string>();
    let closing = false;

    const addWorker = async (symbol: string): Promise<SymbolWorker> => {
      const w = new SymbolWorker(symbol, context);
      workers.set(symbol, w);
      m.symbols.set(workers.size);
      const seq = await w.load();
      if (seq === 0) logger.info({ symbol }, "normalizing a new symbol");
      return w;
    };

    // The symbols already on MD_RAW, with their checkpoints, decide where reading starts.
    const info = await bus.jsm.streams.info(STREAMS.raw, { subjects_filter: RAW_FILTER });
    const found = new Set<string>(explicit);
    for (const subject of Object.keys(info.state.subjects ?? {})) {
      const symbol = rawSubjectParts(subject)?.symbol;
      if (symbol !== undefined && isSymbol(symbol) && owns(symbol)) found.add(symbol);
    }
    /** Where reading must start for a symbol: as its checkpoint needs, or at its first message (0: unknown). */
    const startFor = async (symbol: string): Promise<number> => {
      const from = (await addWorker(symbol)).readFrom;
      if (from > 0) return from;
      try {
        // nats-server answers `next_by_subj` (with wildcards) since 2.9; nats.js types it for direct get only.
        const first = await bus.jsm.streams.getMessage(STREAMS.raw, {
          next_by_subj: subjects.rawAll(symbol),
          seq: 1,
        } as unknown as MsgRequest);
        return first?.seq ?? 0;
      } catch {
        return 0;
      }
    };
    const starts = await Promise.all([...found].map(startFor));
    const fromSeq = starts.length === 0 || starts.includes(0) ? 0 : Math.min(...starts);
    context.position.seq = fromSeq === 0 ? 0 : fromSeq - 1;

    /** The worker of a symbol not seen before on MD_RAW, or undefined when another partition owns it. */
    const newSymbol = async (symbol: string): Promise<SymbolWorker | undefined> => {
      if (isSymbol(symbol) && owns(symbol)) return addWorker(symbol);
      others.add(symbol);
      return undefined;
    };

    let current: { consumer: Consumer; messages: ConsumerMessages } | undefined;
    /**
     * When the last message read was done with (+Infinity while one is: it may wait on backpressure
     * with more delivered behind it). Quiet since then, nothing delivered is waiting.
     */
    let lastReadAt = Number.NEGATIVE_INFINITY;
    let lastCheckAt = Number.NEGATIVE_INFINITY;
    let checking = false;
    /**
     * Whether anything is left in MD_RAW for this normalizer, asked of nats-server once reading has
     * been quiet for `QUIET_CHECK_MS`. The last message's own count of the messages after it (what
     * `caughtUp` follows while messages come) is as of its delivery: messages it counted may leave
     * MD_RAW before they are delivered (a purge, `max_age` while the normalizer is behind), and
     * nats-server 2.9 has been reported to count wrong (nats-server#5367). Left at that, a normalizer
     * whose input went quiet would never see itself caught up: its symbols' open windows would never
     * close on the idle timeout, nor would it ask for resync or refresh snapshots. Caught up when the
     * stream holds nothing after the position reached, or the consumer has nothing left to deliver.
     */
    const checkCaughtUp = async (): Promise<void> => {
      const reading = current;
      if (checking || reading === undefined) return;
      checking = true;
      lastCheckAt = Date.now();
      const seq = context.position.seq;
      try {
        const [stream, consumer] = await Promise.all([
          bus.jsm.streams.info(STREAMS.raw),
          reading.consumer.info(),
        ]);
        // A message read meanwhile said itself what is left.
        if (context.position.seq !== seq || current !== reading) return;
        const { messages, last_seq } = stream.state;
        const left = messages === 0 || last_seq <= seq ? 0 : consumer.num_pending;
        context.position.pending = left;
        context.position.caughtUp = left === 0;
      } catch {
        // NATS away or the consumer being replaced: asked again on a later tick.
      } finally {
        checking = false;
      }
    };
    /**
     * The server-side consumer delivering now. An ordered consumer that replaces its server-side
     * consumer while NATS is away (a restart) cannot delete the old one, and nats-server keeps it for
     * its inactive threshold (5 min), "pending" growing in every listing. So whenever another consumer
     * starts delivering, every other consumer on MD_RAW named like one this normalizer has read from
     * (`<prefix>_<serial>`) is deleted. Other instances' consumers have other prefixes.
     */
    let consumerName = "";
    const prefixes = new Set<string>();
    const prefixOf = (name: string) => name.replace(/_\d+$/, "");
    const replaced = (name: string) => {
      const first = consumerName === "";
      consumerName = name;
      prefixes.add(prefixOf(name));
      if (!first)
        void bus.jsm.consumers
          .update(STREAMS.raw, name, { inactive_threshold: CONSUMER_INACTIVE_MS * 1_000_000 })
          .catch(() => undefined); // replaced again meanwhile, or NATS away: the 5 min stay
      void (async () => {
        for await (const c of listConsumers(bus, STREAMS.raw)) {
          if (c.name === consumerName || !prefixes.has(prefixOf(c.name))) continue;
          await bus.jsm.consumers.delete(STREAMS.raw, c.name).catch(() => undefined);
          logger.info({ consumer: c.name }, "deleted a consumer of MD_RAW this normalizer no longer reads");
        }
      })().catch(() => undefined); // tried again at the next replacement
    };
    const read = async (from: number): Promise<void> => {
      const consumer = await bus.js.consumers.get(STREAMS.raw, {
        filter_subjects: RAW_FILTER,
        inactive_threshold: CONSUMER_INACTIVE_MS,
        ...(from === 0
          ? { deliver_policy: DeliverPolicy.All }
          : { deliver_policy: DeliverPolicy.StartSequence, opt_start_seq: from }),
      });
      const messages = await consumer.consume({ max_messages: CONSUME_WINDOW, expires: PULL_EXPIRES_MS });
      current = { consumer, messages };
      try {
        if (closing) return;
        // With nothing to read, no message will say the normalizer is caught up: asked at once.
        void checkCaughtUp();
        for await (const msg of messages) {
          lastReadAt = Number.POSITIVE_INFINITY;
          if (msg.info.consumer !== consumerName) replaced(msg.info.consumer);
          const raw = rawSubjectParts(msg.subject);
          if (raw !== undefined) {
            const { kind, symbol } = raw;
            const w = workers.get(symbol) ?? (others.has(symbol) ? undefined : await newSymbol(symbol));
            w?.handle(msg, kind);
          }
          context.position.seq = msg.seq;
          context.position.pending = msg.info.pending;
          context.position.caughtUp = msg.info.pending === 0;
          // Backpressure: stop reading while the processing thread is behind or the outputs wait on
          // JetStream.
          if (host.pending > MAX_RAW_IN_PROCESSING) await host.below(MAX_RAW_IN_PROCESSING / 2);
          while (queue.pending > MAX_OUTPUTS_IN_FLIGHT && !closing)
            await new Promise((r) => setTimeout(r, 5));
          if (closing || host.failure !== undefined) break;
          lastReadAt = Date.now();
        }
      } finally {
        current = undefined;
        await messages.close().catch(() => undefined);
        // An ordered consumer would otherwise stay on the server until its inactivity threshold.
        await consumer.delete().catch(() => undefined);
      }
    };
    /** Reads until closed; a consumer that fails is replaced from the position reached. */
    const reading = (async () => {
      let from = fromSeq;
      while (!closing && host.failure === undefined) {
        try {
          await read(from);
        } catch (err) {
          if (closing) break;
          logger.error(
            { err, seq: context.position.seq },
            "reading MD_RAW failed; reading again from there in 1 s",
          );
          await new Promise((r) => setTimeout(r, 1_000));
        }
        from = context.position.seq + 1;
      }
    })();
    // Workers stop before the queue closes (ResourceStack closes in reverse order).
    resources.defer(async () => {
      closing = true;
      await current?.messages.close().catch(() => undefined);
      await reading;
      // Every message read is processed and its outputs queued before the final checkpoints.
      await host.idle();
      await Promise.all([...workers.values()].map((w) => w.stop(true)));
    });

    const ticker = setInterval(() => {
      const now = Date.now();
      if (
        !context.position.caughtUp &&
        now - lastReadAt >= QUIET_CHECK_MS &&
        now - lastCheckAt >= QUIET_CHECK_MS
      )
        void checkCaughtUp();
      let levels = 0;
      let buffered = 0;
      for (const w of workers.values()) {
        w.tick(now);
        levels += w.bookLevels;
        buffered += w.bufferedDiffs;
      }
      m.bookLevels.set(levels);
      m.bufferedDiffs.set(buffered);
      m.outputsInFlight.set(queue.pending);
      m.rawPending.set(context.position.pending);
      m.caughtUp.set(context.position.caughtUp ? 1 : 0);
    }, 100);
    resources.defer(() => clearInterval(ticker));

    const ops = await startOpsServer({
      port: config.METRICS_PORT,
      registry,
      logger,
      readiness: () =>
        bus.isConnected() ? { ready: true } : { ready: false, reason: "NATS is not connected" },
      liveness: () =>
        host.failure === undefined
          ? { ready: true }
          : { ready: false, reason: `the processing thread stopped: ${host.failure.message}` },
    });
    resources.push(ops);
    logger.info(
      {
        intervals: config.WINDOW_INTERVALS,
        symbols: explicit.size > 0 ? [...explicit] : `${workers.size} on MD_RAW now, more as they appear`,
        fromSeq: fromSeq === 0 ? "start of MD_RAW" : fromSeq,
        partition: `${config.NORMALIZER_PARTITION}/${config.NORMALIZER_PARTITIONS}`,
        ops: ops.url,
      },
      "normalizer started",
    );
    return {
      opsUrl: ops.url,
      symbols: () => [...workers.keys()].sort(),
      close: () => resources.close(),
    };
  } catch (err) {
    await resources.close();
    throw err;
  }
}

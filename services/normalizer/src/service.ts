import { connectBus, openKv, provisionTopology, PublishQueue, type Bus } from "@l2flow/bus";
import { BUCKETS, isSymbol, STREAMS } from "@l2flow/contracts";
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
import { normalizerMetrics } from "./metrics.js";
import { ownsSymbol } from "./partition.js";
import { SymbolWorker, type WorkerContext } from "./worker.js";

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
}

/**
 * Starts the normalizer: a pure function of `MD_RAW`. Each symbol it owns (its partition, by a stable
 * hash, or an explicit list) gets a worker: an ordered consumer on that symbol's raw subjects from its
 * checkpoint, exact books by Binance's rules, trades, gaps and windows published through one acked
 * queue, and checkpoints in KV `md_state`.
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
    const bus: Bus = await connectBus({ ...natsOptions(config, "normalizer"), logger });
    resources.defer(() => bus.drain());
    await provisionTopology(bus);
    const [bookKv, stateKv] = await Promise.all([openKv(bus, BUCKETS.book), openKv(bus, BUCKETS.state)]);

    const queue = new PublishQueue(bus, {
      maxInFlight: 8_192,
      maxBytes: Number.POSITIVE_INFINITY, // bounded by the workers' backpressure instead of dropping
      maxAttempts: Number.POSITIVE_INFINITY,
      onPublishError: (err) => {
        m.publishErrors.inc({ code: err.code });
        if (limiter.take("publish") >= 0) logger.warn({ err }, "publishing outputs failed; sending again");
      },
    });
    resources.defer(() => queue.close(10_000));

    const context: WorkerContext = {
      bus,
      queue,
      stateKv,
      bookKv,
      options: {
        bookDepth: config.BOOK_DEPTH,
        bookEveryNDiffs: config.BOOK_EVERY_N_DIFFS,
        intervals: config.WINDOW_INTERVALS,
        latenessMs: config.WINDOW_LATENESS_MS,
        maxBufferedDiffs: config.MAX_BUFFERED_DIFFS,
      },
      name: config.NORMALIZER_NAME,
      checkpointIntervalMs: config.CHECKPOINT_INTERVAL_MS,
      idleTimeoutMs: config.WINDOW_IDLE_TIMEOUT_MS,
      resyncTimeoutMs: config.RESYNC_REQUEST_TIMEOUT_MS,
      logger,
      limiter,
      m,
    };
    const workers = new Map<string, SymbolWorker>();
    let closing = false;
    /** A discovery in progress (it may be starting workers). */
    let discovering: Promise<void> | undefined;
    // Workers stop before the queue closes (ResourceStack closes in reverse order).
    resources.defer(async () => {
      closing = true;
      await discovering?.catch(() => undefined);
      await Promise.all([...workers.values()].map((w) => w.stop(true)));
    });

    const starting = new Set<string>();
    const discover = async () => {
      const info = await bus.jsm.streams.info(STREAMS.raw, { subjects_filter: "md.raw.binance.>" });
      const found = new Set<string>();
      for (const subject of Object.keys(info.state.subjects ?? {})) {
        const symbol = subject.split(".")[4];
        if (symbol !== undefined && isSymbol(symbol) && owns(symbol)) found.add(symbol);
      }
      for (const s of explicit) found.add(s);
      for (const symbol of found) {
        if (closing) return;
        const old = workers.get(symbol);
        if (old?.failed === true) {
          await old.stop(false);
          workers.delete(symbol);
        }
        if (workers.has(symbol) || starting.has(symbol)) continue;
        starting.add(symbol);
        const w = new SymbolWorker(symbol, context);
        try {
          await w.start();
          workers.set(symbol, w);
          m.symbols.set(workers.size);
        } catch (err) {
          logger.warn(
            { err, symbol },
            "could not start normalizing a symbol; trying again at the next discovery",
          );
        } finally {
          starting.delete(symbol);
        }
      }
    };
    await discover();
    const discovery = setInterval(() => {
      if (discovering !== undefined) return; // the last one is still starting workers
      discovering = discover()
        .catch((err: unknown) => {
          if (limiter.take("discover") >= 0) logger.warn({ err }, "could not list MD_RAW's symbols");
        })
        .finally(() => (discovering = undefined));
    }, config.DISCOVERY_INTERVAL_MS);
    resources.defer(() => clearInterval(discovery));
    const ticker = setInterval(() => {
      const now = Date.now();
      for (const w of workers.values()) w.tick(now);
      m.outputsInFlight.set(queue.pending);
    }, 100);
    resources.defer(() => clearInterval(ticker));

    const ops = await startOpsServer({
      port: config.METRICS_PORT,
      registry,
      logger,
      readiness: () =>
        bus.isConnected() ? { ready: true } : { ready: false, reason: "NATS is not connected" },
    });
    resources.push(ops);
    logger.info(
      {
        intervals: config.WINDOW_INTERVALS,
        symbols: explicit.size > 0 ? [...explicit] : "discovered",
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

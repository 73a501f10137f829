import {
  AckPipeline,
  connectBus,
  provisionTopology,
  startConsumer,
  type Bus,
  type JsMsg,
  type RunningConsumer,
} from "@l2flow/bus";
import { DegradedReason, EXCHANGE, msgIds, Signal, STREAMS, subjects, Window } from "@l2flow/contracts";
import {
  Counter,
  createMetricsRegistry,
  Histogram,
  L2flowError,
  LogLimiter,
  natsOptions,
  ResourceStack,
  startOpsServer,
  type Logger,
  type OpsServer,
  type Registry,
} from "@l2flow/runtime";
import type { AnalyzerConfig } from "./config.js";
import { WindowBatcher } from "./batcher.js";
import { createSignalMaker, type SignalMaker } from "./signals.js";

/**
 * Keeps `w` among a symbol's latest `max` windows, in start-time order, once each (whatever order
 * they were analysed in).
 */
function remember(past: Window[], w: Window, max: number): void {
  let i = past.length;
  while (i > 0 && past[i - 1]!.startTimeMs >= w.startTimeMs) i--;
  if (past[i]?.startTimeMs === w.startTimeMs) past[i] = w;
  else past.splice(i, 0, w);
  if (past.length > max) past.splice(0, past.length - max);
}

/** A running analyzer. */
export interface AnalyzerService {
  /** Base URL of `/metrics`, `/healthz`, `/readyz`. */
  readonly opsUrl: string;
  /** Stops consuming (running analyses finish and are acked), then closes NATS and the ops server. Idempotent. */
  close(): Promise<void>;
}

/** Dependencies the composition root passes in. */
export interface AnalyzerDeps {
  readonly logger: Logger;
  /** Default: a new registry with Node's default metrics. */
  readonly registry?: Registry;
  /** Default: `Date.now`. */
  readonly now?: () => number;
}

/** How long a signal's publish is retried through a NATS outage before its window is nak'ed. */
const SIGNAL_PUBLISH_PATIENCE_MS = 15_000;

class PoisonWindow extends L2flowError {
  constructor(message: string, cause: unknown) {
    super("WINDOW_UNDECODABLE", message, { retryable: false, cause });
  }
}

/**
 * Starts the analyzer: binds the shared durable consumer on `MD_WINDOW`, turns each window of the
 * configured intervals and symbols into a `Signal`, publishes it with the window's message id and
 * acks the window only after the signal's publish is acked.
 */
export async function startAnalyzer(config: AnalyzerConfig, deps: AnalyzerDeps): Promise<AnalyzerService> {
  const { logger } = deps;
  const registry = deps.registry ?? createMetricsRegistry({ service: "analyzer" });
  const metrics = {
    windows: new Counter({
      name: "l2flow_analyzer_windows_total",
      help: "Windows received, by outcome",
      labelNames: ["outcome"],
      registers: [registry],
    }),
    signals: new Counter({
      name: "l2flow_analyzer_signals_total",
      help: "Signals published, by provider and degraded reason",
      labelNames: ["provider", "degraded_reason"],
      registers: [registry],
    }),
    signalLatency: new Histogram({
      name: "l2flow_analyzer_signal_seconds",
      help: "Time from receiving a window to its signal's publish ack",
      buckets: [0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30],
      registers: [registry],
    }),
  };

  const maker: SignalMaker = createSignalMaker(config, { logger, registry, now: deps.now ?? Date.now });
  if (!maker.llmConfigured) {
    logger.warn(
      "HOLYSHEEP_API_KEY is not set: signals come from the rule provider, marked degraded (not configured)",
    );
  } else {
    logger.info(
      { model: config.HOLYSHEEP_MODEL, baseUrl: config.HOLYSHEEP_BASE_URL },
      "LLM provider: HolySheep",
    );
  }

  const resources = new ResourceStack();
  try {
    const bus: Bus = await connectBus({ ...natsOptions(config, "analyzer"), logger });
    resources.defer(() => bus.drain());
    await provisionTopology(bus, { replicas: config.STREAM_REPLICAS });

    // Signals are published on an ack pipeline rather than with js.publish (a request, an inbox, a
    // timer and an Error for its stack, per signal). Closed after the consumer (ResourceStack closes
    // in reverse), so the handlers still running get their acks.
    const signals = new AckPipeline(bus, { maxInFlight: 16_384, ackTimeoutMs: 10_000 });
    resources.defer(async () => {
      await signals.idle(5_000);
      signals.close();
    });
    /**
     * Publishes a signal, sending it again while the failure is retryable (NATS away, no ack yet) for
     * up to `SIGNAL_PUBLISH_PATIENCE_MS`: a signal is an LLM call already paid for, and giving up
     * would nak its window and pay for the call again. Its message id keeps a resend stored once.
     */
    const publishSignal = async (subject: string, data: Uint8Array, msgId: string): Promise<void> => {
      const deadline = Date.now() + SIGNAL_PUBLISH_PATIENCE_MS;
      for (;;) {
        try {
          await signals.publish(subject, data, { msgId });
          return;
        } catch (err) {
          if ((err as { retryable?: unknown }).retryable !== true || Date.now() >= deadline) throw err;
          await new Promise((r) => setTimeout(r, 100));
        }
      }
    };
    const intervals = new Set(config.ANALYZER_INTERVALS);
    const symbols = new Set(config.ANALYZER_SYMBOLS);
    const history = new Map<string, Window[]>();
    const batcher =
      config.ANALYZER_BATCH_SIZE > 1
        ? new WindowBatcher(config.ANALYZER_BATCH_SIZE, config.ANALYZER_BATCH_WAIT_MS, (items) =>
            maker.analyzeBatch(items),
          )
        : undefined;
    const badInput = new LogLimiter();

    const handler = async (msg: JsMsg) => {
      const started = performance.now();
      let window: Window;
      try {
        window = Window.decode(msg.data);
      } catch (err) {
        metrics.windows.inc({ outcome: "poison" });
        const suppressed = badInput.take("decode");
        if (suppressed >= 0)
          logger.warn(
            { suppressed, subject: msg.subject, err },
            "window payload is not a Window; terminated",
          );
        throw new PoisonWindow(`undecodable window on ${msg.subject}`, err);
      }
      if (!intervals.has(window.interval) || (symbols.size > 0 && !symbols.has(window.symbol))) {
        metrics.windows.inc({ outcome: "skipped" });
        return;
      }
      const key = `${window.interval}.${window.symbol}`;
      const past = history.get(key) ?? [];
      // Only windows before this one: a window delivered again (its replica killed, its publish
      // failed) or late comes after later windows of its symbol, which must not reach its prompt.
      const recent = past.filter((w) => w.startTimeMs < window.startTimeMs).slice(-config.ANALYZER_HISTORY);
      const signal =
        batcher !== undefined ? await batcher.submit(window, recent) : await maker.analyze(window, recent);
      if (config.ANALYZER_HISTORY > 0) {
        remember(past, window, config.ANALYZER_HISTORY);
        history.set(key, past);
      }
      await publishSignal(
        subjects.signal(window.interval, window.symbol),
        Signal.encode(signal).finish(),
        msgIds.signal(window.interval, window.symbol, window.startTimeMs),
      );
      metrics.windows.inc({ outcome: "analyzed" });
      metrics.signals.inc({
        provider: signal.provider,
        // The enum's name, as l2flow_analyzer_degraded_signals_total's reason.
        degraded_reason: signal.degraded
          ? (DegradedReason[signal.degradedReason] ?? String(signal.degradedReason))
          : "none",
      });
      metrics.signalLatency.observe((performance.now() - started) / 1000);
    };

    const only = config.ANALYZER_INTERVALS.length === 1 ? config.ANALYZER_INTERVALS[0] : undefined;
    const consumer: RunningConsumer = await startConsumer(bus, {
      stream: STREAMS.window,
      durable: config.ANALYZER_DURABLE,
      // One interval: let the server filter. Several: nats-server 2.9 has no multi-filter, so skip here.
      filterSubject: only !== undefined ? `md.window.${EXCHANGE}.${only}.>` : `md.window.${EXCHANGE}.>`,
      // Enough windows in hand to fill every batch of every concurrent call.
      concurrency: config.LLM_CONCURRENCY * config.ANALYZER_BATCH_SIZE,
      // A window is kept from redelivery while this replica holds it (startConsumer's progress
      // notes): this is how long a killed replica's windows wait before another takes them.
      ackWaitMs: config.ANALYZER_ACK_WAIT_MS,
      maxAckPending: config.LLM_CONCURRENCY * config.ANALYZER_BATCH_SIZE * 16,
      handler,
      logger,
    });
    resources.defer(() => consumer.stop());

    const ops: OpsServer = await startOpsServer({
      port: config.METRICS_PORT,
      registry,
      logger,
      readiness: () =>
        bus.isConnected() ? { ready: true } : { ready: false, reason: "NATS is not connected" },
    });
    resources.push(ops);
    logger.info(
      {
        intervals: config.ANALYZER_INTERVALS,
        durable: config.ANALYZER_DURABLE,
        batch: config.ANALYZER_BATCH_SIZE,
        ops: ops.url,
      },
      "analyzer started",
    );

    return { opsUrl: ops.url, close: () => resources.close() };
  } catch (err) {
    await resources.close();
    throw err;
  }
}

import { z } from "zod";
import { ConfigError, env, natsEnvShape, opsEnvShape, parseEnv, type Env } from "@l2flow/runtime";

const schema = z.object({
  ...natsEnvShape,
  ...opsEnvShape,
  /** Symbols to collect. */
  SYMBOLS: env.symbols("BTCUSDT,ETHUSDT"),
  /**
   * Binance WebSocket base: wss://stream.binance.com:9443 (or :443), wss://data-stream.binance.vision,
   * wss://stream.binance.us:9443, or a simulator's ws://127.0.0.1:PORT.
   */
  BINANCE_WS_URL: env.url("wss://stream.binance.com:9443", ["wss:", "ws:"]),
  /** Binance REST base: https://api.binance.com, https://api.binance.us, or a simulator's http://127.0.0.1:PORT. */
  BINANCE_REST_URL: env.url("https://api.binance.com", ["https:", "http:"]),
  /** Streams per symbol: trade, aggTrade, depth (diffs every 100 ms). */
  STREAM_KINDS: env
    .list("trade,depth")
    .refine((v) => v.length > 0 && v.every((k) => ["trade", "aggTrade", "depth"].includes(k)), {
      error: "expected a comma-separated subset of trade,aggTrade,depth",
    }),
  /** Levels requested in REST depth snapshots (Binance weight: ≤100 → 5, ≤500 → 25, ≤1000 → 50, ≤5000 → 250). */
  SNAPSHOT_LIMIT: env.positiveInt(1000).refine((v) => v <= 5000, { error: "expected 1-5000" }),
  /** Request weight per minute the REST queue may use (Binance allows 6000 per IP). */
  REST_WEIGHT_PER_MIN: env
    .positiveInt(5000)
    .refine((v) => v <= 6000, { error: "expected at most 6000 (Binance's limit per IP)" }),
  /** Streams per WebSocket connection (Binance allows 1024). */
  STREAMS_PER_CONNECTION: env
    .positiveInt(200)
    .refine((v) => v <= 1024, { error: "expected at most 1024 (Binance's limit)" }),
  /** Rotate a connection this long before Binance's 24 h limit ends it. */
  ROTATE_BEFORE_MS: env.positiveInt(10 * 60_000),
  /** A connection's lifetime (Binance: 24 h); lower it to test rotation. */
  CONNECTION_LIFETIME_MS: env.positiveInt(24 * 3_600_000),
  /**
   * WebSocket connection attempts this process makes in any 5 minutes. Binance allows 300 per IP:
   * replicas behind one IP must share them (the deploy files run two ingest replicas at 140 each).
   */
  WS_CONNECT_ATTEMPTS_PER_5MIN: env
    .positiveInt(250)
    .refine((v) => v <= 300, { error: "expected at most 300 (Binance's limit per IP per 5 minutes)" }),
  /** Reconnect when nothing (no frame, no ping) arrives for this long. */
  SILENCE_TIMEOUT_MS: env.positiveInt(30_000),
  /**
   * Replace a connection (make-before-break) when pings come but no market data for this long, as
   * Binance has been seen to do; 0 turns it off. A shard of quiet symbols is replaced that often.
   */
  DATA_SILENCE_TIMEOUT_MS: env.nonNegativeInt(120_000),
  /** Ask Binance for microsecond timestamps (`timeUnit=MICROSECOND`). */
  MICROSECOND_TIMESTAMPS: env.bool(false),
  /**
   * Memory for frames kept while NATS is unreachable (packed: each counted as its payload, subject,
   * message id and headers, ~200 bytes besides the payload); beyond it the oldest are dropped and
   * reported as a gap.
   */
  OUTAGE_BUFFER_BYTES: env.positiveInt(64 * 1024 * 1024),
  /** Publishes awaiting JetStream's ack at once. */
  PUBLISH_MAX_IN_FLIGHT: env.positiveInt(16_384),
  /** A publish not acked this long is sent again (its message id keeps it stored once). */
  PUBLISH_ACK_TIMEOUT_MS: env.positiveInt(5_000),
  /**
   * Connections carrying each stream: 2 runs two independent sets (A and B) and keeps the first copy
   * of every frame, so one connection's drop, stall or rotation loses nothing; 1 halves bandwidth.
   */
  WS_REDUNDANCY: env.positiveInt(2).refine((v) => v <= 2, { error: "expected 1 or 2" }),
  /** Wait this long after a hole in trade ids before fetching the missing trades over REST. */
  BACKFILL_DELAY_MS: env.nonNegativeInt(1_000),
  /** Trade ids fetched per hole at most; beyond it they are reported as a gap. */
  BACKFILL_MAX_IDS: env.positiveInt(100_000),
  /** Optional Binance API key, sent as X-MBX-APIKEY on REST calls (never logged). */
  BINANCE_API_KEY: z.string().min(1).optional(),
});

/** Ingest's configuration (README, "Configuration"). */
export type IngestConfig = z.infer<typeof schema>;

/** Reads and validates ingest's environment; throws `ConfigError` naming each bad variable. */
export function loadConfig(vars: Env): IngestConfig {
  const config = parseEnv(schema, vars, { secretKeys: ["NATS_PASSWORD", "NATS_TOKEN", "BINANCE_API_KEY"] });
  // A rotation due at once would find the replacement itself due at once, and never fire again.
  if (config.ROTATE_BEFORE_MS >= config.CONNECTION_LIFETIME_MS)
    throw new ConfigError(
      `invalid configuration:\n  ROTATE_BEFORE_MS=${config.ROTATE_BEFORE_MS}: must be less than CONNECTION_LIFETIME_MS=${config.CONNECTION_LIFETIME_MS} (rotation starts that long before a connection's end); lower it with the lifetime`,
    );
  return config;
}

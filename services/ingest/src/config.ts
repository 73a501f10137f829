import { z } from "zod";
import { env, natsEnvShape, opsEnvShape, parseEnv, type Env } from "@l2flow/runtime";

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
  /** Reconnect when nothing (no frame, no ping) arrives for this long. */
  SILENCE_TIMEOUT_MS: env.positiveInt(30_000),
  /** Ask Binance for microsecond timestamps (`timeUnit=MICROSECOND`). */
  MICROSECOND_TIMESTAMPS: env.bool(false),
  /** Bytes of frames kept while NATS is unreachable; beyond it the oldest are dropped and reported as a gap. */
  OUTAGE_BUFFER_BYTES: env.positiveInt(256 * 1024 * 1024),
  /** Publishes awaiting JetStream's ack at once. */
  PUBLISH_MAX_IN_FLIGHT: env.positiveInt(4096),
});

/** Ingest's configuration (README, "Configuration"). */
export type IngestConfig = z.infer<typeof schema>;

/** Reads and validates ingest's environment; throws `ConfigError` naming each bad variable. */
export function loadConfig(vars: Env): IngestConfig {
  return parseEnv(schema, vars, { secretKeys: ["NATS_PASSWORD", "NATS_TOKEN"] });
}

import { z } from "zod";
import { isInterval } from "@l2flow/contracts";
import { ConfigError, env, natsEnvShape, opsEnvShape, parseEnv, type Env } from "@l2flow/runtime";

const schema = z.object({
  ...natsEnvShape,
  ...opsEnvShape,
  /** Symbols this instance handles; empty = every symbol in MD_RAW that its partition owns. */
  NORMALIZER_SYMBOLS: env.list(""),
  /** Instances sharing the symbols: each owns the symbols whose stable hash modulo this is its index. */
  NORMALIZER_PARTITIONS: env.positiveInt(1),
  /** This instance's partition, 0 to NORMALIZER_PARTITIONS - 1 (a StatefulSet's ordinal fits). */
  NORMALIZER_PARTITION: env.nonNegativeInt(0),
  /** Write each symbol's state to KV md_state this often (after its outputs are stored). */
  CHECKPOINT_INTERVAL_MS: env.positiveInt(5_000),
  /** Levels per side in published book snapshots and in windows' books. */
  BOOK_DEPTH: env.positiveInt(20),
  /** Publish a book snapshot after every N applied diffs (1 = every diff). */
  BOOK_EVERY_N_DIFFS: env.positiveInt(1),
  /** Window intervals. */
  WINDOW_INTERVALS: env.list("1s").refine((v) => v.length > 0 && v.every((i) => isInterval(i)), {
    error: "expected comma-separated intervals such as 1s,1m",
  }),
  /** How long after a window's end (in exchange time) events are still merged into it. */
  WINDOW_LATENESS_MS: env.nonNegativeInt(250),
  /** Close a symbol's open windows after this long without any of its events, once caught up (wall clock). */
  WINDOW_IDLE_TIMEOUT_MS: env.positiveInt(5_000),
  /**
   * Levels kept per side of each book; the ones furthest from the top go beyond it. Bounds memory (a
   * book otherwise keeps every level a diff ever touched) and matches Binance's deepest snapshot.
   */
  BOOK_MAX_LEVELS: env.positiveInt(5_000),
  /**
   * Ask ingest for a fresh snapshot of each in-sync symbol this often and correct the book with it (0 =
   * never). Corrects levels the first snapshot was too shallow to hold; costs request weight (a
   * `SNAPSHOT_LIMIT=1000` snapshot weighs 50 of Binance's 6000 per minute).
   */
  BOOK_REFRESH_INTERVAL_MS: env.nonNegativeInt(0),
  /**
   * Diffs buffered per symbol while waiting for a snapshot (the newest are kept). A snapshot is stored
   * in MD_RAW next to the diffs of when it was taken, so it needs only the last few however long the
   * wait (minutes for hundreds of symbols under the request-weight limit); 300 is 30 s of 100 ms diffs.
   */
  MAX_BUFFERED_DIFFS: env.positiveInt(300),
  /**
   * Most MD_RAW messages a restart re-reads to give a checkpointed symbol that waits for its snapshot
   * its buffered diffs back (its partition reads from the first of them). Further back, they are given
   * up: the symbol then takes a snapshot newer than them, asking for one if it must.
   */
  MAX_REFILL_MESSAGES: env.positiveInt(1_000_000),
  /** Names this normalizer's checkpoints (`<name>.binance.<SYMBOL>` in KV md_state). */
  NORMALIZER_NAME: z
    .string()
    .regex(/^[A-Za-z0-9_-]+$/, { error: "expected letters, digits, - or _" })
    .default("normalizer"),
  /**
   * Diffs that skip ahead of a book in sync held until the ones before them come (0: a skip is a gap
   * at once). With two redundant connection sets a lagging set can store a diff after a later one the
   * other set's new connection stored first; holding a few absorbs that instead of resynchronising,
   * and a diff really lost is found this many diffs later (100 ms each).
   */
  DIFF_REORDER_WINDOW: env.nonNegativeInt(10),
  /**
   * `on`: the symbols' processing (parsing, books, windows, encoding) runs on a thread of its own and
   * NATS on the main thread, so the normalizer uses up to two cores, for ~10 % more CPU a message and
   * 40-100 MB more RSS (a second V8 heap); `off`: all on one thread. Off by default: on the 2-core
   * machine it is measured on, shared with nats-server, it gained 8-45 % messages per second, and
   * its RSS broke the 400-symbol soak's 200 MB bound (README, "Known limits").
   */
  NORMALIZER_THREAD: env.onOff("off"),
  /** Time allowed for ingest to answer a resync request (and the wait before asking again). */
  RESYNC_REQUEST_TIMEOUT_MS: env.positiveInt(10_000),
});

/** The normalizer's configuration (README, "Configuration"). */
export type NormalizerConfig = z.infer<typeof schema>;

/** Reads and validates the normalizer's environment; throws `ConfigError` naming each bad variable. */
export function loadConfig(vars: Env): NormalizerConfig {
  const config = parseEnv(schema, vars, { secretKeys: ["NATS_PASSWORD", "NATS_TOKEN"] });
  if (config.NORMALIZER_PARTITION >= config.NORMALIZER_PARTITIONS)
    throw new ConfigError(
      `NORMALIZER_PARTITION=${config.NORMALIZER_PARTITION}: expected 0 to ${config.NORMALIZER_PARTITIONS - 1} (NORMALIZER_PARTITIONS=${config.NORMALIZER_PARTITIONS})`,
    );
  return { ...config, NORMALIZER_SYMBOLS: config.NORMALIZER_SYMBOLS.map((s) => s.toUpperCase()) };
}

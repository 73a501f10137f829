import { pino, type DestinationStream, type Logger } from "pino";

export type { Logger } from "pino";

/** Options for `createLogger`. */
export interface LoggerOptions {
  /** Service name, logged as `service` on every line. */
  readonly service: string;
  /** Default "info". */
  readonly level?: string;
  /**
   * Secret values (API keys, passwords) to scrub from every string logged, wherever they appear.
   * Field names that usually hold secrets are removed regardless. Default: none.
   */
  readonly secrets?: readonly (string | undefined)[];
  /** Where lines go. Default: stdout. Tests pass a stream to capture output. */
  readonly destination?: DestinationStream;
}

const SECRET_PATHS = [
  "apiKey",
  "api_key",
  "password",
  "pass",
  "token",
  "authorization",
  "*.apiKey",
  "*.api_key",
  "*.password",
  "*.pass",
  "*.token",
  "*.authorization",
  "*.headers.authorization",
  "*.headers.Authorization",
];

/** A JSON (pino) logger that never writes the given secrets. */
export function createLogger(options: LoggerOptions): Logger {
  const secrets = (options.secrets ?? []).filter((s): s is string => typeof s === "string" && s.length >= 4);
  const scrub = (value: unknown, depth: number): unknown => {
    if (typeof value === "string") {
      let out = value;
      for (const s of secrets) if (out.includes(s)) out = out.split(s).join("[REDACTED]");
      return out;
    }
    if (depth > 6 || value === null || typeof value !== "object") return value;
    if (value instanceof Error) {
      return {
        type: value.name,
        message: scrub(value.message, depth + 1),
        stack: scrub(value.stack, depth + 1),
        code: (value as { code?: unknown }).code,
      };
    }
    if (Array.isArray(value)) return value.map((v) => scrub(v, depth + 1));
    const out: Record<string, unknown> = {};
    for (const [k, v] of Object.entries(value)) out[k] = scrub(v, depth + 1);
    return out;
  };
  return pino(
    {
      level: options.level ?? "info",
      base: { service: options.service },
      timestamp: pino.stdTimeFunctions.isoTime,
      redact: { paths: SECRET_PATHS, censor: "[REDACTED]" },
      formatters: {
        level: (label) => ({ level: label }),
        ...(secrets.length > 0
          ? { log: (obj: Record<string, unknown>) => scrub(obj, 0) as Record<string, unknown> }
          : {}),
      },
      ...(secrets.length > 0
        ? {
            hooks: {
              logMethod(args: unknown[], method: (...a: unknown[]) => void) {
                method.apply(
                  this,
                  args.map((a) => (typeof a === "string" ? scrub(a, 0) : a)),
                );
              },
            },
          }
        : {}),
    },
    options.destination ?? pino.destination({ sync: false }),
  );
}

/**
 * Limits how often one kind of event is logged: `take(key)` lets one through at most once per
 * `intervalMs` per key (default 10 s) and says how many were suppressed in between, which the
 * services log as `suppressed` on the line.
 */
export class LogLimiter {
  readonly #intervalMs: number;
  readonly #last = new Map<string, { at: number; suppressed: number }>();
  constructor(options: { intervalMs?: number } = {}) {
    this.#intervalMs = options.intervalMs ?? 10_000;
  }
  /** Returns the number of suppressed events since the last time (>= 0) when it may log, else -1. */
  take(key: string, now = Date.now()): number {
    const entry = this.#last.get(key);
    if (entry === undefined) {
      if (this.#last.size > 10_000) this.#last.clear();
      this.#last.set(key, { at: now, suppressed: 0 });
      return 0;
    }
    if (now - entry.at >= this.#intervalMs) {
      const suppressed = entry.suppressed;
      entry.at = now;
      entry.suppressed = 0;
      return suppressed;
    }
    entry.suppressed++;
    return -1;
  }
}

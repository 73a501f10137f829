import { z } from "zod";
import { ConfigError } from "./errors.js";

/** Environment variables as a plain record (usually `process.env`). */
export type Env = Readonly<Record<string, string | undefined>>;

/**
 * Validates environment variables against a zod object schema whose keys are the variable names.
 * Throws `ConfigError` naming every bad variable, its value (unless `secret`) and what it accepts.
 */
export function parseEnv<S extends z.ZodObject>(
  schema: S,
  env: Env,
  options: { secretKeys?: readonly string[] } = {},
): z.infer<S> {
  const input: Record<string, string> = {};
  for (const key of Object.keys(schema.shape)) {
    const value = env[key];
    if (value !== undefined && value !== "") input[key] = value;
  }
  const result = schema.safeParse(input);
  if (result.success) return result.data;
  const lines = result.error.issues.map((issue) => {
    const key = String(issue.path[0] ?? "?");
    const shown = options.secretKeys?.includes(key) ? "<redacted>" : JSON.stringify(input[key] ?? "");
    return `  ${key}=${shown}: ${issue.message}`;
  });
  throw new ConfigError(`invalid configuration:\n${lines.join("\n")}`);
}

/** zod helpers for common variable shapes; each error message says what is accepted. */
export const env = {
  /** A TCP port, 0-65535 (0 = any free port). */
  port: (fallback: number) =>
    z.coerce
      .number({ error: "expected a port number 0-65535" })
      .int({ error: "expected a port number 0-65535" })
      .min(0, { error: "expected a port number 0-65535" })
      .max(65535, { error: "expected a port number 0-65535" })
      .default(fallback),
  /** A positive integer. */
  positiveInt: (fallback: number) =>
    z.coerce
      .number({ error: "expected a positive integer" })
      .int({ error: "expected a positive integer" })
      .positive({ error: "expected a positive integer" })
      .default(fallback),
  /** A non-negative integer. */
  nonNegativeInt: (fallback: number) =>
    z.coerce
      .number({ error: "expected an integer >= 0" })
      .int({ error: "expected an integer >= 0" })
      .min(0, { error: "expected an integer >= 0" })
      .default(fallback),
  /** A URL with one of the given protocols. */
  url: (fallback: string, protocols: readonly string[]) =>
    z
      .string()
      .default(fallback)
      .refine(
        (v) => {
          try {
            return protocols.includes(new URL(v).protocol);
          } catch {
            return false;
          }
        },
        { error: `expected a URL starting with ${protocols.map((p) => `${p}//`).join(" or ")}` },
      ),
  /** A comma-separated list of NATS server URLs. */
  natsServers: (fallback: string) =>
    z
      .string()
      .default(fallback)
      .transform((v) =>
        v
          .split(",")
          .map((s) => s.trim())
          .filter((s) => s.length > 0),
      )
      .refine((v) => v.length > 0, { error: "expected one or more NATS URLs, e.g. nats://127.0.0.1:4222" }),
  /** A comma-separated list, upper-cased (symbols). */
  symbols: (fallback: string) =>
    z
      .string()
      .default(fallback)
      .transform((v) =>
        v
          .split(",")
          .map((s) => s.trim().toUpperCase())
          .filter((s) => s.length > 0),
      )
      .refine((v) => v.length > 0 && v.every((s) => /^[A-Z0-9]{2,30}$/.test(s)), {
        error: "expected comma-separated symbols of letters and digits, e.g. BTCUSDT,ETHUSDT",
      }),
  /** A comma-separated list of plain tokens. */
  list: (fallback: string) =>
    z
      .string()
      .default(fallback)
      .transform((v) =>
        v
          .split(",")
          .map((s) => s.trim())
          .filter((s) => s.length > 0),
      ),
  /** true/false/1/0/yes/no. */
  bool: (fallback: boolean) =>
    z
      .enum(["true", "false", "1", "0", "yes", "no"], { error: "expected true or false" })
      .default(fallback ? "true" : "false")
      .transform((v) => v === "true" || v === "1" || v === "yes"),
  /** A pino log level. */
  logLevel: () =>
    z
      .enum(["fatal", "error", "warn", "info", "debug", "trace", "silent"], {
        error: "expected one of fatal, error, warn, info, debug, trace, silent",
      })
      .default("info"),
} as const;

import { z } from "zod";
import { ConfigError } from "./errors.js";

/** Environment variables as a plain record (usually `process.env`). */
export type Env = Readonly<Record<string, string | undefined>>;

/** The values of a variable that switches something on or off (`env.onOff`). */
export const ON_OFF = ["on", "off"] as const;
/** `on` or `off`. */
export type OnOff = (typeof ON_OFF)[number];

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
  // Variables that only work together: one without the other is ignored, silently, by the client.
  const unpaired = PAIRS.filter(([a, b]) => a in schema.shape && b in schema.shape).flatMap(([a, b]) =>
    (input[a] === undefined) !== (input[b] === undefined)
      ? [
          `  ${input[a] === undefined ? a : b}: set it too, with ${input[a] === undefined ? b : a} (one is of no use alone)`,
        ]
      : [],
  );
  if (result.success && unpaired.length === 0) return result.data;
  const issues = result.success ? [] : result.error.issues;
  const lines = issues.map((issue) => {
    const key = String(issue.path[0] ?? "?");
    // A URL's user and password are never shown, whatever the variable.
    const shown = options.secretKeys?.includes(key)
      ? "<redacted>"
      : JSON.stringify(input[key] ?? "").replace(/\/\/[^/@\s"]*@/g, "//<redacted>@");
    return `  ${key}=${shown}: ${issue.message}`;
  });
  throw new ConfigError(`invalid configuration:\n${[...lines, ...unpaired].join("\n")}`);
}

/** Variables that only work together. */
const PAIRS: readonly (readonly [string, string])[] = [
  ["NATS_TLS_CERT", "NATS_TLS_KEY"],
  ["NATS_USER", "NATS_PASSWORD"],
];

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
      .refine((v) => v.length > 0, { error: "expected one or more NATS URLs, e.g. nats://127.0.0.1:4222" })
      .refine((v) => v.every((u) => !/^[a-z]+:\/\/[^/@]*@/i.test(u)), {
        error:
          "a user or password in the URL is ignored by the NATS client (and would show in logs): use NATS_USER and NATS_PASSWORD, or NATS_TOKEN",
      }),
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
  /** `on` or `off`. */
  onOff: (fallback: OnOff) => z.enum(ON_OFF, { error: "expected on or off" }).default(fallback),
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

/** Variables every service reads for NATS (see README, "Configuration"). */
export const natsEnvShape = {
  /** Comma-separated server URLs. */
  NATS_URL: env.natsServers("nats://127.0.0.1:4222"),
  NATS_USER: z.string().optional(),
  NATS_PASSWORD: z.string().optional(),
  NATS_TOKEN: z.string().optional(),
  /** Path of a `.creds` file. */
  NATS_CREDS: z.string().optional(),
  /** TLS: a CA file turns TLS on; cert+key add client authentication. */
  NATS_TLS_CA: z.string().optional(),
  NATS_TLS_CERT: z.string().optional(),
  NATS_TLS_KEY: z.string().optional(),
  /** How long to keep trying the first connection before giving up. */
  NATS_CONNECT_TIMEOUT_MS: env.positiveInt(30_000),
  /**
   * Replicas of l2flow's streams and KV buckets (3 on a JetStream cluster), applied to existing ones
   * too. Unset: new ones get 1 and existing ones keep what they have.
   */
  STREAM_REPLICAS: z.coerce
    .number({ error: "expected 1, 3 or 5 (JetStream replicas)" })
    .int({ error: "expected 1, 3 or 5 (JetStream replicas)" })
    .min(1, { error: "expected 1, 3 or 5 (JetStream replicas)" })
    .max(5, { error: "expected 1, 3 or 5 (JetStream replicas)" })
    .optional(),
} as const;

/** The NATS part of a parsed config, turned into connection options (structurally `BusOptions`). */
export function natsOptions(
  c: {
    NATS_URL: string[];
    NATS_USER?: string | undefined;
    NATS_PASSWORD?: string | undefined;
    NATS_TOKEN?: string | undefined;
    NATS_CREDS?: string | undefined;
    NATS_TLS_CA?: string | undefined;
    NATS_TLS_CERT?: string | undefined;
    NATS_TLS_KEY?: string | undefined;
    NATS_CONNECT_TIMEOUT_MS: number;
  },
  name: string,
): {
  servers: string[];
  name: string;
  connectTimeoutMs: number;
  user?: string;
  pass?: string;
  token?: string;
  credsFile?: string;
  tls?: { caFile?: string; certFile?: string; keyFile?: string };
} {
  const tls =
    c.NATS_TLS_CA !== undefined || c.NATS_TLS_CERT !== undefined
      ? {
          ...(c.NATS_TLS_CA !== undefined ? { caFile: c.NATS_TLS_CA } : {}),
          ...(c.NATS_TLS_CERT !== undefined ? { certFile: c.NATS_TLS_CERT } : {}),
          ...(c.NATS_TLS_KEY !== undefined ? { keyFile: c.NATS_TLS_KEY } : {}),
        }
      : undefined;
  return {
    servers: c.NATS_URL,
    name,
    connectTimeoutMs: c.NATS_CONNECT_TIMEOUT_MS,
    ...(c.NATS_USER !== undefined ? { user: c.NATS_USER } : {}),
    ...(c.NATS_PASSWORD !== undefined ? { pass: c.NATS_PASSWORD } : {}),
    ...(c.NATS_TOKEN !== undefined ? { token: c.NATS_TOKEN } : {}),
    ...(c.NATS_CREDS !== undefined ? { credsFile: c.NATS_CREDS } : {}),
    ...(tls !== undefined ? { tls } : {}),
  };
}

/** Variables every service reads for its operations endpoint and logs. */
export const opsEnvShape = {
  /** Port of `/metrics`, `/healthz`, `/readyz`. */
  METRICS_PORT: env.port(9464),
  LOG_LEVEL: env.logLevel(),
  /** `on`: the V8 flags of `GC_TUNING_FLAGS` (gc.ts); `off`: V8's defaults. */
  GC_TUNING: env.onOff("on"),
} as const;

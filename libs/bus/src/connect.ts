import { readFileSync } from "node:fs";
import { connect, type NatsConnection, type NodeConnectionOptions } from "@nats-io/transport-node";
import { jetstream, jetstreamManager, type JetStreamClient, type JetStreamManager } from "@nats-io/jetstream";
import { BusError } from "./errors.js";

/** The minimal logger the bus needs (pino's Logger fits). */
export interface BusLogger {
  info(obj: object, msg?: string): void;
  warn(obj: object, msg?: string): void;
  error(obj: object, msg?: string): void;
}

/** TLS files; all optional (a CA alone verifies the server, cert+key adds client auth). */
export interface BusTlsOptions {
  readonly caFile?: string;
  readonly certFile?: string;
  readonly keyFile?: string;
}

/** Options for `connectBus`. */
export interface BusOptions {
  /** NATS URLs. Default ["nats://127.0.0.1:4222"]. */
  readonly servers?: string | readonly string[];
  /** Connection name shown by the server (`/connz`). Default "l2flow". */
  readonly name?: string;
  readonly user?: string;
  readonly pass?: string;
  readonly token?: string;
  /** A `.creds` file (JWT + nkey) — decentralised auth. */
  readonly credsFile?: string;
  /** TLS: `true` for system CAs, or files. Default: off (plain TCP). */
  readonly tls?: boolean | BusTlsOptions;
  /** Time to establish the first connection. Default 5 000 ms. */
  readonly connectTimeoutMs?: number;
  /** Reconnect attempts after a lost connection; -1 = forever. Default -1. */
  readonly maxReconnectAttempts?: number;
  /** Wait between reconnect attempts to one server. Default 1 000 ms (the client adds jitter). */
  readonly reconnectTimeWaitMs?: number;
  /** Where connection events are logged. Default: nowhere. */
  readonly logger?: BusLogger;
}

/** A connection to NATS with JetStream. Create with `connectBus`. */
export interface Bus {
  readonly nc: NatsConnection;
  readonly js: JetStreamClient;
  readonly jsm: JetStreamManager;
  /** True while the connection is up (false while reconnecting or closed). */
  isConnected(): boolean;
  /** Registers a listener for connection state changes; returns a function that removes it. */
  onConnectionChange(listener: (connected: boolean) => void): () => void;
  /** Waits for in-flight publishes to be flushed, drains subscriptions, then closes. Idempotent. */
  drain(): Promise<void>;
  /** Closes at once (pending messages may be lost; prefer `drain`). Idempotent. */
  close(): Promise<void>;
  /** Resolves when the connection is closed for good (by us or after reconnects ran out). */
  readonly closed: Promise<void>;
}

/**
 * Connects to NATS (retrying the first connection until `connectTimeoutMs`), with reconnects
 * afterwards, and opens JetStream. Throws `BusError` NATS_UNREACHABLE / NATS_AUTH /
 * JETSTREAM_UNAVAILABLE with a message that says what to do.
 */
export async function connectBus(options: BusOptions = {}): Promise<Bus> {
  const servers =
    typeof options.servers === "string"
      ? [options.servers]
      : [...(options.servers ?? ["nats://127.0.0.1:4222"])];
  const connectTimeoutMs = options.connectTimeoutMs ?? 5_000;
  const opts: NodeConnectionOptions = {
    servers,
    name: options.name ?? "l2flow",
    maxReconnectAttempts: options.maxReconnectAttempts ?? -1,
    reconnectTimeWait: options.reconnectTimeWaitMs ?? 1_000,
    timeout: Math.min(connectTimeoutMs, 2_000),
    pingInterval: 10_000,
    maxPingOut: 3,
  };
  if (options.user !== undefined) opts.user = options.user;
  if (options.pass !== undefined) opts.pass = options.pass;
  if (options.token !== undefined) opts.token = options.token;
  if (options.credsFile !== undefined) {
    const { credsAuthenticator } = await import("@nats-io/transport-node");
    opts.authenticator = credsAuthenticator(readFileSync(options.credsFile));
  }
  if (options.tls === true) opts.tls = {};
  else if (typeof options.tls === "object") {
    opts.tls = {
      ...(options.tls.caFile !== undefined ? { caFile: options.tls.caFile } : {}),
      ...(options.tls.certFile !== undefined ? { certFile: options.tls.certFile } : {}),
      ...(options.tls.keyFile !== undefined ? { keyFile: options.tls.keyFile } : {}),
    };
  }

  const deadline = Date.now() + connectTimeoutMs;
  let nc: NatsConnection | undefined;
  let lastErr: unknown;
  while (nc === undefined) {
    try {
      nc = await connect(opts);
    } catch (err) {
      lastErr = err;
      if (isAuthError(err)) {
        throw new BusError(
          "NATS_AUTH",
          `NATS at ${servers.join(",")} refused our credentials: check the NATS user/password/token/creds settings`,
          {
            cause: err,
          },
        );
      }
      if (Date.now() + 250 >= deadline) break;
      await new Promise((r) => setTimeout(r, 250));
    }
  }
  if (nc === undefined) {
    const why = lastErr instanceof Error ? lastErr.message : String(lastErr);
    throw new BusError(
      "NATS_UNREACHABLE",
      `cannot reach NATS at ${servers.join(",")} within ${connectTimeoutMs} ms (${why}). Start a nats-server with JetStream ` +
        "(`nats-server -js`) or set NATS_URL to a reachable one.",
      { retryable: true, cause: lastErr },
    );
  }
  const conn = nc;
  let jsm: JetStreamManager;
  try {
    jsm = await jetstreamManager(conn, { timeout: connectTimeoutMs });
  } catch (err) {
    await conn.close();
    throw new BusError(
      "JETSTREAM_UNAVAILABLE",
      `NATS at ${servers.join(",")} has no JetStream for this account: start nats-server with -js (or enable jetstream in its config)`,
      { cause: err },
    );
  }
  const js = jetstream(conn);

  let connected = true;
  const listeners = new Set<(connected: boolean) => void>();
  const setConnected = (value: boolean) => {
    if (connected === value) return;
    connected = value;
    for (const l of listeners) l(value);
  };
  const log = options.logger;
  void (async () => {
    for await (const s of conn.status()) {
      switch (s.type) {
        case "disconnect":
          setConnected(false);
          log?.warn({ server: s.server }, "NATS disconnected; reconnecting");
          break;
        case "reconnect":
          setConnected(true);
          log?.info({ server: s.server }, "NATS reconnected");
          break;
        case "error":
          log?.error({ err: s.error }, "NATS error");
          break;
        default:
          break;
      }
    }
  })().catch(() => undefined);
  const closed = conn.closed().then(() => {
    setConnected(false);
  });

  let draining: Promise<void> | undefined;
  return {
    nc: conn,
    js,
    jsm,
    isConnected: () => connected && !conn.isClosed(),
    onConnectionChange: (l) => {
      listeners.add(l);
      return () => listeners.delete(l);
    },
    drain: () =>
      (draining ??= (async () => {
        if (conn.isClosed()) return;
        try {
          await conn.drain();
        } catch {
          await conn.close();
        }
      })()),
    close: async () => {
      if (!conn.isClosed()) await conn.close();
    },
    closed,
  };
}

function isAuthError(err: unknown): boolean {
  const name = (err as { name?: string } | undefined)?.name ?? "";
  return name === "AuthorizationError" || name === "UserAuthenticationExpiredError";
}

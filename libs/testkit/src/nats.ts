import { spawn, type ChildProcess } from "node:child_process";
import { accessSync, constants, mkdtempSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { delimiter, join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";

/** A NATS server with JetStream for tests. */
export interface TestNats {
  /** Client URL, e.g. nats://127.0.0.1:41234. */
  readonly url: string;
  /** HTTP monitoring URL (`/varz`, `/jsz`), or undefined when not known. */
  readonly monitorUrl: string | undefined;
  /** Where it came from: the `NATS_URL` variable, a local binary, or a container. */
  readonly kind: "env" | "binary" | "container";
  /** Binary only: the server's process id while it runs (to measure it, or pause it with SIGSTOP). */
  readonly pid: number | undefined;
  /** Stops the server (binary: SIGTERM then SIGKILL; keeps nothing). Idempotent. */
  close(): Promise<void>;
  /** Binary only: stops the server, keeping its store, to simulate an outage. */
  stop(): Promise<void>;
  /** Binary only: starts it again on the same port and store after `stop()`. */
  restart(): Promise<void>;
}

/** Options for `startTestNats` / `startNatsServer`. */
export interface TestNatsOptions {
  /**
   * Environment to read `NATS_URL` from. Default `process.env`. This is test infrastructure: it may
   * read the environment, services never do outside their config.
   */
  readonly env?: Readonly<Record<string, string | undefined>>;
  /** Extra nats-server arguments (e.g. `["-c", "auth.conf"]`). Binary only. */
  readonly args?: readonly string[];
  /** Path of the nats-server binary. Default: `NATS_SERVER_BIN`, then PATH, then /usr/sbin. */
  readonly binary?: string;
  /** How long to wait for the server to listen. Default 15 000 ms. */
  readonly startTimeoutMs?: number;
}

/** No NATS server could be found or started; the message says how to get one. */
export class NoNatsServerError extends Error {
  readonly code = "NO_NATS_SERVER";
  readonly retryable = false;
  constructor(detail: string, options?: { cause?: unknown }) {
    super(
      `no NATS server with JetStream for the tests (${detail}). Do one of: set NATS_URL to a server ` +
        "started with -js; install the nats-server binary (Debian: `apt-get install nats-server`, or " +
        "from https://github.com/nats-io/nats-server/releases) so tests can start their own; or run a " +
        "Docker engine so testcontainers can start one.",
      options,
    );
    this.name = "NoNatsServerError";
  }
}

/**
 * NATS for tests: `NATS_URL` if set; else a nats-server binary started on free ports with its own
 * temporary JetStream store (removed on close); else a testcontainers NATS container when a Docker
 * engine is reachable; else `NoNatsServerError`.
 */
export async function startTestNats(options: TestNatsOptions = {}): Promise<TestNats> {
  const env = options.env ?? process.env;
  const fromEnv = env.NATS_URL;
  if (fromEnv !== undefined && fromEnv !== "") {
    const unsupported = async () => {
      throw new Error("stop()/restart() need a server the tests started; unset NATS_URL to run this test");
    };
    return {
      url: fromEnv,
      monitorUrl: undefined,
      kind: "env",
      pid: undefined,
      close: async () => {},
      stop: unsupported,
      restart: unsupported,
    };
  }
  const binary = options.binary ?? findNatsServerBinary(env);
  if (binary !== undefined) return startNatsServer({ ...options, binary });
  try {
    return await startContainer();
  } catch (err) {
    throw new NoNatsServerError(
      "NATS_URL is not set, no nats-server binary was found, and no container runtime answered",
      {
        cause: err,
      },
    );
  }
}

/** Finds a nats-server binary: `NATS_SERVER_BIN`, then PATH, then /usr/sbin and /usr/local/bin. */
export function findNatsServerBinary(
  env: Readonly<Record<string, string | undefined>> = process.env,
): string | undefined {
  const candidates = [
    env.NATS_SERVER_BIN,
    ...(env.PATH ?? "").split(delimiter).map((d) => join(d, "nats-server")),
    "/usr/sbin/nats-server",
    "/usr/local/bin/nats-server",
  ];
  for (const c of candidates) {
    if (c === undefined || c === "" || c === "nats-server") continue;
    try {
      accessSync(c, constants.X_OK);
      return c;
    } catch {
      // not here
    }
  }
  return undefined;
}

/** Starts a nats-server binary with JetStream on free ports and a temporary store. */
export async function startNatsServer(options: TestNatsOptions & { binary: string }): Promise<TestNats> {
  const dir = mkdtempSync(join(tmpdir(), "l2flow-nats-"));
  const timeoutMs = options.startTimeoutMs ?? 15_000;
  let child: ChildProcess | undefined;
  let port = -1;
  let monitorPort = -1;
  let stderr = "";

  const launch = async () => {
    stderr = "";
    for (const f of readdirSync(dir)) if (f.endsWith(".ports")) rmSync(join(dir, f));
    const args = [
      "-a",
      "127.0.0.1",
      "-p",
      String(port),
      "-m",
      String(monitorPort),
      "-js",
      "-sd",
      join(dir, "store"),
      "--ports_file_dir",
      dir,
      ...(options.args ?? []),
    ];
    const proc = spawn(options.binary, args, { stdio: ["ignore", "ignore", "pipe"] });
    child = proc;
    proc.stderr?.setEncoding("utf8");
    proc.stderr?.on("data", (chunk: string) => {
      stderr = (stderr + chunk).slice(-4000);
    });
    const deadline = Date.now() + timeoutMs;
    while (Date.now() < deadline) {
      if (proc.exitCode !== null) throw new Error(`nats-server exited with ${proc.exitCode}: ${stderr}`);
      const file = readdirSync(dir).find((f) => f === `nats-server_${proc.pid}.ports`);
      if (file !== undefined) {
        try {
          const ports = JSON.parse(readFileSync(join(dir, file), "utf8")) as {
            nats?: string[];
            monitoring?: string[];
          };
          const natsUrl = ports.nats?.[0];
          const monUrl = ports.monitoring?.[0];
          if (natsUrl !== undefined) {
            port = Number(new URL(natsUrl).port);
            if (monUrl !== undefined) monitorPort = Number(new URL(monUrl).port);
            return;
          }
        } catch {
          // being written; try again
        }
      }
      await sleep(20);
    }
    proc.kill("SIGKILL");
    throw new Error(`nats-server did not start within ${timeoutMs} ms: ${stderr}`);
  };

  const stopProcess = async () => {
    const proc = child;
    child = undefined;
    if (proc === undefined || proc.exitCode !== null || proc.signalCode !== null) return;
    const exited = new Promise<void>((resolve) => proc.once("exit", () => resolve()));
    proc.kill("SIGTERM");
    const timer = setTimeout(() => proc.kill("SIGKILL"), 5_000);
    await exited;
    clearTimeout(timer);
  };

  await launch();
  let closed = false;
  return {
    get url() {
      return `nats://127.0.0.1:${port}`;
    },
    get monitorUrl() {
      return monitorPort > 0 ? `http://127.0.0.1:${monitorPort}` : undefined;
    },
    kind: "binary",
    get pid() {
      return child !== undefined && child.exitCode === null && child.signalCode === null
        ? child.pid
        : undefined;
    },
    stop: stopProcess,
    restart: async () => {
      await stopProcess();
      await launch();
    },
    close: async () => {
      if (closed) return;
      closed = true;
      await stopProcess();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

async function startContainer(): Promise<TestNats> {
  const mod = await import("@testcontainers/nats");
  const container = await new mod.NatsContainer("nats:2.10").withJetStream().start();
  const url = `nats://${container.getHost()}:${container.getMappedPort(4222)}`;
  const unsupported = async () => {
    throw new Error("stop()/restart() are supported only for a nats-server binary");
  };
  let closed = false;
  return {
    url,
    monitorUrl: undefined,
    kind: "container",
    pid: undefined,
    stop: unsupported,
    restart: unsupported,
    close: async () => {
      if (closed) return;
      closed = true;
      await container.stop();
    },
  };
}

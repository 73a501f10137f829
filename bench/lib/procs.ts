/**
 * The pipeline as separate processes, as it runs in production: each service from its built
 * `dist/main.js` (so CPU and memory are those of the shipped code, not of a TypeScript loader), and
 * the simulator in a child process of its own. Used by the end-to-end suite and the soak.
 */
import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import { closeSync, existsSync, openSync, readFileSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { createServer } from "node:net";
import { fileURLToPath } from "node:url";
import type { fixtures, ReplayProgress } from "@l2flow/testkit";

const repoRoot = resolve(dirname(fileURLToPath(import.meta.url)), "..", "..");

let built = false;
/** Builds the workspace once per run (`tsc -b`, incremental), so `dist/` matches the source. */
export function ensureBuilt(): void {
  if (built) return;
  const r = spawnSync(process.execPath, [join(repoRoot, "node_modules", "typescript", "bin", "tsc"), "-b"], {
    cwd: repoRoot,
    stdio: ["ignore", "inherit", "inherit"],
  });
  if (r.status !== 0) throw new Error(`tsc -b failed (exit ${r.status}): the services cannot run from dist/`);
  built = true;
}

/**
 * The analyzer's environment in the benchmarks: the HolySheep provider against a fake LLM at
 * `llmUrl`, 1 s windows, and budgets no benchmark reaches (they would degrade signals to the rules).
 */
export function benchAnalyzerEnv(
  natsUrl: string,
  llmUrl: string,
  extra: Readonly<Record<string, string>> = {},
): Record<string, string> {
  return {
    NATS_URL: natsUrl,
    HOLYSHEEP_API_KEY: "sk-bench-0123456789abcdef",
    HOLYSHEEP_BASE_URL: llmUrl,
    ANALYZER_INTERVALS: "1s",
    LLM_CONCURRENCY: "64",
    LLM_BUDGET_REQUESTS_PER_MIN: "1000000",
    LLM_BUDGET_TOKENS_PER_MIN: "1000000000",
    LLM_BUDGET_USD_PER_DAY: "1000000",
    ...extra,
  };
}

/** Every child started here, killed if this process ends first (a benchmark interrupted or timed out). */
const live = new Set<ChildProcess>();
let exitHooked = false;
function track(child: ChildProcess): ChildProcess {
  live.add(child);
  child.once("exit", () => live.delete(child));
  if (!exitHooked) {
    exitHooked = true;
    process.once("exit", () => {
      for (const c of live) c.kill("SIGKILL");
    });
    for (const signal of ["SIGINT", "SIGTERM"] as const)
      process.once(signal, () => {
        for (const c of live) c.kill("SIGKILL");
        process.exit(130);
      });
  }
  return child;
}

/** The V8 heap flags the Dockerfile gives every service (`NODE_OPTIONS`); keep the two equal. */
export const SERVICE_NODE_OPTIONS = "--max-semi-space-size=16 --max-old-space-size=192";

/**
 * The malloc the services run with. As the Dockerfile: jemalloc (Debian's libjemalloc2) preloaded, when
 * this machine has it. glibc's malloc kept the memory of a burst (frames held through a NATS outage,
 * then sent at once) in RSS for the rest of a run (400-symbol soak: ingest 100 -> 143 MB at a 3 s
 * outage, and it stayed); jemalloc hands it back (118 -> 107 MB). Without jemalloc: glibc with fewer
 * arenas, which helps a little (ingest's max RSS 193-195 MB rather than 220-225).
 */
const JEMALLOC = [
  "/usr/lib/x86_64-linux-gnu/libjemalloc.so.2",
  "/usr/lib/aarch64-linux-gnu/libjemalloc.so.2",
].find((p) => existsSync(p));
export const SERVICE_ALLOCATOR: { readonly name: string; readonly env: Readonly<Record<string, string>> } =
  JEMALLOC !== undefined
    ? { name: `jemalloc (LD_PRELOAD=${JEMALLOC}), as the image`, env: { LD_PRELOAD: JEMALLOC } }
    : {
        name: "glibc malloc with MALLOC_ARENA_MAX=2 (libjemalloc2 is not installed here; the image preloads jemalloc)",
        env: { MALLOC_ARENA_MAX: "2" },
      };

/** `--cpu-prof` flags when `BENCH_CPU_PROFILE_DIR` is set (NODE_OPTIONS does not accept them). */
function cpuProfileArgs(): string[] {
  const dir = process.env.BENCH_CPU_PROFILE_DIR;
  return dir !== undefined && dir !== "" ? ["--cpu-prof", `--cpu-prof-dir=${dir}`] : [];
}

/**
 * One service (`ingest`, `normalizer`, `analyzer`, `gateway`) from its build; stderr is passed through.
 * Its stdout (pino's JSON log lines) is discarded, or appended to `options.logFile`.
 * With `BENCH_CPU_PROFILE_DIR` set, each service writes a V8 CPU profile there when it exits
 * (`--cpu-prof`, which NODE_OPTIONS does not accept).
 */
export function spawnService(
  name: string,
  env: Readonly<Record<string, string>>,
  options: { readonly logFile?: string } = {},
): ChildProcess {
  ensureBuilt();
  const out = options.logFile === undefined ? "ignore" : openSync(options.logFile, "a");
  const profile = cpuProfileArgs();
  const child = track(
    spawn(process.execPath, [...profile, join(repoRoot, "services", name, "dist", "main.js")], {
      cwd: repoRoot,
      env: {
        PATH: process.env.PATH ?? "",
        LOG_LEVEL: "warn",
        METRICS_PORT: "0",
        NODE_OPTIONS: SERVICE_NODE_OPTIONS,
        ...SERVICE_ALLOCATOR.env,
        ...env,
      },
      stdio: ["ignore", out, "inherit"],
    }),
  );
  // The child has its own copy of the descriptor.
  if (typeof out === "number") closeSync(out);
  return child;
}

/** Stops children: SIGTERM, then SIGKILL for any still running after `graceMs`. */
export async function stopAll(children: readonly ChildProcess[], graceMs = 3_000): Promise<void> {
  const alive = children.filter((c) => c.exitCode === null && c.signalCode === null);
  const exited = alive.map((c) => new Promise<void>((r) => c.once("exit", () => r())));
  for (const c of alive) c.kill("SIGTERM");
  await Promise.race([Promise.all(exited), new Promise((r) => setTimeout(r, graceMs))]);
  for (const c of alive) if (c.exitCode === null && c.signalCode === null) c.kill("SIGKILL");
}

/** A TCP port free on 127.0.0.1 now (for a child's METRICS_PORT, so its /metrics can be read). */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => {
      const address = server.address();
      server.close(() => resolve(typeof address === "object" && address !== null ? address.port : 0));
    });
  });
}

/** Resident set size of a process in MB (0 once it is gone). */
export function rssMb(pid: number | undefined): number {
  return statusMb(pid, "VmRSS");
}

/** Peak resident set size of a live process in MB (`VmHWM`; 0 once it is gone). */
export function peakRssMb(pid: number | undefined): number {
  return statusMb(pid, "VmHWM");
}

/** A `kB` field of /proc/<pid>/status in MB (0 once the process is gone). */
function statusMb(pid: number | undefined, field: "VmRSS" | "VmHWM"): number {
  if (pid === undefined) return 0;
  try {
    const m = new RegExp(`${field}:\\s+(\\d+) kB`).exec(readFileSync(`/proc/${pid}/status`, "utf8"));
    return m === null ? 0 : Number(m[1]) / 1024;
  } catch {
    return 0;
  }
}

/** CPU seconds (user + system) a process has used so far, from /proc (0 once it is gone). */
export function cpuSeconds(pid: number | undefined): number {
  if (pid === undefined) return 0;
  try {
    const fields = readFileSync(`/proc/${pid}/stat`, "utf8").split(") ")[1]!.split(" ");
    return (Number(fields[11]) + Number(fields[12])) / 100; // utime, stime in clock ticks (USER_HZ = 100)
  } catch {
    return 0;
  }
}

/** What the simulator child replays. */
export interface SimChildOptions {
  readonly recording: keyof typeof fixtures;
  /** Renamed copies of the recording's symbols. */
  readonly copies: number;
  /** Stream kinds left out (e.g. bookTicker, which ingest does not subscribe). */
  readonly dropKinds?: readonly string[];
  /** Divide the recording's timeline by this. */
  readonly compress?: number;
  /**
   * Seconds of the recording between copies' starts (`scaleRecording`'s `stagger`), at most: less
   * when the run's `rate` × `seconds` would otherwise outlast the shortest copy (0 when even aligned
   * copies barely last). The stagger used is in `SimulatorProcess.stagger`.
   */
  readonly stagger?: number;
  /**
   * `scaleRecording`'s `loop`: each copy goes round the recording once from where it starts, so all
   * last as long and `stagger` is capped only by the recording's length ÷ `copies`.
   */
  readonly loop?: boolean;
  /** Total frames per second to replay at (sets the speed); real time when absent. */
  readonly rate?: number;
  /** Seconds over which `rate` must hold on average (the part of the recording a run replays). */
  readonly seconds?: number;
  /**
   * V8 old-space limit of the simulator process in MB (`--max-old-space-size`); Node's default when
   * absent. Hundreds of copies hold millions of events (400 copies of BTCUSDT: 5.3 M events, and the
   * process peaked at 6 GB RSS during a 10-minute soak).
   */
  readonly maxOldSpaceMb?: number;
  /** REST request weight the simulator allows per minute (Binance's 6000 when absent). */
  readonly weightLimitPerMinute?: number;
  /** The simulator's `maxLagMs`: how late its replay may run before it slows down (never, when absent). */
  readonly maxLagMs?: number;
}

/** Which open connections `dropConnections` drops: one by id, one picked at random, or all. */
export type SimDropTarget = number | "random" | "all";

/** The replay's progress as the simulator child reports it. */
export interface SimProgress extends ReplayProgress {
  /**
   * Wall time of the replay so far in ms: from `start()` until it finished, was paused, or now (0
   * before `start()`).
   */
  readonly elapsedMs: number;
}

/** @internal IPC request to the simulator child. */
export interface SimRequest {
  readonly id: number;
  readonly op:
    "start" | "pause" | "progress" | "replayedBySymbol" | "openConnections" | "dropConnections" | "close";
  /** `dropConnections`: which connections, and how many must be open for any to be dropped. */
  readonly drop?: { readonly target: SimDropTarget; readonly minOpen: number };
}
/** @internal IPC reply from the simulator child (id 0: ready). */
export interface SimReply {
  readonly id: number;
  readonly result: unknown;
}

/** The simulator child, seen from the benchmark. */
export interface SimulatorProcess {
  readonly wsUrl: string;
  readonly restUrl: string;
  readonly symbols: readonly string[];
  readonly speed: number;
  /** Seconds of the recording between copies' starts (0: every copy replays the same moment). */
  readonly stagger: number;
  readonly pid: number | undefined;
  start(): Promise<void>;
  pause(): Promise<void>;
  progress(): Promise<SimProgress>;
  /**
   * Events replayed so far per symbol (snapshots included), in `symbols`' order: how far into its own
   * events each copy is, whatever order the copies are interleaved in.
   */
  replayedBySymbol(): Promise<number[]>;
  /** WebSocket connections open now. */
  openConnections(): Promise<number>;
  /**
   * Drops open WebSocket connections without a close handshake (as a network fault would): `target`
   * one by id, one at random (default) or all, and only if at least `minOpen` are open. Resolves to
   * how many were dropped.
   */
  dropConnections(target?: SimDropTarget, minOpen?: number): Promise<number>;
  close(): Promise<void>;
}

/** The fake OpenAI-compatible server in a child process (bench/lib/fake-llm-child.ts). */
export interface FakeLlmProcess {
  readonly url: string;
  readonly pid: number | undefined;
  close(): Promise<void>;
}

/**
 * Starts the fake LLM in a process of its own, so that answering calls takes no CPU from the process
 * measuring beside it (a burst of calls would delay what that process timestamps).
 */
export async function startFakeLlmProcess(): Promise<FakeLlmProcess> {
  const child = track(
    spawn(
      process.execPath,
      ["--conditions=l2flow-source", "--import", "tsx", join(repoRoot, "bench", "lib", "fake-llm-child.ts")],
      { cwd: repoRoot, stdio: ["ignore", "pipe", "inherit"] },
    ),
  );
  const url = await new Promise<string>((resolve, reject) => {
    child.once("exit", (code) => reject(new Error(`the fake LLM process exited (${code})`)));
    child.stdout!.once("data", (d: Buffer) => resolve(String(d).trim()));
  });
  return { url, pid: child.pid, close: () => stopAll([child]) };
}

/** Starts the simulator child and waits until it listens. */
export async function startSimulatorProcess(options: SimChildOptions): Promise<SimulatorProcess> {
  const child = track(
    spawn(
      process.execPath,
      [
        ...(options.maxOldSpaceMb === undefined ? [] : [`--max-old-space-size=${options.maxOldSpaceMb}`]),
        ...cpuProfileArgs(),
        "--conditions=l2flow-source",
        "--import",
        "tsx",
        join(repoRoot, "bench", "lib", "sim-child.ts"),
      ],
      {
        cwd: repoRoot,
        env: { ...process.env, L2FLOW_SIM_OPTIONS: JSON.stringify(options) },
        stdio: ["ignore", "inherit", "inherit", "ipc"],
      },
    ),
  );
  type Info = { wsUrl: string; restUrl: string; symbols: string[]; speed: number; stagger: number };
  const pending = new Map<number, { resolve: (result: unknown) => void; reject: (err: Error) => void }>();
  let nextId = 1;
  let exited: Error | undefined;
  child.once("exit", (code, signal) => {
    exited = new Error(`the simulator process exited (${signal ?? code})`);
    for (const p of pending.values()) p.reject(exited);
    pending.clear();
  });
  const ready = new Promise<Info>((resolve, reject) =>
    pending.set(0, { resolve: (r) => resolve(r as Info), reject }),
  );
  child.on("message", (reply: SimReply) => {
    const p = pending.get(reply.id);
    pending.delete(reply.id);
    p?.resolve(reply.result);
  });
  const call = <T>(op: SimRequest["op"], drop?: SimRequest["drop"]) =>
    new Promise<T>((resolve, reject) => {
      if (exited !== undefined) return reject(exited);
      const id = nextId++;
      pending.set(id, { resolve: resolve as (result: unknown) => void, reject });
      child.send({ id, op, ...(drop === undefined ? {} : { drop }) } satisfies SimRequest);
    });
  const info = await ready.catch((err: Error) => {
    throw new Error(`${err.message} before it listened`);
  });
  return {
    ...info,
    pid: child.pid,
    start: () => call("start"),
    pause: () => call("pause"),
    progress: () => call("progress"),
    replayedBySymbol: () => call("replayedBySymbol"),
    openConnections: () => call("openConnections"),
    dropConnections: (target = "random", minOpen = 0) => call("dropConnections", { target, minOpen }),
    close: async () => {
      if (exited !== undefined) return;
      const gone = new Promise((r) => child.once("exit", r));
      child.send({ id: nextId++, op: "close" } satisfies SimRequest);
      await Promise.race([gone, new Promise((r) => setTimeout(r, 5_000))]);
      if (exited === undefined) child.kill("SIGKILL");
    },
  };
}

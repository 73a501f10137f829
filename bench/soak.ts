/**
 * `npm run soak -- [--minutes 10] [--copies 100]`: the whole pipeline under injected faults, each
 * service in its own process from its build, as shipped (two ingest replicas, the normalizer, the
 * analyzer), reporting anything
 * lost or duplicated and every service's memory over time (issue 8 items 5 and 6).
 *
 * The simulator replays the BTCUSDT recording as `copies` renamed symbols, stretched or compressed to
 * last `minutes`, each copy starting further into the recording and going round it once (`--stagger`).
 * Faults: a WebSocket connection dropped every 20 s, NATS stopped for 3 s at 40 % of
 * the run, a normalizer killed with SIGKILL at 60 % and started again (it resumes from its checkpoints),
 * and one LLM request in five answered with HTTP 500. At the end MD_RAW must hold every trade and diff
 * of the replay exactly once, MD_WINDOW every window once, every closed 1 s window exactly one signal,
 * and each service's RSS must stay below 200 MB without growing. Writes
 * bench/results/soak-<date>-<copies>sym.md.
 *
 * This process stays small whatever `copies` is: the scaled recording (400 copies: 5.3 M events) exists
 * only in the simulator's own process (bench/lib/sim-child.ts); what was replayed is worked out from the
 * base recording, and the streams are checked message by message against a byte per expected id.
 */
import type { ChildProcess } from "node:child_process";
import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { availableParallelism, tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import { connectBus, listConsumers, type Bus } from "@l2flow/bus";
import { intervalMs, Signal, STREAMS, Window } from "@l2flow/contracts";
import { readRecording, type RecordedEvent, type Recording } from "@l2flow/recording";
import { fixtures, forEachStored, readMetric, startFakeLlm, startTestNats } from "@l2flow/testkit";
import {
  benchAnalyzerEnv,
  cpuSeconds,
  freePort,
  peakRssMb,
  rssMb,
  SERVICE_ALLOCATOR,
  spawnService,
  startSimulatorProcess,
  stopAll,
} from "./lib/procs.js";
import { copyName, CopyLayout, LOOP_GAP_S, loopStaggerLimit, recordingSpan } from "./lib/scale.js";

const repoRoot = resolve(dirname(fileURLToPath(import.meta.url)), "..");
/**
 * How late the simulator's replay may run (it shares the cores with what it feeds) before it slows
 * down: without a bound it caught up in bursts of up to 1.5x the planned rate, replaying the
 * recording faster than planned in exactly the moments the pipeline was already short of CPU.
 */
const REPLAY_MAX_LAG_MS = 250;
const { values } = parseArgs({
  options: {
    minutes: { type: "string", default: "10" },
    copies: { type: "string", default: "100" },
    normalizers: { type: "string", default: "1" },
    "snapshot-limit": { type: "string", default: "100" },
    stagger: { type: "string", default: "auto" },
    "log-dir": { type: "string" },
    "normalizer-env": { type: "string", default: "" },
  },
});
const minutes = Number(values.minutes);
const copies = Number(values.copies);
/** Normalizer partitions, a process each (the symbols split by hash, as NORMALIZER_PARTITIONS does). */
const normalizers = Number(values.normalizers);
/**
 * Levels a side in the snapshots ingest asks for. 100 (weight 5, the default): two replicas fetch 400
 * snapshots at start within Binance's 6000 a minute. Books then grow toward the recording's ~3,400
 * levels as diffs touch new prices, and a normalizer's memory with them ("book levels" in the report).
 * Deeper snapshots (1000 is ingest's default, the recording's own depth) start books near full size;
 * the simulator's weight budget is then lifted, since 800 of them would take minutes under Binance's.
 */
const snapshotLimit = Number(values["snapshot-limit"]);
/**
 * Seconds of the recording between two copies' starts (`scaleRecording`'s `stagger`, each copy going
 * round the recording once: `loop`). "auto", the default: the most that fits, a multiple of 0.1 s (400
 * copies of the 346 s recording: 0.8 s), so the recording's bursts reach the copies at different
 * moments as they would reach 400 real symbols. 0: every copy replays the same moment (lockstep, as the
 * soaks before 2026-12-07 did), and the recording's densest 20 s arrive 400 times at once.
 */
const staggerArg = values.stagger === "auto" ? undefined : Number(values.stagger);
/**
 * Settings for the normalizers besides the soak's own, `KEY=VALUE` comma-separated (e.g.
 * `NORMALIZER_THREAD=on`): the report names them, and its file name says the run had some.
 */
const normalizerEnv = Object.fromEntries(
  values["normalizer-env"]
    .split(",")
    .filter((kv) => kv.trim() !== "")
    .map((kv) => {
      const at = kv.indexOf("=");
      return at > 0 ? [kv.slice(0, at).trim(), kv.slice(at + 1).trim()] : ["", kv];
    }),
);
if (
  !(minutes > 0) ||
  !Number.isInteger(copies) ||
  copies < 1 ||
  !Number.isInteger(normalizers) ||
  normalizers < 1 ||
  !Number.isInteger(snapshotLimit) ||
  snapshotLimit < 1 ||
  snapshotLimit > 5000 ||
  (staggerArg !== undefined && !(staggerArg >= 0)) ||
  "" in normalizerEnv
) {
  process.stderr.write(
    "usage: npm run soak -- [--minutes N (> 0)] [--copies N (integer >= 1)] [--normalizers N (integer >= 1)] [--snapshot-limit N (1-5000)] [--stagger auto|S (>= 0)] [--normalizer-env KEY=VALUE,...] [--log-dir DIR]\n",
  );
  process.exit(2);
}
/** Each service's log (pino's JSON lines at LOG_LEVEL=warn), one file per service, kept after the run. */
const logDir = resolve(
  values["log-dir"] ?? join(tmpdir(), `l2flow-soak-${new Date().toISOString().replace(/[:.]/g, "-")}`),
);
mkdirSync(logDir, { recursive: true });
const log = (msg: string) =>
  process.stderr.write(`[soak ${new Date().toISOString().slice(11, 19)}] ${msg}\n`);

/**
 * What the services logged (warnings and errors, as LOG_LEVEL=warn writes them), counted by service,
 * level and message: a fault's expected complaints, or the cause of anything lost.
 */
function logSummary(services: readonly string[]): string[] {
  const rows: string[] = [];
  for (const service of services) {
    let text = "";
    try {
      text = readFileSync(join(logDir, `${service}.log`), "utf8");
    } catch {
      continue;
    }
    const counts = new Map<string, number>();
    for (const line of text.split("\n")) {
      if (line === "") continue;
      let entry: { level?: unknown; msg?: unknown };
      try {
        entry = JSON.parse(line) as { level?: unknown; msg?: unknown };
      } catch {
        entry = { msg: `(not JSON) ${line.slice(0, 80)}` };
      }
      // The services log level labels ("warn", "error"), not pino's numbers.
      const level = typeof entry.level === "string" ? entry.level : "?";
      const key = `${level}\u0000${typeof entry.msg === "string" ? entry.msg : "?"}`;
      counts.set(key, (counts.get(key) ?? 0) + 1);
    }
    for (const [key, n] of [...counts].sort((a, b) => b[1] - a[1])) {
      const [level, msg] = key.split("\u0000");
      rows.push(`| ${service} | ${level} | ${msg!.replaceAll("|", "\\|")} | ${n} |`);
    }
  }
  return [
    `Service logs (${logDir}): warnings and errors by message.`,
    "",
    ...(rows.length === 0
      ? ["None."]
      : ["| service | level | message | lines |", "|---|---|---|---:|", ...rows]),
  ];
}

const DROP_KINDS = ["bookTicker"];

/**
 * The ids one symbol of the replay carries in its trades (`t`) or diffs (`u`): sorted, each once, with
 * the position among that symbol's own events (its snapshot included) of the event that first
 * carries it.
 */
interface ExpectedIds {
  readonly ids: Float64Array;
  readonly firstEvent: Int32Array;
}

/**
 * What the simulator child replays, worked out from the base recording and the layout the child
 * scales it by (`CopyLayout`: the same copies, event for event) without building the scaled recording:
 * per symbol of the replay, the trade and diff ids it carries and where in its own events each first
 * appears. How far the replay got is then each symbol's count of replayed events, which the child
 * reports (the copies are interleaved in time, not event by event, once they are staggered).
 */
function planReplay(recording: Recording, layout: CopyLayout, copies: number) {
  /** A frame's trade id or diff `u` (parsed once per recorded event, twin or wrap diff). */
  const idOf = new Map<RecordedEvent, { trade: boolean; id: number } | null>();
  const idFor = (e: RecordedEvent) => {
    let x = idOf.get(e);
    if (x === undefined) {
      const o = e.type === "frame" ? (JSON.parse(e.data) as { e?: string; t?: number; u?: number }) : {};
      x =
        o.e === "trade"
          ? { trade: true, id: o.t! }
          : o.e === "depthUpdate"
            ? { trade: false, id: o.u! }
            : null;
      idOf.set(e, x);
    }
    return x;
  };
  const expected = (pairs: [number, number][]): ExpectedIds => {
    pairs.sort((a, b) => a[0] - b[0] || a[1] - b[1]);
    const unique = pairs.filter((p, i) => i === 0 || p[0] !== pairs[i - 1]![0]);
    return {
      ids: Float64Array.from(unique, (p) => p[0]),
      firstEvent: Int32Array.from(unique, (p) => p[1]),
    };
  };
  const bySymbol = new Map<string, { trades: ExpectedIds; diffs: ExpectedIds; snapshots: Int32Array }>();
  let events = 0;
  let frames = 0;
  let diffs = 0;
  let firstAt = Infinity;
  let lastAt = -Infinity;
  for (let c = 0; c < copies; c++) {
    const own = new Map<
      string,
      { n: number; trades: [number, number][]; diffs: [number, number][]; snapshots: number[] }
    >();
    for (const { event, at } of layout.copy(c)) {
      let p = own.get(event.symbol);
      if (p === undefined) own.set(event.symbol, (p = { n: 0, trades: [], diffs: [], snapshots: [] }));
      const position = p.n++;
      events++;
      if (event.type === "snapshot") {
        p.snapshots.push(position);
        continue;
      }
      frames++;
      firstAt = Math.min(firstAt, at);
      lastAt = Math.max(lastAt, at);
      const x = idFor(event);
      if (x?.trade === true) p.trades.push([x.id, position]);
      else if (x !== null) {
        p.diffs.push([x.id, position]);
        diffs++;
      }
    }
    for (const [symbol, p] of own)
      bySymbol.set(copyName(c, symbol), {
        trades: expected(p.trades),
        diffs: expected(p.diffs),
        snapshots: Int32Array.from(p.snapshots),
      });
  }
  const symbols: string[] = [];
  for (let c = 0; c < copies; c++) for (const s of recording.symbols) symbols.push(copyName(c, s));
  const spanS = (lastAt - firstAt) / 1e6;
  return {
    symbols,
    bySymbol,
    /** Events of the scaled recording (what the child's `progress().total` must be). */
    events,
    /** Frames and diffs replayed, from each symbol's count of replayed events (`symbols`' order). */
    replayedCounts(replayed: readonly number[]) {
      let frameCount = 0;
      let diffCount = 0;
      symbols.forEach((symbol, i) => {
        const k = replayed[i] ?? 0;
        const p = bySymbol.get(symbol);
        if (p === undefined) return;
        frameCount += k - p.snapshots.filter((at) => at < k).length;
        for (const at of p.diffs.firstEvent) if (at < k) diffCount++;
      });
      return { frames: frameCount, diffs: diffCount };
    },
    /** As planned: frames per second in total, and ms between two diffs of one symbol. */
    plannedFrameRate: spanS > 0 ? frames / spanS : 0,
    plannedDiffEveryMs: diffs > 0 ? (1000 * spanS * symbols.length) / diffs : 0,
  };
}
type Plan = ReturnType<typeof planReplay>;

/**
 * Occurrences of each id in one kind of message (trades or diffs) of every symbol of the replay:
 * a byte per expected id and symbol (saturating at 255), and a map only for ids not expected at all.
 */
class IdTally {
  readonly #counts = new Map<string, Uint8Array>();
  readonly #unexpected = new Map<string, Map<number, number>>();
  unknownSymbols = 0;

  constructor(
    private readonly plan: Plan,
    private readonly which: "trades" | "diffs",
  ) {
    for (const [symbol, p] of plan.bySymbol) this.#counts.set(symbol, new Uint8Array(p[which].ids.length));
  }

  record(symbol: string, id: number): void {
    const counts = this.#counts.get(symbol);
    if (counts === undefined) {
      this.unknownSymbols++;
      return;
    }
    const i = indexOf(this.plan.bySymbol.get(symbol)![this.which].ids, id);
    if (i >= 0) {
      if (counts[i]! < 255) counts[i] = counts[i]! + 1;
      return;
    }
    let m = this.#unexpected.get(symbol);
    if (m === undefined) this.#unexpected.set(symbol, (m = new Map<number, number>()));
    m.set(id, (m.get(id) ?? 0) + 1);
  }

  /**
   * Each id replayed for a symbol exactly once: the ids expected, how many of them never arrived, and
   * how many ids (expected or not) arrived more than once.
   */
  compare(replayed: readonly number[]) {
    let expected = 0;
    let missing = 0;
    let duplicated = 0;
    let unexpected = 0;
    for (const [index, symbol] of this.plan.symbols.entries()) {
      const counts = this.#counts.get(symbol)!;
      const { firstEvent } = this.plan.bySymbol.get(symbol)![this.which];
      const upTo = replayed[index] ?? 0;
      for (let i = 0; i < counts.length; i++) {
        if (firstEvent[i]! < upTo) {
          expected++;
          if (counts[i] === 0) missing++;
        }
        if (counts[i]! > 1) duplicated++;
      }
      for (const n of this.#unexpected.get(symbol)?.values() ?? []) {
        unexpected++;
        if (n > 1) duplicated++;
      }
    }
    return { expected, missing, duplicated, unexpected };
  }
}

/** Index of `id` in the sorted `ids`, or -1. */
function indexOf(ids: Float64Array, id: number): number {
  let lo = 0;
  let hi = ids.length - 1;
  while (lo <= hi) {
    const mid = (lo + hi) >>> 1;
    const v = ids[mid]!;
    if (v === id) return mid;
    if (v < id) lo = mid + 1;
    else hi = mid - 1;
  }
  return -1;
}

/**
 * A stream's messages and, per consumer, how far it has been delivered: `MD_RAW 264,227 [121,935
 * pending at seq 142,292]` (`?` while NATS does not answer).
 */
async function backlog(bus: Bus, stream: string): Promise<string> {
  try {
    const info = await bus.jsm.streams.info(stream);
    const consumers: string[] = [];
    for await (const c of listConsumers(bus, stream)) {
      const acks = c.num_ack_pending > 0 ? `, ${fmt(c.num_ack_pending)} unacked` : "";
      consumers.push(`${fmt(c.num_pending)} pending at seq ${fmt(c.delivered.stream_seq)}${acks}`);
    }
    return `${stream} ${fmt(info.state.messages)} [${consumers.join("; ")}]`;
  } catch {
    return `${stream} ?`;
  }
}

const base = readRecording(fixtures.btcusdt);
// The span CopyLayout replays (from the first frame), so that copies fill `minutes` exactly.
const durationS = recordingSpan(base).spanUs / 1e6;
const stagger = staggerArg ?? loopStaggerLimit(base, copies);
// A looping copy replays the whole recording and the gap before its second pass.
const compress = (durationS + (stagger > 0 ? LOOP_GAP_S : 0)) / (minutes * 60);
const scaling = { copies, compress, dropKinds: DROP_KINDS, stagger, loop: true } as const;
const plan = planReplay(base, new CopyLayout(base, scaling), copies);
const fmt = (n: number) => Math.round(n).toLocaleString("en-US");
const copiesApart =
  stagger > 0
    ? `each copy starting ${stagger} s further into it than the one before and going round it once`
    : "every copy at the same moment of it (lockstep)";
log(
  `${plan.symbols.length} symbols, ${fmt(plan.events)} events, ~${fmt(plan.plannedFrameRate)} frames/s and ` +
    `one diff every ${plan.plannedDiffEveryMs.toFixed(0)} ms per symbol for ${minutes} min ` +
    `(the ${durationS.toFixed(0)} s recording's time ×${(1 / compress).toFixed(3)}, ${copiesApart})`,
);
const nats = await startTestNats();
// procs.ts kills the services and the simulator if this process is interrupted; nats-server too.
process.once("exit", () => {
  if (nats.pid !== undefined) {
    try {
      process.kill(nats.pid, "SIGKILL");
    } catch {
      // already gone
    }
  }
});
const llm = await startFakeLlm();
let llmCalls = 0;
llm.setDefault((req) =>
  ++llmCalls % 5 === 0
    ? { kind: "status", status: 500, body: { error: { message: "injected" } } }
    : {
        kind: "json",
        body: {
          sentiment: "neutral",
          confidence: 0.5,
          pressure: "balanced",
          rationale: `soak ${req.body.model ?? ""}`,
        },
      },
);
const sim = await startSimulatorProcess({
  recording: "btcusdt",
  ...scaling,
  // The scaled recording lives in the simulator process: with what the replay keeps, ~15 MB per copy
  // of BTCUSDT (400 copies peaked at 6 GB RSS), past Node's default heap limit (~4 GB here) from a few
  // hundred copies on.
  ...(copies > 200 ? { maxOldSpaceMb: 12_288 } : {}),
  ...(snapshotLimit > 100 ? { weightLimitPerMinute: 100_000_000 } : {}),
  maxLagMs: REPLAY_MAX_LAG_MS,
});
if (sim.symbols.join(",") !== plan.symbols.join(",") || sim.stagger !== stagger)
  throw new Error("the simulator process replays other symbols or copies than this soak expects");
const common = { NATS_URL: nats.url };
const ingestEnv = {
  ...common,
  BINANCE_WS_URL: sim.wsUrl,
  BINANCE_REST_URL: sim.restUrl,
  SYMBOLS: plan.symbols.join(","),
  SNAPSHOT_LIMIT: String(snapshotLimit),
};
/** Each service's ops port, so the soak can read its heap from /metrics. */
const ports = new Map<string, number>();
/** How each service was started, so a killed one starts again the same way (same port). */
const launches = new Map<string, () => ChildProcess>();
const service = async (
  key: string,
  name: string,
  env: Record<string, string>,
): Promise<[string, ChildProcess]> => {
  const port = await freePort();
  ports.set(key, port);
  // A restarted service appends to the same file.
  const launch = () =>
    spawnService(name, { ...env, METRICS_PORT: String(port) }, { logFile: join(logDir, `${key}.log`) });
  launches.set(key, launch);
  return [key, launch()];
};
const children: Record<string, ChildProcess> = Object.fromEntries(
  await Promise.all([
    service("ingest-1", "ingest", ingestEnv),
    service("ingest-2", "ingest", ingestEnv),
    ...Array.from({ length: normalizers }, (_, i) =>
      service(normalizers === 1 ? "normalizer" : `normalizer-${i + 1}`, "normalizer", {
        ...common,
        WINDOW_INTERVALS: "1s",
        NORMALIZER_PARTITIONS: String(normalizers),
        NORMALIZER_PARTITION: String(i),
        ...normalizerEnv,
      }),
    ),
    service(
      "analyzer",
      "analyzer",
      // The soak's LLM fails on purpose now and then: a short cool-down lets the breaker close again.
      benchAnalyzerEnv(nats.url, llm.url, { LLM_CONCURRENCY: "32", LLM_BREAKER_COOLDOWN_MS: "2000" }),
    ),
  ]),
);
const rss: Record<string, number[]> = Object.fromEntries(Object.keys(children).map((k) => [k, []]));
/**
 * Per service, as its /metrics reports it (MB): V8 heap in use (live objects plus garbage not yet
 * collected), V8 heap committed, and memory outside the heap that V8 knows of (Buffers, ArrayBuffers).
 * With RSS they say where a process's memory is.
 */
interface HeapSample {
  used: number;
  total: number;
  external: number;
  /** A normalizer's book levels (`l2flow_normalizer_book_levels`), NaN for other services. */
  levels: number;
  /** A normalizer's processing thread's heap used and committed (NORMALIZER_THREAD=on), else NaN. */
  threadUsed: number;
  threadTotal: number;
  /** Ingest's bytes waiting to be sent (MB) and messages waiting or unconfirmed (its gauges, set each second), else NaN. */
  ingestBuffered: number;
  ingestWaiting: number;
}
/**
 * Below this share of the plan replayed, a pass says it was at a lighter load: the simulator shares the
 * cores with what it feeds and falls behind when they are busy (53 % in a slow hour before `20e126d`
 * made it cheaper, a pass at half the load it claims).
 */
const FULL_LOAD_SHARE = 0.85;
/**
 * RSS a book level costs a normalizer, V8's heap headroom included. Two 400-symbol soaks replaying
 * different shares of the recording grew by the same ~100 B per level their books gained (at 596bdef
 * 124 → 153 MB for +281k levels; at 379a6ff 129 → 180 MB for +522k): memory that follows the data,
 * which the "flat" check leaves out so that it catches what does not (a leak).
 */
const RSS_BYTES_PER_BOOK_LEVEL = 100;
const heap: Record<string, HeapSample[]> = Object.fromEntries(Object.keys(children).map((k) => [k, []]));
const heapSample = async (port: number | undefined): Promise<HeapSample | undefined> => {
  try {
    const text = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
    // NaN for a metric the service does not have (another service's, or the thread's when it is off).
    const value = (name: string, labels = "") => readMetric(text, name, labels) ?? NaN;
    const mb = (name: string) => value(`l2flow_nodejs_${name}`) / 1024 / 1024;
    const sample = {
      used: mb("heap_size_used_bytes"),
      total: mb("heap_size_total_bytes"),
      external: mb("external_memory_bytes"),
      levels: value("l2flow_normalizer_book_levels"),
      threadUsed: value("l2flow_normalizer_thread_heap_bytes", 'what="used"') / 1024 / 1024,
      threadTotal: value("l2flow_normalizer_thread_heap_bytes", 'what="committed"') / 1024 / 1024,
      ingestBuffered: value("l2flow_ingest_buffer_bytes") / 1024 / 1024,
      ingestWaiting: value("l2flow_ingest_publish_in_flight"),
    };
    return Number.isNaN(sample.used) ? undefined : sample;
  } catch {
    return undefined;
  }
};
/**
 * Peak RSS per service, read every 250 ms. A burst lasts about two seconds (ingest sending what it
 * held through a NATS outage: 125 -> 212 -> 133 MB in a run sampled every 200 ms), which the 5 s series
 * missed (it saw 173 MB in that run).
 */
const rssPeak: Record<string, number> = {};
/**
 * Each service's /metrics read as its RSS reached its highest so far: where a peak's memory was (V8's
 * heap, its young generation grown in a burst, or Buffers outside it), which the 5 s series misses.
 */
const atPeak: Record<string, HeapSample & { rss: number }> = {};
const peakReads = new Set<string>();
const peakSampler = setInterval(() => {
  for (const [k, c] of Object.entries(children)) {
    const now = rssMb(c.pid);
    if (now <= (rssPeak[k] ?? 0)) continue;
    rssPeak[k] = now;
    if (peakReads.has(k)) continue;
    peakReads.add(k);
    void heapSample(ports.get(k))
      .then((sample) => {
        if (sample !== undefined) atPeak[k] = { ...sample, rss: now };
      })
      .finally(() => peakReads.delete(k));
  }
}, 250);
let simPeakMb = 0;
const sampler = setInterval(() => {
  for (const [k, c] of Object.entries(children)) rss[k]!.push(rssMb(c.pid));
  for (const k of Object.keys(children))
    void heapSample(ports.get(k)).then((sample) => {
      if (sample !== undefined) heap[k]!.push(sample);
    });
  simPeakMb = Math.max(simPeakMb, peakRssMb(sim.pid));
  // The fake LLM keeps every request it answered; this soak never reads them.
  llm.requests.length = 0;
}, 5_000);

let bus: Bus | undefined;
const report: string[] = [];
let failed = false;
try {
  bus = await connectBus({ servers: nats.url, name: "soak" });
  const pipeline = async () =>
    (
      await Promise.all([
        backlog(bus!, STREAMS.raw),
        backlog(bus!, STREAMS.window),
        backlog(bus!, STREAMS.signals),
      ])
    ).join(", ");
  const deadline = Date.now() + 60_000;
  while ((await sim.openConnections()) < 4) {
    if (Date.now() > deadline) throw new Error("the ingest replicas did not connect within 60 s");
    await new Promise((r) => setTimeout(r, 200));
  }
  await sim.start();
  const start = Date.now();
  const cpuStart = Object.fromEntries(Object.entries(children).map(([k, c]) => [k, cpuSeconds(c.pid)]));
  const simCpuStart = cpuSeconds(sim.pid);
  // nats-server restarts once (a new process): its CPU is summed over both.
  let natsCpu = 0;
  let natsCpuFrom = cpuSeconds(nats.pid);
  const end = start + minutes * 60_000;
  let drops = 0;
  let natsRestarted = false;
  /** The normalizer killed with SIGKILL and started again (once, at 60 % of the run). */
  const killed = normalizers === 1 ? "normalizer" : "normalizer-1";
  let killedAt: number | undefined;
  /** CPU seconds of processes that were replaced, per service. */
  const cpuCarry: Record<string, number> = {};
  while (Date.now() < end && !(await sim.progress()).finished) {
    await new Promise((r) => setTimeout(r, 20_000));
    drops += await sim.dropConnections("random", 4);
    if (!natsRestarted && Date.now() - start > minutes * 60_000 * 0.4) {
      natsRestarted = true;
      log("fault: NATS stopped for 3 s");
      natsCpu += cpuSeconds(nats.pid) - natsCpuFrom;
      await nats.stop();
      await new Promise((r) => setTimeout(r, 3_000));
      await nats.restart();
      natsCpuFrom = cpuSeconds(nats.pid);
    }
    if (killedAt === undefined && Date.now() - start > minutes * 60_000 * 0.6) {
      killedAt = Date.now();
      log(`fault: ${killed} killed with SIGKILL, started again in 2 s`);
      const old = children[killed]!;
      cpuCarry[killed] = cpuSeconds(old.pid) - cpuStart[killed]!;
      const gone = new Promise((r) => old.once("exit", r));
      old.kill("SIGKILL");
      await gone;
      await new Promise((r) => setTimeout(r, 2_000));
      children[killed] = launches.get(killed)!();
      cpuStart[killed] = 0;
    }
    const p = await sim.progress();
    const replayedFrames = plan.replayedCounts(await sim.replayedBySymbol()).frames;
    log(
      `progress ${Math.round((100 * p.replayed) / p.total)}% (${fmt(replayedFrames)} frames in ${(p.elapsedMs / 1000).toFixed(0)} s), ` +
        `${drops} connection drops; RSS ${Object.entries(rss)
          .map(([k, v]) => `${k} ${Math.round(v[v.length - 1] ?? 0)} MB`)
          .join(", ")}, simulator ${Math.round(rssMb(sim.pid))} MB; ${await pipeline()}`,
    );
  }
  await sim.pause();
  // Cores each process used while the simulator replayed (2 here, shared by all of them).
  const cores = (pid: number | undefined, from: number, carry = 0) =>
    (cpuSeconds(pid) - from + carry) / ((Date.now() - start) / 1000);
  // A process that died has no /proc entry left to read: its cores are unknown (NaN, shown as "died").
  const cpuUsed = Object.fromEntries(
    Object.entries(children).map(([k, c]) => [
      k,
      c.exitCode === null && c.signalCode === null ? cores(c.pid, cpuStart[k]!, cpuCarry[k]) : NaN,
    ]),
  );
  const simCores = cores(sim.pid, simCpuStart);
  const natsCores = cores(nats.pid, natsCpuFrom - natsCpu);
  const progress = await sim.progress();
  if (progress.total !== plan.events)
    throw new Error(
      `the simulator process replays ${progress.total} events, this soak expects ${plan.events}`,
    );
  const replayedBySymbol = await sim.replayedBySymbol();
  const replayed = plan.replayedCounts(replayedBySymbol);
  const replaySeconds = progress.elapsedMs / 1000;
  log(
    `replay ${progress.finished ? "finished" : "stopped"}: ${fmt(replayed.frames)} frames in ${replaySeconds.toFixed(1)} s; ` +
      `${await pipeline()}; draining`,
  );
  await new Promise((r) => setTimeout(r, 15_000));
  // The RSS series the limits apply to end here, as the check starts reading (minutes at 400 symbols).
  const rssChecked = Object.fromEntries(Object.entries(rss).map(([k, v]) => [k, v.slice()]));
  const drained = await pipeline();
  log(`after 15 s: ${drained}; checking`);
  const readStart = Date.now();
  const tally = { trades: new IdTally(plan, "trades"), diffs: new IdTally(plan, "diffs") };
  const decoder = new TextDecoder();
  const rawCount = await forEachStored(bus, STREAMS.raw, "md.raw.binance.>", ({ subject, data }) => {
    const [, , , kind, symbol] = subject.split(".");
    if (kind !== "trade" && kind !== "depth") return;
    const o = JSON.parse(decoder.decode(data)) as { t?: number; u?: number };
    if (kind === "trade") tally.trades.record(symbol!, o.t!);
    else tally.diffs.record(symbol!, o.u!);
  });
  const trades = tally.trades.compare(replayedBySymbol);
  const diffs = tally.diffs.compare(replayedBySymbol);
  // Signals per symbol and interval, by window start; then each closed window looked up as it is read.
  const signalKeys = new Map<string, Map<number, number>>();
  let signalCount = 0;
  await forEachStored(bus, STREAMS.signals, "signal.binance.>", ({ data }) => {
    const d = Signal.decode(data);
    const k = `${d.symbol}:${d.interval}`;
    let byStart = signalKeys.get(k);
    if (byStart === undefined) signalKeys.set(k, (byStart = new Map<number, number>()));
    byStart.set(d.windowStartTimeMs, (byStart.get(d.windowStartTimeMs) ?? 0) + 1);
    signalCount++;
  });
  let windowCount = 0;
  let withoutSignal = 0;
  /** Windows stored more than once (per symbol and interval, the start times seen). */
  const windowStarts = new Map<string, Set<number>>();
  let windowsTwice = 0;
  await forEachStored(bus, STREAMS.window, "md.window.binance.>", ({ data }) => {
    const d = Window.decode(data);
    windowCount++;
    const k = `${d.symbol}:${d.interval}`;
    let starts = windowStarts.get(k);
    if (starts === undefined) windowStarts.set(k, (starts = new Set<number>()));
    if (starts.has(d.startTimeMs)) windowsTwice++;
    starts.add(d.startTimeMs);
    if (signalKeys.get(k)?.has(d.startTimeMs) !== true) withoutSignal++;
  });
  let twice = 0;
  for (const byStart of signalKeys.values()) for (const n of byStart.values()) if (n > 1) twice++;
  // Windows absent between a symbol's first and last (a second of the replay without a trade has none;
  // the BTCUSDT recording trades several times a second, so any is suspect).
  let windowHoles = 0;
  for (const [k, starts] of windowStarts) {
    const step = intervalMs(k.slice(k.lastIndexOf(":") + 1));
    const sorted = [...starts].sort((a, b) => a - b);
    for (let i = 1; i < sorted.length; i++) windowHoles += (sorted[i]! - sorted[i - 1]!) / step - 1;
  }
  log(
    `read ${fmt(rawCount)} MD_RAW messages (${trades.unexpected + diffs.unexpected} ids not replayed, ` +
      `${tally.trades.unknownSymbols + tally.diffs.unknownSymbols} of unknown symbols), ${fmt(windowCount)} windows, ` +
      `${fmt(signalCount)} signals in ${((Date.now() - readStart) / 1000).toFixed(0)} s; now ${await pipeline()}`,
  );
  const memory = Object.entries(rssChecked).map(([k, v]) => {
    const firstMinute = v.slice(0, 12);
    const lastMinute = v.slice(-12);
    const avg = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / Math.max(1, xs.length);
    // Heap samples taken up to the check, like the RSS ones: the last minute's lowest is near the live set.
    const h = heap[k]!.slice(0, v.length).slice(-12);
    const range = (pick: (x: HeapSample) => number) =>
      h.length > 0 ? `${Math.min(...h.map(pick)).toFixed(0)}–${Math.max(...h.map(pick)).toFixed(0)}` : "-";
    // A normalizer with its processing thread has a second heap: "main + thread".
    const threaded = h.length > 0 && h.every((x) => !Number.isNaN(x.threadUsed));
    const heapRange = (main: (x: HeapSample) => number, thread: (x: HeapSample) => number) =>
      threaded ? `${range(main)} + ${range(thread)}` : range(main);
    // Book levels held, first minute → last minute (what a normalizer's memory grows with).
    const levels = heap[k]!.slice(0, v.length).map((x) => x.levels);
    const levelsGained =
      levels.length === 0 || Number.isNaN(levels[0]) ? 0 : avg(levels.slice(-12)) - avg(levels.slice(0, 12));
    return {
      service: k,
      first: avg(firstMinute),
      last: avg(lastMinute),
      /** MB of the growth that the levels the books gained account for. */
      books: (Math.max(0, levelsGained) * RSS_BYTES_PER_BOOK_LEVEL) / 1e6,
      max: Math.max(0, rssPeak[k] ?? 0, ...rss[k]!),
      cores: cpuUsed[k]!,
      levels:
        levels.length === 0 || Number.isNaN(levels[0])
          ? "-"
          : `${fmt(avg(levels.slice(0, 12)))} → ${fmt(avg(levels.slice(-12)))}`,
      heapUsed: heapRange(
        (x) => x.used,
        (x) => x.threadUsed,
      ),
      heapTotal: heapRange(
        (x) => x.total,
        (x) => x.threadTotal,
      ),
      external: range((x) => x.external),
    };
  });
  const memOk = memory.every((m) => m.max < 200 && m.last - m.books <= m.first * 1.25 + 10);
  const replayedShare = progress.finished ? 1 : progress.replayed / progress.total;
  failed =
    trades.missing + trades.duplicated + diffs.duplicated > 0 ||
    twice > 0 ||
    windowsTwice > 0 ||
    windowHoles > 0 ||
    withoutSignal > 0 ||
    !memOk;
  simPeakMb = Math.max(simPeakMb, peakRssMb(sim.pid));
  const soakPeakMb = process.resourceUsage().maxRSS / 1024;
  const perSymbolDiffs = replayed.diffs / plan.symbols.length;
  report.push(
    `# Soak ${new Date().toISOString().slice(0, 16)}Z: ${minutes} min, ${plan.symbols.length} symbols${normalizers > 1 ? `, ${normalizers} normalizer partitions` : ""}`,
    "",
    `Faults: ${drops} WebSocket connections dropped, NATS stopped for 3 s once, ${killedAt === undefined ? "no normalizer killed (the run ended first)" : `${killed} killed with SIGKILL ${((killedAt - start) / 1000).toFixed(0)} s in and started again`}, one LLM call in five answered 500. Services' malloc: ${SERVICE_ALLOCATOR.name}.${
      Object.keys(normalizerEnv).length > 0
        ? ` Normalizers with ${Object.entries(normalizerEnv)
            .map(([k, v]) => `${k}=${v}`)
            .join(", ")}.`
        : ""
    }`,
    "",
    `Replay: ${copies} copies of the ${durationS.toFixed(0)} s BTCUSDT recording (trades and diffs every 100 ms), ` +
      `${copiesApart}, its time ×${(1 / compress).toFixed(3)} to fill ${minutes} min, snapshots of ${snapshotLimit} levels a side: planned ${fmt(plan.plannedFrameRate)} frames/s ` +
      `(running more than ${REPLAY_MAX_LAG_MS} ms late, the replay slows down rather than catching up), ` +
      `one diff every ${plan.plannedDiffEveryMs.toFixed(0)} ms per symbol; replayed ${fmt(replayed.frames)} frames ` +
      `in ${replaySeconds.toFixed(1)} s (${progress.finished ? "all" : `${(100 * replayedShare).toFixed(1)} %`}): ` +
      `${fmt(replayed.frames / replaySeconds)} frames/s, one diff every ` +
      `${perSymbolDiffs > 0 ? ((1000 * replaySeconds) / perSymbolDiffs).toFixed(0) : "-"} ms per symbol.`,
    "",
    "| what | expected | missing | duplicated |",
    "|---|---:|---:|---:|",
    `| trades in MD_RAW | ${trades.expected} | ${trades.missing} | ${trades.duplicated} |`,
    `| diffs in MD_RAW | ${diffs.expected} | ${diffs.missing} | ${diffs.duplicated} |`,
    `| windows in MD_WINDOW (as stored; missing: absent between a symbol's first and last) | ${windowCount} | ${windowHoles} | ${windowsTwice} |`,
    `| signals for closed windows | ${windowCount} | ${withoutSignal} | ${twice} |`,
    "",
    "| service | RSS first minute (MB) | RSS last minute (MB) | RSS max (MB) | of the growth, the books' (MB) | V8 heap used | V8 heap committed | external (Buffers) | CPU (cores) | book levels |",
    "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ...memory.map(
      (m) =>
        `| ${m.service} | ${m.first.toFixed(0)} | ${m.last.toFixed(0)} | ${m.max.toFixed(0)} | ${m.levels === "-" ? "-" : m.books.toFixed(0)} | ${m.heapUsed} | ${m.heapTotal} | ${m.external} | ${Number.isNaN(m.cores) ? "died" : m.cores.toFixed(2)} | ${m.levels} |`,
    ),
    "",
    "V8 heap and external memory: the last minute's low–high in MB, from each service's /metrics (\"a + b\": the main " +
      "thread's heap and the normalizer's processing thread's); book levels: " +
      "the levels a normalizer's books hold, first minute → last minute (its memory grows with them). CPU: cores used " +
      `during the replay, of the machine's ${availableParallelism()}; the simulator used ${simCores.toFixed(2)}, ` +
      `nats-server ${natsCores.toFixed(2)}.`,
    "",
    `At each service's highest RSS read (every 250 ms), its /metrics right after (MB: V8 heap used / committed, external): ${Object.keys(
      children,
    )
      .map((k) => {
        const p = atPeak[k];
        if (p === undefined) return `${k} -`;
        const thread = Number.isNaN(p.threadUsed)
          ? ""
          : ` + thread ${p.threadUsed.toFixed(0)} / ${p.threadTotal.toFixed(0)}`;
        const ingest = Number.isNaN(p.ingestBuffered)
          ? ""
          : ` (${p.ingestBuffered.toFixed(0)} MB waiting to be sent, ${fmt(p.ingestWaiting)} frames waiting or unconfirmed)`;
        return `${k} at ${p.rss.toFixed(0)}: ${p.used.toFixed(0)} / ${p.total.toFixed(0)}${thread}, ${p.external.toFixed(0)}${ingest}`;
      })
      .join("; ")}.`,
    "",
    failed
      ? "**Result: FAIL**"
      : replayedShare < FULL_LOAD_SHARE
        ? `**Result: PASS, at ${(100 * replayedShare).toFixed(0)} % of the planned load**: the simulator could not ` +
          "replay faster on this machine, so this run did not test the planned rate."
        : "**Result: PASS**",
    "",
    "Diffs missed while both connection sets of both replicas were down are allowed to be missing (the normalizer " +
      "resyncs those symbols); a duplicate of anything is not. RSS must stay below 200 MB (the max is read every " +
      "250 ms, the minutes' averages every 5 s) and not grow by more than 25 % (+10 MB) from the first minute to the last, " +
      `leaving out what a normalizer's books gained: the recording's book deepens as diffs touch new prices (up to ` +
      `BOOK_MAX_LEVELS a side), and each level costs ~${RSS_BYTES_PER_BOOK_LEVEL} B of RSS, V8's heap headroom included.`,
    "",
    `Streams 15 s after the replay, when the check read them: ${drained} (per consumer: messages ` +
      `not yet delivered to the normalizer or the analyzer, and the last stream sequence delivered). Harness, not measured: soak process peak RSS ${soakPeakMb.toFixed(0)} MB, ` +
      `simulator process ${simPeakMb.toFixed(0)} MB.`,
  );
} finally {
  clearInterval(sampler);
  clearInterval(peakSampler);
  await stopAll(Object.values(children));
  await bus?.close();
  await sim.close();
  await llm.close();
  await nats.close();
}
if (report.length > 0) report.push("", ...logSummary(Object.keys(children)));
const text = report.join("\n") + "\n";
process.stdout.write(text);
const dir = join(repoRoot, "bench", "results");
mkdirSync(dir, { recursive: true });
writeFileSync(
  join(
    dir,
    `soak-${new Date().toISOString().slice(0, 10)}-${copies}sym${normalizers > 1 ? `-${normalizers}norm` : ""}${snapshotLimit !== 100 ? `-snap${snapshotLimit}` : ""}${Object.keys(normalizerEnv).length > 0 ? "-env" : ""}.md`,
  ),
  text,
);
process.exit(failed ? 1 : 0);

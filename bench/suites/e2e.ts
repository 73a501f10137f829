/**
 * End to end (issue 8 item 4): the simulator replays the BTCUSDT recording as 100 renamed symbols at
 * a fixed total frame rate; ingest, the normalizer and the analyzer (HolySheep provider against the
 * fake OpenAI server, answering at once) run as in production: each service a process of its own from
 * its build, the simulator, the fake LLM and nats-server each in another. Measured by a subscriber here:
 * - frame → book: from ingest's receive stamp (`L2-Receive-Ns`, carried as the book's
 *   `receive_time_us`) until the book snapshot arrives on MD_NORM;
 * - window → signal: from a window's arrival on MD_WINDOW until its signal arrives on SIGNALS;
 * - frame → MD_RAW, the part of frame → book before the normalizer: from the same stamp until
 *   nats-server delivers the raw diff to a plain subscriber here (every `RAW_SAMPLE_EVERY`th symbol).
 * Measuring starts once the start's backlog has drained (or stopped draining).
 * "Growing lag" compares the median frame → book latency of the last quarter with the first; a rate is
 * "held" when the lag did not grow, no standing backlog remains (last quarter's median under 100 ms)
 * and the simulator kept its pace. Each rate runs a minute (8 s with --quick), and one more rate
 * halfway between the highest held and the lowest not held narrows down the highest rate held.
 */
import { monitorEventLoopDelay, PerformanceObserver } from "node:perf_hooks";
import { epochNowNs } from "@l2flow/binance";
import { connectBus } from "@l2flow/bus";
import { HEADERS, Signal, subjects, Window } from "@l2flow/contracts";
import { startTestNats } from "@l2flow/testkit";
import { LatencyHistogram, latencyMetrics, TimedValues, type LatencySummary } from "../lib/histogram.js";
import { forceGc, stats } from "../lib/measure.js";
import { BOOK_RECEIVE_TIME_US_FIELD, peekVarintField } from "../lib/peek.js";
import {
  benchAnalyzerEnv,
  cpuSeconds,
  rssMb,
  spawnService,
  startFakeLlmProcess,
  startSimulatorProcess,
  stopAll,
} from "../lib/procs.js";
import type { Check, Row, SuiteContext, SuiteResult } from "../lib/types.js";

/** Suite id for `--only`. */
export const name = "e2e";
/** Report heading. */
export const title = "End to end: frame → book and window → signal latency at fixed rates";
/** After the normalizer. */
export const order = 50;

const COPIES = 100;
/**
 * Seconds of the recording between one copy's start and the next's. Copies replaying the same moment
 * would trade in lockstep: the recording's bursts (up to 161 frames in one millisecond) would arrive as
 * 100 such bursts at once, which 100 real symbols never send; staggered, each symbol trades on its own
 * while every symbol's depth updates stay on Binance's common 100 ms tick (a multiple of 0.1 s keeps
 * the phase). Each copy goes round the recording once from where it starts (`scaleRecording`'s
 * `loop`), so every copy lasts as long and 1.5 s holds at every rate (until 2026-12-07 copies ended
 * with the recording, and rates that need more of it got less stagger: 1.3 s at 10k, 0 at 20k).
 */
const STAGGER_S = 1.5;
/**
 * Replayed before measuring: until a book of every symbol has arrived (connections, snapshots and the
 * normalizer's consumers settled), then this many seconds more.
 */
const WARMUP_S = 2;
const WARMUP_MAX_S = 30;
/** Most seconds spent waiting for the start's backlog to drain before measuring. */
const SETTLE_MAX_S = 30;
/**
 * Frame → MD_RAW is measured on every this-many-th symbol's diffs: the stage's share of the latency
 * without this process reading every raw diff's headers beside every book.
 */
const RAW_SAMPLE_EVERY = 4;
/** A rate is held when, besides no growing lag, the last quarter's median frame → book is below this. */
const HELD_MAX_P50_MS = 100;

/**
 * A comparison run's one change from the services' defaults, side by side with the default run at the
 * same rate. The checks and the highest rate held use the default runs only.
 */
interface Variant {
  /** What the row adds to its label, as the setting reads ("" for the defaults). */
  readonly label: string;
  /** Environment for every service. */
  readonly all: Readonly<Record<string, string>>;
  /** Environment for the normalizer alone. */
  readonly normalizer: Readonly<Record<string, string>>;
  /** Only ingest runs (no normalizer, no analyzer): frame → MD_RAW without the later stages' CPU. */
  readonly ingestOnly?: boolean;
}

const DEFAULTS: Variant = { label: "", all: {}, normalizer: {} };
/** V8's default GC schedule in every service (libs/runtime gc.ts). */
const GC_OFF: Variant = { label: "GC_TUNING=off", all: { GC_TUNING: "off" }, normalizer: {} };
/** The normalizer's processing on a thread of its own, its NATS I/O on the main thread. */
const THREAD: Variant = { label: "NORMALIZER_THREAD=on", all: {}, normalizer: { NORMALIZER_THREAD: "on" } };
/** Ingest alone beside the simulator and nats-server: how much of MD_RAW's tail is its own. */
const INGEST_ONLY: Variant = { label: "ingest only", all: {}, normalizer: {}, ingestOnly: true };
/** The comparison runs, each at 10k frames/s after the default one. */
const VARIANTS_AT_10K: readonly Variant[] = [GC_OFF, THREAD, INGEST_ONLY];

/**
 * For targeted runs while developing (not for the recorded figures): `E2E_RATES=10000,15000` runs
 * only those rates and no comparison runs; `E2E_SECONDS=30` measures that long at each rate;
 * `E2E_VARIANTS=NORMALIZER_THREAD=on` runs those variants (by label, comma-separated) after each rate.
 */
function devOverrides(): { rates?: number[]; seconds?: number; variants?: Variant[] } {
  const list = (name: string) =>
    (process.env[name] ?? "")
      .split(",")
      .map((v) => v.trim())
      .filter((v) => v !== "");
  const rates = list("E2E_RATES").map(Number);
  const secondsText = process.env.E2E_SECONDS ?? "";
  const seconds = Number(secondsText);
  if (secondsText !== "" && !(seconds > 0))
    throw new Error(`E2E_SECONDS: expected seconds (> 0), got ${secondsText}`);
  const labels = list("E2E_VARIANTS");
  const variants = labels.map((l) => {
    const v = VARIANTS_AT_10K.find((x) => x.label === l);
    if (v === undefined)
      throw new Error(
        `E2E_VARIANTS: unknown ${l}; expected one of ${VARIANTS_AT_10K.map((x) => x.label).join(", ")}`,
      );
    return v;
  });
  if (rates.some((r) => !(r > 0)))
    throw new Error(`E2E_RATES: expected frames per second, got ${process.env.E2E_RATES}`);
  return {
    ...(rates.length > 0 ? { rates } : {}),
    ...(secondsText !== "" ? { seconds } : {}),
    ...(labels.length > 0 ? { variants } : {}),
  };
}

interface RateResult {
  readonly rate: number;
  /** The change from the defaults ("" for none): `Variant.label`. */
  readonly variant: string;
  /** Seconds of the recording between copies' starts (`STAGGER_S` or less). */
  readonly stagger: number;
  readonly achieved: number;
  readonly book: LatencySummary;
  readonly signal: LatencySummary;
  /** Frame → MD_RAW over the sampled symbols' diffs. */
  readonly raw: LatencySummary;
  /** This process's own pauses over the measured seconds (they delay what it times). */
  readonly measurer: MeasurerPauses;
  readonly firstQuarterP50Ms: number;
  readonly lastQuarterP50Ms: number;
  /** CPU used per process over the measured seconds, in cores (1 = one core busy). */
  readonly cpu: Readonly<Record<string, number>>;
  /** Resident memory per process at the end, MB. */
  readonly rss: Readonly<Record<string, number>>;
  readonly growing: boolean;
  /**
   * Kept up for the whole minute: the lag did not grow, the last quarter's median is under
   * `HELD_MAX_P50_MS` (no standing backlog) and the simulator sent at ≥ 95 % of its pace.
   */
  readonly held: boolean;
  /**
   * Recording time the simulator replayed over the measured seconds, as a share of what its speed
   * schedules: below 1 when it fell behind (starved of CPU, or a socket ingest did not drain).
   */
  readonly onSchedule: number;
}

/** The measuring process's own pauses: its event loop's longest stall and its longest GC pause, ms. */
interface MeasurerPauses {
  readonly maxStallMs: number;
  readonly longestGcMs: number;
}

/** Starts watching this process's event loop and GC; `stop` says how long its longest pauses were. */
function measurerPauses(): { stop(): MeasurerPauses } {
  const loop = monitorEventLoopDelay({ resolution: 5 });
  loop.enable();
  let longestGcMs = 0;
  const gc = new PerformanceObserver((list) => {
    for (const e of list.getEntries()) longestGcMs = Math.max(longestGcMs, e.duration);
  });
  gc.observe({ entryTypes: ["gc"] });
  return {
    stop() {
      loop.disable();
      gc.disconnect();
      return { maxStallMs: loop.max / 1e6, longestGcMs };
    },
  };
}

/** The median of `values`; 0 for none (a second in which no book arrived). */
function median(values: readonly number[]): number {
  return values.length === 0 ? 0 : stats(values).median;
}

async function runRate(
  rate: number,
  seconds: number,
  ctx: SuiteContext,
  variant: Variant = DEFAULTS,
): Promise<RateResult> {
  const nats = await startTestNats();
  const ingestOnly = variant.ingestOnly === true;
  // No analyzer, no LLM: the ingest-only row leaves out every process it does not measure.
  const llm = ingestOnly ? undefined : await startFakeLlmProcess();
  const sim = await startSimulatorProcess({
    recording: "btcusdt",
    copies: COPIES,
    dropKinds: ["bookTicker"],
    rate,
    seconds: seconds + 15, // the warm-up, then the measured seconds
    stagger: STAGGER_S,
    loop: true,
  });
  const common = { NATS_URL: nats.url, ...variant.all };
  const children = {
    ingest: spawnService("ingest", {
      ...common,
      BINANCE_WS_URL: sim.wsUrl,
      BINANCE_REST_URL: sim.restUrl,
      SYMBOLS: sim.symbols.join(","),
      SNAPSHOT_LIMIT: "100",
      WS_REDUNDANCY: "1",
    }),
    ...(llm === undefined
      ? {}
      : {
          normalizer: spawnService("normalizer", {
            ...common,
            WINDOW_INTERVALS: "1s",
            ...variant.normalizer,
          }),
          analyzer: spawnService("analyzer", benchAnalyzerEnv(nats.url, llm.url, variant.all)),
        }),
  };
  const bus = await connectBus({ servers: nats.url, name: "bench-e2e" });
  const book = new LatencyHistogram();
  const signal = new LatencyHistogram();
  const raw = new LatencyHistogram();
  // Kept lean (no decode, no object per book): this process's own pauses would count as latency.
  const samples = new TimedValues();
  const windowSeen = new Map<string, bigint>();
  /**
   * warm-up: books only mark their symbol as served; settle: their latencies go to `settling`, read a
   * second at a time; measure: into the histogram and samples; done: ignored.
   */
  let phase: "warm-up" | "settle" | "measure" | "done" = "warm-up";
  const settling: number[] = [];
  let books = 0;
  const booked = new Set<string>();
  /** Sampled symbols whose raw diffs have arrived (the warm-up's mark when only ingest runs). */
  const rawSeen = new Set<string>();
  const key = (symbol: string, interval: string, start: number) => `${symbol}:${interval}:${start}`;
  // Ingest stamps frames with the wall clock read through the monotonic clock (epochNowNs); this
  // process reads the same wall clock the same way.
  const sinceStampMs = (receiveUs: number) => (Number(epochNowNs() / 1000n) - receiveUs) / 1000;
  bus.nc.subscribe("md.book.binance.>", {
    callback: (_e, m) => {
      if (phase === "warm-up") {
        booked.add(m.subject);
        return;
      }
      if (phase === "done") return;
      const receiveUs = peekVarintField(m.data, BOOK_RECEIVE_TIME_US_FIELD);
      if (receiveUs === 0) return;
      const ms = sinceStampMs(receiveUs);
      if (phase === "settle") {
        settling.push(ms);
        return;
      }
      book.recordNs(Math.max(0, ms) * 1e6);
      samples.push(Date.now(), ms);
      books++;
    },
  });
  const sampled = sim.symbols.filter((_, i) => i % RAW_SAMPLE_EVERY === 0);
  for (const symbol of sampled)
    bus.nc.subscribe(subjects.raw("depth", symbol), {
      callback: (_e, m) => {
        if (phase === "warm-up") rawSeen.add(symbol);
        const stamp = phase === "measure" ? m.headers?.get(HEADERS.receiveNs) : undefined;
        if (stamp === undefined || stamp === "") return;
        raw.recordNs(Math.max(0, sinceStampMs(Number(BigInt(stamp) / 1000n))) * 1e6);
      },
    });
  bus.nc.subscribe("md.window.binance.>", {
    callback: (_e, m) => {
      if (phase !== "measure") return;
      const w = Window.decode(m.data);
      windowSeen.set(key(w.symbol, w.interval, w.startTimeMs), process.hrtime.bigint());
    },
  });
  bus.nc.subscribe("signal.binance.>", {
    callback: (_e, m) => {
      const s = Signal.decode(m.data);
      const t = windowSeen.get(key(s.symbol, s.interval, s.windowStartTimeMs));
      if (t !== undefined) signal.recordSince(t);
    },
  });
  const pids = {
    simulator: sim.pid,
    ...Object.fromEntries(Object.entries(children).map(([k, c]) => [k, c.pid])),
    "nats-server": nats.pid,
    ...(llm !== undefined ? { "fake LLM": llm.pid } : {}),
  };
  try {
    const deadline = Date.now() + 30_000;
    while ((await sim.openConnections()) === 0) {
      if (Date.now() > deadline) throw new Error("ingest did not connect to the simulator within 30 s");
      await new Promise((r) => setTimeout(r, 100));
    }
    ctx.log(
      `e2e: ${rate} frames/s over ${COPIES} symbols (simulator speed ${sim.speed.toFixed(2)}, copies ${sim.stagger} s apart${variant.label === "" ? "" : `, ${variant.label}`})`,
    );
    await sim.start();
    const warmupEnd = Date.now() + WARMUP_MAX_S * 1000;
    const warm = () => (ingestOnly ? rawSeen.size >= sampled.length : booked.size >= sim.symbols.length);
    while (!warm() && Date.now() < warmupEnd) await new Promise((r) => setTimeout(r, 100));
    ctx.log(
      ingestOnly
        ? `  raw diffs of ${rawSeen.size}/${sampled.length} sampled symbols after the warm-up; measuring ${seconds} s`
        : `  books of ${booked.size}/${sim.symbols.length} symbols after the warm-up; measuring ${seconds} s`,
    );
    await new Promise((r) => setTimeout(r, WARMUP_S * 1000));
    // At the higher rates the start (a snapshot per symbol, consumers starting) leaves a backlog that
    // outlasts the warm-up; measured from there, the first quarter would be the start, not the rate.
    // Wait until a second's median frame → book is under HELD_MAX_P50_MS or stops falling.
    phase = "settle";
    const settleEnd = Date.now() + SETTLE_MAX_S * 1000;
    let previous = Number.POSITIVE_INFINITY;
    let settledMs = Number.NaN;
    while (Date.now() < settleEnd) {
      settling.length = 0;
      await new Promise((r) => setTimeout(r, 1_000));
      settledMs = median(settling);
      if (settling.length === 0 || settledMs < HELD_MAX_P50_MS || settledMs > previous * 0.9) break;
      previous = settledMs;
    }
    ctx.log(`  lag settled at a median of ${settledMs.toFixed(1)} ms; measuring`);
    // This process's garbage so far goes now, and what waited meanwhile is read before measuring.
    forceGc();
    await new Promise((r) => setTimeout(r, 250));
    const cpu0 = Object.fromEntries(Object.entries(pids).map(([k, pid]) => [k, cpuSeconds(pid)]));
    const p0 = await sim.progress();
    const pauses = measurerPauses();
    const t0 = Date.now();
    phase = "measure";
    await new Promise((r) => setTimeout(r, seconds * 1000));
    const elapsed = (Date.now() - t0) / 1000;
    const measurer = pauses.stop();
    const p1 = await sim.progress();
    const achieved = (p1.replayed - p0.replayed) / elapsed;
    // A replay that looped meanwhile restarted its recording time: no measure, counted as on pace.
    const onSchedule =
      p1.loops === p0.loops
        ? ((p1.recordingTimeUs ?? 0) - (p0.recordingTimeUs ?? 0)) / (elapsed * 1e6 * sim.speed)
        : 1;
    const cpu = Object.fromEntries(
      Object.entries(pids).map(([k, pid]) => [k, (cpuSeconds(pid) - cpu0[k]!) / elapsed]),
    );
    const rss = Object.fromEntries(Object.entries(pids).map(([k, pid]) => [k, rssMb(pid)]));
    await sim.pause();
    await new Promise((r) => setTimeout(r, 1_500));
    phase = "done";
    const inWindow = samples.valuesFrom(t0);
    const q = Math.floor(inWindow.length / 4);
    const first = median(inWindow.slice(0, q));
    const last = median(inWindow.slice(inWindow.length - q));
    const lagGrows = last > first * 2 + 20;
    const cpuText = Object.entries(cpu)
      .map(([k, v]) => `${k} ${(v * 100).toFixed(0)}%`)
      .join(", ");
    ctx.log(
      `  ${books} books (MD_RAW p99 ${raw.summary().p99Ms.toFixed(1)} ms), achieved ${Math.round(achieved)} frames/s (${(onSchedule * 100).toFixed(0)} % of the simulator's pace); p50 first quarter ${first.toFixed(1)} ms, last ${last.toFixed(1)} ms; ` +
        `CPU ${cpuText}; this process's longest stall ${measurer.maxStallMs.toFixed(1)} ms (GC ${measurer.longestGcMs.toFixed(1)} ms)`,
    );
    return {
      rate,
      variant: variant.label,
      stagger: sim.stagger,
      achieved,
      book: book.summary(),
      signal: signal.summary(),
      raw: raw.summary(),
      measurer,
      firstQuarterP50Ms: first,
      lastQuarterP50Ms: last,
      cpu,
      rss,
      // Not held: the lag grows, or the simulator could not even send at its pace. The achieved rate
      // itself follows the recording's density in the measured seconds (the speed gives `rate` on
      // average over the whole replay), so it is no test.
      growing: lagGrows || onSchedule < 0.9,
      // A lag that stays put at hundreds of ms is a queue the pipeline never drains: not held.
      held: !lagGrows && last < HELD_MAX_P50_MS && onSchedule >= 0.95,
      onSchedule,
    };
  } finally {
    await bus.close();
    await stopAll(Object.values(children));
    await sim.close();
    await llm?.close();
    await nats.close();
  }
}

export async function run(ctx: SuiteContext): Promise<SuiteResult> {
  const dev = devOverrides();
  const rates = dev.rates ?? (ctx.quick ? [2_000, 10_000] : [2_000, 5_000, 10_000, 20_000]);
  // A rate counts as held when it ran a minute without growing lag (issue 8 item 4).
  const seconds = dev.seconds ?? (ctx.quick ? 8 : 60);
  const results: RateResult[] = [];
  for (const rate of rates) {
    if (ctx.signal.aborted) break;
    results.push(await runRate(rate, seconds, ctx));
    // Side by side with the default run: each variant at 10k (or at every rate asked for).
    const variants = dev.variants ?? (dev.rates === undefined && rate === 10_000 ? VARIANTS_AT_10K : []);
    for (const v of variants) if (!ctx.signal.aborted) results.push(await runRate(rate, seconds, ctx, v));
  }
  const defaults = results.filter((r) => r.variant === "");
  const held = defaults.filter((r) => r.held).map((r) => r.rate);
  // Between the highest rate held and the lowest not held, one more minute halfway, so the highest
  // rate held is known to within a quarter of the gap rather than the gap.
  const top = held.length > 0 ? Math.max(...held) : undefined;
  const above = defaults.filter((r) => !r.held && (top === undefined || r.rate > top)).map((r) => r.rate);
  if (!ctx.quick && dev.rates === undefined && !ctx.signal.aborted && top !== undefined && above.length > 0) {
    const mid = Math.round((top + Math.min(...above)) / 2 / 500) * 500;
    if (mid > top && mid < Math.min(...above)) {
      const r = await runRate(mid, seconds, ctx);
      results.push(r);
      if (r.held) held.push(mid);
    }
  }
  // By rate, the comparison runs after the default one at their rate, in the order they ran.
  const variantOrder = (r: RateResult) => (r.variant === "" ? 0 : 1);
  results.sort((a, b) => a.rate - b.rate || variantOrder(a) - variantOrder(b));
  const rows: Row[] = results.map((r) => ({
    label: `${r.rate / 1000}k frames/s${r.variant === "" ? "" : `, ${r.variant}`}`,
    metrics: [
      { name: "copies apart", value: `${r.stagger} s` },
      { name: "achieved", value: r.achieved, unit: "/s" },
      ...latencyMetrics(r.book, "book "),
      { name: "MD_RAW p50", value: r.raw.p50Ms, unit: "ms" },
      { name: "MD_RAW p99", value: r.raw.p99Ms, unit: "ms" },
      { name: "signal p50", value: r.signal.p50Ms, unit: "ms" },
      { name: "signal p99", value: r.signal.p99Ms, unit: "ms" },
      { name: "lag trend", value: `${r.firstQuarterP50Ms.toFixed(1)} → ${r.lastQuarterP50Ms.toFixed(1)} ms` },
    ],
    notes:
      r.variant === INGEST_ONLY.label
        ? "ingest alone: frame → MD_RAW only (no book, no signal)"
        : r.onSchedule < 0.95
          ? `the simulator fell behind its pace (${(r.onSchedule * 100).toFixed(0)} %): not held`
          : r.growing
            ? "lag grows: not held"
            : !r.held
              ? `a standing backlog (last quarter's median ≥ ${HELD_MAX_P50_MS} ms): not held`
              : "held",
  }));
  const at10k = defaults.find((r) => r.rate === 10_000);
  const at20k = defaults.find((r) => r.rate === 20_000);
  const checks: Check[] = [
    ...(at10k !== undefined
      ? [
          {
            name: "p99 frame → book < 10 ms at 10k frames/s",
            pass: at10k.book.p99Ms < 10,
            message: `${at10k.book.p99Ms.toFixed(1)} ms`,
          },
        ]
      : []),
    ...(at20k !== undefined
      ? [
          {
            name: "no growing lag at 20k frames/s",
            pass: !at20k.growing,
            message: `${at20k.firstQuarterP50Ms.toFixed(1)} → ${at20k.lastQuarterP50Ms.toFixed(1)} ms`,
          },
        ]
      : []),
  ];
  return {
    rows,
    checks,
    notes: [
      `BTCUSDT recording (diffs every 100 ms and trades) as ${COPIES} renamed symbols, each copy starting ${STAGGER_S} s further into the recording than the one before ("copies apart") and going round it once, so the symbols do not trade in lockstep while their depth updates share Binance's 100 ms tick; ${seconds} s per rate, measured once every symbol has a book, ${WARMUP_S} s more have passed and the start's backlog has drained (a second's median frame → book under ${HELD_MAX_P50_MS} ms or no longer falling, at most ${SETTLE_MAX_S} s). ` +
        "Each service runs as in production, a process of its own from its build (ingest with one connection set, the normalizer " +
        "publishing a book after every diff, the analyzer), beside the simulator's process, nats-server, the fake LLM's process " +
        "and this process (the subscriber that measures): all on this 2-core machine, so every stage shares the same two cores. " +
        `"MD_RAW" is the frame → book latency's first part, ingest's: from the same receive stamp until nats-server hands the raw diff to a plain subscriber here (the diffs of every ${RAW_SAMPLE_EVERY}th symbol); the rest is the normalizer's (reading MD_RAW, the book, publishing it) and MD_NORM's delivery. ` +
        `CPU per process at each rate (cores): ${results
          .map(
            (r) =>
              `${r.rate / 1000}k${r.variant === "" ? "" : ` (${r.variant})`}: ${Object.entries(r.cpu)
                .map(([k, v]) => `${k} ${v.toFixed(2)}`)
                .join(", ")}`,
          )
          .join("; ")}. ` +
        "This process reads only each book's receive time (no decode) and keeps its samples in typed arrays, so that its own pauses add little to what it times; its longest event-loop stall and GC pause over each rate's measured seconds: " +
        `${results
          .map(
            (r) =>
              `${r.rate / 1000}k${r.variant === "" ? "" : ` (${r.variant})`} ${r.measurer.maxStallMs.toFixed(1)} / ${r.measurer.longestGcMs.toFixed(1)} ms`,
          )
          .join(", ")}. ` +
        "Comparison rows run 10k again with one setting changed: GC_TUNING=off, V8's default GC schedule in every service (libs/runtime gc.ts: with the services' capped old space, V8 otherwise starts a full mark-compact after nearly every scavenge); NORMALIZER_THREAD=on, the normalizer's processing on a thread of its own (off by default for its memory: README, \"Known limits\"); ingest only, no normalizer and no analyzer (how much of MD_RAW's tail is ingest's own, beside the simulator and nats-server). The checks and the highest rate held use the default runs. " +
        `A rate is held when the lag did not grow (last quarter's median ≤ 2 × the first's + 20 ms), the last quarter's median stays under ${HELD_MAX_P50_MS} ms (no standing backlog) and the simulator kept ≥ 95 % of its pace. ` +
        `Highest rate held for ${seconds} s here: ${held.length > 0 ? `${Math.max(...held)} frames/s` : "none of those tried"}` +
        (ctx.quick
          ? " (quick: not a minute)."
          : "; after the fixed rates, one more run halfway between the highest held and the lowest not held."),
    ],
    data: { results },
  };
}

/**
 * End to end (issue 8 item 4): the simulator replays the BTCUSDT recording as 100 renamed symbols at
 * a fixed total frame rate; ingest, the normalizer and the analyzer (HolySheep provider against the
 * fake OpenAI server, answering at once) run as in production. Measured by a subscriber:
 * - frame → book: from ingest's receive stamp (`L2-Receive-Ns`, carried as the book's
 *   `receive_time_us`) until the book snapshot arrives on MD_NORM;
 * - window → signal: from a window's arrival on MD_WINDOW until its signal arrives on SIGNALS.
 * "Growing lag" compares the median frame → book latency of the last quarter with the first.
 */
import { epochNowNs } from "@l2flow/binance";
import { connectBus } from "@l2flow/bus";
import { BookSnapshot, Signal, Window } from "@l2flow/contracts";
import { readRecording } from "@l2flow/recording";
import { createLogger } from "@l2flow/runtime";
import { fixtures, startFakeLlm, startSimulator, startTestNats } from "@l2flow/testkit";
import { loadConfig as ingestConfig, startIngest } from "@l2flow/ingest";
import { loadConfig as normalizerConfig, startNormalizer } from "@l2flow/normalizer";
import { loadConfig as analyzerConfig, startAnalyzer } from "@l2flow/analyzer";
import { LatencyHistogram, latencyMetrics, type LatencySummary } from "../lib/histogram.js";
import { frameRate, scaleRecording } from "../lib/scale.js";
import type { Check, Row, SuiteContext, SuiteResult } from "../lib/types.js";

/** Suite id for `--only`. */
export const name = "e2e";
/** Report heading. */
export const title = "End to end: frame → book and window → signal latency at fixed rates";
/** After the normalizer. */
export const order = 50;

const COPIES = 100;

interface RateResult {
  readonly rate: number;
  readonly achieved: number;
  readonly book: LatencySummary;
  readonly signal: LatencySummary;
  readonly firstQuarterP50Ms: number;
  readonly lastQuarterP50Ms: number;
  readonly growing: boolean;
}

async function runRate(rate: number, seconds: number, ctx: SuiteContext): Promise<RateResult> {
  const base = scaleRecording(readRecording(fixtures.btcusdt), { copies: COPIES, dropKinds: ["bookTicker"] });
  const speed = rate / frameRate(base);
  const nats = await startTestNats();
  const llm = await startFakeLlm();
  const sim = await startSimulator({ recording: base, speed, autoStart: false });
  const logger = createLogger({ service: "bench", level: "silent" });
  const common = { NATS_URL: nats.url, METRICS_PORT: "0", LOG_LEVEL: "silent" };
  const ingest = await startIngest(
    ingestConfig({
      ...common,
      BINANCE_WS_URL: sim.wsUrl,
      BINANCE_REST_URL: sim.restUrl,
      SYMBOLS: base.symbols.join(","),
      SNAPSHOT_LIMIT: "100",
      WS_REDUNDANCY: "1",
    }),
    { logger },
  );
  const normalizer = await startNormalizer(normalizerConfig({ ...common, WINDOW_INTERVALS: "1s" }), {
    logger,
  });
  const analyzer = await startAnalyzer(
    analyzerConfig({
      ...common,
      HOLYSHEEP_API_KEY: "sk-bench-0123456789abcdef",
      HOLYSHEEP_BASE_URL: llm.url,
      ANALYZER_INTERVALS: "1s",
      LLM_CONCURRENCY: "64",
      LLM_BUDGET_REQUESTS_PER_MIN: "1000000",
      LLM_BUDGET_TOKENS_PER_MIN: "1000000000",
      LLM_BUDGET_USD_PER_DAY: "1000000",
    }),
    { logger },
  );
  const bus = await connectBus({ servers: nats.url, name: "bench-e2e" });
  const book = new LatencyHistogram();
  const signal = new LatencyHistogram();
  const samples: { at: number; ms: number }[] = [];
  const windowSeen = new Map<string, bigint>();
  let books = 0;
  const key = (symbol: string, interval: string, start: number) => `${symbol}:${interval}:${start}`;
  bus.nc.subscribe("md.book.binance.>", {
    callback: (_e, m) => {
      const b = BookSnapshot.decode(m.data);
      if (b.receiveTimeUs === 0) return;
      // The same clock ingest stamps frames with (epoch ns from the monotonic clock).
      const ms = (Number(epochNowNs() / 1000n) - b.receiveTimeUs) / 1000;
      book.recordNs(Math.max(0, ms) * 1e6);
      samples.push({ at: Date.now(), ms });
      books++;
    },
  });
  bus.nc.subscribe("md.window.binance.>", {
    callback: (_e, m) => {
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
  try {
    const deadline = Date.now() + 30_000;
    while (ingest.connectionsUp() === 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
    ctx.log(
      `e2e: ${rate} frames/s over ${COPIES} symbols (simulator speed ${speed.toFixed(2)}) for ${seconds} s`,
    );
    const startReplayed = sim.progress().replayed;
    const t0 = Date.now();
    sim.start();
    await new Promise((r) => setTimeout(r, seconds * 1000));
    const achieved = (sim.progress().replayed - startReplayed) / ((Date.now() - t0) / 1000);
    sim.pause();
    await new Promise((r) => setTimeout(r, 1_500));
    const inWindow = samples.filter((s) => s.at >= t0);
    const q = Math.floor(inWindow.length / 4);
    const p50 = (xs: { ms: number }[]) => {
      const v = xs.map((x) => x.ms).sort((a, b) => a - b);
      return v.length === 0 ? 0 : v[Math.floor(v.length / 2)]!;
    };
    const first = p50(inWindow.slice(0, q));
    const last = p50(inWindow.slice(inWindow.length - q));
    ctx.log(
      `  ${books} books, achieved ${Math.round(achieved)} frames/s; p50 first quarter ${first.toFixed(1)} ms, last ${last.toFixed(1)} ms`,
    );
    return {
      rate,
      achieved,
      book: book.summary(),
      signal: signal.summary(),
      firstQuarterP50Ms: first,
      lastQuarterP50Ms: last,
      // Not held: the lag grows, or the pipeline could not even take the rate in.
      growing: last > Math.max(5, first * 3) || achieved < rate * 0.9,
    };
  } finally {
    await bus.close();
    await analyzer.close();
    await normalizer.close();
    await ingest.close();
    await sim.close();
    await llm.close();
    await nats.close();
  }
}

export async function run(ctx: SuiteContext): Promise<SuiteResult> {
  const rates = ctx.quick ? [2_000, 10_000] : [2_000, 10_000, 20_000];
  const seconds = ctx.quick ? 8 : 30;
  const results: RateResult[] = [];
  for (const rate of rates) {
    if (ctx.signal.aborted) break;
    results.push(await runRate(rate, seconds, ctx));
  }
  const rows: Row[] = results.map((r) => ({
    label: `${r.rate / 1000}k frames/s`,
    metrics: [
      { name: "achieved", value: r.achieved, unit: "/s" },
      ...latencyMetrics(r.book, "book "),
      { name: "signal p50", value: r.signal.p50Ms, unit: "ms" },
      { name: "signal p99", value: r.signal.p99Ms, unit: "ms" },
      { name: "lag trend", value: `${r.firstQuarterP50Ms.toFixed(1)} → ${r.lastQuarterP50Ms.toFixed(1)} ms` },
    ],
    notes:
      r.achieved < r.rate * 0.9
        ? "rate not reached: not sustained"
        : r.growing
          ? "lag grows: not sustained"
          : "steady",
  }));
  const at10k = results.find((r) => r.rate === 10_000);
  const at20k = results.find((r) => r.rate === 20_000);
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
  const sustained = results.filter((r) => !r.growing).map((r) => r.rate);
  return {
    rows,
    checks,
    notes: [
      `BTCUSDT recording (diffs every 100 ms and trades) as ${COPIES} renamed symbols, ${seconds} s per rate; everything ` +
        "(simulator, ingest, normalizer, analyzer, fake LLM, this subscriber) in one Node process beside one nats-server " +
        "on this 2-core machine, so each rate's CPU is shared by every stage. " +
        `Highest rate held without growing lag here: ${sustained.length > 0 ? `${Math.max(...sustained)} frames/s` : "none of those tried"}.`,
    ],
    data: { results },
  };
}

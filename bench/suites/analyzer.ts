/**
 * The analyzer's cost per signal. Each window becomes one LLM call (chat completion through the
 * official `openai` package) and one acked publish, so at hundreds of symbols its CPU is mostly
 * per-call overhead, not the model's work. Two measurements, the fake LLM answering at once from a
 * process of its own:
 * - the client alone: `HolySheepClient` with Node's global `fetch` (undici) against the same client
 *   with `keepAliveFetch` (node:http keep-alive, what the analyzer uses), the same calls, alternating;
 * - the service: the built analyzer, as deployed, fed windows on MD_WINDOW at a fixed rate.
 */
import { connectBus, provisionTopology, PublishQueue } from "@l2flow/bus";
import { msgIds, subjects, Window } from "@l2flow/contracts";
import { buildPrompt, HolySheepClient, keepAliveFetch } from "@l2flow/llm";
import { startTestNats } from "@l2flow/testkit";
import { stats } from "../lib/measure.js";
import {
  benchAnalyzerEnv,
  cpuSeconds,
  rssMb,
  spawnService,
  startFakeLlmProcess,
  stopAll,
} from "../lib/procs.js";
import type { Check, Row, SuiteContext, SuiteResult } from "../lib/types.js";

/** Suite id for `--only`. */
export const name = "analyzer";
/** Report heading. */
export const title = "Analyzer: CPU per signal (LLM call and publish)";
/** After end to end. */
export const order = 60;

const SYMBOLS = 100;
const RATE = 300;
const CONCURRENCY = 8;

/** A 1 s window with a 20-level book, as the normalizer closes them. */
function window(symbol: string, startTimeMs: number): Window {
  const level = (price: number) => ({ price: price.toFixed(2), quantity: "1.23456" });
  return Window.fromPartial({
    exchange: "binance",
    symbol,
    interval: "1s",
    startTimeMs,
    endTimeMs: startTimeMs + 1_000,
    open: 100,
    high: 101,
    low: 99,
    close: 100.5,
    volume: 2,
    quoteVolume: 200.4,
    vwap: 100.2,
    tradeCount: 5,
    takerBuyVolume: 1.5,
    takerSellVolume: 0.5,
    tradeFlowImbalance: 0.5,
    spreadMean: 0.01,
    mid: 100.5,
    microprice: 100.49,
    bookImbalance: 0.2,
    bids: Array.from({ length: 20 }, (_, i) => level(100 - i * 0.01)),
    asks: Array.from({ length: 20 }, (_, i) => level(100.01 + i * 0.01)),
    complete: true,
    closeReason: 1,
    epoch: 1,
  });
}

interface ClientRun {
  readonly callsPerS: number;
  readonly cpuUsPerCall: number;
}

/** `calls` completions, `CONCURRENCY` at a time; CPU of this process per call. */
async function runClient(client: HolySheepClient, calls: number): Promise<ClientRun> {
  const messages = buildPrompt(window("C00BTCUSDT", 1_700_000_000_000), []);
  let started = 0;
  const worker = async () => {
    while (started++ < calls) await client.complete(messages);
  };
  const cpu0 = process.cpuUsage();
  const t0 = performance.now();
  await Promise.all(Array.from({ length: CONCURRENCY }, worker));
  const wallS = (performance.now() - t0) / 1000;
  const cpu = process.cpuUsage(cpu0);
  return { callsPerS: calls / wallS, cpuUsPerCall: (cpu.user + cpu.system) / calls };
}

interface ServiceRun {
  readonly windows: number;
  readonly signals: number;
  readonly signalsPerS: number;
  readonly cpuUsPerSignal: number;
  readonly cores: number;
  readonly rssMb: number;
}

/** The built analyzer fed `RATE` windows a second over `SYMBOLS` symbols for `seconds`. */
async function runService(llmUrl: string, seconds: number): Promise<ServiceRun> {
  const nats = await startTestNats();
  const bus = await connectBus({ servers: nats.url, name: "bench-analyzer" });
  await provisionTopology(bus);
  const analyzer = spawnService("analyzer", benchAnalyzerEnv(nats.url, llmUrl));
  const queue = new PublishQueue(bus, { maxInFlight: 1_024, maxBytes: Number.POSITIVE_INFINITY });
  let signals = 0;
  bus.nc.subscribe("signal.binance.>", { callback: () => void signals++ });
  let startMs = 1_700_000_000_000;
  let windows = 0;
  const send = (n: number) => {
    for (let i = 0; i < n; i++) {
      const symbol = `C${String(windows % SYMBOLS).padStart(2, "0")}BTCUSDT`;
      if (windows % SYMBOLS === 0) startMs += 1_000;
      const w = window(symbol, startMs);
      queue.push({
        subject: subjects.window("1s", symbol),
        data: Window.encode(w).finish(),
        msgId: msgIds.window("1s", symbol, startMs),
      });
      windows++;
    }
  };
  try {
    // Ready once its first signal comes back.
    send(1);
    const deadline = Date.now() + 30_000;
    while (signals === 0) {
      if (Date.now() > deadline) throw new Error("the analyzer published no signal within 30 s");
      await new Promise((r) => setTimeout(r, 50));
    }
    const timer = setInterval(() => send(RATE / 10), 100);
    await new Promise((r) => setTimeout(r, 2_000)); // warm-up
    const cpu0 = cpuSeconds(analyzer.pid);
    const s0 = signals;
    const t0 = Date.now();
    await new Promise((r) => setTimeout(r, seconds * 1000));
    const elapsed = (Date.now() - t0) / 1000;
    const cpu = cpuSeconds(analyzer.pid) - cpu0;
    const measured = signals - s0;
    clearInterval(timer);
    const rss = rssMb(analyzer.pid);
    const drained = Date.now() + 10_000;
    while (signals < windows && Date.now() < drained) await new Promise((r) => setTimeout(r, 50));
    return {
      windows,
      signals,
      signalsPerS: measured / elapsed,
      cpuUsPerSignal: (cpu / measured) * 1e6,
      cores: cpu / elapsed,
      rssMb: rss,
    };
  } finally {
    await stopAll([analyzer]);
    await queue.close(2_000);
    await bus.close();
    await nats.close();
  }
}

export async function run(ctx: SuiteContext): Promise<SuiteResult> {
  const calls = ctx.quick ? 1_000 : 4_000;
  const repeats = ctx.quick ? 2 : 3;
  const llm = await startFakeLlmProcess();
  const kept = keepAliveFetch();
  try {
    const clients = {
      undici: new HolySheepClient({ apiKey: "sk-bench", baseURL: llm.url, fetch: globalThis.fetch }),
      keepAlive: new HolySheepClient({ apiKey: "sk-bench", baseURL: llm.url, fetch: kept.fetch }),
    };
    const runs: Record<keyof typeof clients, ClientRun[]> = { undici: [], keepAlive: [] };
    for (const c of Object.values(clients)) await runClient(c, 200); // warm-up
    for (let r = 0; r < repeats && !ctx.signal.aborted; r++)
      for (const k of ["undici", "keepAlive"] as const) {
        const res = await runClient(clients[k], calls);
        runs[k].push(res);
        ctx.log(
          `analyzer: client ${k}: ${res.callsPerS.toFixed(0)} calls/s, ${res.cpuUsPerCall.toFixed(0)} us/call`,
        );
      }
    const summary = (k: keyof typeof clients) => ({
      rate: stats(runs[k].map((r) => r.callsPerS)),
      cpu: stats(runs[k].map((r) => r.cpuUsPerCall)),
    });
    const undici = summary("undici");
    const keepAlive = summary("keepAlive");
    const seconds = ctx.quick ? 6 : 15;
    const svc = await runService(llm.url, seconds);
    ctx.log(
      `analyzer: service ${svc.signalsPerS.toFixed(0)} signals/s, ${svc.cpuUsPerSignal.toFixed(0)} us/signal, ${svc.signals}/${svc.windows} windows answered`,
    );
    const group = "LLM client: one chat completion against the fake LLM";
    const clientRow = (label: string, s: typeof undici, notes: string): Row => ({
      group,
      label,
      metrics: [
        { name: "calls", value: s.rate.median, unit: "/s", spread: s.rate.spread },
        { name: "CPU per call", value: s.cpu.median, unit: "µs", spread: s.cpu.spread },
      ],
      notes,
    });
    const rows: Row[] = [
      clientRow("openai + Node's fetch (undici)", undici, "the openai package's default"),
      clientRow(
        "openai + keepAliveFetch (l2flow)",
        keepAlive,
        `node:http keep-alive; ${(undici.cpu.median / keepAlive.cpu.median).toFixed(2)}x less CPU per call`,
      ),
      {
        group: "The analyzer service",
        label: `${RATE} windows/s over ${SYMBOLS} symbols`,
        metrics: [
          { name: "signals", value: svc.signalsPerS, unit: "/s" },
          { name: "CPU per signal", value: svc.cpuUsPerSignal, unit: "µs" },
          { name: "CPU (cores)", value: svc.cores.toFixed(3) },
          { name: "RSS", value: svc.rssMb, unit: "MB" },
        ],
        notes: `${seconds} s measured after a 2 s warm-up; every window decoded, prompted, called, published with an ack, then acked`,
      },
    ];
    const checks: Check[] = [
      {
        name: "keepAliveFetch costs less CPU per call than Node's fetch",
        pass: keepAlive.cpu.median < undici.cpu.median,
        message: `${keepAlive.cpu.median.toFixed(0)} vs ${undici.cpu.median.toFixed(0)} us`,
      },
      {
        name: "the analyzer answered every window with one signal",
        pass: svc.signals === svc.windows,
        message: `${svc.signals} signals for ${svc.windows} windows`,
      },
    ];
    return {
      rows,
      checks,
      notes: [
        `Client: ${calls} calls per run, ${CONCURRENCY} at a time, ${repeats} runs of each alternating (median, ± half the range); the prompt is the analyzer's for one window with a 20-level book. ` +
          "CPU is this process's (the fake LLM runs in another). Service: the analyzer from its build with the HolySheep provider against the same fake; its CPU from /proc.",
      ],
      data: { runs, service: svc },
    };
  } finally {
    kept.close();
    await llm.close();
  }
}

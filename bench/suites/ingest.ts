/**
 * Ingest to JetStream (issue 8 item 3): durable frames per second, and the latency from the moment a
 * frame is handed to the WebSocket until JetStream has acked it, for l2flow's ingest next to three
 * references on the same nats-server in the same run with the same payloads and headers:
 * (a) `js.publish()` awaiting every ack (4 096 in flight), the naive durable design;
 * (b) core `publish()` with a `Nats-Msg-Id` header onto the stream's subject: the server's ingest
 *     limit, stored but unconfirmed (the publisher learns nothing of what was stored);
 * (c) (b) with a reply subject per message, the acks only counted: the server's limit when it
 *     answers every message (ingest asks for one answer a batch, see `AckPipeline`'s fences).
 * Each run also gives its CPU per frame, in this process and in nats-server.
 */
import { createInbox, headers as natsHeaders } from "@nats-io/transport-node";
import { connectBus, provisionTopology, type Bus } from "@l2flow/bus";
import { HEADERS, msgIds, STREAMS, subjects } from "@l2flow/contracts";
import { readRecording } from "@l2flow/recording";
import { createLogger } from "@l2flow/runtime";
import { fixtures, startTestNats, type TestNats } from "@l2flow/testkit";
import { loadConfig, startIngest } from "@l2flow/ingest";
import { startBlaster } from "../lib/blaster.js";
import { LatencyHistogram, latencyMetrics, type LatencySummary } from "../lib/histogram.js";
import { stats } from "../lib/measure.js";
import { cpuSeconds } from "../lib/procs.js";
import type { Check, Row, SuiteContext, SuiteResult } from "../lib/types.js";

/** Suite id for `--only`. */
export const name = "ingest";
/** Report heading. */
export const title = "Ingest to JetStream: durable frames per second and send-to-stored latency";
/** After parsing. */
export const order = 30;

const SYMBOL_COUNT = 400;
/** The fixed rate of the latency run, and how long it lasts. */
const PACED_RATE = 10_000;
const PACED_SECONDS = 6;
const enc = new TextEncoder();
/** Where the kind starts in a raw subject (`md.raw.binance.<kind>.<SYMBOL>`). */
const TRADE_AT = subjects.raw("trade", "X").indexOf("trade");

interface Payload {
  readonly symbol: string;
  readonly id: number;
  /** The inner `data` JSON, as MD_RAW stores it. */
  readonly data: Uint8Array;
  /** The combined-stream frame the exchange would send. */
  readonly frame: Buffer;
  readonly msgId: string;
}

/** Real BTCUSDT trades, spread over 400 symbols with fresh ids (`base` keeps runs apart; base grows by n per run). */
function payloads(n: number, base: number): Payload[] {
  const trades = readRecording(fixtures.btcusdt)
    .events.filter((e) => e.type === "frame" && e.kind === "trade")
    .map((e) => JSON.parse((e as { data: string }).data) as Record<string, unknown>);
  const symbols = Array.from({ length: SYMBOL_COUNT }, (_, i) => `S${String(i).padStart(3, "0")}USDT`);
  const out: Payload[] = [];
  for (let i = 0; i < n; i++) {
    const symbol = symbols[i % SYMBOL_COUNT]!;
    // Consecutive ids per symbol, as Binance numbers trades (a jump would be a hole to backfill).
    const id = base + Math.floor(i / SYMBOL_COUNT);
    const t = trades[i % trades.length]!;
    const data = JSON.stringify({ ...t, s: symbol, t: id });
    out.push({
      symbol,
      id,
      data: enc.encode(data),
      frame: Buffer.from(`{"stream":"${symbol.toLowerCase()}@trade","data":${data}}`),
      msgId: msgIds.trade(symbol, id),
    });
  }
  return out;
}

/**
 * The payload a stored message id belongs to, or -1. This runs on ingest's thread for every frame, so
 * it reads the index from the id's digits (`payloads` numbers symbol `i % 400` with id
 * `base + floor(i / 400)`) and checks it, instead of a map lookup by string that took ~13 % of the
 * thread in a CPU profile of the throughput run and so understated ingest's rate.
 */
function payloadIndex(items: readonly Payload[]): (msgId: string) => number {
  const base = items[0]?.id ?? 0;
  const symbolAt = "binance:trade:S".length;
  return (msgId) => {
    let sym = 0;
    for (let k = symbolAt; k < symbolAt + 3; k++) sym = sym * 10 + msgId.charCodeAt(k) - 48;
    let id = 0;
    for (let k = msgId.lastIndexOf(":") + 1; k < msgId.length; k++) id = id * 10 + msgId.charCodeAt(k) - 48;
    const i = (id - base) * SYMBOL_COUNT + sym;
    return i >= 0 && i < items.length && items[i]!.msgId === msgId ? i : -1;
  };
}

interface RunResult {
  readonly perSecond: number;
  readonly latency: LatencySummary | undefined;
  readonly stored: number;
  /** CPU per frame while frames flowed; steadier than the rate on a shared VM (a slow minute lowers the rate, not the work). */
  readonly cpu: CpuPerFrame;
}

/** CPU per frame in microseconds: this process (every thread: ingest, the sender, the harness) and nats-server. */
interface CpuPerFrame {
  readonly processUs: number;
  readonly serverUs: number;
}

/** Starts counting CPU; the returned function gives it per frame for `frames`. */
function cpuMeter(serverPid: number | undefined): (frames: number) => CpuPerFrame {
  const process0 = process.cpuUsage();
  const server0 = cpuSeconds(serverPid);
  return (frames) => {
    const used = process.cpuUsage(process0);
    return {
      processUs: (used.user + used.system) / Math.max(1, frames),
      serverUs: ((cpuSeconds(serverPid) - server0) * 1e6) / Math.max(1, frames),
    };
  };
}

/** Trade frames stored in MD_RAW (status events left out). */
async function storedCount(bus: Bus): Promise<number> {
  const info = await bus.jsm.streams.info(STREAMS.raw, { subjects_filter: "md.raw.binance.trade.>" });
  return Object.values(info.state.subjects ?? {}).reduce((a, b) => a + b, 0);
}

/**
 * l2flow: blaster (own thread) → WebSocket → ingest (routeFrame, dedupe, AckPipeline) → MD_RAW, every
 * frame acked. `ratePerSecond` 0 sends as fast as ingest takes them (throughput; latency then is mostly
 * queueing); a fixed rate below saturation gives the latency a frame sees.
 */
async function runIngest(
  nats: TestNats,
  bus: Bus,
  items: readonly Payload[],
  ratePerSecond = 0,
): Promise<RunResult> {
  const url = nats.url;
  const blaster = await startBlaster();
  const indexOf = payloadIndex(items);
  const storedAt = new BigInt64Array(items.length);
  // This hook runs on ingest's thread for every ack. At full speed it times one ack in 8 (by arrival)
  // and only counts the others: finding a frame from its message id and reading the clock for each
  // took ~5 % of the thread in a CPU profile, which the measured rate then lost.
  const every = ratePerSecond === 0 ? 8 : 1;
  let acked = 0;
  let frames = 0;
  let lastAck = 0n;
  let done!: () => void;
  const all = new Promise<void>((r) => (done = r));
  const before = await storedCount(bus);
  const ingest = await startIngest(
    loadConfig({
      NATS_URL: url,
      METRICS_PORT: "0",
      LOG_LEVEL: "silent",
      SYMBOLS: [...new Set(items.map((p) => p.symbol))].join(","),
      STREAM_KINDS: "trade",
      WS_REDUNDANCY: "1",
      BINANCE_WS_URL: blaster.wsUrl,
      BINANCE_REST_URL: "http://127.0.0.1:9",
      BACKFILL_DELAY_MS: "600000",
    }),
    {
      logger: createLogger({ service: "bench", level: "silent" }),
      onStored: (subject, msgId) => {
        // Trade frames only (status events are not counted): md.raw.binance.trade.<SYMBOL>.
        if (msgId === undefined || subject.charCodeAt(TRADE_AT) !== 116 /* t */) return;
        if (++acked % every === 0) {
          const i = indexOf(msgId);
          if (i >= 0) storedAt[i] = process.hrtime.bigint();
          else acked--; // not one of ours
        }
        if (acked === items.length) {
          lastAck = process.hrtime.bigint();
          frames = acked;
          done();
        }
      },
    },
  );
  try {
    await blaster.load(items.map((p) => ({ stream: `${p.symbol.toLowerCase()}@trade`, bytes: p.frame })));
    await blaster.waitForClients();
    const meter = cpuMeter(nats.pid);
    const { start, sentAt } = await blaster.send(ratePerSecond);
    await Promise.race([all, new Promise((r) => setTimeout(r, 120_000))]);
    const cpu = meter(frames);
    const hist = new LatencyHistogram();
    for (let i = 0; i < items.length; i++) if (storedAt[i]! > 0n) hist.recordNs(storedAt[i]! - sentAt[i]!);
    const seconds = Number(lastAck - start) / 1e9;
    const stored = (await storedCount(bus)) - before;
    return { perSecond: frames / seconds, latency: hist.summary(), stored, cpu };
  } finally {
    await ingest.close();
    await blaster.close();
  }
}

function headersOf(p: Payload) {
  const h = natsHeaders();
  h.set(HEADERS.msgId, p.msgId);
  h.set(HEADERS.receiveNs, `${Date.now()}000000`);
  h.set(HEADERS.connection, "bench");
  return h;
}

/** (a) js.publish awaiting each ack, 4 096 in flight. */
async function runJsPublish(nats: TestNats, bus: Bus, items: readonly Payload[]): Promise<RunResult> {
  const hist = new LatencyHistogram();
  const before = await storedCount(bus);
  const meter = cpuMeter(nats.pid);
  const start = process.hrtime.bigint();
  let next = 0;
  const worker = async () => {
    while (next < items.length) {
      const p = items[next++]!;
      const t = process.hrtime.bigint();
      await bus.js.publish(subjects.raw("trade", p.symbol), p.data, {
        headers: headersOf(p),
        timeout: 30_000,
      });
      hist.recordSince(t);
    }
  };
  await Promise.all(Array.from({ length: 4_096 }, worker));
  const seconds = Number(process.hrtime.bigint() - start) / 1e9;
  const cpu = meter(items.length);
  return {
    perSecond: items.length / seconds,
    latency: hist.summary(),
    stored: (await storedCount(bus)) - before,
    cpu,
  };
}

/** (b) core publish with Nats-Msg-Id onto the stream's subjects; done when the stream holds them all. */
async function runCorePublish(nats: TestNats, bus: Bus, items: readonly Payload[]): Promise<RunResult> {
  const before = await storedCount(bus);
  const meter = cpuMeter(nats.pid);
  const start = process.hrtime.bigint();
  for (let i = 0; i < items.length; i++) {
    const p = items[i]!;
    bus.nc.publish(subjects.raw("trade", p.symbol), p.data, { headers: headersOf(p) });
    if ((i & 1023) === 0) await new Promise((r) => setImmediate(r));
  }
  await bus.nc.flush();
  const deadline = Date.now() + 60_000;
  let stored = 0;
  while ((stored = (await storedCount(bus)) - before) < items.length && Date.now() < deadline)
    await new Promise((r) => setTimeout(r, 2));
  const seconds = Number(process.hrtime.bigint() - start) / 1e9;
  return { perSecond: stored / seconds, latency: undefined, stored, cpu: meter(stored) };
}

/**
 * (c) (b) with a reply subject on every message, under one inbox subscription that only counts the
 * answers: what the server itself can do when it acks each message, the ceiling of any design that
 * confirms every message (it costs nats-server about twice (b)'s CPU per message here).
 */
async function runCoreWithReply(nats: TestNats, bus: Bus, items: readonly Payload[]): Promise<RunResult> {
  const before = await storedCount(bus);
  const inbox = createInbox();
  let acks = 0;
  let done!: () => void;
  const all = new Promise<void>((r) => (done = r));
  const sub = bus.nc.subscribe(`${inbox}.*`, {
    callback: () => {
      if (++acks === items.length) done();
    },
  });
  try {
    const meter = cpuMeter(nats.pid);
    const start = process.hrtime.bigint();
    for (let i = 0; i < items.length; i++) {
      const p = items[i]!;
      bus.nc.publish(subjects.raw("trade", p.symbol), p.data, {
        headers: headersOf(p),
        reply: `${inbox}.${i}`,
      });
      if ((i & 1023) === 0) await new Promise((r) => setImmediate(r));
    }
    await Promise.race([all, new Promise((r) => setTimeout(r, 60_000))]);
    const seconds = Number(process.hrtime.bigint() - start) / 1e9;
    const cpu = meter(acks);
    return { perSecond: acks / seconds, latency: undefined, stored: (await storedCount(bus)) - before, cpu };
  } finally {
    sub.unsubscribe();
  }
}

export async function run(ctx: SuiteContext): Promise<SuiteResult> {
  const n = ctx.quick ? 40_000 : 200_000;
  const repeats = ctx.quick ? 1 : 3;
  const nats = await startTestNats();
  const bus = await connectBus({ servers: nats.url, name: "bench-ingest" });
  const results: Record<"ingest" | "paced" | "js" | "core" | "replied", RunResult[]> = {
    ingest: [],
    paced: [],
    js: [],
    core: [],
    replied: [],
  };
  try {
    await provisionTopology(bus);
    let base = 1;
    for (let r = 0; r < repeats && !ctx.signal.aborted; r++) {
      for (const which of process.env.ONLY_INGEST === "1"
        ? (["ingest", "paced"] as const)
        : (["core", "replied", "js", "ingest", "paced"] as const)) {
        const count = which === "paced" ? PACED_SECONDS * PACED_RATE : n;
        const items = payloads(count, base);
        base += count;
        ctx.log(`ingest: ${which} run ${r + 1}/${repeats}, ${count} frames over ${SYMBOL_COUNT} symbols`);
        const res =
          which === "ingest"
            ? await runIngest(nats, bus, items)
            : which === "paced"
              ? await runIngest(nats, bus, items, PACED_RATE)
              : which === "js"
                ? await runJsPublish(nats, bus, items)
                : which === "replied"
                  ? await runCoreWithReply(nats, bus, items)
                  : await runCorePublish(nats, bus, items);
        results[which].push(res);
        ctx.log(
          `  ${Math.round(res.perSecond)} frames/s, stored ${res.stored}; CPU per frame ` +
            `${res.cpu.processUs.toFixed(1)} us this process, ${res.cpu.serverUs.toFixed(1)} us nats-server`,
        );
      }
    }
  } finally {
    await bus.close();
    await nats.close();
  }
  // ONLY_INGEST=1 (for profiling) leaves the references out; their figures are then NaN.
  const median = (list: RunResult[]) => stats(list.length > 0 ? list.map((x) => x.perSecond) : [NaN]);
  const ing = median(results.ingest);
  const js = median(results.js);
  const core = median(results.core);
  const replied = median(results.replied);
  const lastLatency = (list: RunResult[]) => list[list.length - 1]?.latency;
  const medianOf = (list: readonly number[]) => stats(list.length > 0 ? list : [NaN]).median;
  const row = (label: string, list: RunResult[], lat: LatencySummary | undefined, notes: string): Row => {
    const s = median(list);
    return {
      label,
      metrics: [
        { name: "frames", value: s.median, unit: "/s", spread: s.spread },
        ...(lat !== undefined
          ? latencyMetrics(lat)
          : [
              { name: "p50", value: "—" },
              { name: "p99", value: "—" },
              { name: "p99.9", value: "—" },
              { name: "max", value: "—" },
            ]),
        { name: "vs (a)", value: s.median / js.median, unit: "x" },
        { name: "vs (b)", value: s.median / core.median, unit: "x" },
        { name: "vs (c)", value: s.median / replied.median, unit: "x" },
        { name: "CPU/frame, bench process", value: medianOf(list.map((x) => x.cpu.processUs)), unit: "µs" },
        { name: "CPU/frame, nats-server", value: medianOf(list.map((x) => x.cpu.serverUs)), unit: "µs" },
      ],
      notes,
    };
  };
  const rows: Row[] = [
    row(
      "l2flow ingest (WebSocket → fenced batches)",
      results.ingest,
      lastLatency(results.ingest),
      "as fast as ingest takes them; every frame confirmed stored, ids deduplicated; latency here is queueing (1 confirmation in 8 timed)",
    ),
    row(
      `l2flow ingest at ${PACED_RATE / 1000}k frames/s`,
      results.paced,
      lastLatency(results.paced),
      "the latency a frame sees below saturation: from ws.send to its confirmation (its batch's fence answered)",
    ),
    row(
      "(a) js.publish awaiting each ack",
      results.js,
      lastLatency(results.js),
      "publish call to ack; 4 096 in flight",
    ),
    row(
      "(b) core publish + Nats-Msg-Id",
      results.core,
      undefined,
      "until the stream holds them all; the publisher is told nothing",
    ),
    row(
      "(c) (b) with a reply subject per message",
      results.replied,
      undefined,
      "until every ack is back, each only counted: the server's own limit when it acks every message, the ceiling for a design with an ack per message",
    ),
  ];
  const exact =
    results.ingest.every((x) => x.stored === n) &&
    results.paced.every((x) => x.stored === PACED_RATE * PACED_SECONDS);
  const checks: Check[] = [
    {
      name: "ingest stored every frame exactly once",
      pass: exact,
      message: [...results.ingest, ...results.paced].map((x) => `${x.stored}`).join(", "),
    },
    {
      name: "ingest ≥ 3× (a)",
      pass: ing.median >= 3 * js.median,
      message: `${(ing.median / js.median).toFixed(2)}×`,
    },
    {
      name: "ingest ≥ 50% of (b)",
      pass: ing.median >= 0.5 * core.median,
      message: `${((100 * ing.median) / core.median).toFixed(0)}%`,
    },
    {
      name: "ingest ≥ 50 000 frames/s",
      pass: ing.median >= 50_000,
      message: `${Math.round(ing.median)} frames/s`,
    },
  ];
  return {
    rows,
    checks,
    notes: [
      `${n} real BTCUSDT trade frames (${results.ingest.length} runs each, median) renamed over ${SYMBOL_COUNT} symbols, ` +
        "the same payload bytes and headers for all; one nats-server 2.9 with file storage; the WebSocket " +
        "sender runs on a worker thread of this process (its frames corked in batches, as a busy TCP stream coalesces " +
        "them), ingest and the references on the main thread, nats-server in another process (2 cores in all).",
      "CPU per frame: this process is every thread of the bench process (for l2flow: ingest, the WebSocket sender and " +
        "the harness; for the references: the publisher), nats-server is the server's process. They are steadier than " +
        "the rates on a shared VM, and show where the time goes: an ack per message costs the server about as much " +
        "again as storing it ((c) against (b)).",
      "l2flow's publish path: the frames of a batch (what one turn of the event loop sends, at most 128) are core " +
        "publishes without a reply subject except the last, the fence, which JetStream answers under one shared inbox " +
        "after handling every frame before it. A batch counts as stored only when the fence is new and its stream " +
        "sequence is exactly the previous answered frame's plus the frames written since: each took a sequence of its " +
        "own, none lost, refused or a duplicate. Anything else (a duplicate, another publisher in between, a refusal, " +
        "no answer in time) sends the batch again with an ack per frame (the ids drop a stored copy), and for 5 s " +
        "every frame gets its own ack. So no frame is assumed stored that the sequences do not prove.",
    ],
    data: { results },
  };
}

/**
 * Ingest to JetStream (issue 8 item 3): durable frames per second, and the latency from the moment a
 * frame is handed to the WebSocket until JetStream has acked it, for l2flow's ingest next to two
 * references on the same nats-server in the same run with the same payloads and headers:
 * (a) `js.publish()` awaiting every ack (4 096 in flight), the naive durable design;
 * (b) core `publish()` with a `Nats-Msg-Id` header onto the stream's subject: the server's ingest
 *     limit, stored but unconfirmed (the publisher learns nothing of what was stored).
 */
import { headers as natsHeaders } from "@nats-io/transport-node";
import { connectBus, provisionTopology, type Bus } from "@l2flow/bus";
import { HEADERS, msgIds, STREAMS, subjects } from "@l2flow/contracts";
import { readRecording } from "@l2flow/recording";
import { createLogger } from "@l2flow/runtime";
import { fixtures, startTestNats } from "@l2flow/testkit";
import { loadConfig, startIngest } from "@l2flow/ingest";
import { startBlaster, type BlastFrame } from "../lib/blaster.js";
import { LatencyHistogram, latencyMetrics, type LatencySummary } from "../lib/histogram.js";
import { stats } from "../lib/measure.js";
import type { Check, Row, SuiteContext, SuiteResult } from "../lib/types.js";

/** Suite id for `--only`. */
export const name = "ingest";
/** Report heading. */
export const title = "Ingest to JetStream: durable frames per second and send-to-stored latency";
/** After parsing. */
export const order = 30;

const SYMBOL_COUNT = 400;
const enc = new TextEncoder();

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

interface RunResult {
  readonly perSecond: number;
  readonly latency: LatencySummary | undefined;
  readonly stored: number;
}

/** Trade frames stored in MD_RAW (status events left out). */
async function storedCount(bus: Bus): Promise<number> {
  const info = await bus.jsm.streams.info(STREAMS.raw, { subjects_filter: "md.raw.binance.trade.>" });
  return Object.values(info.state.subjects ?? {}).reduce((a, b) => a + b, 0);
}

/** l2flow: blaster → WebSocket → ingest (routeFrame, dedupe, AckPipeline) → MD_RAW, every frame acked. */
async function runIngest(url: string, bus: Bus, items: readonly Payload[]): Promise<RunResult> {
  const blaster = await startBlaster();
  const sentAt = new Map<string, bigint>();
  const hist = new LatencyHistogram();
  let acked = 0;
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
      onStored: (_subject, msgId) => {
        const t = msgId === undefined ? undefined : sentAt.get(msgId);
        if (t === undefined) return; // status events
        lastAck = process.hrtime.bigint();
        hist.recordNs(lastAck - t);
        if (++acked === items.length) done();
      },
    },
  );
  try {
    const frames: BlastFrame[] = items.map((p) => ({
      stream: `${p.symbol.toLowerCase()}@trade`,
      bytes: p.frame,
      key: p.msgId,
    }));
    await blaster.waitForClients(frames);
    const start = process.hrtime.bigint();
    await blaster.send(frames, 0, sentAt);
    await Promise.race([all, new Promise((r) => setTimeout(r, 120_000))]);
    const seconds = Number(lastAck - start) / 1e9;
    const stored = (await storedCount(bus)) - before;
    return { perSecond: acked / seconds, latency: hist.summary(), stored };
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
async function runJsPublish(bus: Bus, items: readonly Payload[]): Promise<RunResult> {
  const hist = new LatencyHistogram();
  const before = await storedCount(bus);
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
  return {
    perSecond: items.length / seconds,
    latency: hist.summary(),
    stored: (await storedCount(bus)) - before,
  };
}

/** (b) core publish with Nats-Msg-Id onto the stream's subjects; done when the stream holds them all. */
async function runCorePublish(bus: Bus, items: readonly Payload[]): Promise<RunResult> {
  const before = await storedCount(bus);
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
  return { perSecond: stored / seconds, latency: undefined, stored };
}

export async function run(ctx: SuiteContext): Promise<SuiteResult> {
  const n = ctx.quick ? 40_000 : 200_000;
  const repeats = ctx.quick ? 1 : 3;
  const nats = await startTestNats();
  const bus = await connectBus({ servers: nats.url, name: "bench-ingest" });
  const results: Record<"ingest" | "js" | "core", RunResult[]> = { ingest: [], js: [], core: [] };
  try {
    await provisionTopology(bus);
    let base = 1;
    for (let r = 0; r < repeats && !ctx.signal.aborted; r++) {
      for (const which of process.env.ONLY_INGEST === "1"
        ? (["ingest"] as const)
        : (["core", "js", "ingest"] as const)) {
        const items = payloads(n, base);
        base += n;
        ctx.log(`ingest: ${which} run ${r + 1}/${repeats}, ${n} frames over ${SYMBOL_COUNT} symbols`);
        const res =
          which === "ingest"
            ? await runIngest(nats.url, bus, items)
            : which === "js"
              ? await runJsPublish(bus, items)
              : await runCorePublish(bus, items);
        results[which].push(res);
        ctx.log(`  ${Math.round(res.perSecond)} frames/s, stored ${res.stored}`);
      }
    }
  } finally {
    await bus.close();
    await nats.close();
  }
  const median = (list: RunResult[]) => stats(list.map((x) => x.perSecond));
  const ing = median(results.ingest);
  const js = median(results.js);
  const core = median(results.core);
  const lastLatency = (list: RunResult[]) => list[list.length - 1]?.latency;
  const row = (
    label: string,
    s: ReturnType<typeof stats>,
    lat: LatencySummary | undefined,
    notes: string,
  ): Row => ({
    label,
    metrics: [
      { name: "frames/s", value: s.median, unit: "/s", spread: s.spread },
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
    ],
    notes,
  });
  const rows: Row[] = [
    row(
      "l2flow ingest (WebSocket → ack per frame)",
      ing,
      lastLatency(results.ingest),
      "from ws.send to JetStream's ack; every frame confirmed stored, ids deduplicated",
    ),
    row(
      "(a) js.publish awaiting each ack",
      js,
      lastLatency(results.js),
      "publish call to ack; 4 096 in flight",
    ),
    row(
      "(b) core publish + Nats-Msg-Id",
      core,
      undefined,
      "until the stream holds them all; the publisher is told nothing",
    ),
  ];
  const exact = results.ingest.every((x) => x.stored === n);
  const checks: Check[] = [
    {
      name: "ingest stored every frame exactly once",
      pass: exact,
      message: results.ingest.map((x) => `${x.stored}/${n}`).join(", "),
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
        "the same payload bytes and headers for all three; one nats-server 2.9 with file storage; the WebSocket " +
        "sender, ingest and the references run in this one process, nats-server in another (2 cores in all).",
      "l2flow's publish path: each frame is a core publish with a reply subject under one shared inbox; JetStream " +
        "acks each one there (stream sequence or duplicate), one sweep times out the unanswered and they are sent " +
        "again in order. So the confirmation is per frame, not inferred from a count.",
    ],
    data: { results },
  };
}

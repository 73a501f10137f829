// Shared pieces of the normalizer's tests: MD_RAW filled from a recording as ingest would, streams
// read back, and the bookTicker oracle.
import { afterAll, beforeAll } from "vitest";
import { connectBus, provisionTopology, PublishQueue, type Bus } from "@l2flow/bus";
import { BookSnapshot, HEADERS, msgIds, subjects, type RawKind } from "@l2flow/contracts";
import type { Recording } from "@l2flow/recording";
import { createLogger } from "@l2flow/runtime";
import {
  readStream,
  scrapeMetric,
  startSimulator,
  startTestNats,
  waitUntil,
  type Simulator,
  type StoredMessage,
  type TestNats,
} from "@l2flow/testkit";

export { waitUntil };
import { loadConfig as ingestConfig, startIngest, type IngestService } from "@l2flow/ingest";
import { loadConfig, startNormalizer, type NormalizerService } from "@l2flow/normalizer";

const enc = new TextEncoder();
/** The raw subject kind token of each recorded stream kind (others are not stored in MD_RAW). */
export const RAW_KIND: Record<string, RawKind | undefined> = {
  "depth@100ms": "depth",
  trade: "trade",
  aggTrade: "aggtrade",
};

/** Options of `publishRecording`. */
export interface PublishRecordingOptions {
  /** Leave out the n-th depth diff (0-based) of a symbol: a real hole in the stream. */
  readonly dropDiff?: { readonly symbol: string; readonly index: number };
  /** Extra raw messages to publish right after the n-th event. */
  readonly inject?: ReadonlyMap<number, readonly { subject: string; data: Uint8Array }[]>;
}

/**
 * A nats-server of the calling describe block's own, with l2flow's streams and buckets: `nats` and
 * `bus` are set before its tests run, and closed after them.
 */
export function provisionedNats(): { readonly nats: TestNats; readonly bus: Bus } {
  const env = {} as { nats: TestNats; bus: Bus };
  beforeAll(async () => {
    env.nats = await startTestNats();
    env.bus = await connectBus({ servers: env.nats.url });
    await provisionTopology(env.bus);
  });
  afterAll(async () => {
    await env.bus?.close();
    await env.nats?.close();
  });
  return env;
}

/** Stores one Binance `trade` event in MD_RAW as ingest would (its message id included), stored when it returns. */
export async function publishTrade(bus: Bus, symbol: string, id: number, timeMs: number): Promise<void> {
  await bus.js.publish(
    subjects.raw("trade", symbol),
    enc.encode(
      JSON.stringify({ e: "trade", E: timeMs, s: symbol, t: id, p: "1.0", q: "1.0", T: timeMs, m: false }),
    ),
    { msgID: msgIds.trade(symbol, id) },
  );
}

/** Publishes a recording's frames and snapshots into MD_RAW exactly as ingest stores them. */
export async function publishRecording(
  bus: Bus,
  recording: Recording,
  options: PublishRecordingOptions = {},
): Promise<number> {
  const queue = new PublishQueue(bus, { maxInFlight: 4_096, maxBytes: Number.POSITIVE_INFINITY });
  const diffIndex = new Map<string, number>();
  let n = 0;
  recording.events.forEach((e, i) => {
    if (e.type === "snapshot") {
      const { lastUpdateId } = JSON.parse(e.body) as { lastUpdateId: number };
      queue.push({
        subject: subjects.raw("snapshot", e.symbol),
        data: enc.encode(e.body),
        msgId: msgIds.snapshot(e.symbol, lastUpdateId),
        headers: {
          [HEADERS.receiveNs]: "0",
          [HEADERS.connection]: "rest",
          [HEADERS.snapshotLimit]: String(e.limit),
        },
      });
      n++;
    } else {
      const kind = RAW_KIND[e.kind];
      if (kind === undefined) return;
      const o = JSON.parse(e.data) as { t?: number; a?: number; u?: number };
      if (kind === "depth") {
        const k = diffIndex.get(e.symbol) ?? 0;
        diffIndex.set(e.symbol, k + 1);
        if (options.dropDiff?.symbol === e.symbol && options.dropDiff.index === k) return;
      }
      const msgId =
        kind === "depth"
          ? msgIds.depth(e.symbol, o.u!)
          : kind === "trade"
            ? msgIds.trade(e.symbol, o.t!)
            : msgIds.aggTrade(e.symbol, o.a!);
      queue.push({
        subject: subjects.raw(kind, e.symbol),
        data: enc.encode(e.data),
        msgId,
        headers: { [HEADERS.receiveNs]: `${e.receiveTimeUs}000`, [HEADERS.connection]: "replay" },
      });
      n++;
    }
    for (const extra of options.inject?.get(i) ?? []) {
      queue.push({ subject: extra.subject, data: extra.data, headers: {} });
      n++;
    }
  });
  await queue.close(60_000);
  return n;
}

/** One stored message. */
export type Stored = StoredMessage;
export { readStream };

/** Messages in `stream` (all subjects). */
export async function countStream(bus: Bus, stream: string): Promise<number> {
  return (await bus.jsm.streams.info(stream)).state.messages;
}

/** Result of checking books against the recording's bookTicker frames. */
export interface OracleResult {
  checks: number;
  mismatches: string[];
  crossed: number;
}

/**
 * Every book snapshot whose last update id equals a bookTicker's update id must show that bookTicker's
 * best bid and ask, prices and sizes, exactly.
 */
export function checkAgainstBookTicker(
  recording: Recording,
  books: readonly Stored[],
  symbol?: string,
): OracleResult {
  const tickers = new Map<string, { b: string; B: string; a: string; A: string }>();
  for (const e of recording.events) {
    if (e.type !== "frame" || e.kind !== "bookTicker" || (symbol !== undefined && e.symbol !== symbol))
      continue;
    const t = JSON.parse(e.data) as { u: number; s: string; b: string; B: string; a: string; A: string };
    tickers.set(`${t.s}:${t.u}`, t);
  }
  const result: OracleResult = { checks: 0, mismatches: [], crossed: 0 };
  for (const m of books) {
    const b = BookSnapshot.decode(m.data);
    if (symbol !== undefined && b.symbol !== symbol) continue;
    const bid = b.bids[0];
    const ask = b.asks[0];
    if (bid !== undefined && ask !== undefined && Number(bid.price) >= Number(ask.price)) result.crossed++;
    const t = tickers.get(`${b.symbol}:${b.lastUpdateId}`);
    if (t === undefined || bid === undefined || ask === undefined) continue;
    result.checks++;
    const same =
      Number(bid.price) === Number(t.b) &&
      Number(bid.quantity) === Number(t.B) &&
      Number(ask.price) === Number(t.a) &&
      Number(ask.quantity) === Number(t.A);
    if (!same)
      result.mismatches.push(
        `${b.symbol} u=${b.lastUpdateId}: book ${bid.price}x${bid.quantity} / ${ask.price}x${ask.quantity}, bookTicker ${t.b}x${t.B} / ${t.a}x${t.A}`,
      );
  }
  return result;
}

/** A pino logger writing into an array. */
export function captureLogs() {
  const lines: string[] = [];
  return {
    lines,
    logger: createLogger({
      service: "normalizer-test",
      level: "info",
      destination: { write: (s: string) => void lines.push(s) },
    }),
  };
}

/**
 * A normalizer of `symbols` alone, named `name`, on the NATS at `natsUrl`, logging into `lines`;
 * `vars` adds or overrides environment variables.
 */
export async function startSymbolNormalizer(
  natsUrl: string,
  name: string,
  symbols: string,
  vars: Readonly<Record<string, string>> = {},
): Promise<{ normalizer: NormalizerService; lines: string[] }> {
  const { lines, logger } = captureLogs();
  const config = loadConfig({
    NATS_URL: natsUrl,
    METRICS_PORT: "0",
    NORMALIZER_NAME: name,
    NORMALIZER_SYMBOLS: symbols,
    ...vars,
  });
  return { normalizer: await startNormalizer(config, { logger }), lines };
}

/** Sum of a metric's samples (optionally only lines containing `labels`). */
export const metric = scrapeMetric;

/** The live path of a test: simulator → ingest → MD_RAW → normalizer, each on the test's nats-server. */
export interface LivePipeline {
  readonly nats: TestNats;
  readonly sim: Simulator;
  readonly ingest: IngestService;
  readonly normalizer: NormalizerService;
  readonly bus: Bus;
  close(): Promise<void>;
}

/**
 * Starts a nats-server, the simulator (speed 10, not yet replaying) on `recording`, ingest on its
 * symbols (aggTrade and depth) and a normalizer, with extra environment for each; resolves once
 * ingest's connections are up. Call `sim.start()` to replay.
 */
export async function startLivePipeline(
  recording: Recording,
  env: { ingest?: Record<string, string>; normalizer?: Record<string, string> } = {},
): Promise<LivePipeline> {
  const nats = await startTestNats();
  const sim = await startSimulator({ recording, speed: 10, autoStart: false });
  const { logger } = captureLogs();
  const base = { NATS_URL: nats.url, METRICS_PORT: "0" };
  const ingest = await startIngest(
    ingestConfig({
      ...base,
      BINANCE_WS_URL: sim.wsUrl,
      BINANCE_REST_URL: sim.restUrl,
      SYMBOLS: recording.symbols.join(","),
      STREAM_KINDS: "aggTrade,depth",
      ...env.ingest,
    }),
    { logger },
  );
  const normalizer = await startNormalizer(loadConfig({ ...base, ...env.normalizer }), { logger });
  const bus = await connectBus({ servers: nats.url });
  await waitUntil(() => ingest.connectionsUp() === 2, 10_000, "ingest's connections");
  return {
    nats,
    sim,
    ingest,
    normalizer,
    bus,
    async close() {
      await normalizer.close();
      await ingest.close();
      await bus.close();
      await sim.close();
      await nats.close();
    },
  };
}

// One ingest against its own nats-server and Binance simulator, for a test.
import { expect } from "vitest";
import { connectBus, type Bus } from "@l2flow/bus";
import { HEADERS, msgIds, subjects } from "@l2flow/contracts";
import { readRecording, type Recording } from "@l2flow/recording";
import {
  fixtures,
  startSimulator,
  startTestNats,
  type Simulator,
  type SimulatorOptions,
  type TestNats,
  waitUntil,
} from "@l2flow/testkit";
import { loadConfig, startIngest, type IngestService } from "@l2flow/ingest";
import { captureLogs, expectExactlyOnce, idsOf, readRaw, recordedIds, type RawMessage } from "./support.js";

let btcusdt: Recording | undefined;
/** The BTCUSDT recording, parsed once per test file. */
export function btcRecording(): Recording {
  return (btcusdt ??= readRecording(fixtures.btcusdt));
}

export interface Harness {
  readonly nats: TestNats;
  readonly sim: Simulator;
  /** The ingest running now (another after `restartIngest`). */
  readonly ingest: IngestService;
  readonly bus: Bus;
  readonly logs: string[];
  /** Closes ingest, waits `downMs`, and starts a new one with the same settings. */
  restartIngest(downMs: number): Promise<IngestService>;
  close(): Promise<void>;
}

/** Starts nats, the simulator (paused) and ingest on BTCUSDT; waits until `connections` are up. */
export async function startHarness(
  env: Record<string, string>,
  options: { sim?: Partial<SimulatorOptions>; connections?: number; recording?: Recording } = {},
): Promise<Harness> {
  const nats = await startTestNats();
  const sim = await startSimulator({
    recording: options.recording ?? btcRecording(),
    speed: 40,
    autoStart: false,
    ...options.sim,
  });
  const { lines, logger } = captureLogs();
  const start = () =>
    startIngest(
      loadConfig({
        NATS_URL: nats.url,
        METRICS_PORT: "0",
        BINANCE_WS_URL: sim.wsUrl,
        BINANCE_REST_URL: sim.restUrl,
        SYMBOLS: "BTCUSDT",
        ...env,
      }),
      { logger },
    );
  let ingest = await start();
  const bus = await connectBus({ servers: nats.url, name: "ingest-test", reconnectTimeWaitMs: 100 });
  const want = options.connections ?? Number(env.WS_REDUNDANCY ?? 2);
  await waitUntil(() => ingest.connectionsUp() === want, 10_000, `${want} connections up`);
  return {
    nats,
    sim,
    get ingest() {
      return ingest;
    },
    bus,
    logs: lines,
    restartIngest: async (downMs) => {
      await ingest.close();
      await new Promise((r) => setTimeout(r, downMs));
      ingest = await start();
      return ingest;
    },
    close: async () => {
      await ingest.close();
      await bus.close();
      await sim.close();
      await nats.close();
    },
  };
}

export { waitUntil };

/**
 * Waits until MD_RAW holds as many BTCUSDT trades and diffs as the recording, then asserts each id
 * is there exactly once (`diffs: false` skips the diffs, for runs that may lose some by design).
 */
export async function expectRecordingStoredOnce(
  h: Harness,
  options: { diffs?: boolean; recording?: Recording; symbol?: string } = {},
): Promise<void> {
  const symbol = options.symbol ?? "BTCUSDT";
  const want = recordedIds(options.recording ?? btcRecording(), symbol);
  const count = async (kind: "trade" | "depth") => {
    const subject = subjects.raw(kind, symbol);
    const info = await h.bus.jsm.streams.info("MD_RAW", { subjects_filter: subject });
    return info.state.subjects?.[subject] ?? 0;
  };
  await h.ingest.backfillSettled(30_000);
  await waitUntil(
    async () =>
      (await count("trade")) >= want.trades.length &&
      (options.diffs === false || (await count("depth")) >= want.diffs.length),
    30_000,
    "MD_RAW to hold the whole recording",
  ).catch(() => undefined); // the exact comparison below says what is missing
  const trades = await readRaw(h.bus, subjects.raw("trade", symbol));
  expectExactlyOnce(idsOf(trades, "t"), want.trades, "trade ids");
  // Live and backfilled trades carry the contract's message id, so JetStream can drop any copy.
  const wrongIds = (list: readonly RawMessage[], id: (m: RawMessage) => string) =>
    list.filter((m) => m.headers[HEADERS.msgId] !== id(m)).map((m) => m.headers[HEADERS.msgId]);
  expect(wrongIds(trades, (m) => msgIds.trade(symbol, m.json.t as number)).slice(0, 5)).toEqual([]);
  if (options.diffs !== false) {
    const diffs = await readRaw(h.bus, subjects.raw("depth", symbol));
    expectExactlyOnce(idsOf(diffs, "u"), want.diffs, "diff update ids");
    expect(wrongIds(diffs, (m) => msgIds.depth(symbol, m.json.u as number)).slice(0, 5)).toEqual([]);
  }
}

/** The client never broke Binance's per-connection message rate nor the attempt limit. */
export function expectPaced(sim: Simulator): void {
  const stats = sim.stats();
  for (const c of stats.connections) expect(c.maxMessagesInAnySecond).toBeLessThan(5);
  expect(stats.maxConnectionAttemptsIn5Min).toBeLessThan(300);
  expect(stats.connectionsRefused).toBe(0);
  expect(stats.rest.banned418).toBe(0);
}

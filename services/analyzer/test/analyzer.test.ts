// The analyzer service over a real nats-server and the fake OpenAI server: windows are published
// straight into MD_WINDOW and the signals read back from SIGNALS.
import { spawn, type ChildProcess } from "node:child_process";
import { fileURLToPath } from "node:url";
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { connectBus, provisionTopology, publish, type Bus } from "@l2flow/bus";
import { msgIds, Signal, STREAM_SUBJECTS, STREAMS, subjects, Window } from "@l2flow/contracts";
import { createLogger } from "@l2flow/runtime";
import {
  readStream,
  scrapeMetric,
  startFakeLlm,
  startTestNats,
  type FakeLlm,
  type FakeLlmBehaviour,
  type TestNats,
} from "@l2flow/testkit";
import { loadConfig, startAnalyzer, type AnalyzerService } from "@l2flow/analyzer";

const ROOT = fileURLToPath(new URL("../../..", import.meta.url));
const KEY = "sk-analyzer-test-secret-0042";
const good = { sentiment: "bullish", confidence: 0.7, pressure: "buy", rationale: "buyers lift offers" };

function window(symbol: string, start: number): Window {
  return Window.fromPartial({
    exchange: "binance",
    symbol,
    interval: "1s",
    startTimeMs: start,
    endTimeMs: start + 1000,
    open: 100,
    high: 101,
    low: 99,
    close: 100.5,
    volume: 2,
    vwap: 100.2,
    tradeCount: 5,
    takerBuyVolume: 1.5,
    takerSellVolume: 0.5,
    tradeFlowImbalance: 0.5,
    mid: 100.5,
    bookImbalance: 0.2,
    complete: true,
    closeReason: 1,
    epoch: 1,
  });
}

async function publishWindows(bus: Bus, windows: readonly Window[]): Promise<void> {
  for (const w of windows)
    await publish(bus, subjects.window(w.interval, w.symbol), Window.encode(w).finish(), {
      msgId: msgIds.window(w.interval, w.symbol, w.startTimeMs),
    });
}

async function readSignals(bus: Bus): Promise<Signal[]> {
  return (await readStream(bus, STREAMS.signals, STREAM_SUBJECTS[STREAMS.signals][0])).map((m) =>
    Signal.decode(m.data),
  );
}

/** Signals stored so far. */
async function signalCount(bus: Bus): Promise<number> {
  return (await bus.jsm.streams.info(STREAMS.signals)).state.messages;
}

/** Waits until SIGNALS holds `n` messages, then reads them all. */
async function stored(bus: Bus, n: number): Promise<Signal[]> {
  await waitFor(`${n} signals`, async () => ((await signalCount(bus)) >= n ? true : undefined));
  await new Promise((r) => setTimeout(r, 300)); // anything extra (a duplicate) would show up too
  return readSignals(bus);
}

async function waitFor<T>(what: string, fn: () => Promise<T | undefined>, timeoutMs = 30_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await fn();
    if (v !== undefined) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

const metric = scrapeMetric;

/** Batch answers built from the prompt: every symbol it names gets `good`. */
const batchAnswer = (req: { body: { messages?: { content: string }[] } }): FakeLlmBehaviour => {
  const text = req.body.messages?.[1]?.content ?? "";
  const symbols = [...text.matchAll(/^([A-Z0-9]{2,30}): \{/gm)].map((m) => m[1]!);
  return symbols.length > 0
    ? { kind: "json", body: Object.fromEntries(symbols.map((s) => [s, good])) }
    : { kind: "json", body: good };
};

describe("analyzer service", () => {
  let nats: TestNats;
  let llm: FakeLlm;
  let bus: Bus;
  const lines: string[] = [];
  const logger = createLogger({
    service: "analyzer-test",
    level: "info",
    secrets: [KEY],
    destination: { write: (s: string) => void lines.push(s) },
  });
  const running: AnalyzerService[] = [];
  const start = async (env: Record<string, string> = {}) => {
    const a = await startAnalyzer(
      loadConfig({
        NATS_URL: nats.url,
        METRICS_PORT: "0",
        HOLYSHEEP_API_KEY: KEY,
        HOLYSHEEP_BASE_URL: llm.url,
        ANALYZER_INTERVALS: "1s",
        LLM_TIMEOUT_MS: "2000",
        ...env,
      }),
      { logger },
    );
    running.push(a);
    return a;
  };

  beforeAll(async () => {
    llm = await startFakeLlm();
  });
  beforeEach(async () => {
    nats = await startTestNats();
    bus = await connectBus({ servers: nats.url, name: "analyzer-test" });
    await provisionTopology(bus);
    llm.setScript([]);
    llm.setDefault({ kind: "json", body: good });
    llm.requests.length = 0;
  });
  afterEach(async () => {
    for (const a of running.splice(0)) await a.close();
    await bus.close();
    await nats.close();
  });
  afterAll(async () => {
    await llm.close();
    expect(lines.join("")).not.toContain(KEY);
  });

  it("publishes one signal per window with the model's fields, usage and cost", async () => {
    const a = await start();
    await publishWindows(bus, [window("BTCUSDT", 1_000), window("ETHUSDT", 1_000)]);
    const signals = await stored(bus, 2);
    expect(signals).toHaveLength(2);
    for (const s of signals) {
      expect(s).toMatchObject({
        provider: "holysheep",
        model: "deepseek-v3.2",
        degraded: false,
        confidence: 0.7,
      });
      expect(s.promptTokens).toBeGreaterThan(0);
      expect(s.costUsd).toBeGreaterThan(0);
    }
    expect(await metric(a.opsUrl, "l2flow_analyzer_llm_cost_usd_total")).toBeGreaterThan(0);
    expect(await metric(a.opsUrl, "l2flow_analyzer_llm_latency_seconds_count")).toBe(2);
  });

  it("prices a model as configured, and refuses one without a price, whose spend nothing would count", async () => {
    expect(() => loadConfig({ HOLYSHEEP_API_KEY: KEY, HOLYSHEEP_MODEL: "my-model" })).toThrow(
      /HOLYSHEEP_MODEL="my-model": no built-in price .*set LLM_PRICE_INPUT_USD_PER_M and LLM_PRICE_OUTPUT_USD_PER_M/,
    );
    expect(() =>
      loadConfig({ HOLYSHEEP_API_KEY: KEY, HOLYSHEEP_MODEL: "my-model", LLM_PRICE_INPUT_USD_PER_M: "1" }),
    ).toThrow(/LLM_PRICE_OUTPUT_USD_PER_M: set it too/);
    expect(() => loadConfig({ LLM_PRICE_INPUT_USD_PER_M: "-1", LLM_PRICE_OUTPUT_USD_PER_M: "1" })).toThrow(
      /LLM_PRICE_INPUT_USD_PER_M="-1": expected a number of US dollars per million tokens >= 0/,
    );
    // Without a key (the rule provider) no price is needed.
    expect(loadConfig({ HOLYSHEEP_MODEL: "my-model" }).HOLYSHEEP_MODEL).toBe("my-model");
    const a = await start({
      HOLYSHEEP_MODEL: "my-model",
      LLM_PRICE_INPUT_USD_PER_M: "2",
      LLM_PRICE_OUTPUT_USD_PER_M: "10",
    });
    await publishWindows(bus, [window("PRICEUSDT", 1_000)]);
    const [signal] = await stored(bus, 1);
    expect(signal!.model).toBe("my-model");
    expect(signal!.promptTokens).toBeGreaterThan(0);
    const expected = (signal!.promptTokens * 2 + signal!.completionTokens * 10) / 1_000_000;
    expect(signal!.costUsd).toBeCloseTo(expected, 12);
    expect(await metric(a.opsUrl, "l2flow_analyzer_llm_cost_usd_total")).toBeCloseTo(expected, 12);
  });

  it("batches several symbols' windows into fewer LLM calls, one signal each", async () => {
    llm.setDefault(batchAnswer);
    await start({ ANALYZER_BATCH_SIZE: "5", ANALYZER_BATCH_WAIT_MS: "300", LLM_CONCURRENCY: "2" });
    const symbols = Array.from({ length: 10 }, (_, i) => `S${i}USDT`);
    await publishWindows(
      bus,
      symbols.map((s) => window(s, 5_000)),
    );
    const signals = await stored(bus, 10);
    expect(signals.map((s) => s.symbol).sort()).toEqual([...symbols].sort());
    expect(signals.every((s) => !s.degraded && s.provider === "holysheep")).toBe(true);
    expect(llm.requests.length).toBeLessThanOrEqual(4);
    expect(llm.requests.length).toBeGreaterThanOrEqual(2);
  });

  it("terminates and counts an undecodable window, and goes on with the next", async () => {
    const a = await start();
    await publish(bus, "md.window.binance.1s.BADUSDT", new Uint8Array([0xff, 0xff, 0xff, 0x01]), {
      msgId: "bad-1",
    });
    await publishWindows(bus, [window("BTCUSDT", 2_000)]);
    expect(await stored(bus, 1)).toHaveLength(1);
    await waitFor("the poison counted", async () =>
      (await metric(a.opsUrl, "l2flow_analyzer_windows_total", 'outcome="poison"')) === 1 ? true : undefined,
    );
    const info = await bus.jsm.consumers.info(STREAMS.window, "analyzer");
    expect(info.num_ack_pending).toBe(0);
    expect(info.num_redelivered).toBe(0);
  });

  it("two replicas share the windows: each window exactly one signal", async () => {
    const [a, b] = [await start(), await start()];
    const windows = Array.from({ length: 40 }, (_, i) =>
      window(`R${i % 8}USDT`, 10_000 + Math.floor(i / 8) * 1000),
    );
    await publishWindows(bus, windows);
    const signals = await stored(bus, 40);
    const keys = signals.map((s) => `${s.symbol}:${s.windowStartTimeMs}`);
    expect(new Set(keys).size).toBe(40);
    expect(signals).toHaveLength(40);
    const byA = await metric(a.opsUrl, "l2flow_analyzer_windows_total", 'outcome="analyzed"');
    const byB = await metric(b.opsUrl, "l2flow_analyzer_windows_total", 'outcome="analyzed"');
    expect(byA + byB).toBe(40);
    expect(byA).toBeGreaterThan(0);
    expect(byB).toBeGreaterThan(0);
  });

  it("a signal whose publish meets a NATS outage is sent when NATS is back: no second LLM call", async () => {
    const a = await start();
    // The answers come back while NATS is down, so each signal's first publish fails.
    llm.setDefault({ kind: "slow", delayMs: 1_500, then: { kind: "json", body: good } });
    await publishWindows(
      bus,
      Array.from({ length: 4 }, (_, i) => window(`O${i}USDT`, 30_000)),
    );
    await waitFor("4 LLM calls in flight", async () => (llm.inFlight >= 4 ? true : undefined));
    await nats.stop();
    await new Promise((r) => setTimeout(r, 2_500));
    await nats.restart();
    // This test's own client reconnects too: its first requests may fail while JetStream recovers.
    await waitFor("4 signals stored", async () =>
      (await signalCount(bus).catch(() => 0)) >= 4 ? true : undefined,
    );
    const signals = await stored(bus, 4);
    expect(signals).toHaveLength(4);
    expect(new Set(signals.map((s) => s.symbol)).size).toBe(4);
    // Giving up would have nak'ed each window and paid for its LLM call a second time.
    expect(llm.requests).toHaveLength(4);
    expect(await metric(a.opsUrl, "l2flow_analyzer_windows_total", 'outcome="analyzed"')).toBe(4);
  });

  it("a window held longer than the ack wait, waiting for a free LLM call or in one, is not redelivered: one call each", async () => {
    // One call at a time, 1.2 s each, against a 1 s ack wait: each call outlasts it, and the last
    // window waits ~2.4 s before its call starts. Redelivered, a window would be analysed (and paid
    // for) twice.
    llm.setDefault({ kind: "slow", delayMs: 1_200, then: { kind: "json", body: good } });
    const a = await start({ LLM_CONCURRENCY: "1", ANALYZER_ACK_WAIT_MS: "1000" });
    const windows = Array.from({ length: 3 }, (_, i) => window(`W${i}USDT`, 40_000));
    await publishWindows(bus, windows);
    const signals = await stored(bus, 3);
    expect(signals).toHaveLength(3);
    expect(llm.requests).toHaveLength(3);
    expect(await metric(a.opsUrl, "l2flow_analyzer_windows_total", 'outcome="analyzed"')).toBe(3);
    const info = await bus.jsm.consumers.info(STREAMS.window, "analyzer");
    expect(info.num_redelivered).toBe(0);
    expect(info.num_ack_pending).toBe(0);
  });

  it("gives a window's prompt only earlier windows of its symbol, oldest first, whatever order they came in", async () => {
    await start({ LLM_CONCURRENCY: "1" });
    // Delivered out of order, as a redelivery or a late window comes after later ones.
    await publishWindows(
      bus,
      [2, 1, 3, 0].map((k) => window("HISTUSDT", 50_000 + k * 1_000)),
    );
    await stored(bus, 4);
    const iso = (k: number) => new Date(50_000 + k * 1_000).toISOString();
    const prompts = new Map<string, string[]>();
    for (const r of llm.requests) {
      const text = r.body.messages?.[1]?.content ?? "";
      const own = /"start":"([^"]+)"/.exec(text)?.[1] ?? "";
      const past = text.includes("Previous windows:")
        ? text
            .split("Previous windows:\n")[1]!
            .split("\n")
            .map((l) => l.split(" ")[0]!)
            .filter((l) => l.endsWith("Z"))
        : [];
      prompts.set(own, past);
    }
    expect(prompts.get(iso(2))).toEqual([]);
    expect(prompts.get(iso(1))).toEqual([]);
    expect(prompts.get(iso(3))).toEqual([iso(1), iso(2)]);
    expect(prompts.get(iso(0))).toEqual([]);
  });

  it("makes its durable consumer again when it is deleted, and goes on", async () => {
    await start();
    await publishWindows(bus, [window("DEL1USDT", 1_000)]);
    await stored(bus, 1);
    await bus.jsm.consumers.delete(STREAMS.window, "analyzer"); // an operator's mistake
    await publishWindows(bus, [window("DEL2USDT", 1_000)]);
    const signals = await stored(bus, 2);
    expect(signals.map((s) => s.symbol).sort()).toEqual(["DEL1USDT", "DEL2USDT"]);
    expect(llm.requests).toHaveLength(2); // made again from where it was, not from the start
    const info = await bus.jsm.consumers.info(STREAMS.window, "analyzer");
    expect(info.num_ack_pending).toBe(0);
  });

  it("a replica killed mid-stream: its unacked windows go to the other, still one signal each", async () => {
    // The first replica's LLM calls hang, so its windows stay unacked when it is killed.
    llm.setDefault({ kind: "hang" });
    const child: ChildProcess = spawn(
      process.execPath,
      ["--conditions=l2flow-source", "--import", "tsx", "services/analyzer/src/main.ts"],
      {
        cwd: ROOT,
        env: {
          PATH: process.env.PATH ?? "",
          NATS_URL: nats.url,
          METRICS_PORT: "0",
          LOG_LEVEL: "warn",
          HOLYSHEEP_API_KEY: KEY,
          HOLYSHEEP_BASE_URL: llm.url,
          ANALYZER_INTERVALS: "1s",
          LLM_CONCURRENCY: "8",
          LLM_TIMEOUT_MS: "60000",
          ANALYZER_ACK_WAIT_MS: "2000",
        },
        stdio: "ignore",
      },
    );
    try {
      const windows = Array.from({ length: 8 }, (_, i) => window(`K${i}USDT`, 20_000));
      await publishWindows(bus, windows);
      await waitFor(
        "the child holding 8 windows",
        async () => (llm.inFlight >= 8 ? true : undefined),
        30_000,
      );
      child.kill("SIGKILL");
      llm.setDefault({ kind: "json", body: good });
      const survivor = await start({ ANALYZER_ACK_WAIT_MS: "2000" });
      const signals = await stored(bus, 8);
      expect(signals).toHaveLength(8);
      expect(new Set(signals.map((s) => s.symbol)).size).toBe(8);
      expect(signals.every((s) => !s.degraded)).toBe(true);
      // Every signal came from the survivor, through redeliveries of the child's windows.
      expect(await metric(survivor.opsUrl, "l2flow_analyzer_windows_total", 'outcome="analyzed"')).toBe(8);
      const info = await bus.jsm.consumers.info(STREAMS.window, "analyzer");
      expect(info.delivered.consumer_seq).toBeGreaterThanOrEqual(16);
      expect(info.num_ack_pending).toBe(0);
    } finally {
      child.kill("SIGKILL");
    }
  });
});

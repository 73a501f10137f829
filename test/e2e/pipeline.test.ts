// The whole path, thin but real: the Binance simulator replays the BTCUSDT recording → ingest →
// MD_RAW → normalizer → MD_NORM / MD_WINDOW → analyzer (HolySheep provider pointed at the fake
// OpenAI server) → SIGNALS, over a real nats-server.
import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";
import { connectBus, listConsumers, type Bus } from "@l2flow/bus";
import { BookSnapshot, DegradedReason, Signal, STREAMS, Window } from "@l2flow/contracts";
import { readRecording } from "@l2flow/recording";
import { createLogger } from "@l2flow/runtime";
import {
  fixtures,
  readMetric,
  readStream,
  startFakeLlm,
  startSimulator,
  startTestNats,
  type FakeLlm,
  type Simulator,
  type TestNats,
} from "@l2flow/testkit";
import { loadConfig as ingestConfig, startIngest, type IngestService } from "@l2flow/ingest";
import { loadConfig as normalizerConfig, startNormalizer, type NormalizerService } from "@l2flow/normalizer";
import { loadConfig as analyzerConfig, startAnalyzer, type AnalyzerService } from "@l2flow/analyzer";

const API_KEY = "sk-e2e-secret-0123456789";

describe("end to end: simulator → ingest → normalizer → analyzer", () => {
  let nats: TestNats;
  let sim: Simulator;
  let llm: FakeLlm;
  let ingest: IngestService;
  let normalizer: NormalizerService;
  let analyzer: AnalyzerService;
  let bus: Bus;
  const logLines: string[] = [];

  beforeAll(async () => {
    nats = await startTestNats();
    llm = await startFakeLlm();
    sim = await startSimulator({ recording: readRecording(fixtures.btcusdt), speed: 40, autoStart: false });
    const destination = { write: (s: string) => void logLines.push(s) };
    const logger = createLogger({ service: "e2e", level: "info", secrets: [API_KEY], destination });
    const common = { NATS_URL: nats.url, METRICS_PORT: "0" };
    ingest = await startIngest(
      ingestConfig({
        ...common,
        BINANCE_WS_URL: sim.wsUrl,
        BINANCE_REST_URL: sim.restUrl,
        SYMBOLS: "BTCUSDT",
      }),
      { logger },
    );
    normalizer = await startNormalizer(normalizerConfig({ ...common }), { logger });
    analyzer = await startAnalyzer(
      analyzerConfig({
        ...common,
        HOLYSHEEP_API_KEY: API_KEY,
        HOLYSHEEP_BASE_URL: llm.url,
        ANALYZER_INTERVALS: "1s",
      }),
      { logger },
    );
    bus = await connectBus({ servers: nats.url, name: "e2e-reader" });
    await vi.waitFor(() => expect(ingest.connectionsUp()).toBeGreaterThan(0), {
      timeout: 15_000,
      interval: 100,
    });
    sim.resume();
    await sim.done;
    // Let the pipeline drain: every consumer has nothing pending.
    await vi.waitFor(
      async () => {
        let pending = 0;
        for await (const c of listConsumers(bus, STREAMS.raw)) pending += c.num_pending + c.num_ack_pending;
        for await (const c of listConsumers(bus, STREAMS.window))
          pending += c.num_pending + c.num_ack_pending;
        expect(pending).toBe(0);
      },
      { timeout: 60_000, interval: 500 },
    );
    // Windows still open at the end close on the idle timeout; give them a moment to be analysed.
    await new Promise((r) => setTimeout(r, 1_500));
  }, 180_000);

  afterAll(async () => {
    await analyzer?.close();
    await normalizer?.close();
    await ingest?.close();
    await bus?.close();
    await sim?.close();
    await llm?.close();
    await nats?.close();
  });

  it("publishes books that match every bookTicker with the same update id, exactly", async () => {
    const tickers = new Map<number, { b: string; B: string; a: string; A: string }>();
    for (const e of readRecording(fixtures.btcusdt).events) {
      if (e.type !== "frame" || e.kind !== "bookTicker") continue;
      const t = JSON.parse(e.data) as { u: number; b: string; B: string; a: string; A: string };
      tickers.set(t.u, t);
    }
    const books = (await readStream(bus, STREAMS.norm, "md.book.binance.BTCUSDT")).map((m) =>
      BookSnapshot.decode(m.data),
    );
    expect(books.length).toBeGreaterThan(3000);
    let checked = 0;
    const mismatches: string[] = [];
    for (const book of books) {
      const t = tickers.get(book.lastUpdateId);
      if (t === undefined) continue;
      checked++;
      const got = [book.bids[0]?.price, book.bids[0]?.quantity, book.asks[0]?.price, book.asks[0]?.quantity];
      if (got.join() !== [t.b, t.B, t.a, t.A].join())
        mismatches.push(`u=${book.lastUpdateId}: ${got.join()} != ${[t.b, t.B, t.a, t.A].join()}`);
      expect(Number(book.bids[0]?.price)).toBeLessThan(Number(book.asks[0]?.price));
    }
    expect(mismatches).toEqual([]);
    expect(checked).toBeGreaterThan(500);
  });

  it("closes 1 s windows and answers each with exactly one HolySheep signal", async () => {
    const windows = (await readStream(bus, STREAMS.window, "md.window.binance.1s.BTCUSDT")).map((m) =>
      Window.decode(m.data),
    );
    expect(windows.length).toBeGreaterThan(200);
    const signals = (await readStream(bus, STREAMS.signals, "signal.binance.1s.BTCUSDT")).map((m) =>
      Signal.decode(m.data),
    );
    const byWindow = new Map<number, number>();
    for (const s of signals) byWindow.set(s.windowStartTimeMs, (byWindow.get(s.windowStartTimeMs) ?? 0) + 1);
    for (const w of windows) expect(byWindow.get(w.startTimeMs), `window ${w.startTimeMs}`).toBe(1);
    expect(signals.length).toBe(windows.length);
    const llmSignals = signals.filter((s) => !s.degraded);
    expect(llmSignals.length).toBeGreaterThan(0);
    for (const s of llmSignals) {
      expect(s.provider).toBe("holysheep");
      expect(s.model).toBe("deepseek-v3.2");
      expect(s.promptTokens).toBeGreaterThan(0);
      expect(s.costUsd).toBeGreaterThan(0);
    }
    expect(llm.requests.length).toBeGreaterThan(0);
    expect(llm.requests[0]?.headers.authorization).toBe(`Bearer ${API_KEY}`);

    // The counters agree with what was stored, labelled by the contracts' enum names.
    const analyzerMetrics = await (await fetch(`${analyzer.opsUrl}/metrics`)).text();
    const signalsBy = (reason: string) =>
      readMetric(analyzerMetrics, "l2flow_analyzer_signals_total", `degraded_reason="${reason}"`) ?? 0;
    expect(signalsBy("none")).toBe(llmSignals.length);
    const degraded = new Map<string, number>();
    for (const s of signals.filter((x) => x.degraded)) {
      const reason = DegradedReason[s.degradedReason];
      degraded.set(reason, (degraded.get(reason) ?? 0) + 1);
    }
    for (const [reason, n] of degraded) expect(signalsBy(reason), reason).toBe(n);
    const normalizerMetrics = await (await fetch(`${normalizer.opsUrl}/metrics`)).text();
    expect(
      readMetric(normalizerMetrics, "l2flow_normalizer_windows_total", 'interval="1s"'),
    ).toBeGreaterThanOrEqual(windows.length);
    const reasons = [
      ...normalizerMetrics.matchAll(/^l2flow_normalizer_windows_total\{[^}]*reason="([^"]+)"/gm),
    ];
    expect(reasons.length).toBeGreaterThan(0);
    for (const [, reason] of reasons) expect(reason).toMatch(/^WINDOW_CLOSE_REASON_(WATERMARK|IDLE)$/);
  });

  it("never logs the API key", () => {
    expect(logLines.length).toBeGreaterThan(0);
    expect(logLines.join("")).not.toContain(API_KEY);
  });
});

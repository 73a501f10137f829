// Bad input gets a clear error and loses nothing: malformed frames, a REST error, NATS down at start,
// a missing API key, a bad configuration value.
import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";
import { connectBus, type Bus } from "@l2flow/bus";
import { STREAMS } from "@l2flow/contracts";
import { readRecording } from "@l2flow/recording";
import { ConfigError, createLogger } from "@l2flow/runtime";
import {
  fixtures,
  scrapeMetric as metric,
  startSimulator,
  startTestNats,
  type Simulator,
  type TestNats,
} from "@l2flow/testkit";
import { loadConfig as ingestConfig, startIngest, type IngestService } from "@l2flow/ingest";
import { loadConfig as analyzerConfig, startAnalyzer } from "@l2flow/analyzer";

function capture() {
  const lines: string[] = [];
  return {
    lines,
    logger: createLogger({
      service: "test",
      level: "info",
      destination: { write: (s: string) => void lines.push(s) },
    }),
  };
}

describe("configuration and start-up errors", () => {
  it("names the bad variable and what it accepts", () => {
    expect(() =>
      ingestConfig({ SYMBOLS: "btc/usdt", BINANCE_WS_URL: "http://x", SNAPSHOT_LIMIT: "9000" }),
    ).toThrow(ConfigError);
    try {
      ingestConfig({ SYMBOLS: "btc/usdt", BINANCE_WS_URL: "http://x", SNAPSHOT_LIMIT: "9000" });
    } catch (err) {
      const msg = (err as Error).message;
      expect(msg).toMatch(/SYMBOLS="btc\/usdt": expected comma-separated symbols/);
      expect(msg).toMatch(/BINANCE_WS_URL="http:\/\/x": expected a URL starting with wss:\/\/ or ws:\/\//);
      expect(msg).toMatch(/SNAPSHOT_LIMIT="9000": expected 1-5000/);
    }
    expect(() => ingestConfig({ WS_CONNECT_ATTEMPTS_PER_5MIN: "400" })).toThrow(
      /WS_CONNECT_ATTEMPTS_PER_5MIN="400": expected at most 300/,
    );
    expect(ingestConfig({ WS_CONNECT_ATTEMPTS_PER_5MIN: "140" }).WS_CONNECT_ATTEMPTS_PER_5MIN).toBe(140);
    // A lifetime lowered alone (to see rotations) leaves the default rotation lead longer than it.
    expect(() => ingestConfig({ CONNECTION_LIFETIME_MS: "300000" })).toThrow(
      /ROTATE_BEFORE_MS=600000: must be less than CONNECTION_LIFETIME_MS=300000/,
    );
    expect(() => analyzerConfig({ HOLYSHEEP_API_KEY: "short", ANALYZER_INTERVALS: "1 minute" })).toThrow(
      /ANALYZER_INTERVALS="1 minute"/,
    );
    expect(() => analyzerConfig({ HOLYSHEEP_API_KEY: "short" })).toThrow(/HOLYSHEEP_API_KEY=<redacted>/);
  });

  it("says what to do when NATS is unreachable at start", async () => {
    const { logger } = capture();
    const err = await startIngest(
      ingestConfig({ NATS_URL: "nats://127.0.0.1:1", NATS_CONNECT_TIMEOUT_MS: "500", METRICS_PORT: "0" }),
      { logger },
    ).catch((e: unknown) => e);
    expect(err).toMatchObject({ code: "NATS_UNREACHABLE", retryable: true });
    expect((err as Error).message).toMatch(/nats-server -js|NATS_URL/);
  });
});

describe("ingest under bad input", () => {
  let nats: TestNats;
  let sim: Simulator;
  let ingest: IngestService;
  let bus: Bus;
  const log = capture();

  beforeAll(async () => {
    nats = await startTestNats();
    sim = await startSimulator({ recording: readRecording(fixtures.btcusdt), speed: 20, autoStart: false });
    ingest = await startIngest(
      ingestConfig({
        NATS_URL: nats.url,
        METRICS_PORT: "0",
        BINANCE_WS_URL: sim.wsUrl,
        BINANCE_REST_URL: sim.restUrl,
        SYMBOLS: "BTCUSDT,NOPEUSDT",
      }),
      { logger: log.logger },
    );
    bus = await connectBus({ servers: nats.url });
    // Two redundant connection sets (WS_REDUNDANCY defaults to 2), one connection each.
    await vi.waitFor(() => expect(ingest.connectionsUp()).toBe(2), { timeout: 10_000 });
  });
  afterAll(async () => {
    await ingest?.close();
    await bus?.close();
    await sim?.close();
    await nats?.close();
  });

  it("counts and skips malformed frames, keeps the connection, and loses nothing accepted", async () => {
    sim.resume();
    await vi.waitFor(() => expect(sim.progress().replayed).toBeGreaterThan(500), { timeout: 20_000 });
    const connections = sim.injectMalformed(5);
    expect(connections).toBe(2);
    // Well-formed trades whose symbol cannot be a subject token: a dot or a wildcard would name other
    // subjects, lower case is not Binance's.
    for (const s of ["BTC.USDT", "btcusdt", "*"])
      sim.injectMalformed(JSON.stringify({ e: "trade", E: 1, s, t: 1, p: "1.0", q: "1.0", T: 1, m: true }));
    sim.pause();
    await vi.waitFor(
      async () => expect(await metric(ingest.opsUrl, "l2flow_ingest_bad_frames_total")).toBe(8 * connections),
      { timeout: 10_000 },
    );
    expect(await metric(ingest.opsUrl, "l2flow_ingest_bad_frames_total", 'code="FRAME_BAD_SYMBOL"')).toBe(
      3 * connections,
    );
    const stored = await bus.jsm.streams.info(STREAMS.raw, { subjects_filter: "md.raw.binance.>" });
    // Only the configured symbols have subjects (BTC.USDT would have made `…trade.BTC.USDT`).
    const symbolsStored = new Set(
      Object.keys(stored.state.subjects ?? {}).map((s) => s.split(".").slice(4).join(".")),
    );
    expect([...symbolsStored].sort()).toEqual(["BTCUSDT", "NOPEUSDT"]);
    expect(ingest.connectionsUp()).toBe(2);
    expect(sim.stats().connections.filter((c) => c.closedAt === undefined)).toHaveLength(2);
    // Everything the simulator sent before the pause is stored: each trade id once.
    const sent = sim.replayedTradeIds("BTCUSDT");
    await vi.waitFor(
      async () => {
        const info = await bus.jsm.streams.info(STREAMS.raw, {
          subjects_filter: "md.raw.binance.trade.BTCUSDT",
        });
        expect(info.state.subjects?.["md.raw.binance.trade.BTCUSDT"]).toBe(sent.length);
      },
      { timeout: 10_000 },
    );
    expect(log.lines.join("")).toMatch(/rejected a malformed frame; the connection stays up/);
    // Logged at a limited rate, not once per frame, each line with how many were left out before it.
    const rejected = log.lines.filter((l) => l.includes("rejected a malformed frame"));
    expect(rejected.length).toBeLessThan(5);
    for (const l of rejected) expect(l).toMatch(/"suppressed":\d+/);
  });

  it("logs a REST error for one symbol and goes on with the others", async () => {
    await vi.waitFor(() => expect(log.lines.join("")).toMatch(/depth snapshot failed/), { timeout: 10_000 });
    expect(log.lines.find((l) => l.includes("depth snapshot failed"))).toMatch(/NOPEUSDT/);
    const info = await bus.jsm.streams.info(STREAMS.raw, { subjects_filter: "md.raw.binance.snapshot.>" });
    expect(info.state.subjects?.["md.raw.binance.snapshot.BTCUSDT"]).toBe(1);
  });
});

describe("analyzer without an API key", () => {
  it("says so at start and runs on the rule provider", async () => {
    const nats = await startTestNats();
    const { lines, logger } = capture();
    const analyzer = await startAnalyzer(analyzerConfig({ NATS_URL: nats.url, METRICS_PORT: "0" }), {
      logger,
    });
    try {
      expect(lines.join("")).toMatch(/HOLYSHEEP_API_KEY is not set: signals come from the rule provider/);
      expect((await fetch(`${analyzer.opsUrl}/readyz`)).status).toBe(200);
    } finally {
      await analyzer.close();
      await nats.close();
    }
  });
});

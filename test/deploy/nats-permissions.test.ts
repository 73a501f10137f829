// The NATS users of deploy/nats/auth.conf on a real nats-server: each service may do what it needs
// and nothing else, and outside consumers can read but not write.
import { mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { connectBus, type Bus } from "@l2flow/bus";
import { Signal } from "@l2flow/contracts";
import { readRecording } from "@l2flow/recording";
import { createLogger } from "@l2flow/runtime";
import { fixtures, startSimulator, startTestNats, type Simulator, type TestNats } from "@l2flow/testkit";
import { loadConfig as ingestConfig, startIngest, type IngestService } from "@l2flow/ingest";
import { loadConfig as normalizerConfig, startNormalizer, type NormalizerService } from "@l2flow/normalizer";
import { loadConfig as analyzerConfig, startAnalyzer, type AnalyzerService } from "@l2flow/analyzer";
import { loadConfig as gatewayConfig, startGateway } from "@l2flow/gateway";

const AUTH = fileURLToPath(new URL("../../deploy/nats/auth.conf", import.meta.url));
const USERS = ["ingest", "normalizer", "analyzer", "gateway", "reader", "admin"] as const;
type User = (typeof USERS)[number];
const password = (u: User) => `pw-${u}-${process.pid}-x7`;
const enc = new TextEncoder();
const logger = createLogger({ service: "deploy-test", level: "silent" });

describe("NATS users and permissions (deploy/nats/auth.conf)", () => {
  let nats: TestNats;
  const buses: Bus[] = [];
  const as = async (u: User) => {
    const bus = await connectBus({ servers: nats.url, name: `test-${u}`, user: u, pass: password(u) });
    buses.push(bus);
    return bus;
  };

  beforeAll(async () => {
    // nats-server reads the passwords from its environment, as in compose and Kubernetes.
    for (const u of USERS) process.env[`NATS_${u.toUpperCase()}_PASSWORD`] = password(u);
    const dir = mkdtempSync(join(tmpdir(), "l2flow-auth-"));
    const conf = join(dir, "nats.conf");
    // The users block exactly as shipped (nats-server resolves includes relative to the config file).
    writeFileSync(conf, readFileSync(AUTH, "utf8"));
    nats = await startTestNats({ env: {}, args: ["-c", conf] });
  });
  afterAll(async () => {
    for (const b of buses) await b.close();
    await nats?.close();
  });

  it("refuses a wrong password and says so", async () => {
    await expect(
      connectBus({ servers: nats.url, user: "ingest", pass: "wrong", connectTimeoutMs: 1_000 }),
    ).rejects.toMatchObject({ code: "NATS_AUTH" });
  });

  it("ingest cannot publish signals, the analyzer cannot publish raw frames", async () => {
    const admin = await as("admin");
    await admin.jsm.streams.add({
      name: "PERM_TEST",
      subjects: ["signal.binance.1s.PERMUSDT", "md.raw.binance.trade.PERMUSDT"],
    });
    const ingest = await as("ingest");
    const analyzer = await as("analyzer");
    await expect(
      ingest.js.publish("signal.binance.1s.PERMUSDT", enc.encode("x"), { timeout: 2_000 }),
    ).rejects.toThrow(/[Pp]ermission/);
    await expect(
      analyzer.js.publish("md.raw.binance.trade.PERMUSDT", enc.encode("x"), { timeout: 2_000 }),
    ).rejects.toThrow(/[Pp]ermission/);
    // And each may publish its own.
    await expect(ingest.js.publish("md.raw.binance.trade.PERMUSDT", enc.encode("x"))).resolves.toMatchObject({
      stream: "PERM_TEST",
    });
    await expect(analyzer.js.publish("signal.binance.1s.PERMUSDT", enc.encode("x"))).resolves.toMatchObject({
      stream: "PERM_TEST",
    });
    await admin.jsm.streams.delete("PERM_TEST");
  });

  it("the read-only user reads md.> and signal.> and publishes nothing", async () => {
    const reader = await as("reader");
    const normalizer = await as("normalizer");
    const analyzer = await as("analyzer");
    const got: string[] = [];
    reader.nc.subscribe("md.>", { callback: (_e, m) => void got.push(m.subject) });
    reader.nc.subscribe("signal.>", { callback: (_e, m) => void got.push(m.subject) });
    await reader.nc.flush();
    normalizer.nc.publish("md.book.binance.PERMUSDT", enc.encode("x"));
    analyzer.nc.publish("signal.binance.1s.PERMUSDT", enc.encode("x"));
    await normalizer.nc.flush();
    await analyzer.nc.flush();
    const deadline = Date.now() + 5_000;
    while (got.length < 2 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
    expect(got.sort()).toEqual(["md.book.binance.PERMUSDT", "signal.binance.1s.PERMUSDT"]);
    for (const subject of [
      "md.book.binance.PERMUSDT",
      "signal.binance.1s.PERMUSDT",
      "ctl.ingest.binance.resync.PERMUSDT",
    ])
      await expect(reader.nc.request(subject, enc.encode("x"), { timeout: 2_000 })).rejects.toThrow(
        /[Pp]ermission/,
      );
    // Nor can it change JetStream's streams.
    await expect(reader.jsm.streams.add({ name: "READER_STREAM", subjects: ["reader.>"] })).rejects.toThrow();
  });

  describe("every service works with its own user", () => {
    let sim: Simulator;
    let ingest: IngestService;
    let normalizer: NormalizerService;
    let analyzer: AnalyzerService;
    const env = (u: User) => ({
      NATS_URL: nats.url,
      NATS_USER: u,
      NATS_PASSWORD: password(u),
      METRICS_PORT: "0",
    });

    beforeAll(async () => {
      sim = await startSimulator({ recording: readRecording(fixtures.btcusdt), speed: 40, autoStart: false });
      ingest = await startIngest(
        ingestConfig({
          ...env("ingest"),
          BINANCE_WS_URL: sim.wsUrl,
          BINANCE_REST_URL: sim.restUrl,
          SYMBOLS: "BTCUSDT",
        }),
        { logger },
      );
      normalizer = await startNormalizer(normalizerConfig(env("normalizer")), {
        logger,
      });
      analyzer = await startAnalyzer(analyzerConfig({ ...env("analyzer"), ANALYZER_INTERVALS: "1s" }), {
        logger,
      });
      const deadline = Date.now() + 10_000;
      while (ingest.connectionsUp() < 2 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
      sim.start();
    }, 60_000);
    afterAll(async () => {
      await analyzer?.close();
      await normalizer?.close();
      await ingest?.close();
      await sim?.close();
    });

    it("ingest → normalizer → analyzer produce signals, read by the read-only user", async () => {
      const reader = await as("reader");
      const consumer = await reader.js.consumers.get("SIGNALS", {
        filter_subjects: "signal.binance.1s.BTCUSDT",
      });
      const msg = await consumer.next({ expires: 30_000 });
      expect(msg).not.toBeNull();
      const signal = Signal.decode(msg!.data);
      expect(signal.symbol).toBe("BTCUSDT");
      expect(signal.interval).toBe("1s");
      // The book made it to KV md_book, written by the normalizer, read by the reader.
      const entry = await reader.jsm.streams.getMessage("KV_md_book", {
        last_by_subj: "$KV.md_book.binance.BTCUSDT",
      });
      expect(entry?.data.length).toBeGreaterThan(0);
    }, 60_000);

    it("the gateway starts with its own user, which may not change streams", async () => {
      const gateway = await startGateway(gatewayConfig({ ...env("gateway"), GRPC_PORT: "0" }), { logger });
      try {
        expect((await fetch(`${gateway.opsUrl}/readyz`)).status).toBe(200);
      } finally {
        await gateway.close();
      }
    });

    it("ingest reads MD_RAW's last trade of a symbol (its trade ids continue across restarts), and no other stream", async () => {
      const bus = await as("ingest");
      const last = await bus.jsm.streams.getMessage("MD_RAW", {
        last_by_subj: "md.raw.binance.trade.BTCUSDT",
      });
      expect(JSON.parse(new TextDecoder().decode(last!.data))).toMatchObject({ e: "trade", s: "BTCUSDT" });
      await expect(
        bus.jsm.streams.getMessage("SIGNALS", { last_by_subj: "signal.binance.1s.BTCUSDT" }),
      ).rejects.toThrow(/[Pp]ermission/);
    });
  });
});

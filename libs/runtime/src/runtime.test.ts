import { Writable } from "node:stream";
import { describe, expect, it } from "vitest";
import { z } from "zod";
import {
  ConfigError,
  createLogger,
  createMetricsRegistry,
  env,
  LogLimiter,
  natsEnvShape,
  natsOptions,
  opsEnvShape,
  parseEnv,
  startOpsServer,
  Counter,
  Tally,
  talliesBy,
} from "@l2flow/runtime";

function capture(): { stream: Writable; text: () => string } {
  const chunks: string[] = [];
  const stream = new Writable({
    write(chunk: Buffer, _enc, cb) {
      chunks.push(chunk.toString());
      cb();
    },
  });
  return { stream, text: () => chunks.join("") };
}

describe("parseEnv", () => {
  const schema = z.object({
    ...natsEnvShape,
    ...opsEnvShape,
    PORT: env.port(8080),
    SYMBOLS: env.symbols("BTCUSDT"),
    API_KEY: z.string().min(10),
  });

  it("applies defaults and converts types", () => {
    const c = parseEnv(schema, { API_KEY: "0123456789", NATS_URL: "nats://a:1, nats://b:2" });
    expect(c.PORT).toBe(8080);
    expect(c.SYMBOLS).toEqual(["BTCUSDT"]);
    expect(c.GC_TUNING).toBe("on");
    expect(parseEnv(schema, { API_KEY: "0123456789", GC_TUNING: "off" }).GC_TUNING).toBe("off");
    expect(natsOptions(c, "x")).toEqual({
      servers: ["nats://a:1", "nats://b:2"],
      name: "x",
      connectTimeoutMs: 30_000,
    });
  });

  it("names every bad variable, what it accepts, and hides secrets", () => {
    let err: unknown;
    try {
      parseEnv(
        schema,
        { PORT: "http", SYMBOLS: "btc.usdt", API_KEY: "tiny", GC_TUNING: "yes" },
        { secretKeys: ["API_KEY"] },
      );
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(ConfigError);
    const msg = (err as Error).message;
    expect(msg).toMatch(/PORT="http": expected a port number 0-65535/);
    expect(msg).toMatch(/SYMBOLS="btc.usdt": expected comma-separated symbols/);
    expect(msg).toMatch(/API_KEY=<redacted>/);
    expect(msg).toMatch(/GC_TUNING="yes": expected on or off/);
    expect(msg).not.toContain("tiny");
  });

  it("names the other half of a pair set alone (a TLS certificate without its key, a user without a password)", () => {
    expect(() => parseEnv(schema, { API_KEY: "0123456789", NATS_TLS_CERT: "/c.pem" })).toThrow(
      /NATS_TLS_KEY: set it too, with NATS_TLS_CERT/,
    );
    expect(() => parseEnv(schema, { API_KEY: "0123456789", NATS_PASSWORD: "pw-1234" })).toThrow(
      /NATS_USER: set it too, with NATS_PASSWORD/,
    );
    expect(() => parseEnv(schema, { API_KEY: "0123456789", NATS_PASSWORD: "pw-1234" })).not.toThrow(
      /pw-1234/,
    );
    expect(parseEnv(schema, { API_KEY: "0123456789", NATS_USER: "u", NATS_PASSWORD: "p" }).NATS_USER).toBe(
      "u",
    );
  });

  it("refuses a NATS URL with a user or password in it, without showing them", () => {
    const bad = () =>
      parseEnv(schema, { API_KEY: "0123456789", NATS_URL: "nats://a:1,nats://analyzer:s3cret-pw@nats:4222" });
    expect(bad).toThrow(
      /NATS_URL="nats:\/\/a:1,nats:\/\/<redacted>@nats:4222": a user or password in the URL is ignored .*use NATS_USER and NATS_PASSWORD, or NATS_TOKEN/,
    );
    expect(bad).not.toThrow(/s3cret|analyzer:/);
  });
});

describe("logging", () => {
  it("never writes a secret, in messages, fields or errors", async () => {
    const out = capture();
    const secret = "sk-live-abcdef123456";
    const log = createLogger({ service: "t", secrets: [secret], destination: out.stream });
    log.info({ apiKey: secret, nested: { token: "tok-123456" } }, "starting");
    log.info(`key is ${secret}`);
    log.error({ err: new Error(`request with ${secret} failed`), url: `https://x/?k=${secret}` }, "failed");
    log.flush();
    await new Promise((r) => setTimeout(r, 50));
    const text = out.text();
    expect(text).toContain('"service":"t"');
    expect(text).toContain("[REDACTED]");
    expect(text).not.toContain(secret);
    expect(text).not.toContain("tok-123456");
    expect(text.trim().split("\n")).toHaveLength(3);
  });

  it("limits how often one kind of event is logged", () => {
    const l = new LogLimiter({ intervalMs: 1000 });
    expect(l.take("bad-frame", 0)).toBe(0);
    expect(l.take("bad-frame", 10)).toBe(-1);
    expect(l.take("bad-frame", 20)).toBe(-1);
    expect(l.take("other", 20)).toBe(0);
    expect(l.take("bad-frame", 1000)).toBe(2);
  });
});

describe("ops server", () => {
  it("serves metrics, liveness and readiness", async () => {
    const registry = createMetricsRegistry({ service: "t" });
    let ready = false;
    const ops = await startOpsServer({
      registry,
      host: "127.0.0.1",
      readiness: () => (ready ? { ready: true } : { ready: false, reason: "NATS not connected" }),
    });
    try {
      expect((await fetch(`${ops.url}/healthz`)).status).toBe(200);
      const notReady = await fetch(`${ops.url}/readyz`);
      expect(notReady.status).toBe(503);
      expect(await notReady.json()).toEqual({ status: "unavailable", reason: "NATS not connected" });
      ready = true;
      expect((await fetch(`${ops.url}/readyz`)).status).toBe(200);
      const metrics = await (await fetch(`${ops.url}/metrics`)).text();
      expect(metrics).toContain('l2flow_process_cpu_user_seconds_total{service="t"}');
    } finally {
      await ops.close();
      await ops.close();
    }
  });
});

describe("Tally", () => {
  it("hands its counts to the counter at every read, per label set, beside plain inc() and a collect hook", async () => {
    const registry = createMetricsRegistry({ service: "tally-test", defaultMetrics: false });
    let collected = 0;
    const c = new Counter({
      name: "t_frames_total",
      help: "frames",
      labelNames: ["kind"],
      registers: [registry],
      collect() {
        collected++;
      },
    });
    const trade = new Tally(c, { kind: "trade" });
    const depth = new Tally(c, { kind: "depth" });
    const plain = new Counter({ name: "t_plain_total", help: "plain", registers: [registry] });
    const unlabelled = new Tally(plain);
    for (let i = 0; i < 1_000; i++) trade.inc();
    depth.inc(5);
    c.inc({ kind: "trade" }, 2);
    const value = async (name: string, kind?: string) => {
      const text = await registry.metrics();
      const line = text
        .split("\n")
        .find((l) => l.startsWith(`${name}{`) && (kind === undefined || l.includes(`kind="${kind}"`)));
      return line === undefined ? undefined : Number(line.split(" ").pop());
    };
    expect(await value("t_frames_total", "trade")).toBe(1_002);
    expect(await value("t_frames_total", "depth")).toBe(5);
    expect(await value("t_plain_total")).toBe(0);
    expect(collected).toBeGreaterThan(0); // the counter's own hook still runs
    // Counts made after a read arrive at the next one, none twice.
    trade.inc(3);
    unlabelled.inc();
    expect(await value("t_frames_total", "trade")).toBe(1_005);
    expect(await value("t_frames_total", "trade")).toBe(1_005);
    expect(await value("t_plain_total")).toBe(1);
    expect((await c.get()).values.find((v) => v.labels.kind === "depth")?.value).toBe(5);
  });

  it("talliesBy gives one tally per label value, with the fixed labels beside it", async () => {
    const registry = createMetricsRegistry({ service: "tally-by-test", defaultMetrics: false });
    const c = new Counter({
      name: "t_stored_total",
      help: "stored",
      labelNames: ["kind", "duplicate"],
      registers: [registry],
    });
    const fresh = talliesBy(c, "kind", { duplicate: "false" });
    const dup = talliesBy(c, "kind", { duplicate: "true" });
    expect(fresh("trade")).toBe(fresh("trade"));
    fresh("trade").inc(2);
    fresh("depth").inc();
    dup("trade").inc(7);
    const values = (await c.get()).values.map((v) => [v.labels.kind, v.labels.duplicate, v.value]);
    expect(values).toEqual(
      expect.arrayContaining([
        ["trade", "false", 2],
        ["depth", "false", 1],
        ["trade", "true", 7],
      ]),
    );
    expect(values).toHaveLength(3);
  });
});

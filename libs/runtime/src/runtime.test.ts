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
  parseEnv,
  startOpsServer,
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
    PORT: env.port(8080),
    SYMBOLS: env.symbols("BTCUSDT"),
    API_KEY: z.string().min(10),
  });

  it("applies defaults and converts types", () => {
    const c = parseEnv(schema, { API_KEY: "0123456789", NATS_URL: "nats://a:1, nats://b:2" });
    expect(c.PORT).toBe(8080);
    expect(c.SYMBOLS).toEqual(["BTCUSDT"]);
    expect(natsOptions(c, "x")).toEqual({
      servers: ["nats://a:1", "nats://b:2"],
      name: "x",
      connectTimeoutMs: 30_000,
    });
  });

  it("names every bad variable, what it accepts, and hides secrets", () => {
    let err: unknown;
    try {
      parseEnv(schema, { PORT: "http", SYMBOLS: "btc.usdt", API_KEY: "tiny" }, { secretKeys: ["API_KEY"] });
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(ConfigError);
    const msg = (err as Error).message;
    expect(msg).toMatch(/PORT="http": expected a port number 0-65535/);
    expect(msg).toMatch(/SYMBOLS="btc.usdt": expected comma-separated symbols/);
    expect(msg).toMatch(/API_KEY=<redacted>/);
    expect(msg).not.toContain("tiny");
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

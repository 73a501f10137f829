// The l2flow CLI against real nats-servers: replay → tail, record → replay, book, status, errors.
import { spawnSync } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { connectBus, provisionTopology, publish, type Bus } from "@l2flow/bus";
import { BookSnapshot, EXCHANGE, HEADERS, msgIds, STREAMS, subjects, Window } from "@l2flow/contracts";
import { rawMessageOf } from "@l2flow/cli";
import { readRecording, type RecordedEvent } from "@l2flow/recording";
import { createLogger, createMetricsRegistry, startOpsServer, type OpsServer } from "@l2flow/runtime";
import { startTestNats, type TestNats } from "@l2flow/testkit";
import { btcusdtSlice, eventually, readRaw, run } from "./support.js";

const repoRoot = fileURLToPath(new URL("../../../", import.meta.url));

describe("l2flow CLI", () => {
  let a: TestNats;
  let b: TestNats;
  let busA: Bus;
  let dir: string;
  let slice: string;
  let stored: RecordedEvent[];

  beforeAll(async () => {
    [a, b] = await Promise.all([startTestNats(), startTestNats()]);
    busA = await connectBus({ servers: a.url, name: "cli-test" });
    dir = mkdtempSync(join(tmpdir(), "l2flow-cli-test-"));
    slice = btcusdtSlice(dir, 3_000);
    // What ingest would store of the slice: every event but the bookTicker frames.
    stored = readRecording(slice).events.filter((e) => !("skip" in rawMessageOf(e)));
  });
  afterAll(async () => {
    await busA?.close();
    await Promise.all([a?.close(), b?.close()]);
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it("replay publishes a recording into MD_RAW as ingest would, and tail prints it back", async () => {
    const replayed = await run(["replay", slice, "--fast", "--nats", a.url]);
    expect(replayed.stderr).toContain(`${stored.length} stored`);
    expect(replayed.code).toBe(0);

    const tailed = await run([
      "--nats",
      a.url,
      "tail",
      "md.raw.>",
      "--from-start",
      "--count",
      String(stored.length),
    ]);
    expect(tailed.code).toBe(0);
    const lines = tailed.stdout.trim().split("\n");
    expect(lines).toHaveLength(stored.length);
    const expected = stored.map((e) => {
      const m = rawMessageOf(e);
      if ("skip" in m) throw new Error("unreachable");
      return {
        subject: m.subject,
        msgId: m.msgId,
        payload: JSON.parse(new TextDecoder().decode(m.data)) as unknown,
      };
    });
    const got = lines.map((l) => {
      const o = JSON.parse(l) as {
        subject: string;
        stream: string;
        headers: Record<string, string>;
        payload: unknown;
      };
      expect(o.stream).toBe(STREAMS.raw);
      return { subject: o.subject, msgId: o.headers[HEADERS.msgId], payload: o.payload };
    });
    expect(got).toEqual(expected);
    // The payload is printed byte for byte as stored: the exchange's own JSON text.
    const firstDepth = stored.find((e) => e.type === "frame" && e.kind.startsWith("depth"));
    expect(firstDepth?.type === "frame" && tailed.stdout.includes(`"payload":${firstDepth.data}}`)).toBe(
      true,
    );

    // Replaying again stores nothing new: the message ids are those of the first pass.
    const again = await run(["replay", slice, "--fast", "--nats", a.url]);
    expect(again.stderr).toContain(`0 stored, ${stored.length} already in MD_RAW`);
    expect((await busA.jsm.streams.info(STREAMS.raw)).state.messages).toBe(stored.length);
  });

  it("record writes MD_RAW to a recording that replay reproduces on a fresh NATS byte for byte", async () => {
    const file = join(dir, "recorded.txt.gz");
    const recorded = await run(["record", file, "--since", "0", "--nats", a.url]);
    expect(recorded.code).toBe(0);
    expect(recorded.stderr).toContain(`recorded ${stored.length - 1} frames and 1 snapshots`);
    // The file is l2flow's recording format: the same events, in the same order.
    const back = readRecording(file);
    expect(back.format).toBe("l2flow");
    expect(back.events).toEqual(stored);

    const replayed = await run(["replay", file, "--speed", "200", "--nats", b.url]);
    expect(replayed.code).toBe(0);
    const busB = await connectBus({ servers: b.url, name: "cli-test-b" });
    try {
      const [inA, inB] = await Promise.all([readRaw(busA), readRaw(busB)]);
      expect(inB).toHaveLength(stored.length);
      expect(inB.map((m) => [m.subject, m.data, m.msgId])).toEqual(
        inA.map((m) => [m.subject, m.data, m.msgId]),
      );
      expect(inB.map((m) => m.headers)).toEqual(inA.map((m) => m.headers));
    } finally {
      await busB.close();
    }
  });

  it("record with --symbols and --until keeps only that range", async () => {
    const file = join(dir, "none.txt");
    const r = await run(["record", file, "--since", "0", "--until", "1", "--nats", a.url]);
    expect(r.code).toBe(0);
    expect(r.stderr).toContain("recorded 0 frames and 0 snapshots");
    const other = await run([
      "record",
      join(dir, "eth.txt"),
      "--since",
      "0",
      "--symbols",
      "ETHUSDT",
      "--nats",
      a.url,
    ]);
    expect(other.stderr).toContain("recorded 0 frames and 0 snapshots");
  });

  it("tail decodes protobuf subjects live", async () => {
    await provisionTopology(busA);
    const controller = new AbortController();
    const tailing = run(["tail", "md.window.>", "--count", "1", "--nats", a.url], {
      signal: controller.signal,
    });
    // The tail is ready when its ordered consumer exists.
    await eventually(
      async () => (await busA.jsm.streams.info(STREAMS.window)).state.consumer_count,
      (n) => n > 0,
    );
    const w = Window.fromPartial({
      exchange: EXCHANGE,
      symbol: "BTCUSDT",
      interval: "1s",
      startTimeMs: 5_000,
      close: 61_000.5,
    });
    await publish(busA, subjects.window("1s", "BTCUSDT"), Window.encode(w).finish(), {
      msgId: msgIds.window("1s", "BTCUSDT", 5_000),
    });
    const r = await tailing;
    controller.abort();
    expect(r.code).toBe(0);
    const line = JSON.parse(r.stdout) as {
      subject: string;
      payload: { symbol: string; startTimeMs: number; close: number };
    };
    expect(line.subject).toBe("md.window.binance.1s.BTCUSDT");
    expect(line.payload).toMatchObject({ symbol: "BTCUSDT", startTimeMs: 5_000, close: 61_000.5 });
  });

  it("book --once prints the latest top of book, and fails clearly without one", async () => {
    await provisionTopology(busA);
    const book = BookSnapshot.fromPartial({
      exchange: EXCHANGE,
      symbol: "BTCUSDT",
      lastUpdateId: 42,
      bids: [
        { price: "61837.63000000", quantity: "3.78826000" },
        { price: "61837.62000000", quantity: "0.10000000" },
      ],
      asks: [{ price: "61837.64000000", quantity: "1.54698000" }],
    });
    await publish(busA, subjects.book("BTCUSDT"), BookSnapshot.encode(book).finish(), {
      msgId: msgIds.book("BTCUSDT", 1, 42),
    });
    const r = await run(["book", "btcusdt", "--once", "--depth", "1", "--nats", a.url]);
    expect(r.code).toBe(0);
    expect(r.stdout).toContain("BTCUSDT  binance  update 42");
    expect(r.stdout).toContain("spread 0.01000000");
    expect(r.stdout).toMatch(/3\.78826000\s+61837\.63000000 \| 61837\.64000000\s+1\.54698000/);
    expect(r.stdout).not.toContain("61837.62000000");

    const none = await run(["book", "XRPUSDT", "--once", "--nats", a.url]);
    expect(none.code).toBe(1);
    expect(none.stderr).toContain("no book for XRPUSDT");
  });

  it("book follows the live book until interrupted", async () => {
    await provisionTopology(busA);
    const publishBook = async (u: number) => {
      const b = BookSnapshot.fromPartial({
        exchange: EXCHANGE,
        symbol: "SOLUSDT",
        lastUpdateId: u,
        bids: [{ price: "150.10", quantity: "2" }],
        asks: [{ price: "150.20", quantity: `${u}` }],
      });
      await publish(busA, subjects.book("SOLUSDT"), BookSnapshot.encode(b).finish(), {
        msgId: msgIds.book("SOLUSDT", 1, u),
      });
    };
    await publishBook(1);
    const controller = new AbortController();
    let seen = "";
    const watching = run(["book", "SOLUSDT", "--depth", "1", "--nats", a.url], {
      signal: controller.signal,
      onStdout: (chunk) => (seen += chunk),
    });
    await eventually(
      () => seen,
      (s) => s.includes("update 1 "),
    );
    // Later books are drawn as they come (the live subscription starts right after the first draw).
    for (let u = 2; !/update (?!1 )\d+/.test(seen) && u < 200; u++) {
      await publishBook(u);
      await new Promise((r) => setTimeout(r, 50));
    }
    controller.abort();
    const r = await watching;
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/SOLUSDT {2}binance {2}update 1 /);
    expect(r.stdout).toMatch(/SOLUSDT {2}binance {2}update (?!1 )\d+/);
    expect(r.stdout).toContain("spread 0.10");
  });

  it("status shows streams, consumers and services' health", async () => {
    const registry = createMetricsRegistry({ service: "probe", defaultMetrics: false });
    const logger = createLogger({ service: "probe", level: "silent" });
    const ready: OpsServer = await startOpsServer({ registry, logger, host: "127.0.0.1" });
    const notReady: OpsServer = await startOpsServer({
      registry,
      logger,
      host: "127.0.0.1",
      readiness: () => ({ ready: false, reason: "NATS is not connected" }),
    });
    try {
      const ok = await run(["status", "--health", ready.url, "--nats", a.url]);
      expect(ok.code).toBe(0);
      expect(ok.stdout).toMatch(new RegExp(`MD_RAW\\s+${stored.length}\\s`));
      expect(ok.stdout).toContain(`${ready.url}  ready`);

      const bad = await run([
        "status",
        "--json",
        "--health",
        `${ready.url},${notReady.url},http://127.0.0.1:1`,
        "--nats",
        a.url,
      ]);
      expect(bad.code).toBe(1);
      const o = JSON.parse(bad.stdout) as {
        nats: { ok: boolean; streams: { name: string; messages: number }[] };
        services: { url: string; ready: boolean; detail: string }[];
      };
      expect(o.nats.streams.find((s) => s.name === STREAMS.raw)?.messages).toBe(stored.length);
      expect(o.services.map((s) => s.ready)).toEqual([true, false, false]);
      expect(o.services[1]?.detail).toContain("NATS is not connected");
      expect(o.services[2]?.detail).toContain("unreachable");
    } finally {
      await Promise.all([ready.close(), notReady.close()]);
    }
  });

  it("usage errors exit 2 with what is accepted", async () => {
    const cases: [string[], string][] = [
      [["frobnicate"], "unknown command"],
      [["tail"], "tail needs a subject"],
      [["tail", "md..raw", "--nats", a.url], "is not a NATS subject"],
      [["replay", slice, "--speed", "-1"], "--speed"],
      [["tail", "md.>", "--from-start", "--nats", a.url], "spans the streams"],
      [["record", "x.txt", "--since", "yesterday-ish"], "ISO 8601"],
      [["status", "--bogus"], "Unknown option"],
    ];
    for (const [argv, says] of cases) {
      const r = await run(argv);
      expect({ argv, code: r.code }).toEqual({ argv, code: 2 });
      expect(r.stderr).toContain(says);
    }
    const help = await run(["--help"]);
    expect(help.code).toBe(0);
    expect(help.stdout).toContain("replay <recording>");
  });

  it("an unreachable NATS is exit 1 with the URL and what to do", async () => {
    const r = await run(["status", "--nats", "nats://127.0.0.1:1"], {
      env: { NATS_CONNECT_TIMEOUT_MS: "300" },
    });
    expect(r.code).toBe(1);
    expect(r.stdout).toContain("cannot reach NATS at nats://127.0.0.1:1");
    const t = await run(["tail", "signal.>"], {
      env: { NATS_URL: "nats://127.0.0.1:1", NATS_CONNECT_TIMEOUT_MS: "300" },
    });
    expect(t.code).toBe(1);
    expect(t.stderr).toContain("cannot reach NATS at nats://127.0.0.1:1");
    expect(t.stderr).toContain("--nats");
  });

  it("the binary entry point runs commands and sets the exit code", () => {
    const cli = (args: string[], env: Record<string, string> = {}) =>
      spawnSync(
        process.execPath,
        ["--conditions=l2flow-source", "--import", "tsx", "libs/cli/src/main.ts", ...args],
        {
          cwd: repoRoot,
          env: { ...process.env, ...env },
          encoding: "utf8",
          timeout: 30_000,
        },
      );
    const tailed = cli([
      "tail",
      "md.raw.binance.trade.BTCUSDT",
      "--from-start",
      "--count",
      "2",
      "--nats",
      a.url,
    ]);
    expect(tailed.status).toBe(0);
    const lines = tailed.stdout
      .trim()
      .split("\n")
      .map((l) => JSON.parse(l) as { subject: string });
    expect(lines.map((l) => l.subject)).toEqual([
      "md.raw.binance.trade.BTCUSDT",
      "md.raw.binance.trade.BTCUSDT",
    ]);
    const usage = cli(["nope"]);
    expect(usage.status).toBe(2);
    const down = cli(["status"], { NATS_URL: "nats://127.0.0.1:1", NATS_CONNECT_TIMEOUT_MS: "300" });
    expect(down.status).toBe(1);
  });
});

// The normalizer as a pure function of MD_RAW: MD_RAW is filled from the real recordings exactly as
// ingest stores them, and the outputs are checked against independent oracles (Binance's own
// bookTicker, windows computed straight from the trades), against each other across replays,
// a SIGKILL and restart, two partitions, and corrupt raw messages.
import { spawn, type ChildProcess } from "node:child_process";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { connectBus, openKv, provisionTopology, type Bus } from "@l2flow/bus";
import { BUCKETS, STREAMS, Window } from "@l2flow/contracts";
import { readRecording, type Recording } from "@l2flow/recording";
import { fixtures, scrapeMetric, startTestNats, type TestNats } from "@l2flow/testkit";
import { loadConfig, startNormalizer, type NormalizerService } from "@l2flow/normalizer";
import {
  captureLogs,
  checkAgainstBookTicker,
  countStream,
  metric,
  publishRecording,
  readStream,
  waitUntil,
  type PublishRecordingOptions,
} from "./support.js";

const ROOT = fileURLToPath(new URL("../../..", import.meta.url));
const enc = new TextEncoder();
const btc = readRecording(fixtures.btcusdt);
const ten = readRecording(fixtures.tenSymbols);
const ENV = {
  METRICS_PORT: "0",
  WINDOW_INTERVALS: "1s,1m",
  WINDOW_IDLE_TIMEOUT_MS: "500",
  CHECKPOINT_INTERVAL_MS: "200",
};

/** A nats-server whose MD_RAW holds the given recordings. */
async function natsWith(recordings: readonly Recording[], options: PublishRecordingOptions = {}) {
  const nats = await startTestNats();
  const bus = await connectBus({ servers: nats.url, name: "normalizer-test" });
  await provisionTopology(bus);
  for (const r of recordings) await publishRecording(bus, r, options);
  return { nats, bus };
}

/**
 * Waits until MD_NORM and MD_WINDOW hold at least `atLeast` messages and stop growing for `quietMs`
 * (windows idle-closed included). A test that knows how many outputs to expect passes it: quiet
 * alone also holds while a restarted process is still starting.
 */
async function settled(bus: Bus, quietMs = 1_500, atLeast = 1): Promise<void> {
  let last = -1;
  let since = Date.now();
  await waitUntil(
    async () => {
      const n = (await countStream(bus, STREAMS.norm)) + (await countStream(bus, STREAMS.window));
      if (n !== last) {
        last = n;
        since = Date.now();
      }
      return n >= atLeast && Date.now() - since >= quietMs;
    },
    60_000,
    "the normalizer's outputs to settle",
  );
}

/** How many outputs `outputs` found. */
const countOf = (outputs: Map<string, string[]>) => [...outputs.values()].reduce((n, l) => n + l.length, 0);

/** Every output, grouped by subject, in stream order: what "the same outputs" means. */
async function outputs(bus: Bus): Promise<Map<string, string[]>> {
  const all = [
    ...(await readStream(bus, STREAMS.norm, "md.>")),
    ...(await readStream(bus, STREAMS.window, "md.window.>")),
  ];
  const by = new Map<string, string[]>();
  for (const m of all) {
    const list = by.get(m.subject) ?? [];
    list.push(`${m.msgId} ${Buffer.from(m.data).toString("base64")}`);
    by.set(m.subject, list);
  }
  return by;
}

function expectSameOutputs(actual: Map<string, string[]>, expected: Map<string, string[]>): void {
  expect([...actual.keys()].sort()).toEqual([...expected.keys()].sort());
  for (const [subject, list] of expected) {
    const got = actual.get(subject)!;
    // Compare counts first for a readable failure, then the bytes.
    expect({ subject, n: got.length }).toEqual({ subject, n: list.length });
    expect(got).toEqual(list);
  }
}

/** The 1 s windows computed directly from a recording's trades (the @trade stream, else @aggTrade). */
function referenceWindows(recording: Recording, symbol: string) {
  const frames = recording.events.filter((e) => e.type === "frame" && e.symbol === symbol);
  const hasTrade = frames.some((e) => e.type === "frame" && e.kind === "trade");
  const seen = new Set<number>();
  const buckets = new Map<
    number,
    {
      o: number;
      h: number;
      l: number;
      c: number;
      v: number;
      qv: number;
      n: number;
      buy: number;
      sell: number;
    }
  >();
  for (const e of frames) {
    if (e.type !== "frame" || e.kind !== (hasTrade ? "trade" : "aggTrade")) continue;
    const t = JSON.parse(e.data) as { t?: number; a?: number; p: string; q: string; T: number; m: boolean };
    const id = (hasTrade ? t.t : t.a)!;
    if (seen.has(id)) continue;
    seen.add(id);
    const start = Math.floor(t.T / 1000) * 1000;
    const p = Number(t.p);
    const q = Number(t.q);
    const b = buckets.get(start) ?? { o: p, h: p, l: p, c: p, v: 0, qv: 0, n: 0, buy: 0, sell: 0 };
    b.h = Math.max(b.h, p);
    b.l = Math.min(b.l, p);
    b.c = p;
    b.v += q;
    b.qv += p * q;
    b.n++;
    if (t.m) b.sell += q;
    else b.buy += q;
    buckets.set(start, b);
  }
  return buckets;
}

describe("normalizer over the recordings", () => {
  let reference: { nats: TestNats; bus: Bus; normalizer: NormalizerService; outputs: Map<string, string[]> };

  beforeAll(async () => {
    const { nats, bus } = await natsWith([ten, btc]);
    const normalizer = await startNormalizer(loadConfig({ ...ENV, NATS_URL: nats.url }), {
      logger: captureLogs().logger,
    });
    await settled(bus);
    reference = { nats, bus, normalizer, outputs: await outputs(bus) };
  });
  afterAll(async () => {
    await reference?.normalizer.close();
    await reference?.bus.close();
    await reference?.nats.close();
  });

  it("publishes books that match every bookTicker with the same update id, for every symbol, with none crossed", async () => {
    const books = await readStream(reference.bus, STREAMS.norm, "md.book.>");
    for (const [recording, minChecks] of [
      [btc, 500],
      [ten, 500],
    ] as const) {
      const r = checkAgainstBookTicker(recording, books);
      expect(r.mismatches).toEqual([]);
      expect(r.crossed).toBe(0);
      expect(r.checks).toBeGreaterThan(minChecks);
    }
    // Every symbol of both files has books, and most are checked by the oracle.
    const symbols = new Set(books.map((b) => b.subject.split(".")[3]));
    expect([...symbols].sort()).toEqual([...ten.symbols, ...btc.symbols].sort());
    expect(await metric(reference.normalizer.opsUrl, "l2flow_normalizer_crossed_books_total")).toBe(0);
    expect(await metric(reference.normalizer.opsUrl, "l2flow_normalizer_bad_messages_total")).toBe(0);
    // MD_NORM's and MD_WINDOW's only publisher here: most of its outputs were confirmed by their
    // batch's fence, none sent again (counted when each fence is answered).
    const fenced = (stream: string, outcome: string) =>
      metric(
        reference.normalizer.opsUrl,
        "l2flow_normalizer_fenced_outputs_total",
        `stream="${stream}",outcome="${outcome}"`,
      );
    await waitUntil(
      async () => (await fenced("MD_NORM", "proven")) > books.length / 2,
      5_000,
      "fenced outputs counted",
    );
    // Windows likewise (each fence settles the messages before it in its batch; the fence itself
    // has its own answer).
    const windows = countOf(
      new Map([...reference.outputs].filter(([subject]) => subject.startsWith("md.window."))),
    );
    await waitUntil(
      async () => (await fenced("MD_WINDOW", "proven")) > windows / 2,
      5_000,
      "fenced windows counted",
    );
    expect(await fenced("MD_NORM", "unconfirmed")).toBe(0);
    expect(await fenced("MD_WINDOW", "unconfirmed")).toBe(0);
  });

  it("reports the price levels its books hold: those of each symbol's final book, rebuilt with a plain map", async () => {
    let expected = 0;
    for (const r of [btc, ten])
      for (const symbol of r.symbols) {
        // Binance's rule: the first snapshot, then every diff after its lastUpdateId in order, including
        // diffs that arrived before it (a local book buffers them).
        const book = new Map<string, string>();
        const mine = r.events.filter((e) => e.symbol === symbol);
        const snapshot = mine.find((e) => e.type === "snapshot");
        if (snapshot === undefined) continue;
        const s = JSON.parse(snapshot.body) as { lastUpdateId: number; bids: string[][]; asks: string[][] };
        for (const [p, q] of s.bids) book.set(`b${Number(p)}`, q!);
        for (const [p, q] of s.asks) book.set(`a${Number(p)}`, q!);
        for (const e of mine) {
          if (e.type !== "frame" || !e.kind.startsWith("depth")) continue;
          const d = JSON.parse(e.data) as { u: number; b: string[][]; a: string[][] };
          if (d.u <= s.lastUpdateId) continue;
          for (const [side, levels] of [
            ["b", d.b],
            ["a", d.a],
          ] as const)
            for (const [p, q] of levels) {
              if (Number(q) === 0) book.delete(`${side}${Number(p)}`);
              else book.set(`${side}${Number(p)}`, q!);
            }
        }
        expected += book.size;
      }
    expect(expected).toBeGreaterThan(3_405);
    expect(await metric(reference.normalizer.opsUrl, "l2flow_normalizer_book_levels")).toBe(expected);
  });

  it("closes windows whose OHLCV, VWAP, trade count and taker volumes equal a direct computation from the trades", async () => {
    const windows = (await readStream(reference.bus, STREAMS.window, "md.window.binance.1s.>")).map((m) =>
      Window.decode(m.data),
    );
    let compared = 0;
    for (const recording of [btc, ten]) {
      for (const symbol of recording.symbols) {
        const want = referenceWindows(recording, symbol);
        const got = new Map(
          windows.filter((w) => w.symbol === symbol && w.tradeCount > 0).map((w) => [w.startTimeMs, w]),
        );
        expect([...got.keys()].sort((a, b) => a - b)).toEqual([...want.keys()].sort((a, b) => a - b));
        for (const [start, b] of want) {
          const w = got.get(start)!;
          expect([w.open, w.high, w.low, w.close, w.tradeCount]).toEqual([b.o, b.h, b.l, b.c, b.n]);
          expect(w.volume).toBeCloseTo(b.v, 9);
          expect(w.vwap).toBeCloseTo(b.qv / b.v, 9);
          expect(w.takerBuyVolume).toBeCloseTo(b.buy, 9);
          expect(w.takerSellVolume).toBeCloseTo(b.sell, 9);
          compared++;
        }
      }
    }
    expect(compared).toBeGreaterThan(300);
  });

  // The reference ran with its processing on the main thread (the default); this run has it on a
  // thread of its own, so the two ways give the same bytes too.
  it("gives byte-identical outputs when the same MD_RAW is replayed again, with the processing on a thread of its own", async () => {
    const { nats, bus } = await natsWith([ten, btc]);
    const config = loadConfig({ ...ENV, NATS_URL: nats.url, NORMALIZER_THREAD: "on" });
    const normalizer = await startNormalizer(config, {
      logger: captureLogs().logger,
    });
    try {
      await settled(bus, 1_500, countOf(reference.outputs));
      expectSameOutputs(await outputs(bus), reference.outputs);
      // The thread's heap, which Node's default metrics (the main thread's) leave out, is on /metrics.
      const used = await scrapeMetric(
        normalizer.opsUrl,
        "l2flow_normalizer_thread_heap_bytes",
        'what="used"',
      );
      const committed = await scrapeMetric(
        normalizer.opsUrl,
        "l2flow_normalizer_thread_heap_bytes",
        'what="committed"',
      );
      expect(used).toBeGreaterThan(1e6);
      expect(committed).toBeGreaterThanOrEqual(used);
    } finally {
      await normalizer.close();
      await bus.close();
      await nats.close();
    }
  });

  it("after SIGKILL resumes from its checkpoint and publishes exactly what an uninterrupted run did", async () => {
    const { nats, bus } = await natsWith([ten, btc]);
    const spawnNormalizer = (): ChildProcess =>
      spawn(
        process.execPath,
        ["--conditions=l2flow-source", "--import", "tsx", "services/normalizer/src/main.ts"],
        {
          cwd: ROOT,
          // On its thread: what a restart continues from is taken across the threads.
          env: {
            PATH: process.env.PATH ?? "",
            LOG_LEVEL: "warn",
            ...ENV,
            NATS_URL: nats.url,
            NORMALIZER_THREAD: "on",
          },
          stdio: "ignore",
        },
      );
    let child = spawnNormalizer();
    try {
      const total = countOf(reference.outputs);
      // Killed mid-stream, after checkpoints exist.
      await waitUntil(
        async () =>
          (await countStream(bus, STREAMS.norm)) > total * 0.3 &&
          (await countStream(bus, `KV_${BUCKETS.state}`)) > 0,
        60_000,
        "progress and a checkpoint",
      );
      child.kill("SIGKILL");
      await new Promise((r) => child.once("exit", r));
      expect(await countStream(bus, STREAMS.norm)).toBeLessThan(total);
      child = spawnNormalizer();
      await settled(bus, 2_000, total);
      expectSameOutputs(await outputs(bus), reference.outputs);
    } finally {
      child.kill("SIGKILL");
      await bus.close();
      await nats.close();
    }
  });

  /**
   * MD_RAW holds the 10-symbol recording and BTCUSDT up to its snapshot, so BTCUSDT's diffs wait in the
   * buffer; a normalizer runs over it and stops, leaving its checkpoints. The rest of BTCUSDT is then
   * published.
   */
  async function checkpointWhileWaiting() {
    const at = btc.events.findIndex((e) => e.type === "snapshot");
    const waiting = btc.events
      .slice(0, at)
      .filter((e) => e.type === "frame" && e.kind === "depth@100ms").length;
    expect(waiting).toBeGreaterThanOrEqual(3);
    const { nats, bus } = await natsWith([ten, { ...btc, events: btc.events.slice(0, at) }]);
    // Windows are not idle-closed before the rest arrives (the uninterrupted run never saw it quiet).
    const first = await startNormalizer(
      loadConfig({ ...ENV, NATS_URL: nats.url, WINDOW_IDLE_TIMEOUT_MS: "600000" }),
      { logger: captureLogs().logger },
    );
    try {
      await settled(bus);
      expect(await metric(first.opsUrl, "l2flow_normalizer_buffered_diffs")).toBe(waiting);
    } finally {
      await first.close();
    }
    const kv = await openKv(bus, BUCKETS.state);
    const entry = await kv.get("normalizer.binance.BTCUSDT");
    const cp = entry!.json<{
      seq: number;
      state: {
        sync: { synced: boolean; buffer: unknown[]; bufferRange: { fromTag: number; count: number } };
      };
    }>();
    await publishRecording(bus, { ...btc, events: btc.events.slice(at) });
    return { nats, bus, waiting, cp, bytes: entry!.value.length };
  }

  it("checkpoints a book waiting for its snapshot without its buffered diffs, and after a restart bridges it exactly as an uninterrupted run", async () => {
    // The checkpoint must keep where the buffered diffs start in MD_RAW, not the diffs.
    const { nats, bus, waiting, cp, bytes } = await checkpointWhileWaiting();
    let second: NormalizerService | undefined;
    try {
      expect(cp.state.sync.synced).toBe(false);
      expect(cp.state.sync.buffer).toEqual([]);
      expect(cp.state.sync.bufferRange.count).toBe(waiting);
      expect(cp.state.sync.bufferRange.fromTag).toBeLessThan(cp.seq);
      expect(bytes).toBeLessThan(4_000);

      const { lines, logger } = captureLogs();
      second = await startNormalizer(loadConfig({ ...ENV, NATS_URL: nats.url }), { logger });
      await settled(bus, 2_000, countOf(reference.outputs));
      expectSameOutputs(await outputs(bus), reference.outputs);
      expect(
        lines.filter((l) => l.includes("no longer holds every diff") || l.includes("too far back")),
      ).toEqual([]);
    } finally {
      await second?.close();
      await bus.close();
      await nats.close();
    }
  });

  it("gives up buffered diffs further back than MAX_REFILL_MESSAGES: the symbol waits for a newer snapshot, the others are unchanged", async () => {
    const { nats, bus, cp } = await checkpointWhileWaiting();
    const span = cp.seq + 1 - cp.state.sync.bufferRange.fromTag;
    expect(span).toBeGreaterThan(1);
    const { lines, logger } = captureLogs();
    const second = await startNormalizer(
      loadConfig({
        ...ENV,
        NATS_URL: nats.url,
        MAX_REFILL_MESSAGES: String(span - 1),
        RESYNC_REQUEST_TIMEOUT_MS: "300",
      }),
      { logger },
    );
    try {
      await settled(bus, 2_000);
      expect(lines.filter((l) => l.includes("too far back") && l.includes("BTCUSDT"))).toHaveLength(1);
      // The snapshot in MD_RAW needed one of the diffs given up: BTCUSDT asks for another (nobody
      // answers here) and publishes no book; every other symbol's output is the reference's.
      await waitUntil(
        async () =>
          (await metric(second.opsUrl, "l2flow_normalizer_resync_requests_total", 'outcome="no-answer"')) >=
          1,
        20_000,
        "a resync request for BTCUSDT",
      );
      const got = await outputs(bus);
      const btcBooks = (m: Map<string, string[]>) => m.get("md.book.binance.BTCUSDT")?.length ?? 0;
      expect(btcBooks(reference.outputs)).toBeGreaterThan(0);
      expect(btcBooks(got)).toBe(0);
      const others = (m: Map<string, string[]>) =>
        new Map([...m].filter(([subject]) => !subject.endsWith(".BTCUSDT")));
      expectSameOutputs(others(got), others(reference.outputs));
    } finally {
      await second.close();
      await bus.close();
      await nats.close();
    }
  });

  it("splits symbols over two partitions: each symbol in exactly one, the union equal to one instance", async () => {
    const { nats, bus } = await natsWith([ten, btc]);
    const parts = await Promise.all(
      [0, 1].map((i) =>
        startNormalizer(
          loadConfig({
            ...ENV,
            NATS_URL: nats.url,
            NORMALIZER_PARTITIONS: "2",
            NORMALIZER_PARTITION: String(i),
          }),
          { logger: captureLogs().logger },
        ),
      ),
    );
    try {
      await settled(bus, 1_500, countOf(reference.outputs));
      const [a, b] = parts.map((p) => p.symbols()) as [readonly string[], readonly string[]];
      expect(a.length).toBeGreaterThan(0);
      expect(b.length).toBeGreaterThan(0);
      expect(a.filter((s) => b.includes(s))).toEqual([]);
      expect([...a, ...b].sort()).toEqual([...ten.symbols, ...btc.symbols].sort());
      expectSameOutputs(await outputs(bus), reference.outputs);
    } finally {
      await Promise.all(parts.map((p) => p.close()));
      await bus.close();
      await nats.close();
    }
  });

  it("counts and skips corrupt raw messages (not JSON, missing fields, NaN, negative sizes) and is otherwise unaffected", async () => {
    const symbol = ten.symbols[0]!;
    const corrupt = (kind: string, text: string) => ({
      subject: `md.raw.binance.${kind}.${symbol}`,
      data: enc.encode(text),
    });
    const bad = [
      corrupt("depth", "not json at all"),
      corrupt("depth", '{"e":"depthUpdate","E":1,"s":"X"}'),
      corrupt("depth", `{"e":"depthUpdate","E":1,"s":"${symbol}","U":1,"u":2,"b":[["NaN","1"]],"a":[]}`),
      corrupt(
        "aggtrade",
        `{"e":"aggTrade","E":1,"s":"${symbol}","a":1,"p":"1.0","q":"-5","f":1,"l":1,"T":1,"m":true}`,
      ),
      corrupt("snapshot", '{"lastUpdateId":"many","bids":[],"asks":[]}'),
      corrupt("status", "{{"),
    ];
    const { nats, bus } = await natsWith([ten, btc], { inject: new Map([[2_000, bad]]) });
    const normalizer = await startNormalizer(loadConfig({ ...ENV, NATS_URL: nats.url }), {
      logger: captureLogs().logger,
    });
    try {
      await settled(bus, 1_500, countOf(reference.outputs));
      expect(await metric(normalizer.opsUrl, "l2flow_normalizer_bad_messages_total")).toBe(bad.length);
      // It has read everything: nothing pending, caught up (the gauges follow every 100 ms).
      await waitUntil(
        async () => (await metric(normalizer.opsUrl, "l2flow_normalizer_caught_up")) === 1,
        5_000,
        "l2flow_normalizer_caught_up 1",
      );
      expect(await metric(normalizer.opsUrl, "l2flow_normalizer_raw_pending")).toBe(0);
      expectSameOutputs(await outputs(bus), reference.outputs);
    } finally {
      await normalizer.close();
      await bus.close();
      await nats.close();
    }
  });
});

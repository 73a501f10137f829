// The processing thread (NORMALIZER_THREAD=on): the batches it exchanges with the main thread, and
// the thread itself answering exactly as the processors do on the main thread, on the real
// recording; and what happens when it dies.
import { describe, expect, it } from "vitest";
import { loadConfig, startNormalizer } from "@l2flow/normalizer";
import { readRecording } from "@l2flow/recording";
import { fixtures, startTestNats, waitUntil } from "@l2flow/testkit";
import { BatchReader, BatchWriter } from "../src/batch.js";
import { LocalHost, type Handled, type ProcessorHost, type SymbolPort } from "../src/port.js";
import type { ClosedWindow, ProcessorEvents, ProcessorOptions } from "../src/symbol.js";
import { startProcessingThread } from "../src/thread-host.js";
import {
  EventRecorder,
  readHandled,
  replayEvents,
  writeHandled,
  type EventLog,
  type ThreadHeap,
} from "../src/thread-protocol.js";
import { captureLogs, RAW_KIND } from "./support.js";

const OPTIONS: ProcessorOptions = {
  bookDepth: 20,
  bookEveryNDiffs: 1,
  intervals: ["1s", "1m"],
  latenessMs: 250,
  maxBufferedDiffs: 300,
  maxLevelsPerSide: 5_000,
  refreshHistory: 0,
  reorderDiffs: 10,
};
const enc = new TextEncoder();

describe("batches between the threads", () => {
  it("read back every value in the order written, across growth and reuse", () => {
    const w = new BatchWriter(16);
    const big = new Uint8Array(100_000).map((_, i) => i % 251);
    const write = () => {
      w.u8(255);
      w.u32(4_294_967_295);
      w.i32(-2_147_483_648);
      w.f64(2 ** 53 - 1);
      w.f64(-0.5);
      w.str("");
      w.str("md.norm.binance.BTCUSDT.book");
      w.str("é 日本 🙂");
      w.bytes(new Uint8Array(0));
      w.bytes(big);
    };
    const check = (r: BatchReader) => {
      expect(r.u8()).toBe(255);
      expect(r.u32()).toBe(4_294_967_295);
      expect(r.i32()).toBe(-2_147_483_648);
      expect(r.f64()).toBe(2 ** 53 - 1);
      expect(r.f64()).toBe(-0.5);
      expect(r.str()).toBe("");
      expect(r.str()).toBe("md.norm.binance.BTCUSDT.book");
      expect(r.str()).toBe("é 日本 🙂");
      expect(r.bytes().length).toBe(0);
      expect(Buffer.from(r.bytes()).equals(Buffer.from(big))).toBe(true);
    };
    write();
    const length = w.length;
    const first = w.take();
    expect(first.byteLength).toBeGreaterThanOrEqual(length);
    const r = new BatchReader(first, length);
    check(r);
    expect(r.done).toBe(true);
    // The next batch starts empty on the buffer given back, and the first batch still reads.
    const back = new ArrayBuffer(256 * 1024);
    w.u8(7);
    expect(w.length).toBe(1);
    const second = w.take(back);
    expect(second).not.toBe(back);
    write();
    const third = w.take();
    expect(third).toBe(back);
    check(new BatchReader(third, length));
    check(new BatchReader(first, length));
    expect(new BatchReader(second, 1).u8()).toBe(7);
  });

  it("carry a message's outputs, book, resync and error, as copies", () => {
    const book = enc.encode("book bytes");
    const outputs = [
      { subject: "md.norm.binance.X.book", msgId: "b:1", data: book },
      { subject: "md.norm.binance.X.trade", msgId: "t:2", data: enc.encode("trade") },
    ];
    const cases: Handled[] = [
      { outputs, resync: false, book, error: undefined },
      { outputs, resync: true, book: enc.encode("another book"), error: undefined },
      { outputs: [], resync: false, book: undefined, error: { code: "BAD_JSON", message: "not JSON: ü" } },
    ];
    const w = new BatchWriter();
    for (const h of cases) writeHandled(w, h);
    const length = w.length;
    const bytes = w.take();
    const r = new BatchReader(bytes, length);
    const back = cases.map(() => readHandled(r));
    expect(r.done).toBe(true);
    new Uint8Array(bytes).fill(0); // given back and overwritten: what was read stays
    const plain = (h: Handled) => ({
      ...h,
      outputs: h.outputs.map((o) => ({ ...o, data: Buffer.from(o.data).toString() })),
      book: h.book === undefined ? undefined : Buffer.from(h.book).toString(),
    });
    expect(back.map(plain)).toEqual(cases.map(plain));
    // The book that is one of the outputs comes back as that output's bytes, not a second copy.
    expect(back[0]!.book).toBe(back[0]!.outputs[0]!.data);
  });

  it("replay the processors' events in order", () => {
    const w = (interval: string, late: number): ClosedWindow => ({
      interval,
      closeReason: 1,
      lateEventCount: late,
      endTimeMs: 1_000,
    });
    const recorder = new EventRecorder();
    const seen: string[] = [];
    const sink: ProcessorEvents = {
      raw: (kind) => seen.push(`raw ${kind}`),
      bookUpdate: () => seen.push("update"),
      bookSnapshot: () => seen.push("book"),
      refresh: () => seen.push("refresh"),
      bufferDrop: () => seen.push("drop"),
      gap: (reason, crossed) => seen.push(`gap ${reason} ${crossed}`),
      tradeOutOfOrder: (outcome) => seen.push(`trade ${outcome}`),
      window: (cw) => seen.push(`window ${cw.interval} ${cw.lateEventCount} ${cw.endTimeMs}`),
    };
    recorder.raw("depth");
    recorder.bookUpdate();
    recorder.raw("__proto__");
    recorder.raw("trade");
    recorder.raw("depth");
    recorder.bookUpdate();
    recorder.bookSnapshot();
    recorder.gap("SEQUENCE_BREAK", false);
    recorder.window({ ...w("1s", 2), symbol: "X" } as ClosedWindow);
    recorder.tradeOutOfOrder("late");
    recorder.refresh();
    recorder.bufferDrop();
    const log: EventLog = structuredClone(recorder.take());
    replayEvents(log, sink);
    expect(seen).toEqual([
      "raw depth",
      "raw depth",
      "raw __proto__",
      "raw trade",
      "update",
      "update",
      "book",
      "refresh",
      "drop",
      "gap SEQUENCE_BREAK false",
      "window 1s 2 1000",
      "trade late",
    ]);
    // Only what the metrics read of a window crosses over.
    expect(log.calls[1]).toEqual(["window", w("1s", 2)]);
    expect(recorder.take()).toEqual({
      raw: new Map(),
      bookUpdates: 0,
      bookSnapshots: 0,
      refreshes: 0,
      bufferDrops: 0,
      calls: [],
    });
  });
});

/** The 10-symbol recording as raw messages in stream order: kind, symbol, data, receive time. */
function rawMessages() {
  const recording = readRecording(fixtures.tenSymbols);
  const out: { kind: string; symbol: string; data: Uint8Array; receiveTimeUs: number }[] = [];
  for (const e of recording.events) {
    if (e.type === "snapshot")
      out.push({ kind: "snapshot", symbol: e.symbol, data: enc.encode(e.body), receiveTimeUs: 0 });
    else {
      const kind = RAW_KIND[e.kind];
      if (kind !== undefined)
        out.push({ kind, symbol: e.symbol, data: enc.encode(e.data), receiveTimeUs: e.receiveTimeUs });
    }
  }
  // Two that cannot be used, counted as errors the same way on both sides.
  out.splice(500, 0, {
    kind: "depth",
    symbol: out[0]!.symbol,
    data: enc.encode("{not json"),
    receiveTimeUs: 1,
  });
  out.splice(900, 0, { kind: "bogus", symbol: out[0]!.symbol, data: enc.encode("{}"), receiveTimeUs: 1 });
  return out;
}

/** Runs every raw message through a host; what each symbol gave back, as text, plus its final state. */
async function runThrough(host: ProcessorHost, messages: ReturnType<typeof rawMessages>) {
  const given = new Map<string, string[]>();
  const ports = new Map<string, SymbolPort>();
  const portOf = (symbol: string) => {
    let p = ports.get(symbol);
    if (p === undefined) {
      const list: string[] = [];
      given.set(symbol, list);
      p = host.open(symbol, {
        handled: (h, seq) =>
          list.push(
            JSON.stringify({
              seq,
              resync: h.resync,
              error: h.error?.code,
              book: h.book === undefined ? null : Buffer.from(h.book).toString("base64"),
              outputs: h.outputs.map((o) => [o.subject, o.msgId, Buffer.from(o.data).toString("base64")]),
            }),
          ),
      });
      ports.set(symbol, p);
    }
    return p;
  };
  messages.forEach((m, i) => portOf(m.symbol).handle(m.kind, m.data, m.receiveTimeUs, i + 1));
  for (const p of ports.values()) p.closeWindows();
  const states = new Map<string, string>();
  for (const [symbol, p] of ports) states.set(symbol, await p.serialize());
  await host.idle();
  const counts = [...ports].map(([s, p]) => [s, p.bookLevels, p.bufferedDiffs, p.needsSnapshot]);
  return { given, states, counts };
}

/** Ends a running thread as a crash in it would: it is sent a command it does not know (99). */
function crash(host: ProcessorHost): void {
  const raw = host as unknown as { command(op: number, slot: number): unknown; sent(): void };
  raw.command(99, 0);
  raw.sent();
}

describe("the processing thread", () => {
  it("is off unless NORMALIZER_THREAD=on, and a bad value is named", () => {
    expect(loadConfig({}).NORMALIZER_THREAD).toBe("off");
    expect(loadConfig({ NORMALIZER_THREAD: "on" }).NORMALIZER_THREAD).toBe("on");
    expect(() => loadConfig({ NORMALIZER_THREAD: "yes" })).toThrow(
      /NORMALIZER_THREAD="yes": expected on or off/,
    );
  });

  it("answers every raw message of the recording exactly as the processors on the main thread", async () => {
    const messages = rawMessages();
    const eventsOf = () => {
      const log: string[] = [];
      const sink: ProcessorEvents = {
        raw: (kind) => log.push(`raw ${kind}`),
        bookUpdate: () => log.push("u"),
        bookSnapshot: () => log.push("b"),
        gap: (r) => log.push(`gap ${r}`),
        window: (w) => log.push(`w ${w.interval} ${w.endTimeMs}`),
      };
      return { log, sink };
    };
    const here = eventsOf();
    const there = eventsOf();
    const local = await runThrough(new LocalHost(OPTIONS, here.sink), messages);
    const heaps: ThreadHeap[] = [];
    const thread = await startProcessingThread(OPTIONS, there.sink, {
      onFailure: (err) => {
        throw err;
      },
      onHeap: (h) => heaps.push(h),
    });
    try {
      const remote = await runThrough(thread, messages);
      expect(remote.given.size).toBe(10);
      let outputs = 0;
      for (const [symbol, list] of local.given) {
        expect(remote.given.get(symbol)).toEqual(list);
        outputs += list.length;
      }
      expect(outputs).toBeGreaterThan(messages.length);
      expect([...local.given.values()].flat().filter((s) => s.includes('"error":"')).length).toBe(2);
      expect(remote.states).toEqual(local.states);
      expect(remote.counts).toEqual(local.counts);
      expect(there.log.sort()).toEqual(here.log.sort());
      expect(here.log.filter((e) => e.startsWith("w ")).length).toBeGreaterThan(100);

      // A state restored on the thread continues as it does here.
      const symbol = messages[0]!.symbol;
      const state = JSON.parse(local.states.get(symbol)!) as Parameters<SymbolPort["restore"]>[0];
      const a = new LocalHost(OPTIONS, {}).open(symbol, { handled: () => undefined });
      const b = thread.open(symbol, { handled: () => undefined });
      expect(await a.restore(state)).toBe(true);
      expect(await b.restore(state)).toBe(true);
      expect(await b.serialize()).toBe(await a.serialize());
      expect(await b.restore({ ...state, fingerprint: "other" })).toBe(false);

      // Its heap, which the main thread's metrics do not see, is reported (once at start, then every
      // HEAP_REPORT_MS): a loaded isolate's, megabytes.
      expect(heaps.length).toBeGreaterThan(0);
      const heap = heaps.at(-1)!;
      expect(heap.used).toBeGreaterThan(1e6);
      expect(heap.committed).toBeGreaterThanOrEqual(heap.used);
      expect(heap.external).toBeGreaterThanOrEqual(0);
    } finally {
      await thread.close();
    }
  });

  it("says so when it dies: nothing pending waits for it, and asking it more fails", async () => {
    let failed: Error | undefined;
    const thread = await startProcessingThread(
      OPTIONS,
      {},
      {
        onFailure: (err) => {
          failed = err;
        },
      },
    );
    try {
      const port = thread.open("BTCUSDT", { handled: () => undefined });
      const [m] = rawMessages();
      port.handle(m!.kind, m!.data, 0, 1);
      await thread.idle();
      expect(thread.failure).toBeUndefined();
      crash(thread);
      port.handle(m!.kind, m!.data, 0, 2);
      const serialized = port.serialize();
      await expect(serialized).rejects.toThrow(/unknown command 99/);
      expect(failed?.message).toMatch(/unknown command 99/);
      expect(thread.failure).toBe(failed);
      await thread.below(0); // resolves although the message is not answered
      await expect(port.serialize()).rejects.toThrow(/unknown command 99/);
    } finally {
      await thread.close();
    }
  });
});

describe("the service with its processing thread", () => {
  it("stops being live when the thread dies: /healthz says why, onFatal is told, a fatal line is logged", async () => {
    const nats = await startTestNats();
    const { lines, logger } = captureLogs();
    let host: ProcessorHost | undefined;
    let fatal: Error | undefined;
    const normalizer = await startNormalizer(
      loadConfig({ NATS_URL: nats.url, METRICS_PORT: "0", NORMALIZER_THREAD: "on" }),
      {
        logger,
        onFatal: (err) => {
          fatal = err;
        },
        // The real thread, kept within reach.
        startThread: async (...args) => (host = await startProcessingThread(...args)),
      },
    );
    try {
      expect((await fetch(`${normalizer.opsUrl}/healthz`)).status).toBe(200);
      crash(host!);
      await waitUntil(() => fatal !== undefined, 10_000, "onFatal");
      expect(fatal?.message).toMatch(/unknown command 99/);
      const res = await fetch(`${normalizer.opsUrl}/healthz`);
      expect(res.status).toBe(503);
      const body = (await res.json()) as { status: string; reason: string };
      expect(body.status).toBe("unavailable");
      expect(body.reason).toMatch(/^the processing thread stopped: .*unknown command 99/);
      const fatalLines = lines
        .map((l) => JSON.parse(l) as { level: string; msg: string })
        .filter((l) => l.level === "fatal");
      expect(fatalLines.map((l) => l.msg)).toEqual([
        "the processing thread stopped; nothing more is normalized (a restart continues from the checkpoints)",
      ]);
    } finally {
      await normalizer.close();
      await nats.close();
    }
  });
});

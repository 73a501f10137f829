import { afterEach, describe, expect, it } from "vitest";
import { FakeBinanceWs, maxInWindow } from "../test/fake-binance-ws.js";
import { SlidingWindowLimiter } from "./backoff.js";
import { DedupeFilter } from "./dedupe.js";
import {
  BinanceStreams,
  parseStreamName,
  startBinanceStreams,
  streamName,
  type BinanceStreamsOptions,
  type ReconnectInfo,
  type RotationCause,
} from "./streams.js";
import type { CloseInfo } from "./ws.js";

const cleanups: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

async function fake(): Promise<FakeBinanceWs> {
  const f = await FakeBinanceWs.start();
  cleanups.push(() => f.close());
  return f;
}

interface Recorder {
  frames: { connId: string; text: string }[];
  ups: { connId: string; streams: readonly string[] }[];
  downs: { connId: string; streams: readonly string[]; reason: CloseInfo }[];
  rotations: { oldId: string; newId: string; cause: RotationCause }[];
  reconnects: ReconnectInfo[];
}

function streams(
  server: FakeBinanceWs,
  options: Partial<BinanceStreamsOptions> & Pick<BinanceStreamsOptions, "symbols">,
): { s: BinanceStreams; rec: Recorder } {
  const rec: Recorder = { frames: [], ups: [], downs: [], rotations: [], reconnects: [] };
  const s = new BinanceStreams({
    wsBaseUrl: server.url,
    kinds: ["trade"],
    onFrame: (bytes, _ns, connId) => rec.frames.push({ connId, text: bytes.toString() }),
    onConnectionUp: (connId, st) => rec.ups.push({ connId, streams: st }),
    onConnectionDown: (connId, st, reason) => rec.downs.push({ connId, streams: st, reason }),
    onRotation: (oldId, newId, cause) => rec.rotations.push({ oldId, newId, cause }),
    onReconnectScheduled: (info) => rec.reconnects.push(info),
    ...options,
  });
  cleanups.push(() => s.close());
  return { s, rec };
}

const tradeId = (text: string) => (JSON.parse(text) as { data: { t: number } }).data.t;

/** Checks that the frames cover every id from the first to `lastId` and that the filter passes each once. */
function expectNoGap(rec: Recorder, lastId: number): { duplicates: number } {
  const ids = rec.frames.map((f) => tradeId(f.text));
  const first = Math.min(...ids);
  const union = new Set(ids);
  for (let id = first; id <= lastId; id++) expect(union.has(id), `trade ${id} missing`).toBe(true);
  const filter = new DedupeFilter();
  const passed = ids.filter((id) => !filter.seen("trade", "BTCUSDT", id));
  expect(passed.sort((a, b) => a - b)).toEqual([...union].sort((a, b) => a - b));
  return { duplicates: ids.length - passed.length };
}

describe("stream names", () => {
  it("lower-cases symbols and splits names back", () => {
    expect(streamName("BTCUSDT", "depth@100ms")).toBe("btcusdt@depth@100ms");
    expect(parseStreamName("btcusdt@depth@100ms")).toEqual({ symbol: "BTCUSDT", kind: "depth@100ms" });
    expect(parseStreamName("nonsense")).toBeUndefined();
    expect(() => streamName("bad symbol", "trade")).toThrow(TypeError);
  });
});

describe("BinanceStreams", () => {
  it("shards whole symbols over connections and delivers frames from each", async () => {
    const server = await fake();
    const { s, rec } = streams(server, {
      symbols: ["aaausdt", "BBBUSDT", "CCCUSDT", "DDDUSDT", "EEEUSDT"],
      kinds: ["trade", "depth@100ms"],
      streamsPerConnection: 4,
    });
    s.start();
    await s.ready();
    expect(server.conns.map((c) => c.urlStreams)).toEqual([
      ["aaausdt@trade", "aaausdt@depth@100ms", "bbbusdt@trade", "bbbusdt@depth@100ms"],
      ["cccusdt@trade", "cccusdt@depth@100ms", "dddusdt@trade", "dddusdt@depth@100ms"],
      ["eeeusdt@trade", "eeeusdt@depth@100ms"],
    ]);
    expect(rec.ups.map((u) => u.connId).sort()).toEqual(["ws0.1", "ws1.1", "ws2.1"]);
    server.broadcast("aaausdt@trade", { e: "trade", t: 1 });
    server.broadcast("eeeusdt@depth@100ms", { e: "depthUpdate", u: 2 });
    await server.waitFor(() => rec.frames.length === 2, 2000, "frames");
    expect(rec.frames.map((f) => f.connId).sort()).toEqual(["ws0.1", "ws2.1"]);
    expect(s.stats).toMatchObject({ shards: 3, connectionsOpen: 3, connectAttempts: 3, reconnects: 0 });
  });

  it("kills silent connections and reconnects with full-jitter backoff, paced by the attempt budget", async () => {
    const server = await fake(); // sends nothing at all: every connection goes silent
    let seed = 7;
    const random = () => {
      seed = (seed * 1103515245 + 12345) % 2147483648;
      return seed / 2147483648;
    };
    const attempts = new SlidingWindowLimiter({ limit: 3, windowMs: 1500 });
    cleanups.push(() => attempts.close());
    const { s, rec } = streams(server, {
      symbols: ["BTCUSDT"],
      connection: { silenceTimeoutMs: 150 },
      backoff: { baseMs: 50, capMs: 200, random },
      attemptLimiter: attempts,
    });
    s.start();
    await server.waitFor(() => server.conns.length >= 7, 15_000, "7 connection attempts");
    await s.close();
    // Every reconnect waited a random delay within [0, min(cap, base * 2^attempt)].
    expect(rec.reconnects.length).toBeGreaterThanOrEqual(6);
    rec.reconnects.forEach((r, i) => {
      expect(r.attempt).toBe(i);
      expect(r.ceilingMs).toBe(Math.min(200, 50 * 2 ** i));
      expect(r.delayMs).toBeGreaterThanOrEqual(0);
      expect(r.delayMs).toBeLessThanOrEqual(r.ceilingMs);
    });
    expect(new Set(rec.reconnects.map((r) => r.delayMs)).size).toBeGreaterThan(1);
    // No more than 3 connection attempts in any 1.5 s (server-side times, minus 100 ms of jitter).
    expect(
      maxInWindow(
        server.conns.map((c) => c.openedAt),
        1400,
      ),
    ).toBeLessThanOrEqual(3);
    // Each lost connection was reported down, as silence, with its streams.
    expect(rec.downs.length).toBeGreaterThanOrEqual(6);
    for (const d of rec.downs) {
      expect(d.reason.kind).toBe("silence");
      expect(d.streams).toEqual(["btcusdt@trade"]);
    }
    expect(s.stats.silenceTimeouts).toBeGreaterThanOrEqual(6);
  });

  it("rotates make-before-break on serverShutdown: the union of both connections has every trade", async () => {
    const server = await fake();
    const { s, rec } = streams(server, { symbols: ["BTCUSDT"], overlapMs: 500 });
    s.start();
    await s.ready();
    const ticker = server.tradeTicker("BTCUSDT", 5);
    await server.waitFor(() => rec.frames.length >= 20, 2000, "first trades");
    const old = server.conns[0];
    old?.ws.send('{"stream":"!serverShutdown","data":{"e":"serverShutdown","E":1770123456789}}');
    // Binance closes the old connection some time after the announcement.
    const serverCut = setTimeout(() => old?.ws.close(1001, "shutdown"), 4000);
    cleanups.push(() => clearTimeout(serverCut));
    await server.waitFor(() => rec.rotations.length === 1, 5000, "rotation");
    await server.waitFor(() => old?.closedAt !== undefined, 3000, "old connection closed");
    const stopAt = ticker.lastId() + 30;
    await server.waitFor(() => ticker.lastId() >= stopAt, 3000, "more trades");
    ticker.stop();
    await new Promise((r) => setTimeout(r, 100));
    expect(rec.rotations[0]).toEqual({ oldId: "ws0.1", newId: "ws0.2", cause: "serverShutdown" });
    expect(old?.closeCode).toBe(1000); // we closed it, before Binance did
    expect(rec.downs).toHaveLength(0);
    expect(rec.ups.map((u) => u.connId)).toEqual(["ws0.1", "ws0.2"]);
    const { duplicates } = expectNoGap(rec, ticker.lastId());
    expect(duplicates).toBeGreaterThan(10); // both delivered during the 500 ms overlap
    expect(s.stats).toMatchObject({ rotations: 1, serverShutdowns: 1, connectionsOpen: 1, reconnects: 0 });
  });

  it("rotates before the end of a connection's lifetime, again and again, without a gap", async () => {
    const server = await fake();
    const { s, rec } = streams(server, {
      symbols: ["BTCUSDT"],
      overlapMs: 200,
      connection: { maxLifetimeMs: 2000, rotateBeforeMs: 1200 },
    });
    s.start();
    await s.ready();
    const ticker = server.tradeTicker("BTCUSDT", 5);
    await server.waitFor(() => rec.rotations.length >= 2, 6000, "two rotations");
    ticker.stop();
    await new Promise((r) => setTimeout(r, 100));
    expect(rec.rotations.map((r) => [r.oldId, r.newId, r.cause])).toEqual([
      ["ws0.1", "ws0.2", "lifetime"],
      ["ws0.2", "ws0.3", "lifetime"],
    ]);
    expect(rec.downs).toHaveLength(0);
    expectNoGap(rec, ticker.lastId());
    // Never more than two sockets at once (old and new during the overlap).
    expect(server.conns[0]?.closedAt).toBeDefined();
  });

  it("adds and removes symbols at run time on one connection, never touching the others", async () => {
    const server = await fake();
    const { s, rec } = streams(server, {
      symbols: ["AAAUSDT", "BBBUSDT", "CCCUSDT", "DDDUSDT", "EEEUSDT"],
      streamsPerConnection: 4,
    });
    s.start();
    await s.ready();
    const [a, b] = server.conns;
    if (a === undefined || b === undefined) throw new Error("expected two connections");
    expect(b.urlStreams).toEqual(["eeeusdt@trade"]);

    await s.addSymbols(["fffusdt"]);
    expect(a.inbound).toHaveLength(0);
    expect(b.inbound.map((m) => JSON.parse(m.text) as unknown)).toEqual([
      { method: "SUBSCRIBE", params: ["fffusdt@trade"], id: 1 },
    ]);
    expect([...b.streams]).toEqual(["eeeusdt@trade", "fffusdt@trade"]);

    await s.removeSymbols(["AAAUSDT"]);
    expect(a.inbound.map((m) => JSON.parse(m.text) as unknown)).toEqual([
      { method: "UNSUBSCRIBE", params: ["aaausdt@trade"], id: 1 },
    ]);
    expect(b.inbound).toHaveLength(1);

    // First fit: one slot left on the first connection, two on the second, the rest on a new one.
    await s.addSymbols(["GGGUSDT", "HHHUSDT", "IIIUSDT", "JJJUSDT"]);
    expect([...a.streams].sort()).toEqual([
      "bbbusdt@trade",
      "cccusdt@trade",
      "dddusdt@trade",
      "gggusdt@trade",
    ]);
    expect([...b.streams].sort()).toEqual([
      "eeeusdt@trade",
      "fffusdt@trade",
      "hhhusdt@trade",
      "iiiusdt@trade",
    ]);
    await s.ready();
    expect(server.conns).toHaveLength(3);
    expect(server.conns[2]?.urlStreams).toEqual(["jjjusdt@trade"]);
    expect(a.closedAt).toBeUndefined();
    expect(b.closedAt).toBeUndefined();

    // A connection left without streams is closed; nothing is reported lost.
    await s.removeSymbols(["jjjusdt"]);
    await server.waitFor(() => server.conns[2]?.closedAt !== undefined, 3000, "empty connection closed");
    expect(rec.downs).toHaveLength(0);
    expect([...s.symbols].sort()).toEqual([
      "BBBUSDT",
      "CCCUSDT",
      "DDDUSDT",
      "EEEUSDT",
      "FFFUSDT",
      "GGGUSDT",
      "HHHUSDT",
      "IIIUSDT",
    ]);
    expect(s.stats).toMatchObject({ shards: 2, connectAttempts: 3, reconnects: 0 });
  });

  it("reconnects after the server drops a connection and resets the backoff once healthy", async () => {
    const server = await fake();
    const { s, rec } = streams(server, {
      symbols: ["BTCUSDT"],
      backoff: { baseMs: 50, capMs: 100 },
      healthyAfterMs: 200,
    });
    s.start();
    await s.ready();
    for (let i = 0; i < 3; i++) {
      await new Promise((r) => setTimeout(r, 300)); // healthy for longer than healthyAfterMs
      server.open()[0]?.ws.close(1011, "going away");
      await server.waitFor(() => rec.ups.length === i + 2, 3000, "reconnect");
    }
    expect(rec.downs.map((d) => [d.connId, d.reason.kind, d.reason.code])).toEqual([
      ["ws0.1", "closed", 1011],
      ["ws0.2", "closed", 1011],
      ["ws0.3", "closed", 1011],
    ]);
    expect(rec.reconnects.map((r) => r.attempt)).toEqual([0, 0, 0]);
    expect(s.stats.reconnects).toBe(3);
  });

  it("close() stops reconnecting and closes every socket", async () => {
    const server = await fake();
    const s = await startBinanceStreams({
      wsBaseUrl: server.url,
      symbols: ["AAAUSDT", "BBBUSDT"],
      kinds: ["trade"],
      streamsPerConnection: 1,
      onFrame: () => {},
    });
    cleanups.push(() => s.close());
    expect(s.stats.connectionsOpen).toBe(2);
    await s.close();
    await s.close();
    await server.waitFor(() => server.conns.every((c) => c.closedAt !== undefined), 3000, "all closed");
    await new Promise((r) => setTimeout(r, 200));
    expect(server.conns).toHaveLength(2);
    await expect(s.ready()).rejects.toMatchObject({ code: "WS_CLOSED" });
  });
});

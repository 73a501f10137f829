// The simulator replays real recordings over Binance's WebSocket and REST protocols: frames arrive
// verbatim and complete, the REST book is the true book at that moment, and injected faults are real.
import { readRecording, type Recording } from "@l2flow/recording";
import { afterEach, beforeAll, describe, expect, it } from "vitest";
import { fixtures, startSimulator, type Simulator } from "../src/index.js";
import {
  combinedText,
  connect,
  diffOf,
  framesOf,
  getJson,
  rebuildBook,
  topLevels,
  type TestClient,
} from "./simulator-helpers.js";

let btc: Recording;
let ten: Recording;
beforeAll(() => {
  btc = readRecording(fixtures.btcusdt);
  ten = readRecording(fixtures.tenSymbols);
});

const open: { sims: Simulator[]; clients: TestClient[] } = { sims: [], clients: [] };
afterEach(async () => {
  for (const c of open.clients.splice(0)) c.ws.terminate();
  await Promise.all(open.sims.splice(0).map((s) => s.close()));
});

async function sim(options: Partial<Parameters<typeof startSimulator>[0]> = {}): Promise<Simulator> {
  const s = await startSimulator({ recording: btc, speed: Infinity, autoStart: false, ...options });
  open.sims.push(s);
  return s;
}

async function client(url: string): Promise<TestClient> {
  const c = await connect(url);
  open.clients.push(c);
  return c;
}

type Depth = { lastUpdateId: number; bids: [string, string][]; asks: [string, string][] };

describe("replay over WebSocket", () => {
  it("delivers every recorded frame verbatim and in order, combined and raw, at full speed", async () => {
    const s = await sim();
    const streams = ["btcusdt@depth@100ms", "btcusdt@trade", "btcusdt@bookTicker"];
    const combined = await client(`${s.wsUrl}/stream?streams=${streams.join("/")}`);
    const raw = await client(`${s.wsUrl}/ws/btcusdt@depth@100ms`);
    s.start();
    await s.done;
    const expectedCombined = framesOf(btc, streams).map((f) => combinedText(f));
    const expectedRaw = framesOf(btc, ["btcusdt@depth@100ms"]).map((f) => f.data);
    expect(expectedRaw).toHaveLength(3451);
    await combined.waitFor((m) => m.length >= expectedCombined.length);
    await raw.waitFor((m) => m.length >= expectedRaw.length);
    expect(combined.messages).toEqual(expectedCombined);
    expect(raw.messages).toEqual(expectedRaw);
    // The depth diffs chain without a hole: U == previous u + 1 all the way.
    const diffs = raw.messages.map(diffOf);
    for (let i = 1; i < diffs.length; i++) expect(diffs[i]!.U).toBe(diffs[i - 1]!.u + 1);
    expect(s.progress()).toMatchObject({
      replayed: btc.events.length,
      total: btc.events.length,
      finished: true,
    });
  });

  it("serves the 100 ms diffs to <sym>@depth subscribers under their own stream name", async () => {
    const s = await sim();
    const c = await client(`${s.wsUrl}/stream?streams=btcusdt@depth`);
    s.start();
    await s.done;
    await c.waitFor((m) => m.length >= 3451);
    const expected = framesOf(btc, ["btcusdt@depth@100ms"]).map((f) => combinedText(f, "btcusdt@depth"));
    expect(c.messages).toEqual(expected);
  });

  it("replays the ten-symbol recording: all its streams verbatim, and every symbol's book", async () => {
    const s = await sim({ recording: ten });
    const streams = [...new Set(ten.events.flatMap((e) => (e.type === "frame" ? [e.stream] : [])))];
    expect(streams.length).toBeGreaterThanOrEqual(28); // depth@100ms and bookTicker of all ten, most aggTrade
    const c = await client(`${s.wsUrl}/stream?streams=${streams.join("/")}`);
    s.start();
    await s.done;
    const expected = framesOf(ten, streams).map((f) => combinedText(f));
    await c.waitFor((m) => m.length >= expected.length);
    expect(c.messages).toEqual(expected);
    for (const symbol of ten.symbols) {
      const { body } = await getJson<Depth>(`${s.restUrl}/api/v3/depth?symbol=${symbol}&limit=5000`);
      const book = rebuildBook(ten, symbol, body.lastUpdateId);
      expect(body.lastUpdateId).toBe(book.lastUpdateId);
      expect(body.bids).toEqual(topLevels(book.bids, true, 5000));
      expect(body.asks).toEqual(topLevels(book.asks, false, 5000));
    }
    const info = await getJson<{ symbols: { symbol: string; baseAsset: string; quoteAsset: string }[] }>(
      `${s.restUrl}/api/v3/exchangeInfo`,
    );
    const pairs = Object.fromEntries(
      info.body.symbols.map((x) => [x.symbol, `${x.baseAsset}/${x.quoteAsset}`]),
    );
    expect(pairs).toMatchObject({
      RENBTCETH: "RENBTC/ETH",
      BTCSTUSDT: "BTCST/USDT",
      AXSBNB: "AXS/BNB",
      ETHBRL: "ETH/BRL",
    });
  });

  it("paces by receive time at finite speed, and clients connecting late miss what was already sent", async () => {
    // The first 2 000 events span about 16 s of the recording; at 100x they take ~160 ms.
    const s = await sim({ speed: 100, autoStart: true });
    await new Promise((r) => setTimeout(r, 60));
    const late = await client(`${s.wsUrl}/stream?streams=btcusdt@trade`);
    const before = s.progress().replayed;
    expect(before).toBeGreaterThan(0);
    expect(before).toBeLessThan(btc.events.length);
    await late.waitFor((m) => m.length >= 20);
    const firstId = (JSON.parse(late.messages[0]!) as { data: { t: number } }).data.t;
    expect(firstId).toBeGreaterThan(3735683259); // the recording's first trade went out before we joined
  });

  it("rewrites E and T to microseconds only with timeUnit=MICROSECOND", async () => {
    const s = await sim();
    const us = await client(`${s.wsUrl}/ws/btcusdt@trade?timeUnit=MICROSECOND`);
    s.start();
    await us.waitFor((m) => m.length >= 1);
    expect(JSON.parse(us.messages[0]!)).toMatchObject({
      t: 3735683259,
      E: 1723161255343000,
      T: 1723161255342000,
    });
  });
});

describe("live subscriptions", () => {
  it("SUBSCRIBE, LIST_SUBSCRIPTIONS, UNSUBSCRIBE round trip, and Binance's error answers", async () => {
    const s = await sim({ maxIncomingMessagesPerSecond: 100 });
    const c = await client(`${s.wsUrl}/ws`);
    expect(await c.request({ method: "LIST_SUBSCRIPTIONS", id: 1 })).toEqual({ result: [], id: 1 });
    expect(
      await c.request({ method: "SUBSCRIBE", params: ["btcusdt@trade", "ethusdt@aggTrade"], id: 2 }),
    ).toEqual({ result: null, id: 2 });
    expect(await c.request({ method: "LIST_SUBSCRIPTIONS", id: "three" })).toEqual({
      result: ["btcusdt@trade", "ethusdt@aggTrade"],
      id: "three",
    });
    expect(await c.request({ method: "UNSUBSCRIBE", params: ["ethusdt@aggTrade"], id: 4 })).toEqual({
      result: null,
      id: 4,
    });
    expect(await c.request({ method: "LIST_SUBSCRIPTIONS", id: 5 })).toEqual({
      result: ["btcusdt@trade"],
      id: 5,
    });
    expect(await c.request({ method: "GET_PROPERTY", params: ["combined"], id: 6 })).toEqual({
      result: false,
      id: 6,
    });
    expect(await c.request({ method: "SUBSCRIBE", params: ["btcusdt@nonsense"], id: 7 })).toEqual({
      error: { code: 2, msg: "Invalid request: invalid stream" },
      id: 7,
    });
    expect(await c.request({ method: "FROBNICATE", id: 8 })).toMatchObject({ error: { code: 2 }, id: 8 });
    expect(await c.request({ method: "SET_PROPERTY", params: ["colour", true], id: 9 })).toEqual({
      error: { code: 0, msg: "Unknown property" },
      id: 9,
    });
    const from = c.messages.length;
    c.ws.send("{not json");
    await c.waitFor((m) => m.length > from);
    expect(JSON.parse(c.messages[from]!)).toMatchObject({ error: { code: 3 }, id: null });

    // Raw framing on /ws; the subscribed stream now carries data, the unsubscribed one does not.
    const before = c.messages.length;
    s.start();
    await s.done;
    await c.waitFor((m) => m.length >= before + 9757);
    const data = c.messages.slice(before).map((m) => JSON.parse(m) as { e: string });
    expect(data.every((d) => d.e === "trade")).toBe(true);
    expect(s.stats().connections[0]).toMatchObject({
      requests: 10,
      requestErrors: 4,
      streams: ["btcusdt@trade"],
    });
  });

  it("SET_PROPERTY combined switches the framing of a raw connection", async () => {
    const s = await sim();
    const c = await client(`${s.wsUrl}/ws/btcusdt@trade`);
    expect(await c.request({ method: "SET_PROPERTY", params: ["combined", true], id: 1 })).toEqual({
      result: null,
      id: 1,
    });
    s.start();
    await c.waitFor((m) => m.length >= 2);
    expect(c.messages[1]!.startsWith('{"stream":"btcusdt@trade","data":{"e":"trade"')).toBe(true);
  });
});

describe("the true book over REST", () => {
  it("before the replay reaches it, serves the recording's first snapshot (a snapshot from the stream's future)", async () => {
    const s = await sim();
    const { status, body } = await getJson<Depth>(`${s.restUrl}/api/v3/depth?symbol=BTCUSDT&limit=5`);
    const recorded = btc.events.find((e) => e.type === "snapshot");
    const snap = JSON.parse(recorded!.type === "snapshot" ? recorded!.body : "{}") as Depth;
    expect(status).toBe(200);
    expect(body).toEqual({
      lastUpdateId: 50093239218,
      bids: snap.bids.slice(0, 5),
      asks: snap.asks.slice(0, 5),
    });
  });

  it("mid-replay equals an independent rebuild up to its lastUpdateId; the default limit is 100", async () => {
    const s = await sim({ speed: 100, autoStart: true });
    const seen = new Set<number>();
    for (const waitMs of [150, 400, 700]) {
      await new Promise((r) => setTimeout(r, waitMs));
      s.pause();
      const full = await getJson<Depth>(`${s.restUrl}/api/v3/depth?symbol=BTCUSDT&limit=1000`);
      const dflt = await getJson<Depth>(`${s.restUrl}/api/v3/depth?symbol=BTCUSDT`);
      s.resume();
      const book = rebuildBook(btc, "BTCUSDT", full.body.lastUpdateId);
      expect(full.body.lastUpdateId).toBe(book.lastUpdateId);
      expect(full.body.bids).toEqual(topLevels(book.bids, true, 1000));
      expect(full.body.asks).toEqual(topLevels(book.asks, false, 1000));
      expect(dflt.body.bids).toEqual(full.body.bids.slice(0, 100));
      expect(dflt.body.asks).toHaveLength(100);
      seen.add(full.body.lastUpdateId);
    }
    expect(seen.size).toBe(3); // three different moments
  });

  it("the independent rebuild agrees with the bookTicker oracle (so the comparison above means something)", () => {
    const last = framesOf(btc, ["btcusdt@depth@100ms"]).at(-1)!;
    const diffUs = new Set(framesOf(btc, ["btcusdt@depth@100ms"]).map((f) => diffOf(f.data).u));
    const tickers = framesOf(btc, ["btcusdt@bookTicker"])
      .map((f) => JSON.parse(f.data) as { u: number; b: string; a: string })
      .filter((t) => diffUs.has(t.u));
    expect(tickers.length).toBeGreaterThan(50);
    for (const t of tickers.filter((_, i) => i % 10 === 0)) {
      const book = rebuildBook(btc, "BTCUSDT", t.u);
      expect(book.lastUpdateId).toBe(t.u);
      expect(topLevels(book.bids, true, 1)[0]![0]).toBe(t.b);
      expect(topLevels(book.asks, false, 1)[0]![0]).toBe(t.a);
    }
    expect(diffOf(last.data).u).toBeGreaterThan(50093239218);
  });

  it("historicalTrades and aggTrades return what was replayed, from fromId", async () => {
    const s = await sim({ speed: 300, autoStart: false });
    const none = await getJson<unknown[]>(`${s.restUrl}/api/v3/historicalTrades?symbol=BTCUSDT`);
    expect(none.body).toEqual([]);
    s.start();
    await new Promise((r) => setTimeout(r, 300));
    s.pause();
    const replayed = s.replayedTradeIds("BTCUSDT");
    expect(replayed.length).toBeGreaterThan(100);
    expect(replayed.length).toBeLessThan(9757);
    const fromId = replayed[10]!;
    const page = await getJson<{ id: number; price: string; qty: string; quoteQty: string; time: number }[]>(
      `${s.restUrl}/api/v3/historicalTrades?symbol=BTCUSDT&fromId=${fromId}&limit=50`,
    );
    expect(page.status).toBe(200);
    expect(page.body.map((t) => t.id)).toEqual(replayed.slice(10, 60));
    const recorded = framesOf(btc, ["btcusdt@trade"]).map(
      (f) => JSON.parse(f.data) as { t: number; p: string; q: string; T: number; m: boolean },
    );
    const r = recorded.find((t) => t.t === fromId)!;
    expect(page.body[0]).toEqual({
      id: r.t,
      price: r.p,
      qty: r.q,
      quoteQty: expect.stringMatching(/^\d+\.\d{8}$/) as unknown,
      time: r.T,
      isBuyerMaker: r.m,
      isBestMatch: true,
    });
    expect(Number(page.body[0]!.quoteQty)).toBeCloseTo(Number(r.p) * Number(r.q), 6);
    // Beyond what was replayed there is nothing yet; the default is the most recent 500.
    const future = await getJson<unknown[]>(
      `${s.restUrl}/api/v3/historicalTrades?symbol=BTCUSDT&fromId=${replayed.at(-1)! + 1}`,
    );
    expect(future.body).toEqual([]);
    const recent = await getJson<{ id: number }[]>(`${s.restUrl}/api/v3/historicalTrades?symbol=BTCUSDT`);
    expect(recent.body.map((t) => t.id)).toEqual(replayed.slice(-500));

    const t = await sim({ recording: ten });
    t.start();
    await t.done;
    const aggs = framesOf(ten, ["zilusdt@aggTrade"]).map((f) => {
      const { a, p, q, f: first, l, T, m, M } = JSON.parse(f.data) as Record<string, unknown>;
      return { a, p, q, f: first, l, T, m, M };
    });
    expect(aggs.length).toBeGreaterThan(20);
    const agg = await getJson<unknown[]>(
      `${t.restUrl}/api/v3/aggTrades?symbol=ZILUSDT&fromId=${aggs[5]!.a as number}&limit=10`,
    );
    expect(agg.body).toEqual(aggs.slice(5, 15));
  });
});

describe("faults", () => {
  it("skipDiffs withholds diffs from clients while the true book still applies them", async () => {
    const s = await sim();
    const c = await client(`${s.wsUrl}/ws/btcusdt@depth@100ms`);
    const all = framesOf(btc, ["btcusdt@depth@100ms"]).map((f) => diffOf(f.data));
    s.skipDiffs("BTCUSDT", 3);
    s.start();
    await s.done;
    await c.waitFor((m) => m.length >= all.length - 3);
    const got = c.messages.map(diffOf);
    expect(got).toEqual(all.slice(3));
    const book = await getJson<Depth>(`${s.restUrl}/api/v3/depth?symbol=BTCUSDT&limit=5`);
    expect(book.body.lastUpdateId).toBe(all.at(-1)!.u);
    expect(s.stats().diffsSkipped).toEqual({ BTCUSDT: 3 });
  });

  it("skipDiffs in the middle of a stream leaves exactly one hole of the skipped size", async () => {
    const s = await sim({ speed: 50, autoStart: true });
    const c = await client(`${s.wsUrl}/ws/btcusdt@depth@100ms`);
    await c.waitFor((m) => m.length >= 5);
    s.skipDiffs("BTCUSDT", 4);
    await c.waitFor((m) => m.length >= 12);
    const got = c.messages.map(diffOf);
    const breaks = got.flatMap((d, i) => (i > 0 && d.U !== got[i - 1]!.u + 1 ? [i] : []));
    expect(breaks).toHaveLength(1);
    const all = framesOf(btc, ["btcusdt@depth@100ms"]).map((f) => diffOf(f.data));
    const i = breaks[0]!;
    const before = all.findIndex((d) => d.u === got[i - 1]!.u);
    expect(all[before + 5]).toEqual(got[i]); // four diffs missing in between
  });

  it("serverShutdown reaches raw and combined clients in Binance's shapes, then they are closed", async () => {
    const s = await sim({ shutdownGraceMs: 100 });
    const combined = await client(`${s.wsUrl}/stream?streams=btcusdt@trade`);
    const raw = await client(`${s.wsUrl}/ws/btcusdt@trade`);
    const t0 = Date.now();
    expect(s.announceShutdown()).toBe(2);
    await combined.waitFor((m) => m.length >= 1);
    await raw.waitFor((m) => m.length >= 1);
    expect(JSON.parse(combined.messages[0]!)).toEqual({
      stream: "!serverShutdown",
      data: { e: "serverShutdown", E: expect.any(Number) as unknown },
    });
    expect(JSON.parse(raw.messages[0]!)).toEqual({ e: "serverShutdown", E: expect.any(Number) as unknown });
    const [a, b] = await Promise.all([combined.closed, raw.closed]);
    expect(Date.now() - t0).toBeGreaterThanOrEqual(90);
    expect(a.code).toBe(1001);
    expect(b.code).toBe(1001);
    expect(s.stats().connections.map((c) => [c.closeReason, c.shutdownAnnounced])).toEqual([
      ["server-shutdown", true],
      ["server-shutdown", true],
    ]);
  });

  it("dropConnections ends TCP without a close frame, only for the filtered connections", async () => {
    const s = await sim();
    const a = await client(`${s.wsUrl}/ws/btcusdt@trade`);
    const b = await client(`${s.wsUrl}/ws/btcusdt@trade`);
    expect(s.dropConnections(a.id)).toBe(1);
    expect((await a.closed).code).toBe(1006); // 1006: closed abnormally, no close frame received
    expect(b.ws.readyState).toBe(b.ws.OPEN);
    const stats = s.stats().connections;
    expect(stats.find((c) => c.id === a.id)).toMatchObject({ closeReason: "dropped", closeCode: 1006 });
    expect(stats.find((c) => c.id === b.id)?.closedAt).toBeUndefined();
  });

  it("stallConnections loses the frames of the stall for that client only, then resumes", async () => {
    const s = await sim({ speed: 100, autoStart: true });
    const stalled = await client(`${s.wsUrl}/ws/btcusdt@bookTicker`);
    const healthy = await client(`${s.wsUrl}/ws/btcusdt@bookTicker`);
    await stalled.waitFor((m) => m.length >= 5);
    s.stallConnections(stalled.id, 300);
    // Frames already on the wire still arrive; after that, nothing until the stall ends.
    await new Promise((r) => setTimeout(r, 40));
    const at = stalled.messages.length;
    await new Promise((r) => setTimeout(r, 150));
    expect(stalled.messages.length).toBe(at);
    await stalled.waitFor((m) => m.length >= at + 5);
    s.pause();
    const lost = s.stats().connections.find((c) => c.id === stalled.id)!.framesLostWhileStalled;
    expect(lost).toBeGreaterThan(10);
    // What the stalled client got is the recording minus one contiguous run of `lost` frames.
    const recorded = framesOf(btc, ["btcusdt@bookTicker"]).map((f) => f.data);
    const start = recorded.indexOf(stalled.messages[0]!);
    const gapAt = stalled.messages.findIndex((m, i) => m !== recorded[start + i]);
    expect(gapAt).toBeGreaterThan(0);
    const rest = stalled.messages.slice(gapAt);
    expect(rest).toEqual(recorded.slice(start + gapAt + lost, start + gapAt + lost + rest.length));
    expect(healthy.messages.length).toBeGreaterThan(0);
    expect(s.stats().connections.find((c) => c.id === healthy.id)!.framesLostWhileStalled).toBe(0);
  });

  it("injectMalformed sends garbage frames and keeps the connection open", async () => {
    const s = await sim();
    const c = await client(`${s.wsUrl}/ws/btcusdt@trade`);
    expect(s.injectMalformed(5)).toBe(1);
    expect(s.injectMalformed('{"stream":"btcusdt@trade","data":{"e":"tr')).toBe(1);
    await c.waitFor((m) => m.length >= 6);
    const parses = c.messages.map((m) => {
      try {
        JSON.parse(m);
        return true;
      } catch {
        return false;
      }
    });
    expect(parses.filter((p) => !p).length).toBeGreaterThanOrEqual(4);
    expect(c.messages[5]).toBe('{"stream":"btcusdt@trade","data":{"e":"tr');
    expect(c.ws.readyState).toBe(c.ws.OPEN);
    expect(s.stats().connections[0]!.malformedFramesSent).toBe(6);
  });

  it("disconnects a client that stops reading as a slow consumer, and the others still get everything", async () => {
    const s = await sim({
      backpressureBytes: 64 * 1024,
      maxBufferedBytes: 256 * 1024,
      slowConsumerTimeoutMs: 200,
    });
    const streams = "btcusdt@depth@100ms/btcusdt@trade/btcusdt@bookTicker";
    const slow = await client(`${s.wsUrl}/stream?streams=${streams}`);
    const fast = await client(`${s.wsUrl}/stream?streams=${streams}`);
    slow.socket.pause();
    s.start();
    await s.done;
    await fast.waitFor((m) => m.length >= btc.events.length - 1, 20_000);
    const record = s.stats().connections.find((c) => c.id === slow.id)!;
    expect(record.closeReason).toBe("slow-consumer");
    expect(record.maxBufferedBytes).toBeGreaterThan(64 * 1024);
  });
});

describe("lifecycle", () => {
  it("close() is idempotent, closes clients with 1001 and resolves done", async () => {
    const s = await sim({ autoStart: true, speed: 1 });
    const c = await client(`${s.wsUrl}/ws/btcusdt@trade`);
    await Promise.all([s.close(), s.close()]);
    expect((await c.closed).code).toBe(1001);
    await s.done;
    await expect(fetch(`${s.restUrl}/api/v3/ping`)).rejects.toThrow();
  });

  it("loops: the second pass starts over with the first snapshot's book", async () => {
    const s = await sim({ recording: ten, loop: true });
    const c = await client(`${s.wsUrl}/ws/zilusdt@aggTrade`);
    const perPass = framesOf(ten, ["zilusdt@aggTrade"]).length;
    s.start();
    await c.waitFor((m) => m.length >= perPass * 2 + 1, 20_000);
    s.pause();
    expect(s.progress().loops).toBeGreaterThanOrEqual(2);
    expect(c.messages[perPass]).toBe(c.messages[0]);
  });
});

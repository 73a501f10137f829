// Trades that reach MD_RAW out of id order: ingest stores the trades its REST backfill recovers after
// the live trade that showed the hole, so the normalizer must publish them (once), not take them for
// repeats.
import { describe, expect, it } from "vitest";
import { STREAMS, subjects, Trade, Window } from "@l2flow/contracts";
import { loadConfig, startNormalizer } from "@l2flow/normalizer";
import { MAX_MISSING_RANGES, TradeIds } from "../src/trade-ids.js";
import {
  captureLogs,
  provisionedNats,
  metric,
  publishTrade,
  readStream,
  startSymbolNormalizer,
  waitUntil,
} from "./support.js";

describe("TradeIds", () => {
  it("takes ids above the highest as next, fills missing ones as late, and refuses repeats", () => {
    const ids = new TradeIds();
    expect([5, 6, 10].map((id) => ids.take(id))).toEqual(["next", "next", "next"]);
    // Below the first id taken, every id is still to come (the first is not the symbol's first).
    expect(ids.serialize().missing).toEqual([
      [0, 4],
      [7, 9],
    ]);
    expect([8, 8, 7, 10, 6, 3, 3, 0].map((id) => ids.take(id))).toEqual([
      "late",
      "repeat",
      "late",
      "repeat",
      "repeat",
      "late", // below the first id taken
      "repeat",
      "late",
    ]);
    expect(ids.serialize().missing).toEqual([
      [1, 2],
      [4, 4],
      [9, 9],
    ]);
    expect([9, 9, 11, 1, 2, 4].map((id) => ids.take(id))).toEqual([
      "late",
      "repeat",
      "next",
      "late",
      "late",
      "late",
    ]);
    expect(ids.serialize().missing).toEqual([]);
  });

  it("continues exactly from its serialized state", () => {
    const a = new TradeIds();
    for (const id of [100, 150, 200, 120, 170]) a.take(id);
    const b = TradeIds.restore(
      JSON.parse(JSON.stringify(a.serialize())) as ReturnType<TradeIds["serialize"]>,
    );
    const probe = [101, 120, 149, 150, 171, 199, 200, 201, 170];
    expect(probe.map((id) => b.take(id))).toEqual(probe.map((id) => a.take(id)));
    expect(b.serialize()).toEqual(a.serialize());
  });

  it(`keeps at most ${MAX_MISSING_RANGES} missing ranges, forgetting the oldest`, () => {
    const ids = new TradeIds();
    // Ids 1, 3, 5, …: each step leaves one id missing.
    for (let i = 0; i <= MAX_MISSING_RANGES + 10; i++) ids.take(1 + 2 * i);
    expect(ids.serialize().missing).toHaveLength(MAX_MISSING_RANGES);
    expect(ids.take(0)).toBe("repeat"); // forgotten
    expect(ids.take(2)).toBe("repeat"); // forgotten
    expect(ids.take(2 * (MAX_MISSING_RANGES + 10))).toBe("late"); // the newest range
  });
});

describe("normalizer and trades out of id order", () => {
  const env = provisionedNats();

  /** A Binance trade event stored in MD_RAW under any message id; `time` is put in E and T as given. */
  const rawTrade = async (symbol: string, id: number, time: number, msgID: string) => {
    const event = { e: "trade", E: time, s: symbol, t: id, p: "1.0", q: "1.0", T: time, m: false };
    await env.bus.js.publish(subjects.raw("trade", symbol), new TextEncoder().encode(JSON.stringify(event)), {
      msgID,
    });
  };

  it("takes the microsecond times of timeUnit=MICROSECOND as microseconds, in trades and windows", async () => {
    const symbol = "MICROUSDT";
    const second = 1_700_000_123_000; // ms, a window's start
    const times = [
      second * 1000 + 1,
      second * 1000 + 500_250,
      second * 1000 + 999_999,
      (second + 1_500) * 1000,
    ];
    for (const [i, t] of times.entries()) await rawTrade(symbol, i + 1, t, `micro-${i + 1}`);
    const { normalizer } = await startSymbolNormalizer(env.nats.url, "micro", symbol);
    try {
      // The fourth trade's time moves the watermark past the first second: its window closes.
      let windows: Window[] = [];
      await waitUntil(
        async () =>
          (windows = (await readStream(env.bus, STREAMS.window, subjects.window("1s", symbol))).map((m) =>
            Window.decode(m.data),
          )).length >= 1,
        10_000,
        "the first second's window",
      );
      expect(windows).toHaveLength(1);
      expect(windows[0]).toMatchObject({ startTimeMs: second, endTimeMs: second + 1_000, tradeCount: 3 });
      const trades = (await readStream(env.bus, STREAMS.norm, subjects.trade(symbol))).map((m) =>
        Trade.decode(m.data),
      );
      expect(trades.map((t) => [Number(t.tradeTimeUs), Number(t.eventTimeUs)])).toEqual(
        times.map((t) => [t, t]),
      );
    } finally {
      await normalizer.close();
    }
  }, 30_000);

  it("publishes a new symbol's older trades stored after its first one (two connections at start), once each", async () => {
    const symbol = "FIRSTUSDT";
    const t0 = 1_700_000_000_000;
    // Connection A stores 100 and 101; B, connected earlier and lagging, stores 99 and 98 after them,
    // then a copy of 101 under another message id (after ingest's duplicate window).
    for (const id of [100, 101, 99, 98]) await publishTrade(env.bus, symbol, id, t0 + id);
    await rawTrade(symbol, 101, t0 + 101, "again-101");
    const { normalizer } = await startSymbolNormalizer(env.nats.url, "first", symbol);
    try {
      const outOfOrder = (outcome: string) =>
        metric(normalizer.opsUrl, "l2flow_normalizer_trades_out_of_order_total", `outcome="${outcome}"`);
      await waitUntil(async () => (await outOfOrder("repeat")) === 1, 10_000, "the repeat to be counted");
      expect(await outOfOrder("late")).toBe(2);
      const ids = (await readStream(env.bus, STREAMS.norm, subjects.trade(symbol))).map((m) =>
        Number(Trade.decode(m.data).tradeId),
      );
      expect(ids).toEqual([100, 101, 99, 98]);
    } finally {
      await normalizer.close();
    }
  }, 30_000);

  it("publishes the trades a backfill stores after later ones, once each, across a restart from its checkpoint", async () => {
    const symbol = "BACKFILLUSDT";
    const t0 = 1_700_000_000_000;
    const at = (id: number) => t0 + id * 100;
    // Live trades with a hole (11-15: a disconnect), as ingest stores them.
    for (let id = 1; id <= 10; id++) await publishTrade(env.bus, symbol, id, at(id));
    for (let id = 16; id <= 20; id++) await publishTrade(env.bus, symbol, id, at(id));
    const common = { NATS_URL: env.nats.url, METRICS_PORT: "0", NORMALIZER_NAME: "backfill" };
    const { logger } = captureLogs();
    const tradeIds = async () =>
      (await readStream(env.bus, STREAMS.norm, subjects.trade(symbol))).map((m) =>
        Number(Trade.decode(m.data).tradeId),
      );

    const first = await startNormalizer(loadConfig({ ...common, CHECKPOINT_INTERVAL_MS: "50" }), { logger });
    await waitUntil(async () => (await tradeIds()).length === 15, 10_000, "the live trades");
    // Let a checkpoint after the last live trade be written, then stop: the hole must survive it.
    await new Promise((r) => setTimeout(r, 300));
    await first.close();

    // The backfill's trades, then two repeats stored again after ingest's duplicate window (another
    // message id, as a copy from a slow redundant connection minutes later would be).
    for (let id = 11; id <= 15; id++) await publishTrade(env.bus, symbol, id, at(id));
    for (const id of [12, 18])
      await env.bus.js.publish(
        subjects.raw("trade", symbol),
        new TextEncoder().encode(
          JSON.stringify({
            e: "trade",
            E: at(id),
            s: symbol,
            t: id,
            p: "1.0",
            q: "1.0",
            T: at(id),
            m: false,
          }),
        ),
        { msgID: `again-${id}` },
      );

    const second = await startNormalizer(loadConfig({ ...common, CHECKPOINT_INTERVAL_MS: "50" }), { logger });
    try {
      await waitUntil(
        async () =>
          (await metric(second.opsUrl, "l2flow_normalizer_trades_out_of_order_total", 'outcome="repeat"')) ===
          2,
        10_000,
        "the repeats to be counted",
      );
      // It resumed from the checkpoint (the missing ids came from it), not from the start of MD_RAW.
      expect(await metric(second.opsUrl, "l2flow_normalizer_raw_messages_total", 'kind="trade"')).toBe(7);
      const ids = await tradeIds();
      // Every id once, the backfilled ones after the live ones as MD_RAW has them.
      expect(ids).toEqual([1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 16, 17, 18, 19, 20, 11, 12, 13, 14, 15]);
      expect(
        await metric(second.opsUrl, "l2flow_normalizer_trades_out_of_order_total", 'outcome="late"'),
      ).toBe(5);
    } finally {
      await second.close();
    }
  }, 60_000);
});

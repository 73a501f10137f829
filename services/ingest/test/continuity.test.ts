// Ingest never loses a trade or a diff that Binance will give back: the whole BTCUSDT recording is
// replayed by the simulator while connections drop, rotate and are told to shut down, and MD_RAW must
// hold every trade id and every diff update id of the recording exactly once.
import { afterEach, describe, expect, it } from "vitest";
import { subjects } from "@l2flow/contracts";
import { expectPaced, expectRecordingStoredOnce, startHarness, waitUntil, type Harness } from "./harness.js";
import { metric, readRaw } from "./support.js";

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/**
 * Replays the recording with its only connection (WS_REDUNDANCY=1) dropped `times` times, 2 s apart,
 * each time until it is back: trades replayed meanwhile reach no connection. Resolves at the end.
 */
async function replayDroppingTheConnection(h: Harness, times: number): Promise<void> {
  const { sim, ingest } = h;
  sim.start();
  for (let i = 0; i < times; i++) {
    await sleep(2_000);
    sim.dropConnections();
    await waitUntil(() => ingest.connectionsUp() === 1, 15_000, "the connection to come back");
  }
  await sim.done;
}

describe("ingest continuity over the whole BTCUSDT recording", () => {
  let h: Harness | undefined;
  afterEach(async () => {
    await h?.close();
    h = undefined;
  });

  it("with a connection dropped every second, the redundant set keeps every trade and diff exactly once", async () => {
    h = await startHarness({});
    const { sim, ingest } = h;
    sim.start();
    let drops = 0;
    while (!sim.progress().finished) {
      await sleep(1_000);
      if (sim.progress().finished) break;
      // The oldest open connection goes; the other set carries on while it reconnects.
      const open = sim.stats().connections.filter((c) => c.closedAt === undefined);
      if (open.length < 2) continue;
      drops += sim.dropConnections(open[0]!.id);
      await waitUntil(() => ingest.connectionsUp() === 2, 15_000, "the dropped connection to come back");
    }
    await sim.done;
    expect(drops).toBeGreaterThanOrEqual(5);
    await expectRecordingStoredOnce(h);
    expect(await metric(ingest.opsUrl, "l2flow_ingest_reconnects_total")).toBe(drops);
    expect(await metric(ingest.opsUrl, "l2flow_ingest_deduplicated_total")).toBeGreaterThan(0);
    // MD_RAW's only publisher: frames confirmed by their batch's fence, none sent again for want of
    // proof (counted when each fence is answered).
    const fenced = (outcome: string) =>
      metric(ingest.opsUrl, "l2flow_ingest_fenced_frames_total", `outcome="${outcome}"`);
    await waitUntil(async () => (await fenced("proven")) > 0, 5_000, "fenced frames counted");
    expect(await fenced("unconfirmed")).toBe(0);
    // The other set always covered the symbol: no "disconnected" status was stored.
    const status = await readRaw(h.bus, subjects.raw("status", "BTCUSDT"));
    expect(status.filter((m) => m.json.type === "disconnected")).toHaveLength(0);
    expectPaced(sim);
  });

  it("recovers over REST, by id, the trades every connection missed", async () => {
    h = await startHarness({ WS_REDUNDANCY: "1", BACKFILL_DELAY_MS: "200" });
    const { sim, ingest } = h;
    await replayDroppingTheConnection(h, 3);
    // Diffs missed while disconnected cannot be had again (the normalizer resyncs); trades can.
    await expectRecordingStoredOnce(h, { diffs: false });
    expect(await metric(ingest.opsUrl, "l2flow_ingest_trades_backfilled_total")).toBeGreaterThan(0);
    expect(await metric(ingest.opsUrl, "l2flow_ingest_trades_unrecoverable_total")).toBe(0);
    const trades = await readRaw(h.bus, subjects.raw("trade", "BTCUSDT"));
    const recovered = trades.filter((m) => m.headers["L2-Source"] === "rest-backfill");
    expect(recovered.length).toBe(await metric(ingest.opsUrl, "l2flow_ingest_trades_backfilled_total"));
    // A recovered trade reads like a live one.
    expect(Object.keys(recovered[0]!.json)).toEqual(
      expect.arrayContaining(["e", "E", "s", "t", "p", "q", "T", "m"]),
    );
    const status = await readRaw(h.bus, subjects.raw("status", "BTCUSDT"));
    expect(status.filter((m) => m.json.type === "disconnected")).toHaveLength(3);
    // Reconnects ask for a fresh snapshot each time.
    expect(await metric(ingest.opsUrl, "l2flow_ingest_snapshots_total")).toBe(4);
    expectPaced(sim);
  });

  it("reports the trades it may not fetch back as trades-missing, stored once per id range", async () => {
    // Holes of more than one id: all but the last id are beyond the backfill limit.
    h = await startHarness({ WS_REDUNDANCY: "1", BACKFILL_DELAY_MS: "200", BACKFILL_MAX_IDS: "1" });
    await replayDroppingTheConnection(h, 2);
    const { ingest } = h;
    await waitUntil(
      async () => (await metric(ingest.opsUrl, "l2flow_ingest_trades_unrecoverable_total")) > 0,
      10_000,
      "trades reported missing",
    );
    const missing = (await readRaw(h.bus, subjects.raw("status", "BTCUSDT"))).filter(
      (m) => m.json.type === "trades-missing",
    );
    expect(missing.length).toBeGreaterThan(0);
    let ids = 0;
    for (const m of missing) {
      const { kind, fromId, toId } = m.json as { kind: string; fromId: number; toId: number };
      // Keyed by what is missing, not by when it was seen: another replica reporting the same hole,
      // or this one again after a restart, is deduplicated by JetStream.
      expect(m.headers["Nats-Msg-Id"]).toBe(`status:BTCUSDT:trades-missing:${kind}:${fromId}-${toId}`);
      ids += toId - fromId + 1;
    }
    expect(ids).toBe(await metric(ingest.opsUrl, "l2flow_ingest_trades_unrecoverable_total"));
  });

  it("after a restart, fetches back over REST the trades made while no ingest was running", async () => {
    h = await startHarness({ WS_REDUNDANCY: "1", BACKFILL_DELAY_MS: "200" });
    h.sim.start();
    await sleep(2_000);
    // Down for a while: the trades replayed meanwhile reach no connection and are stored nowhere.
    const again = await h.restartIngest(1_500);
    await h.sim.done;
    await expectRecordingStoredOnce(h, { diffs: false });
    // The new process knew where MD_RAW's trades stopped, and fetched the rest by id.
    expect(await metric(again.opsUrl, "l2flow_ingest_trades_backfilled_total")).toBeGreaterThan(0);
    expect(await metric(again.opsUrl, "l2flow_ingest_trades_unrecoverable_total")).toBe(0);
    expect(h.logs.join("")).toMatch(/trade ids continue from MD_RAW's last stored trades/);
  });

  it("after a restart whose last stored trade was a recovered one, still fetches back what it missed", async () => {
    h = await startHarness({ WS_REDUNDANCY: "1", BACKFILL_DELAY_MS: "1500" });
    const { sim } = h;
    sim.start();
    await sleep(1_500);
    // A hole, seen by the first live trade after the stall, and recovered after the replay paused:
    // the recovered trades are MD_RAW's last, stored after higher live ids.
    sim.stallConnections(undefined, 800);
    await sleep(1_100);
    sim.pause();
    await h.ingest.backfillSettled(15_000);
    const last = await h.bus.jsm.streams.getMessage("MD_RAW", {
      last_by_subj: subjects.raw("trade", "BTCUSDT"),
    });
    expect(last?.header?.get("L2-Source")).toBe("rest-backfill");
    expect(Number(last?.header?.get("L2-Live-High"))).toBeGreaterThan(JSON.parse(last!.string()).t as number);
    // Down while the replay goes on.
    const restarting = h.restartIngest(2_000);
    await sleep(1_000);
    sim.resume();
    const again = await restarting;
    await sim.done;
    await expectRecordingStoredOnce(h, { diffs: false });
    expect(await metric(again.opsUrl, "l2flow_ingest_trades_unrecoverable_total")).toBe(0);
  });

  it("replaces a connection that keeps answering pings but sends no data, and fetches back the trades it missed", async () => {
    h = await startHarness(
      { WS_REDUNDANCY: "1", DATA_SILENCE_TIMEOUT_MS: "1500", BACKFILL_DELAY_MS: "200" },
      { sim: { pingIntervalMs: 500 } },
    );
    const { sim, ingest } = h;
    sim.start();
    await waitUntil(() => sim.progress().replayed > sim.progress().total * 0.2, 30_000, "20% of the replay");
    // Binance stops this connection's data and goes on pinging it: no silence by the 30 s watchdog.
    expect(sim.stallData(undefined, 60_000)).toBe(1);
    await waitUntil(
      async () => (await metric(ingest.opsUrl, "l2flow_ingest_rotations_total", 'cause="dataSilence"')) >= 1,
      15_000,
      "a rotation for data silence",
    );
    await sim.done;
    // Trades of the stall come back over REST; diffs cannot (the normalizer resyncs).
    await expectRecordingStoredOnce(h, { diffs: false });
    expect(await metric(ingest.opsUrl, "l2flow_ingest_trades_backfilled_total")).toBeGreaterThan(0);
    expect(await metric(ingest.opsUrl, "l2flow_ingest_reconnects_total")).toBe(0);
    expectPaced(sim);
  });

  it("rotates before the lifetime ends and at once on serverShutdown, with no missing or duplicated frame", async () => {
    // One connection set, no backfill delay tolerance needed: rotation alone must be gapless.
    h = await startHarness({
      WS_REDUNDANCY: "1",
      CONNECTION_LIFETIME_MS: "4000",
      ROTATE_BEFORE_MS: "1500",
    });
    const { sim, ingest } = h;
    sim.start();
    await waitUntil(
      async () => (await metric(ingest.opsUrl, "l2flow_ingest_rotations_total", 'cause="lifetime"')) >= 1,
      15_000,
      "a lifetime rotation",
    );
    // The rotated connection closes shortly after the rotation is counted; announce to the new one only.
    await waitUntil(
      () => sim.stats().connections.filter((c) => c.closedAt === undefined).length === 1,
      5_000,
      "the rotated connection to close",
    );
    expect(sim.announceShutdown(undefined, 3_000)).toBe(1);
    await waitUntil(
      async () =>
        (await metric(ingest.opsUrl, "l2flow_ingest_rotations_total", 'cause="serverShutdown"')) >= 1,
      10_000,
      "a serverShutdown rotation",
    );
    await sim.done;
    await expectRecordingStoredOnce(h);
    expect(await metric(ingest.opsUrl, "l2flow_ingest_trades_backfilled_total")).toBe(0);
    expect(await metric(ingest.opsUrl, "l2flow_ingest_reconnects_total")).toBe(0);
    const status = await readRaw(h.bus, subjects.raw("status", "BTCUSDT"));
    expect(status.filter((m) => m.json.type === "disconnected")).toHaveLength(0);
    expectPaced(sim);
  });
});

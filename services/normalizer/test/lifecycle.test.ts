// Closing while new symbols keep arriving on MD_RAW: the one consumer stops and is deleted, and every
// worker — even one created for a symbol that arrived as close() began — is stopped, so nothing reads
// MD_RAW (or crashes on the draining connection) once the normalizer has closed. A consumer the
// normalizer read from before its current one (left by a NATS restart) is deleted, others' are not,
// and each of its consumers is one nats-server drops 30 s after a SIGKILL, not nats.js's 5 min.
import { AckPolicy, DeliverPolicy } from "@nats-io/jetstream";
import { describe, expect, it } from "vitest";
import { listConsumers, openKv } from "@l2flow/bus";
import { BUCKETS, STREAMS, subjects } from "@l2flow/contracts";
import { loadConfig, startNormalizer } from "@l2flow/normalizer";
import { CONSUMER_INACTIVE_MS } from "../src/service.js";
import { captureLogs, provisionedNats, publishTrade, waitUntil } from "./support.js";

describe("normalizer lifecycle", () => {
  const env = provisionedNats();

  const addSymbols = async (names: readonly string[]) => {
    for (const [i, symbol] of names.entries())
      await publishTrade(env.bus, symbol, i + 1, 1_700_000_000_000 + i);
  };

  it("stops reading and leaves no consumer on MD_RAW when closed while new symbols arrive", async () => {
    for (let round = 0; round < 5; round++) {
      const { logger } = captureLogs();
      const normalizer = await startNormalizer(
        loadConfig({
          NATS_URL: env.nats.url,
          METRICS_PORT: "0",
          NORMALIZER_NAME: `n${round}`,
        }),
        { logger },
      );
      // Forty new symbols, each a new worker as its first message is read; close() lands meanwhile.
      await addSymbols(Array.from({ length: 40 }, (_, i) => `R${round}S${i}USDT`));
      await new Promise((r) => setTimeout(r, 25 + round * 10));
      await normalizer.close();
      // The ordered consumer is deleted on close: none is left on MD_RAW.
      await waitUntil(
        async () => (await env.bus.jsm.streams.info(STREAMS.raw)).state.consumer_count === 0,
        10_000,
        "no consumer left on MD_RAW after close",
      );
      expect((await env.bus.jsm.streams.info(STREAMS.raw)).state.consumer_count).toBe(0);
    }
  }, 120_000);

  it("deletes a consumer of MD_RAW left from its earlier reading (as a NATS restart leaves one), not other instances'", async () => {
    const { logger, lines } = captureLogs();
    const normalizer = await startNormalizer(
      loadConfig({ NATS_URL: env.nats.url, METRICS_PORT: "0", NORMALIZER_NAME: "orphans" }),
      { logger },
    );
    try {
      // The normalizer's ordered consumer is `<prefix>_<serial>`; a replacement gets the next serial.
      const names = async () => {
        const list: string[] = [];
        for await (const c of listConsumers(env.bus, STREAMS.raw)) list.push(c.name);
        return list.sort();
      };
      let own = "";
      await waitUntil(
        async () => {
          own = (await names()).find((n) => /_\d+$/.test(n)) ?? "";
          return own !== "";
        },
        10_000,
        "the normalizer's consumer",
      );
      const prefix = own.replace(/_\d+$/, "");
      // nats-server drops it 30 s after its reader is gone (nats.js would make that 5 min).
      const inactiveMs = async (name: string) =>
        (await env.bus.jsm.consumers.info(STREAMS.raw, name)).config.inactive_threshold! / 1e6;
      expect(await inactiveMs(own)).toBe(CONSUMER_INACTIVE_MS);
      const consumer = (name: string) => ({
        name,
        ack_policy: AckPolicy.None,
        deliver_policy: DeliverPolicy.New,
        inactive_threshold: 300_000_000_000,
      });
      await env.bus.jsm.consumers.add(STREAMS.raw, consumer(`${prefix}_99`)); // an orphan of this instance
      await env.bus.jsm.consumers.add(STREAMS.raw, consumer("otherinstance_1")); // someone else's
      // Its consumer gone, the normalizer reads on with a new one, which deletes the orphan once it
      // delivers.
      await env.bus.jsm.consumers.delete(STREAMS.raw, own);
      await addSymbols(["ORPHAN1USDT"]);
      // Waits for the whole end state: the ordered consumer may be between two of its own
      // replacements at any one listing (seen once in CI: only the other instance's was listed).
      let left: string[] = [];
      const mine = () => left.filter((n) => n.startsWith(`${prefix}_`));
      await waitUntil(
        async () => {
          left = await names();
          return !left.includes(`${prefix}_99`) && mine().length === 1 && mine()[0] !== own;
        },
        30_000,
        "the orphaned consumer deleted and the normalizer reading with a new one",
      );
      expect(left).toContain("otherinstance_1");
      expect(left).toHaveLength(2);
      // The replacement nats.js made with 5 min is updated to the same 30 s.
      await waitUntil(
        async () => (await inactiveMs(mine()[0]!).catch(() => 0)) === CONSUMER_INACTIVE_MS,
        5_000,
        "the replacement's inactive threshold updated",
      );
      // Logged once the delete's answer is back, which can be after the listing shows it gone.
      await waitUntil(
        () => lines.some((l) => l.includes("deleted a consumer of MD_RAW")),
        5_000,
        "the deletion logged",
      );
      await env.bus.jsm.consumers.delete(STREAMS.raw, "otherinstance_1");
    } finally {
      await normalizer.close();
    }
  }, 60_000);

  it("closes on the idle timeout a window that a checkpoint left open, with nothing after it to read", async () => {
    const symbol = "IDLE1USDT";
    const windowSubject = subjects.window("1s", symbol);
    const windows = async () =>
      Object.values(
        (await env.bus.jsm.streams.info(STREAMS.window, { subjects_filter: windowSubject })).state.subjects ??
          {},
      ).reduce((a, b) => a + b, 0);
    await addSymbols([symbol, symbol, symbol]); // three trades in one 1 s window, nothing later
    const common = {
      NATS_URL: env.nats.url,
      METRICS_PORT: "0",
      NORMALIZER_NAME: "idle",
    };
    const { logger } = captureLogs();
    // First run: checkpoints often, never idle-closes; it stops with the window still open.
    const first = await startNormalizer(
      loadConfig({ ...common, CHECKPOINT_INTERVAL_MS: "50", WINDOW_IDLE_TIMEOUT_MS: "600000" }),
      { logger },
    );
    const kv = await openKv(env.bus, BUCKETS.state);
    await waitUntil(async () => (await kv.get(`idle.binance.${symbol}`)) !== null, 10_000, "a checkpoint");
    await first.close();
    expect(await windows()).toBe(0);
    // Second run resumes from that checkpoint: nothing comes after it, and the window must still close.
    const second = await startNormalizer(
      loadConfig({ ...common, CHECKPOINT_INTERVAL_MS: "50", WINDOW_IDLE_TIMEOUT_MS: "300" }),
      { logger },
    );
    try {
      await waitUntil(
        async () => (await windows()) === 1,
        10_000,
        "the open window closed by the idle timeout",
      );
    } finally {
      await second.close();
    }
  }, 60_000);
});

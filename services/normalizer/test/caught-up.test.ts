// Whether the normalizer has read everything in MD_RAW ("caught up") decides whether quiet symbols'
// windows close on the idle timeout, and whether resync and refresh snapshots are asked for. Each
// message delivered says how many are left after it, but that count can be stale: messages it
// counted can leave MD_RAW before they are delivered (a purge, max_age), and nats-server 2.9 has been
// seen to count wrong. With nothing more delivered, the normalizer must find out from the server.
import { describe, expect, it } from "vitest";
import { listConsumers } from "@l2flow/bus";
import { STREAMS } from "@l2flow/contracts";
import { loadConfig, startNormalizer } from "@l2flow/normalizer";
import type { ProcessorHost } from "../src/port.js";
import { startProcessingThread } from "../src/thread-host.js";
import { captureLogs, metric, provisionedNats, publishTrade, waitUntil } from "./support.js";

describe("caught up", () => {
  const env = provisionedNats();

  it("finds out from the server when the messages the last one counted as pending are gone", async () => {
    const symbol = "GONE1USDT";
    const trades = 3_000; // more than the consumer's first pull (2,048)
    const t0 = 1_700_000_000_000;
    for (let i = 0; i < trades; i += 100)
      await Promise.all(
        Array.from({ length: 100 }, (_, k) => publishTrade(env.bus, symbol, i + k + 1, t0 + i + k)),
      );
    // The processing thread, held: reading stops after the first message (the host reports far too
    // many pending), while the consumer's first pull is already in the normalizer's hands.
    let release = () => undefined as void;
    const released = new Promise<void>((r) => (release = r));
    let open = false;
    const startThread: typeof startProcessingThread = async (...args) => {
      const real = await startProcessingThread(...args);
      const held: ProcessorHost = {
        open: (s, listener) => real.open(s, listener),
        get pending() {
          return open ? real.pending : Number.MAX_SAFE_INTEGER;
        },
        below: async (n) => {
          await released;
          return real.below(n);
        },
        idle: () => real.idle(),
        get failure() {
          return real.failure;
        },
        close: () => real.close(),
      };
      return held;
    };
    const normalizer = await startNormalizer(
      loadConfig({
        NATS_URL: env.nats.url,
        METRICS_PORT: "0",
        NORMALIZER_THREAD: "on",
        WINDOW_IDLE_TIMEOUT_MS: "500",
      }),
      { logger: captureLogs().logger, startThread },
    );
    try {
      // The first pull delivered; the rest of MD_RAW is then removed before it is delivered.
      let delivered = 0;
      await waitUntil(
        async () => {
          for await (const c of listConsumers(env.bus, STREAMS.raw)) delivered = c.delivered.stream_seq;
          return delivered >= 2_048;
        },
        10_000,
        "the consumer's first pull delivered",
      );
      expect(delivered).toBeLessThan(trades);
      await env.bus.jsm.streams.purge(STREAMS.raw);
      open = true;
      release();
      // Everything delivered is processed, and then the normalizer knows nothing is left: caught up,
      // nothing pending, and the symbol's open windows (1 s and 1 m) closed on the idle timeout.
      await waitUntil(
        async () => (await metric(normalizer.opsUrl, "l2flow_normalizer_caught_up")) === 1,
        10_000,
        "l2flow_normalizer_caught_up 1",
      );
      expect(await metric(normalizer.opsUrl, "l2flow_normalizer_raw_pending")).toBe(0);
      const idleClosed = () =>
        metric(normalizer.opsUrl, "l2flow_normalizer_windows_total", 'reason="WINDOW_CLOSE_REASON_IDLE"');
      await waitUntil(
        async () => (await idleClosed()) === 2,
        10_000,
        "the open 1 s and 1 m windows idle-closed",
      );
      expect(await metric(normalizer.opsUrl, "l2flow_normalizer_raw_messages_total", 'kind="trade"')).toBe(
        delivered,
      );
    } finally {
      await normalizer.close();
    }
  }, 60_000);
});

// A NATS restart under a running normalizer: the ordered consumer it read MD_RAW with is gone with
// the server. The normalizer must read on from its position as soon as it is reconnected, not when
// the client library notices missing heartbeats (~30-40 s later).
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { connectBus, provisionTopology, type Bus } from "@l2flow/bus";
import { STREAMS, subjects } from "@l2flow/contracts";
import { startTestNats, type TestNats } from "@l2flow/testkit";
import { loadConfig, startNormalizer, type NormalizerService } from "@l2flow/normalizer";
import { captureLogs, metric, publishTrade, waitUntil } from "./support.js";

const SYMBOL = "RESTARTUSDT";

describe("normalizer across a NATS restart", () => {
  let nats: TestNats;
  let bus: Bus;
  let normalizer: NormalizerService | undefined;
  beforeAll(async () => {
    nats = await startTestNats();
    bus = await connectBus({ servers: nats.url, name: "test-restart" });
    await provisionTopology(bus);
  });
  afterAll(async () => {
    await normalizer?.close();
    await bus?.close();
    await nats?.close();
  });

  const trades = async (ids: readonly number[]) => {
    for (const t of ids) await publishTrade(bus, SYMBOL, t, 1_700_000_000_000 + t);
  };
  const handled = () => metric(normalizer!.opsUrl, "l2flow_normalizer_raw_messages_total");
  const normalized = async () =>
    (await bus.jsm.streams.info(STREAMS.norm, { subjects_filter: subjects.trade(SYMBOL) })).state.messages;

  it("reads on from its position within seconds of the server coming back, losing nothing", async () => {
    const { logger } = captureLogs();
    normalizer = await startNormalizer(loadConfig({ NATS_URL: nats.url, METRICS_PORT: "0" }), { logger });
    await trades([1, 2, 3]);
    await waitUntil(async () => (await handled()) === 3, 10_000, "the first three trades handled");

    await nats.stop();
    await new Promise((r) => setTimeout(r, 500));
    await nats.restart();
    await waitUntil(() => bus.isConnected(), 15_000, "the test's client reconnected");
    const back = Date.now();
    await trades([4, 5, 6]);
    await waitUntil(async () => (await handled()) === 6, 10_000, "the trades published after the restart");
    expect(Date.now() - back).toBeLessThan(10_000);
    await waitUntil(async () => (await normalized()) === 6, 10_000, "six normalized trades");
    // The consumer it read from before the restart does not linger on the server.
    await waitUntil(
      async () => (await bus.jsm.streams.info(STREAMS.raw)).state.consumer_count === 1,
      10_000,
      "one consumer left on MD_RAW",
    );
  }, 60_000);
});

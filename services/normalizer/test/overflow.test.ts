// A book waiting for its snapshot buffers at most MAX_BUFFERED_DIFFS diffs; what overflows is counted
// and becomes a gap event (DESIGN, "Reliability"): one per wait, deterministic, so a replay or a
// restart publishes the same one.
import { describe, expect, it } from "vitest";
import { Gap, GapReason, STREAMS, subjects } from "@l2flow/contracts";
import type { RecordedEvent } from "@l2flow/recording";
import {
  metric,
  provisionedNats,
  publishRecording,
  readStream,
  startSymbolNormalizer,
  waitUntil,
} from "./support.js";

const SYMBOL = "OVERUSDT";
const T0 = 1_700_000_000_000;

/** Diff `i`: update ids i×10 … i×10+9, one bid level, event time T0 + i × 100 ms. */
function diff(i: number): RecordedEvent {
  const data = {
    e: "depthUpdate",
    E: T0 + i * 100,
    s: SYMBOL,
    U: i * 10,
    u: i * 10 + 9,
    b: [[`${100 + i}.00`, "1.0"]],
    a: [],
  };
  return {
    type: "frame",
    receiveTimeUs: (T0 + i * 100) * 1000,
    stream: `${SYMBOL.toLowerCase()}@depth@100ms`,
    symbol: SYMBOL,
    kind: "depth@100ms",
    data: JSON.stringify(data),
  };
}

describe("a full diff buffer while waiting for a snapshot", () => {
  const env = provisionedNats();

  it("is reported as one BUFFER_OVERFLOW gap event per wait, with the dropped ids", async () => {
    const snapshot: RecordedEvent = {
      type: "snapshot",
      receiveTimeUs: (T0 + 550) * 1000,
      symbol: SYMBOL,
      limit: 1000,
      body: JSON.stringify({ lastUpdateId: 45, bids: [["99.00", "1.0"]], asks: [["200.00", "1.0"]] }),
    };
    // Waiting (no snapshot yet): 1-3 fill the buffer of 3, 4 and 5 each drop the oldest. The snapshot
    // (45) bridges 4 (40-49). 6 continues; 8 skips 7 (a gap); waiting again, 11 drops 8.
    const events = [1, 2, 3, 4, 5].map(diff).concat(snapshot, ...[6, 8, 9, 10, 11].map(diff));
    await publishRecording(env.bus, { format: "l2flow", symbols: [SYMBOL], events });
    const { normalizer } = await startSymbolNormalizer(env.nats.url, "overflow", SYMBOL, {
      MAX_BUFFERED_DIFFS: "3",
      DIFF_REORDER_WINDOW: "0",
    });
    try {
      const drops = () => metric(normalizer.opsUrl, "l2flow_normalizer_buffered_diffs_dropped_total");
      await waitUntil(async () => (await drops()) >= 3, 10_000, "three diffs dropped");
      let gaps: Gap[] = [];
      await waitUntil(
        async () =>
          (gaps = (await readStream(env.bus, STREAMS.norm, subjects.gap(SYMBOL))).map((m) =>
            Gap.decode(m.data),
          )).length >= 3,
        10_000,
        "three gap events",
      );
      expect(
        gaps.map((g) => [
          GapReason[g.reason],
          Number(g.epoch),
          Number(g.lastUpdateId),
          Number(g.nextFirstUpdateId),
        ]),
      ).toEqual([
        ["GAP_REASON_BUFFER_OVERFLOW", 0, 9, 20],
        ["GAP_REASON_SEQUENCE_BREAK", 1, 69, 80],
        ["GAP_REASON_BUFFER_OVERFLOW", 1, 79, 90],
      ]);
      // The overflow spans the dropped diff's event time to the one that pushed it out.
      expect([Number(gaps[0]!.startTimeUs), Number(gaps[0]!.endTimeUs)]).toEqual([
        (T0 + 100) * 1000,
        (T0 + 400) * 1000,
      ]);
      expect(gaps[0]!.detail).toContain("U=10");
      expect(await drops()).toBe(3);
      expect(
        await metric(
          normalizer.opsUrl,
          "l2flow_normalizer_gaps_total",
          'reason="GAP_REASON_BUFFER_OVERFLOW"',
        ),
      ).toBe(2);
    } finally {
      await normalizer.close();
    }
  }, 30_000);
});

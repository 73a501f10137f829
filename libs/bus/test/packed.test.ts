import { describe, expect, it } from "vitest";
import { PackedQueue } from "../src/packed.js";
import type { QueuedMessage } from "../src/queue.js";
import { encodeHeaderBlock } from "../src/wire.js";

const enc = new TextEncoder();

/** What a message looks like after the round trip: headers encoded, payload bytes equal. */
function view(item: QueuedMessage) {
  const encoded = (item as { encode?: () => Uint8Array }).encode?.();
  return {
    subject: item.subject,
    data: [...item.data],
    msgId: item.msgId,
    block: encoded === undefined ? undefined : new TextDecoder().decode(encoded),
    settle: item.settle,
  };
}

describe("PackedQueue", () => {
  it("gives back each message as pushed, in order, its headers as the block a publish writes", () => {
    const q = new PackedQueue();
    const settle = () => undefined;
    const items: QueuedMessage[] = [
      { subject: "md.raw.binance.trade.BTCUSDT", data: enc.encode('{"t":1}'), msgId: "trade:BTCUSDT:1" },
      {
        subject: "md.raw.binance.depth.ÉTHUSDT",
        data: new Uint8Array(0),
        msgId: "dépth:1",
        headers: { "L2-Receive-Ns": "1700000000000000000", "L2-Connection": "a0.1" },
        settle,
      },
      { subject: "plain", data: enc.encode("no headers") },
      { subject: "plain.settled", data: enc.encode("x"), settle },
      { subject: "headers.only", data: enc.encode("y"), headers: { K: "v" } },
    ];
    let weights = 0;
    for (const item of items) weights += q.push(item);
    expect(q.size).toBe(items.length);
    expect(q.bytes).toBe(weights);
    const back: QueuedMessage[] = [];
    for (let r = q.shift(); r !== undefined; r = q.shift()) back.push(r.item);
    expect(q.size).toBe(0);
    expect(q.bytes).toBe(0);
    expect(back.map(view)).toEqual(
      items.map((item) => ({
        subject: item.subject,
        data: [...item.data],
        msgId: item.msgId,
        block:
          item.msgId === undefined && item.headers === undefined
            ? undefined
            : new TextDecoder().decode(encodeHeaderBlock(item)),
        settle: item.settle,
      })),
    );
    expect(back.map((item) => item.headers)).toEqual(items.map(() => undefined));
  });

  it("weighs a message as its bytes plus 13, across segments and records larger than one", () => {
    const q = new PackedQueue();
    const sizes = [300_000, 300_000, 300_000, 300_000, 3_000_000, 10, 900_000, 200_000];
    const pushed = sizes.map((n, i) => {
      const data = new Uint8Array(n).fill(i + 1);
      const item = { subject: `s.${i}`, data, msgId: `id-${i}` };
      const w = q.push(item);
      expect(w).toBe(13 + item.subject.length + item.msgId.length + encodeHeaderBlock(item).length + n);
      return item;
    });
    for (const [i, item] of pushed.entries()) {
      const r = q.shift()!;
      expect(r.item.subject).toBe(item.subject);
      expect(r.item.msgId).toBe(item.msgId);
      expect(r.item.data.length).toBe(sizes[i]);
      expect(r.item.data.every((b) => b === i + 1)).toBe(true);
      // Interleaved pushes after a shift keep the order.
      if (i === 2) q.push({ subject: "late", data: enc.encode("late") });
    }
    expect(q.shift()!.item.subject).toBe("late");
    expect(q.shift()).toBeUndefined();
  });

  it("refuses headers that would break the block before writing anything", () => {
    const q = new PackedQueue();
    q.push({ subject: "a", data: enc.encode("1") });
    expect(() => q.push({ subject: "b", data: enc.encode("2"), headers: { K: "bad\r\nvalue" } })).toThrow(
      RangeError,
    );
    expect(q.size).toBe(1);
    expect(new TextDecoder().decode(q.shift()!.item.data)).toBe("1");
    expect(q.shift()).toBeUndefined();
  });
});

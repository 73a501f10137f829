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

  it("weighs a message as its subject, header block and payload plus 11, across segments and records larger than one", () => {
    const q = new PackedQueue();
    const sizes = [300_000, 300_000, 300_000, 300_000, 3_000_000, 10, 900_000, 200_000];
    const pushed = sizes.map((n, i) => {
      const data = new Uint8Array(n).fill(i + 1);
      const item = { subject: `s.${i}`, data, msgId: `id-${i}` };
      const w = q.push(item);
      // The message id is in the header block only.
      expect(w).toBe(11 + item.subject.length + encodeHeaderBlock(item).length + n);
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

  /** `n` trade frames as ingest packs them through an outage: JSON, subject, id, headers. */
  function trades(from: number, n: number): QueuedMessage[] {
    return Array.from({ length: n }, (_, k) => {
      const t = from + k;
      const price = (61_000 + ((t * 7919) % 2_000) / 100).toFixed(8);
      return {
        subject: `md.raw.binance.trade.SYM${t % 400}`,
        data: enc.encode(
          `{"e":"trade","E":${1723100000000 + t},"s":"SYM${t % 400}","t":${t},"p":"${price}","q":"0.00${t % 997}0000","T":${1723100000000 + t},"m":${t % 2 === 0},"M":true}`,
        ),
        msgId: `binance:trade:SYM${t % 400}:${t}`,
        headers: {
          "L2-Receive-Ns": String(1723100000000000000n + BigInt(t) * 1000n),
          "L2-Connection": "c1.0",
        },
      };
    });
  }

  /** The indexes where `back` differs from `sent` (subject, id, payload or header block): none. */
  function expectSame(back: QueuedMessage[], sent: QueuedMessage[]) {
    expect(back.length).toBe(sent.length);
    const differ: number[] = [];
    for (let i = 0; i < sent.length; i++) {
      const a = back[i]!;
      const b = sent[i]!;
      const block = (a as unknown as { encode(): Uint8Array }).encode();
      if (
        a.subject !== b.subject ||
        a.msgId !== b.msgId ||
        !Buffer.from(a.data).equals(Buffer.from(b.data)) ||
        !Buffer.from(block).equals(Buffer.from(encodeHeaderBlock(b)))
      )
        differ.push(i);
    }
    expect(differ).toEqual([]);
  }

  it("keeps sealed segments deflated while they wait and gives every byte back", async () => {
    const q = new PackedQueue();
    const sent = trades(0, 30_000); // ~13 MB packed: a dozen segments
    for (const item of sent) q.push(item);
    await q.deflated();
    // Every segment but the last (being written) is deflated: a fraction of the bytes in memory
    // (~0.34 for these trades; the last segment, 1 MiB of ~8 MB, is whole).
    expect(q.heldBytes).toBeLessThan(q.bytes * 0.4);
    const back: QueuedMessage[] = [];
    for (let i = 0; i < 10_000; i++) back.push(q.shift()!.item);
    // More arrive while the first are read (as after an outage): the order holds.
    const more = trades(30_000, 10_000);
    for (const item of more) q.push(item);
    await q.deflated();
    for (let r = q.shift(); r !== undefined; r = q.shift()) back.push(r.item);
    expect(q.size).toBe(0);
    expect(q.bytes).toBe(0);
    expect(q.heldBytes).toBe(0);
    expectSame(back, [...sent, ...more]);
  });

  it("reads segments whose deflating has not finished, and keeps what does not compress as it is", async () => {
    const q = new PackedQueue();
    const sent = trades(0, 10_000);
    for (const item of sent) q.push(item);
    // Read at once: the segments are still being deflated.
    const back: QueuedMessage[] = [];
    for (let r = q.shift(); r !== undefined; r = q.shift()) back.push(r.item);
    expectSame(back, sent);
    await q.deflated();
    expect(q.heldBytes).toBe(0);

    // Random payloads do not compress: their segments stay as written.
    const noise: QueuedMessage[] = Array.from({ length: 40 }, (_, i) => ({
      subject: `noise.${i}`,
      data: Uint8Array.from({ length: 100_000 }, () => Math.floor(Math.random() * 256)),
      msgId: `n${i}`,
    }));
    for (const item of noise) q.push(item);
    await q.deflated();
    expect(q.heldBytes).toBeGreaterThanOrEqual(q.bytes);
    const noiseBack: QueuedMessage[] = [];
    for (let r = q.shift(); r !== undefined; r = q.shift()) noiseBack.push(r.item);
    expectSame(noiseBack, noise);
  });
});

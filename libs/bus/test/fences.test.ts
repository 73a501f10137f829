import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  AckPipeline,
  BusError,
  connectBus,
  PublishQueue,
  type Bus,
  type QueuedMessage,
  type FenceOutcome,
  type StoredAck,
} from "@l2flow/bus";
import { startTestNats, waitUntil, type TestNats } from "@l2flow/testkit";
import { storedMessages } from "./support.js";

const enc = new TextEncoder();

/** Every message of a stream: its sequence and message id. */
async function storedIds(bus: Bus, stream: string): Promise<Map<number, string>> {
  return new Map((await storedMessages(bus, stream)).map((m) => [m.seq, m.msgId]));
}

interface Outcome {
  readonly stored: Map<string, boolean>; // message id -> duplicate
  readonly dropped: Map<string, BusError | undefined>;
  /** Messages by what their fence's answer did (`onFenced`). */
  readonly fenced: Record<FenceOutcome, number>;
}

/** Counts `onFenced` by outcome. */
function fenceCounts(): {
  fenced: Record<FenceOutcome, number>;
  onFenced: (o: FenceOutcome, n: number) => void;
} {
  const fenced = { proven: 0, unconfirmed: 0 };
  return { fenced, onFenced: (o, n) => (fenced[o] += n) };
}

/** A fenced queue, recording what it reports per message id. */
function fencedQueue(bus: Bus, maxRefusals = 20): { queue: PublishQueue; outcome: Outcome } {
  const { fenced, onFenced } = fenceCounts();
  const outcome: Outcome = { stored: new Map(), dropped: new Map(), fenced };
  const queue = new PublishQueue(bus, {
    maxInFlight: 4_096,
    maxBytes: Number.POSITIVE_INFINITY,
    maxRefusals,
    fences: true,
    onFenced,
    onStored: (item, duplicate) => {
      expect(outcome.stored.has(item.msgId!)).toBe(false); // reported once
      outcome.stored.set(item.msgId!, duplicate);
    },
    onDropped: (item, _reason, err) => outcome.dropped.set(item.msgId!, err),
  });
  return { queue, outcome };
}

function message(subject: string, msgId: string, bytes = 40): QueuedMessage {
  return { subject, msgId, data: enc.encode(`{"id":"${msgId}"}`.padEnd(bytes, " ")) };
}

/** Pushes in bursts of `burst` (the queue sends a burst on the next turn, 64 at once beyond that). */
async function pushAll(queue: PublishQueue, items: readonly QueuedMessage[], burst = 50): Promise<void> {
  for (let i = 0; i < items.length; i += burst) {
    for (const m of items.slice(i, i + burst)) queue.push(m);
    await new Promise((r) => setImmediate(r));
  }
}

/** What a message sent through the pipeline was told: its ack, or why it is not stored. */
type Told = StoredAck | BusError | undefined;

/**
 * Sends `n` messages straight through the pipeline in batches of `batch`, each fenced by its last
 * message (as PublishQueue sends them), and waits until each has been answered.
 */
async function sendBatches(
  pipe: AckPipeline,
  n: number,
  batch: number,
  message: (k: number) => { subject: string; data: Uint8Array; msgId: string },
): Promise<Told[]> {
  const told: Told[] = new Array<Told>(n);
  let answered = 0;
  for (let i = 0; i < n;) {
    while (pipe.room < batch) await new Promise((r) => setTimeout(r, 1));
    for (const end = Math.min(i + batch, n); i < end; i++) {
      const k = i;
      const m = message(k);
      const done = (err: BusError | undefined, ack: StoredAck | undefined) => {
        told[k] = err ?? ack;
        answered++;
      };
      pipe.send(m.subject, m.data, { msgId: m.msgId }, done, k === end - 1);
    }
    await new Promise((r) => setImmediate(r));
  }
  await waitUntil(() => answered === n, 20_000, "every message answered");
  return told;
}

describe("fenced publishing against a real nats-server", () => {
  let nats: TestNats;
  let bus: Bus;

  beforeAll(async () => {
    nats = await startTestNats();
    bus = await connectBus({ servers: nats.url, name: "fences-test" });
  });
  afterAll(async () => {
    await bus?.close();
    await nats?.close();
  });

  it("confirms whole batches by one ack each: every message stored once, at the sequence it was told", async () => {
    await bus.jsm.streams.add({ name: "F1", subjects: ["f1.>"], duplicate_window: 60_000_000_000 });
    const { fenced, onFenced } = fenceCounts();
    const pipe = new AckPipeline(bus, { maxInFlight: 4_096, fences: true, onFenced });
    const n = 5_000;
    const told = await sendBatches(pipe, n, 50, (k) => ({
      subject: `f1.s${k % 13}`,
      data: enc.encode(`{"k":${k}}`),
      msgId: `f1:${k}`,
    }));
    const stored = await storedIds(bus, "F1");
    expect(stored.size).toBe(n);
    for (let k = 0; k < n; k++) {
      const t = told[k];
      expect(t).not.toBeInstanceOf(BusError);
      const ack = t as StoredAck;
      expect(ack.duplicate).toBe(false);
      expect(stored.get(ack.seq)).toBe(`f1:${k}`); // the sequence it was told holds it
    }
    // Almost all of them without an answer of their own (the first message has one, then one a batch).
    expect(fenced.proven).toBeGreaterThanOrEqual(n - n / 50 - 50);
    expect(fenced.unconfirmed).toBe(0);
    pipe.close();
  });

  it("a message that cannot be written (over max_payload) fails alone; the rest of its batch is told its true sequences", async () => {
    await bus.jsm.streams.add({ name: "F5", subjects: ["f5.>"], duplicate_window: 60_000_000_000 });
    const pipe = new AckPipeline(bus, { maxInFlight: 4_096, fences: true });
    const n = 300;
    const big = 150; // in the middle of the second batch
    const told = await sendBatches(pipe, n, 100, (k) => ({
      subject: "f5.x",
      data: k === big ? new Uint8Array(2 * 1024 * 1024) : enc.encode(`{"k":${k}}`),
      msgId: `f5:${k}`,
    }));
    expect(told[big]).toBeInstanceOf(BusError);
    expect((told[big] as BusError).retryable).toBe(false);
    const stored = await storedIds(bus, "F5");
    expect(stored.size).toBe(n - 1);
    // The batch with the failed message proved nothing (its covered messages came back
    // PUBLISH_UNCONFIRMED, to be sent again by the caller); every other message was told the
    // sequence that holds it.
    for (let k = 0; k < n; k++) {
      if (k === big) continue;
      const t = told[k];
      if (t instanceof BusError) expect(t.code).toBe("PUBLISH_UNCONFIRMED");
      else expect(stored.get(t!.seq)).toBe(`f5:${k}`);
    }
    expect(
      told.filter((t) => t instanceof BusError && t.code === "PUBLISH_UNCONFIRMED").length,
    ).toBeGreaterThan(0);
    pipe.close();
  });

  it("a duplicate in a batch proves nothing: the batch goes again, each with its own ack, and every duplicate is reported", async () => {
    await bus.jsm.streams.add({ name: "F2", subjects: ["f2.>"], duplicate_window: 60_000_000_000 });
    const items = Array.from({ length: 3_000 }, (_, i) => message("f2.x", `f2:${i}`));
    // Every seventh already stored by someone else (another replica, an earlier run).
    const before = items.filter((_, i) => i % 7 === 3);
    for (const m of before) await bus.js.publish(m.subject, m.data, { msgID: m.msgId! });
    const { queue, outcome } = fencedQueue(bus);
    await pushAll(queue, items);
    await waitUntil(() => outcome.stored.size === items.length, 20_000, "every message answered");
    const duplicates = new Set([...outcome.stored].filter(([, d]) => d).map(([id]) => id));
    for (const m of before) expect(duplicates.has(m.msgId!)).toBe(true);
    // The others a resend found already stored (the first, unconfirmed copy was): at most one each.
    const { unconfirmed } = outcome.fenced;
    expect(unconfirmed).toBeGreaterThan(0);
    expect(duplicates.size).toBeLessThanOrEqual(before.length + unconfirmed);
    const stored = await storedIds(bus, "F2");
    expect(stored.size).toBe(items.length);
    expect(new Set(stored.values()).size).toBe(items.length);
    await queue.close();
  });

  it("a message the stream refuses without a word is never taken as stored by its batch's fence", async () => {
    // Over the stream's max_msg_size (but under the server's max_payload): refused, and with no reply
    // subject nobody hears of it; only the sequences show it is missing.
    await bus.jsm.streams.add({
      name: "F3",
      subjects: ["f3.>"],
      max_msg_size: 256,
      duplicate_window: 60_000_000_000,
    });
    const items = Array.from({ length: 400 }, (_, i) => message("f3.x", `f3:${i}`, i === 123 ? 1_000 : 40));
    const { queue, outcome } = fencedQueue(bus, 1);
    await pushAll(queue, items, 100);
    await waitUntil(
      () => outcome.stored.size + outcome.dropped.size === items.length,
      20_000,
      "every message answered",
    );
    expect([...outcome.dropped.keys()]).toEqual(["f3:123"]);
    expect(outcome.dropped.get("f3:123")?.message).toMatch(/maximum|size/i);
    expect(outcome.stored.has("f3:123")).toBe(false);
    expect(outcome.stored.size).toBe(items.length - 1);
    expect(outcome.fenced.unconfirmed).toBeGreaterThan(0);
    const stored = await storedIds(bus, "F3");
    expect(new Set(stored.values())).toEqual(new Set(items.filter((_, i) => i !== 123).map((m) => m.msgId)));
    await queue.close();
  });

  it("another publisher writing between a batch's messages proves nothing, and nothing is lost or doubled", async () => {
    await bus.jsm.streams.add({ name: "F4", subjects: ["f4.>"], duplicate_window: 60_000_000_000 });
    const other = await connectBus({ servers: nats.url, name: "fences-other" });
    const items = Array.from({ length: 4_000 }, (_, i) => message("f4.x", `f4:${i}`));
    const { queue, outcome } = fencedQueue(bus);
    // Before each burst of ours, a few of the other publisher's: they reach the stream between our
    // previous batch's fence and this batch's (ours go out on the next turn of the event loop).
    let foreign = 0;
    for (let i = 0; i < items.length; i += 40) {
      for (let k = 0; k < 3; k++) other.nc.publish("f4.y", enc.encode("o"));
      foreign += 3;
      for (const m of items.slice(i, i + 40)) queue.push(m);
      await new Promise((r) => setTimeout(r, 1));
    }
    await waitUntil(() => outcome.stored.size === items.length, 20_000, "every message answered");
    await other.nc.flush();
    const { unconfirmed } = outcome.fenced;
    expect(unconfirmed).toBeGreaterThan(0);
    // Only a resend can find one of ours already stored.
    expect([...outcome.stored.values()].filter((d) => d).length).toBeLessThanOrEqual(unconfirmed);
    const ours = [...(await storedIds(bus, "F4")).values()].filter((id) => id.startsWith("f4:"));
    expect(ours.length).toBe(items.length);
    expect(new Set(ours).size).toBe(items.length);
    expect(foreign).toBeGreaterThan(0);
    await other.close();
    await queue.close();
  });
});

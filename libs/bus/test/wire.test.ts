import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { Msg } from "@nats-io/transport-node";
import type { BusError } from "@l2flow/bus";
import {
  AckPipeline,
  connectBus,
  EncodedHeaders,
  headers,
  type Bus,
  type HeaderFields,
  type StoredAck,
} from "@l2flow/bus";
import { startTestNats, type TestNats } from "@l2flow/testkit";
import { rawProtocol, WireWriter } from "../src/wire.js";
import { storedMessages } from "./support.js";

const enc = new TextEncoder();
const NO_REPLY = new Uint8Array(0);
const turn = () => new Promise((r) => setImmediate(r));

interface Sent {
  readonly subject: string;
  readonly data: Uint8Array | string;
  readonly headers: () => Parameters<AckPipeline["send"]>[2];
}

/** What a subscriber sees of a message: subject, headers in order, payload. */
function seen(m: Msg) {
  const h = m.headers;
  return {
    subject: m.subject,
    headers: h === undefined ? undefined : [...h.keys()].map((k) => [k, h.get(k)]),
    data: Buffer.from(m.data).toString("hex"),
  };
}

function sendOne(pipe: AckPipeline, s: Sent): Promise<{ err?: BusError; ack?: StoredAck }> {
  return new Promise((resolve) => {
    pipe.send(s.subject, s.data, s.headers(), (err, ack) =>
      resolve({ ...(err ? { err } : {}), ...(ack ? { ack } : {}) }),
    );
  });
}

describe("AckPipeline's protocol writer against a real nats-server", () => {
  let nats: TestNats;
  let bus: Bus;

  beforeAll(async () => {
    nats = await startTestNats();
    bus = await connectBus({ servers: nats.url, name: "wire-test" });
    await bus.jsm.streams.add({ name: "W", subjects: ["w.>"], duplicate_window: 60_000_000_000 });
  });
  afterAll(async () => {
    await bus?.close();
    await nats?.close();
  });

  it("is what the pipeline uses on this nats.js", () => {
    // Without it the pipeline still works (through nats.js's publish), but slower: a nats.js upgrade
    // that removes the calls should be noticed here, not in a benchmark.
    expect(rawProtocol(bus.nc)).toBeDefined();
  });

  it("puts on the wire what nats.js's publish puts there, for every kind of headers", async () => {
    const big = new Uint8Array(300 * 1024).map((_, i) => i % 251);
    const cases: Sent[] = [
      { subject: "w.plain", data: enc.encode('{"a":1}'), headers: () => undefined },
      {
        subject: "w.fields",
        data: enc.encode("x"),
        headers: (): HeaderFields => ({ msgId: "trade:BTCUSDT:1", headers: { "L2-Receive-Ns": "17231612" } }),
      },
      { subject: "w.id-only", data: enc.encode("y"), headers: (): HeaderFields => ({ msgId: "id:2" }) },
      {
        subject: "w.unicode",
        data: enc.encode("z"),
        headers: (): HeaderFields => ({ msgId: "window:1s:ÉTHUSDT:1", headers: { "L2-Note": "prix – 2 €" } }),
      },
      { subject: "w.empty", data: new Uint8Array(0), headers: (): HeaderFields => ({ headers: {} }) },
      { subject: "w.encoded", data: enc.encode("e"), headers: () => new EncodedHeaders({ K: "v" }, "enc:1") },
      {
        subject: "w.natsjs",
        data: enc.encode("n"),
        headers: () => {
          const h = headers();
          h.set("Nats-Msg-Id", "nj:1");
          h.append("Multi", "a");
          h.append("Multi", "b");
          return h;
        },
      },
      { subject: "w.bigger-than-a-chunk", data: big, headers: (): HeaderFields => ({ msgId: "big:1" }) },
      { subject: "w.sübject", data: enc.encode("u"), headers: () => undefined },
      { subject: "w.string", data: '{"state":"prix – 2 €"}', headers: () => undefined },
    ];
    const received: Msg[] = [];
    const sub = bus.nc.subscribe("w.>", { callback: (_e, m) => void received.push(m) });
    await bus.nc.flush();
    const wire = new AckPipeline(bus);
    const natsjs = new AckPipeline(bus, { natsPublish: true });
    for (const pipe of [wire, natsjs]) {
      const results = await Promise.all(cases.map((c) => sendOne(pipe, c)));
      expect(results.map((r) => r.err)).toEqual(cases.map(() => undefined));
      expect(results.every((r) => r.ack?.stream === "W")).toBe(true);
    }
    await bus.nc.flush();
    expect(received).toHaveLength(2 * cases.length);
    const byWire = received.slice(0, cases.length).map(seen);
    const byNatsJs = received.slice(cases.length).map(seen);
    expect(byWire).toEqual(byNatsJs);
    expect(byWire.map((m) => m.subject)).toEqual(cases.map((c) => c.subject));
    expect(byWire[7]!.data).toBe(Buffer.from(big).toString("hex"));
    sub.unsubscribe();
    wire.close();
    natsjs.close();
  });

  it("keeps every byte of a long burst that fills chunk after chunk", async () => {
    const pipe = new AckPipeline(bus, { maxInFlight: 4_096 });
    const n = 2_000;
    const payload = (i: number) =>
      enc.encode(`${i}:`.padEnd(700 + (i % 300), String.fromCharCode(97 + (i % 26))));
    const acks = await Promise.all(
      Array.from({ length: n }, (_, i) =>
        sendOne(pipe, {
          subject: `w.burst.${i % 5}`,
          data: payload(i),
          headers: () => ({ msgId: `burst:${i}` }),
        }),
      ),
    );
    expect(acks.filter((a) => a.err !== undefined)).toEqual([]);
    for (const i of [0, 1, 373, 1024, 1999]) {
      const m = await bus.jsm.streams.getMessage("W", { seq: acks[i]!.ack!.seq });
      expect(Buffer.from(m!.data).toString()).toBe(Buffer.from(payload(i)).toString());
      expect(m!.header.get("Nats-Msg-Id")).toBe(`burst:${i}`);
    }
    pipe.close();
  });

  /** Every message stored on `w.<prefix>.>` (at least `count` of them), in order, as text. */
  async function storedTexts(prefix: string, count: number): Promise<string[]> {
    const stored = await storedMessages(bus, "W", { filter: `w.${prefix}.>`, atLeast: count });
    return stored.map((m) => Buffer.from(m.data).toString());
  }

  it("writes batch after batch into the same chunk while the socket keeps up", async () => {
    const writer = new WireWriter(rawProtocol(bus.nc)!);
    const text = (i: number) => `${i}:`.padEnd(900 + (i % 200), String.fromCharCode(97 + (i % 26)));
    // 2000 messages of ~1 KB, 50 a turn: eight 256 KiB chunks' worth.
    for (let i = 0; i < 2_000; i++) {
      writer.publish(`w.kept.${i % 3}`, NO_REPLY, -1, undefined, enc.encode(text(i)));
      if (i % 50 === 49) await new Promise((r) => setTimeout(r, 2));
    }
    // One, or two should a write have been left pending at the start of a batch.
    expect(writer.chunks).toBeLessThanOrEqual(2);
    const stored = await storedTexts("kept", 2_000);
    expect(stored).toEqual(Array.from({ length: 2_000 }, (_, i) => text(i)));
  });

  it("never starts a chunk over while the socket still holds part of it", async () => {
    const writer = new WireWriter(rawProtocol(bus.nc)!);
    const text = (i: number) => `${i}:`.padEnd(100_000, String.fromCharCode(97 + (i % 26)));
    const socket = (rawProtocol(bus.nc) as unknown as { transport: { socket: { writableLength: number } } })
      .transport.socket;
    // 24 MB handed over in one turn: more than the socket takes at once, so most of it waits in the
    // socket's queue (nothing drains it before this turn ends), and each batch after it is written
    // while that is so.
    for (let i = 0; i < 240; i++) writer.publish(`w.queued.${i % 3}`, NO_REPLY, -1, undefined, text(i));
    writer.flush();
    expect(socket.writableLength).toBeGreaterThan(0);
    for (let i = 240; i < 300; i++) {
      writer.publish(`w.queued.${i % 3}`, NO_REPLY, -1, undefined, text(i));
      writer.flush();
      if (i % 20 === 19) await turn();
    }
    const stored = await storedTexts("queued", 300);
    expect(stored.length).toBe(300);
    // Compared by index first, so a failure names the message rather than printing 30 MB.
    const wrong = stored.map((t, i) => (t === text(i) ? -1 : i)).filter((i) => i >= 0);
    expect(wrong).toEqual([]);
  });

  it("refuses what the server would refuse without retrying it, and carries on", async () => {
    const pipe = new AckPipeline(bus);
    const tooBig = await sendOne(pipe, {
      subject: "w.huge",
      data: new Uint8Array(2 * 1024 * 1024),
      headers: () => ({ msgId: "huge:1" }),
    });
    expect(tooBig.err?.code).toBe("PUBLISH_FAILED");
    expect(tooBig.err?.retryable).toBe(false);
    expect(tooBig.err?.message).toMatch(/max_payload/);
    const badSubject = await sendOne(pipe, {
      subject: "w.has space",
      data: enc.encode("x"),
      headers: () => undefined,
    });
    expect(badSubject.err?.retryable).toBe(false);
    expect(badSubject.err?.message).toMatch(/invalid subject/);
    const badHeader = await sendOne(pipe, {
      subject: "w.ok",
      data: enc.encode("x"),
      headers: () => ({ headers: { K: "line\r\nInjected: 1" } }),
    });
    expect(badHeader.err?.retryable).toBe(false);
    expect(pipe.inFlight).toBe(0);
    const fine = await sendOne(pipe, {
      subject: "w.after",
      data: enc.encode("ok"),
      headers: () => ({ msgId: "after:1" }),
    });
    expect(fine.err).toBeUndefined();
    expect(fine.ack?.duplicate).toBe(false);
    expect(bus.isConnected()).toBe(true);
    pipe.close();
  });
});

import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { AckPipeline, BusError, connectBus, headers, type Bus, type StoredAck } from "@l2flow/bus";
import { startTestNats, type TestNats } from "@l2flow/testkit";

const enc = new TextEncoder();

interface Result {
  readonly err: BusError | undefined;
  readonly ack: StoredAck | undefined;
}

/** Sends n messages `<prefix>.<i>` with ids `<idPrefix>:<i>` as fast as the pipeline allows. */
async function sendAll(
  pipe: AckPipeline,
  subject: (i: number) => string,
  ids: (i: number) => string,
  n: number,
) {
  const results: Result[] = new Array<Result>(n);
  let done = 0;
  let next = 0;
  await new Promise<void>((resolve) => {
    const pump = () => {
      while (next < n && pipe.ready) {
        const i = next++;
        const h = headers();
        h.set("Nats-Msg-Id", ids(i));
        pipe.send(subject(i), enc.encode(`{"i":${i}}`), h, (err, ack) => {
          results[i] = { err, ack };
          if (++done === n) resolve();
        });
      }
      if (next < n) setTimeout(pump, 1);
    };
    pump();
  });
  return results;
}

describe("AckPipeline against a real nats-server", () => {
  let nats: TestNats;
  let bus: Bus;

  beforeAll(async () => {
    nats = await startTestNats();
    bus = await connectBus({ servers: nats.url, name: "pipeline-test", reconnectTimeWaitMs: 100 });
    await bus.jsm.streams.add({ name: "P", subjects: ["p.>"], duplicate_window: 60_000_000_000 });
  });
  afterAll(async () => {
    await bus?.close();
    await nats?.close();
  });

  it("acks every message with its own sequence, in send order, and reports duplicates", async () => {
    const pipe = new AckPipeline(bus, { maxInFlight: 500 });
    const n = 5_000;
    const first = await sendAll(
      pipe,
      (i) => `p.a.${i % 7}`,
      (i) => `a:${i}`,
      n,
    );
    expect(first.every((r) => r.err === undefined && r.ack?.duplicate === false)).toBe(true);
    expect(first.every((r) => r.ack?.stream === "P")).toBe(true);
    const seqs = first.map((r) => r.ack!.seq);
    expect(new Set(seqs).size).toBe(n);
    expect(seqs).toEqual([...seqs].sort((a, b) => a - b)); // one connection keeps the order
    // Every second id again: those are duplicates, the others new.
    const again = await sendAll(
      pipe,
      (i) => `p.a.${i % 7}`,
      (i) => (i % 2 === 0 ? `a:${i}` : `b:${i}`),
      1_000,
    );
    expect(again.filter((r) => r.ack?.duplicate === true)).toHaveLength(500);
    const info = await bus.jsm.streams.info("P");
    expect(info.state.messages).toBe(n + 500);
    pipe.close();
  });

  it("never has more than maxInFlight unanswered", async () => {
    const pipe = new AckPipeline(bus, { maxInFlight: 64 });
    let accepted = 0;
    while (pipe.ready) {
      pipe.send("p.cap", enc.encode("x"), undefined, () => undefined);
      accepted++;
    }
    expect(accepted).toBe(64);
    expect(pipe.inFlight).toBe(64);
    await pipe.idle();
    expect(pipe.inFlight).toBe(0);
    expect(pipe.ready).toBe(true);
    pipe.close();
  });

  it("fails a subject no stream stores with a retryable error, not silence", async () => {
    const pipe = new AckPipeline(bus);
    const [r] = await sendAll(
      pipe,
      () => "nowhere.x",
      () => "n:1",
      1,
    );
    expect(r!.err).toBeInstanceOf(BusError);
    expect(r!.err!.retryable).toBe(true);
    expect(r!.err!.message).toMatch(/no stream stores/);
    expect(r!.err!.refused).toBe(false);
    pipe.close();
  });

  it("fails what is in flight when closed, and refuses new sends", async () => {
    const pipe = new AckPipeline(bus, { ackTimeoutMs: 60_000 });
    // A subject with no stream and no responder answer would still be answered (503); use a plain
    // subscription that never replies to keep messages in flight.
    const sub = bus.nc.subscribe("hold.>", { callback: () => undefined });
    const errors: BusError[] = [];
    for (let i = 0; i < 10; i++) pipe.send("hold.x", enc.encode("x"), undefined, (err) => errors.push(err!));
    await bus.nc.flush();
    expect(pipe.inFlight).toBe(10);
    pipe.close();
    expect(errors.map((e) => e.code)).toEqual(new Array(10).fill("CLOSED"));
    pipe.send("p.x", enc.encode("x"), undefined, (err) => errors.push(err!));
    expect(errors[10]!.code).toBe("CLOSED");
    sub.unsubscribe();
  });

  it("times out what gets no answer", async () => {
    const pipe = new AckPipeline(bus, { ackTimeoutMs: 200 });
    const sub = bus.nc.subscribe("hold2.>", { callback: () => undefined });
    const [r] = await sendAll(
      pipe,
      () => "hold2.x",
      () => "h:1",
      1,
    );
    expect(r!.err!.code).toBe("PUBLISH_TIMEOUT");
    expect(r!.err!.retryable).toBe(true);
    sub.unsubscribe();
    pipe.close();
  });

  it("fails everything in flight, in send order, when NATS goes away and comes back", async () => {
    const pipe = new AckPipeline(bus, { ackTimeoutMs: 60_000 });
    const sub = bus.nc.subscribe("hold3.>", { callback: () => undefined });
    await bus.nc.flush();
    const order: number[] = [];
    for (let i = 0; i < 20; i++)
      pipe.send("hold3.x", enc.encode("x"), undefined, (err) => {
        expect(err!.retryable).toBe(true);
        order.push(i);
      });
    await nats.stop();
    await nats.restart();
    const deadline = Date.now() + 20_000;
    while (order.length < 20 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
    expect(order).toEqual([...Array(20).keys()]);
    sub.unsubscribe();
    pipe.close();
  });
});

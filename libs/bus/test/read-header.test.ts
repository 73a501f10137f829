import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { Msg, MsgHdrs } from "@nats-io/transport-node";
import { connectBus, readHeader, type Bus, type JsMsg } from "@l2flow/bus";
import { startTestNats, type TestNats } from "@l2flow/testkit";

const enc = new TextEncoder();

/** A header block exactly as given: nats.js puts whatever `encode()` returns on the wire. */
function block(text: string): MsgHdrs {
  const bytes = enc.encode(text);
  return { encode: () => bytes } as unknown as MsgHdrs;
}

/** What nats.js's own decoding gives, with "" (its answer for a missing key) as undefined. */
function natsJs(msg: Msg | JsMsg, key: string): string | undefined {
  const v = msg.headers?.get(key);
  return v === undefined || v === "" ? undefined : v;
}

const KEYS = ["L2-Receive-Ns", "Nats-Msg-Id", "l2-receive-ns", "L2-Receive", "K", "Empty", "Note", "Absent"];

const BLOCKS = [
  "NATS/1.0\r\nNats-Msg-Id: trade:BTCUSDT:1\r\nL2-Receive-Ns: 1723161297000123456\r\n\r\n",
  // the status line with a code, spaces and tabs around values, a key that starts like another
  "NATS/1.0 100 Idle Heartbeat\r\nL2-Receive-Ns-Extra: 7\r\nL2-Receive-Ns:\t  42 \r\n\r\n",
  // a repeated key (the first value counts), keys differing only in case, an empty value
  "NATS/1.0\r\nK: first\r\nk: lower\r\nK: second\r\nEmpty:\r\nL2-Receive: x:y: z\r\n\r\n",
  // non-ASCII values, one wrapped in non-breaking spaces that String.trim removes
  "NATS/1.0\r\nNote: prix – 2 €\r\nL2-Receive-Ns: \u00a0é\u00a0\r\n\r\n",
  // no headers but the status line
  "NATS/1.0 503\r\n\r\n",
];

describe("readHeader", () => {
  let nats: TestNats;
  let bus: Bus;
  beforeAll(async () => {
    nats = await startTestNats();
    bus = await connectBus({ servers: nats.url, name: "read-header-test" });
  });
  afterAll(async () => {
    await bus?.close();
    await nats?.close();
  });

  it("gives what nats.js's decoding gives for every key of every block, core and JetStream messages", async () => {
    const got: Msg[] = [];
    const sub = bus.nc.subscribe("rh.core", { callback: (_e, m) => void got.push(m) });
    await bus.jsm.streams.add({ name: "RH", subjects: ["rh.js"] });
    for (const b of BLOCKS) {
      bus.nc.publish("rh.core", "payload", { headers: block(b) });
      bus.nc.publish("rh.js", "payload", { headers: block(b) });
    }
    bus.nc.publish("rh.core", "no headers at all");
    bus.nc.publish("rh.js", "no headers at all");
    await bus.nc.flush();
    const consumer = await bus.js.consumers.get("RH");
    const stored: JsMsg[] = [];
    for (let i = 0; i <= BLOCKS.length; i++) stored.push((await consumer.next({ expires: 2_000 }))!);
    sub.unsubscribe();
    expect(got).toHaveLength(BLOCKS.length + 1);

    const checked: string[] = [];
    for (const [i, msg] of [...got, ...stored].entries())
      for (const key of KEYS) {
        expect(readHeader(msg, key), `${key} of message ${i}`).toBe(natsJs(msg, key));
        checked.push(readHeader(msg, key) ?? "-");
      }
    // The cases the blocks were written for, so agreeing with nats.js cannot pass by both failing.
    expect(readHeader(got[0]!, "L2-Receive-Ns")).toBe("1723161297000123456");
    expect(readHeader(got[1]!, "L2-Receive-Ns")).toBe("42");
    expect(readHeader(got[2]!, "K")).toBe("first");
    expect(readHeader(got[2]!, "L2-Receive")).toBe("x:y: z");
    expect(readHeader(got[3]!, "Note")).toBe("prix – 2 €");
    expect(readHeader(got[3]!, "L2-Receive-Ns")).toBe("é");
    expect(readHeader(stored[0]!, "Nats-Msg-Id")).toBe("trade:BTCUSDT:1");
    expect(checked.filter((v) => v !== "-").length).toBeGreaterThan(10);
  });

  it("asks nats.js when a message does not have the internals it reads", async () => {
    const got = new Promise<Msg>((resolve) => {
      const sub = bus.nc.subscribe("rh.fallback", {
        callback: (_e, m) => {
          sub.unsubscribe();
          resolve(m);
        },
      });
    });
    bus.nc.publish("rh.fallback", "x", { headers: block(BLOCKS[0]!) });
    const msg = await got;
    const plain = { headers: msg.headers } as unknown as Msg;
    expect(readHeader(plain, "L2-Receive-Ns")).toBe("1723161297000123456");
    expect(readHeader(plain, "Absent")).toBeUndefined();
  });
});

import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";
import { connectBus, headers, type Bus } from "@l2flow/bus";
import { startTestNats, type TestNats } from "@l2flow/testkit";
import { readPubAck } from "../src/pub-ack.js";

const enc = new TextEncoder();

/** What JSON.parse makes of an ack: the reference the fast reader must match. */
function reference(text: string) {
  const o = JSON.parse(text) as { stream: string; seq: number; duplicate?: boolean };
  return { stream: o.stream, seq: o.seq, duplicate: o.duplicate === true };
}

describe("readPubAck", () => {
  let nats: TestNats;
  let bus: Bus;
  beforeAll(async () => {
    nats = await startTestNats();
    bus = await connectBus({ servers: nats.url, name: "pub-ack-test" });
    await bus.jsm.streams.add({ name: "ACKS", subjects: ["acks.>"] });
  });
  afterAll(async () => {
    await bus?.close();
    await nats?.close();
  });

  it("reads the server's own acks (stored and duplicate) from their bytes, without JSON.parse", async () => {
    const raw: Uint8Array[] = [];
    for (const id of ["a", "b", "a", "c", "b"]) {
      const h = headers();
      h.set("Nats-Msg-Id", id);
      raw.push((await bus.nc.request("acks.x", enc.encode("{}"), { headers: h, timeout: 5_000 })).data);
    }
    const parse = vi.spyOn(JSON, "parse");
    try {
      const acks = raw.map((d) => readPubAck(d));
      expect(parse).not.toHaveBeenCalled();
      expect(acks).toEqual([
        { stream: "ACKS", seq: 1, duplicate: false },
        { stream: "ACKS", seq: 2, duplicate: false },
        { stream: "ACKS", seq: 1, duplicate: true },
        { stream: "ACKS", seq: 3, duplicate: false },
        { stream: "ACKS", seq: 2, duplicate: true },
      ]);
    } finally {
      parse.mockRestore();
    }
  });

  it.each([
    '{"stream":"S","seq":7}',
    '{"stream":"S", "seq":7}',
    '{"stream":"S" ,\n\t"seq" :7 }',
    '{"stream":"S","seq":7,"duplicate":true}',
    '{"stream":"S", "seq":7,"duplicate": true}',
    '{"stream":"S","seq":7,"duplicate":false}',
    '{"stream":"S","seq":7,"domain":"hub"}',
    '{"seq":7,"stream":"S"}',
    '{"stream":"S\\u0041","seq":7}',
    '{"stream":"S","seq":12345678901234567}',
    '{"stream":"S","seq":7} ',
  ])("agrees with JSON.parse on %s", (text) => {
    expect(readPubAck(enc.encode(text))).toEqual(reference(text));
  });

  it("gives the reason for what is not an ack", () => {
    expect(readPubAck(enc.encode('{"error":{"code":503,"description":"stream offline"}}'))).toEqual({
      description: "stream offline",
      code: 503,
    });
    expect(
      readPubAck(
        enc.encode(
          '{"error":{"code":400,"err_code":10054,"description":"message size exceeds maximum allowed"}}',
        ),
      ),
    ).toEqual({ description: "message size exceeds maximum allowed", code: 400 });
    const unreadable = { description: "unreadable ack", code: undefined };
    expect(readPubAck(enc.encode('{"stream":"S","seq":7'))).toEqual(unreadable);
    expect(readPubAck(enc.encode('{"stream":"S"}'))).toEqual({
      description: "ack without stream or sequence",
      code: undefined,
    });
    expect(readPubAck(enc.encode('{"stream":"S","seq":7,"duplicate":tru}'))).toEqual(unreadable);
  });
});

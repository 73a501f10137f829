import { describe, expect, it } from "vitest";
import { EncodedHeaders, headers } from "@l2flow/bus";

/** What nats.js itself puts on the wire for the same headers. */
function natsJs(record: Record<string, string>, msgId?: string): Uint8Array {
  const h = headers();
  if (msgId !== undefined) h.set("Nats-Msg-Id", msgId);
  for (const [k, v] of Object.entries(record)) h.set(k, v);
  // Not in the MsgHdrs type, but what nats.js calls when it publishes.
  return (h as unknown as { encode(): Uint8Array }).encode();
}

describe("EncodedHeaders", () => {
  it.each([
    [{}, "book:BTCUSDT:1:50093239218"],
    [{ "L2-Receive-Ns": "1723161297000123456", "L2-Connection": "c3" }, "trade:BTCUSDT:3688410919"],
    [{ "L2-Source": "rest-backfill" }, undefined],
    [{ "L2-Note": "prix – 2 €" }, "window:1s:ÉTHUSDT:1723161297000"],
    [{ Empty: "" }, ""],
  ])("writes the bytes nats.js writes for %j with id %j", (record, msgId) => {
    expect(new EncodedHeaders(record, msgId).encode()).toEqual(natsJs(record, msgId));
  });

  it("refuses a key or value that would break the block, ASCII or not", () => {
    for (const [k, v] of [
      ["Bad Key", "x"],
      ["Bad:Key", "x"],
      ["K", "line\r\nInjected: 1"],
      ["K", "é\n"],
    ] as const)
      expect(() => new EncodedHeaders({ [k]: v }), `${k}=${JSON.stringify(v)}`).toThrow(RangeError);
    expect(() => new EncodedHeaders({}, "id\r\n")).toThrow(RangeError);
  });
});

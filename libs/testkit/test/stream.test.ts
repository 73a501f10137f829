// readStream, which every service's tests read their outputs with: it must return every stored
// message under the filter, in order, with its headers, and nothing else.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { connect, headers, type NatsConnection } from "@nats-io/transport-node";
import { jetstream, jetstreamManager, type JetStreamClient, type JetStreamManager } from "@nats-io/jetstream";
import { readStream, startTestNats, type TestNats } from "@l2flow/testkit";

describe("readStream", () => {
  let nats: TestNats;
  let nc: NatsConnection;
  let conn: { js: JetStreamClient; jsm: JetStreamManager };

  beforeAll(async () => {
    nats = await startTestNats();
    nc = await connect({ servers: nats.url });
    conn = { js: jetstream(nc), jsm: await jetstreamManager(nc) };
    await conn.jsm.streams.add({ name: "READ", subjects: ["read.>"] });
  });
  afterAll(async () => {
    await nc?.close();
    await nats?.close();
  });

  it("returns every message under the filter in stream order, with its id and headers, across pulls", async () => {
    // More than one pull's worth (5 000), the two subjects interleaved.
    const n = 12_003;
    const pending: Promise<unknown>[] = [];
    for (let i = 0; i < n; i++) {
      const h = headers();
      h.set("L2-Index", String(i));
      pending.push(
        conn.js.publish(i % 3 === 0 ? "read.b" : "read.a", new TextEncoder().encode(`m${i}`), {
          msgID: `id-${i}`,
          headers: h,
        }),
      );
      if (pending.length === 1_000) await Promise.all(pending.splice(0));
    }
    await Promise.all(pending);

    const a = await readStream(conn, "READ", "read.a");
    const expected = [...Array(n).keys()].filter((i) => i % 3 !== 0);
    expect(a.map((m) => new TextDecoder().decode(m.data))).toEqual(expected.map((i) => `m${i}`));
    expect(a.map((m) => m.msgId)).toEqual(expected.map((i) => `id-${i}`));
    expect(a.every((m) => m.subject === "read.a")).toBe(true);
    expect(a[5]!.headers).toMatchObject({
      "L2-Index": String(expected[5]),
      "Nats-Msg-Id": `id-${expected[5]}`,
    });

    expect(await readStream(conn, "READ", "read.>")).toHaveLength(n);
    // Its consumers are gone afterwards.
    expect((await conn.jsm.consumers.list("READ").next()).length).toBe(0);
  });

  it("returns nothing when nothing matches", async () => {
    expect(await readStream(conn, "READ", "read.none")).toEqual([]);
  });
});

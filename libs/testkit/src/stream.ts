import {
  AckPolicy,
  DeliverPolicy,
  type JetStreamClient,
  type JetStreamManager,
  type JsMsg,
} from "@nats-io/jetstream";

/** One message as JetStream stored it. */
export interface StoredMessage {
  readonly subject: string;
  readonly data: Uint8Array;
  /** Its `Nats-Msg-Id` header ("" when it has none). */
  readonly msgId: string;
  /** Every header, first value of each. */
  readonly headers: Readonly<Record<string, string>>;
}

/** What `readStream` needs of a connection (`@l2flow/bus`'s `Bus` has it). */
export interface StreamReaderConnection {
  readonly js: JetStreamClient;
  readonly jsm: JetStreamManager;
}

/** A pull that failed this many times in a row ends the read with its error. */
const MAX_FAILED_PULLS = 10;
/** Messages a pull asks for at most. */
const PULL_MESSAGES = 10_000;

/**
 * Hands every message of `stream` under `filter` to `onMessage`, in stream order, from the first one
 * stored to the last one stored when the read ends (messages stored meanwhile are read too), keeping
 * none of them; returns how many. An ephemeral consumer with one filter subject (nats-server 2.9 has
 * no multi-filter consumers) and no acks, deleted afterwards. A pull that fails (a busy machine can
 * miss its heartbeats) is made again: the consumer continues where the failed one stopped.
 */
export async function forEachStored(
  conn: StreamReaderConnection,
  stream: string,
  filter: string,
  onMessage: (m: JsMsg) => void,
): Promise<number> {
  const info = await conn.jsm.consumers.add(stream, {
    filter_subject: filter,
    ack_policy: AckPolicy.None,
    deliver_policy: DeliverPolicy.All,
    inactive_threshold: 60_000_000_000,
  });
  const consumer = await conn.js.consumers.get(stream, info.name);
  let total = 0;
  // Each pull asks for no more than is pending, so it ends when they arrive instead of at `expires`.
  let pending = info.num_pending;
  for (let failed = 0; pending > 0;) {
    let got = 0;
    try {
      const batch = await consumer.fetch({ max_messages: Math.min(PULL_MESSAGES, pending), expires: 3_000 });
      for await (const m of batch) {
        onMessage(m);
        pending = m.info.pending;
        got++;
      }
    } catch (err) {
      if (++failed >= MAX_FAILED_PULLS) throw err;
      continue;
    } finally {
      total += got;
    }
    failed = 0;
    if (got === 0) break;
  }
  await conn.jsm.consumers.delete(stream, info.name).catch(() => undefined);
  return total;
}

/** Every message of `stream` under `filter`, in stream order (see `forEachStored`). */
export async function readStream(
  conn: StreamReaderConnection,
  stream: string,
  filter: string,
): Promise<StoredMessage[]> {
  const out: StoredMessage[] = [];
  await forEachStored(conn, stream, filter, (m) => {
    const headers: Record<string, string> = {};
    for (const k of m.headers?.keys() ?? []) headers[k] = m.headers!.get(k);
    out.push({ subject: m.subject, data: m.data, msgId: headers["Nats-Msg-Id"] ?? "", headers });
  });
  return out;
}

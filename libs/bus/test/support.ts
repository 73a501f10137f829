import type { Bus } from "@l2flow/bus";

/** One message as a stream holds it. */
export interface StoredMessage {
  readonly seq: number;
  /** Its `Nats-Msg-Id`, "" without one. */
  readonly msgId: string;
  readonly data: Uint8Array;
}

/**
 * The messages of `stream` (those under `filter`), in stream order, read with an ordered consumer once
 * at least `atLeast` are there: messages published without an ack may still be on their way. With
 * `atLeast` 0 an empty stream gives none at once (checked on the whole stream, not the filter).
 */
export async function storedMessages(
  bus: Bus,
  stream: string,
  options: { readonly filter?: string; readonly atLeast?: number } = {},
): Promise<StoredMessage[]> {
  const atLeast = options.atLeast ?? 0;
  const out: StoredMessage[] = [];
  if (atLeast === 0 && (await bus.jsm.streams.info(stream)).state.messages === 0) return out;
  const consumer = await bus.js.consumers.get(
    stream,
    options.filter !== undefined ? { filter_subjects: options.filter } : {},
  );
  const messages = await consumer.consume();
  for await (const m of messages) {
    out.push({ seq: m.seq, msgId: m.headers?.get("Nats-Msg-Id") ?? "", data: m.data });
    if (m.info.pending === 0 && out.length >= atLeast) break;
  }
  await messages.close();
  return out;
}

import type { Bus, JsMsg } from "@l2flow/bus";

/** Where reading starts. */
export type ReadStart =
  { readonly from: "start" } | { readonly from: "now" } | { readonly from: "time"; readonly timeMs: number };

/** Options for `readStream`. */
export interface ReadStreamOptions {
  readonly stream: string;
  /** One filter subject (nats-server 2.9 allows one per consumer). */
  readonly filter: string;
  readonly start: ReadStart;
  /** Keep waiting for new messages (true), or stop once caught up with what was stored at the start. */
  readonly follow: boolean;
  /** Stops reading. */
  readonly signal?: AbortSignal | undefined;
  /** Messages pulled at a time. Default 512. */
  readonly batch?: number;
}

/**
 * Reads a stream through an ephemeral ordered consumer (deleted at the end), pulling a bounded batch
 * at a time so a slow reader never makes the client buffer without bound.
 */
export async function* readStream(bus: Bus, o: ReadStreamOptions): AsyncGenerator<JsMsg> {
  const info = await bus.jsm.streams.info(o.stream);
  const lastSeq = info.state.last_seq;
  if (!o.follow && (lastSeq === 0 || info.state.messages === 0)) return;
  const start =
    o.start.from === "now"
      ? { opt_start_seq: lastSeq + 1 }
      : o.start.from === "time"
        ? { opt_start_time: new Date(o.start.timeMs).toISOString() }
        : { opt_start_seq: Math.max(1, info.state.first_seq) };
  const consumer = await bus.js.consumers.get(o.stream, { filter_subjects: o.filter, ...start });
  try {
    // Nothing matches in the range: no need to wait for a pull to expire.
    if (!o.follow && (await consumer.info(true)).num_pending === 0) return;
    while (o.signal?.aborted !== true) {
      const batch = await consumer.fetch({ max_messages: o.batch ?? 512, expires: o.follow ? 5_000 : 2_000 });
      const stop = () => batch.stop();
      o.signal?.addEventListener("abort", stop, { once: true });
      let got = 0;
      try {
        for await (const m of batch) {
          got++;
          yield m;
          if (!o.follow && (m.seq >= lastSeq || m.info.pending === 0)) return;
        }
      } finally {
        o.signal?.removeEventListener("abort", stop);
      }
      if (!o.follow && got === 0) return;
    }
  } finally {
    await consumer.delete().catch(() => undefined);
  }
}

/** The headers of a message as a plain record (first value of each). */
export function headerRecord(msg: JsMsg): Record<string, string> | undefined {
  const h = msg.headers;
  if (h === undefined) return undefined;
  const out: Record<string, string> = {};
  for (const k of h.keys()) out[k] = h.get(k);
  return out;
}

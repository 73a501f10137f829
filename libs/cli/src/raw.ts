import { parseDepthSnapshot, routeFrame } from "@l2flow/binance";
import { HEADERS, msgIds, rawSubjectParts, subjects, type RawKind } from "@l2flow/contracts";
import type { RecordedEvent } from "@l2flow/recording";

/** One `MD_RAW` message as ingest stores it. */
export interface RawMessage {
  readonly subject: string;
  readonly data: Uint8Array;
  /** `Nats-Msg-Id`, derived from the exchange's ids like ingest's. */
  readonly msgId: string;
  readonly headers: Readonly<Record<string, string>>;
  /** What the message is, e.g. for dedupe: kind, symbol and exchange id. */
  readonly kind: RawKind;
  readonly symbol: string;
  readonly id: number;
}

/** Why a recorded event has no `MD_RAW` message. */
export type RawSkip =
  /** A frame ingest reads but does not store (bookTicker, serverShutdown). */
  | { readonly skip: "not-stored"; readonly reason: string }
  /** A frame or snapshot ingest would reject as malformed. */
  | { readonly skip: "rejected"; readonly reason: string };

/** Connection id in `L2-Conn` of frames published by `replay` (ingest writes its WebSocket ids). */
export const REPLAY_CONNECTION = "replay";

const encoder = new TextEncoder();

/**
 * The `MD_RAW` message ingest would store for a recorded event: same subject, payload bytes (the
 * frame's inner `data`, or the REST body), `Nats-Msg-Id` and headers (`L2-Receive-Ns` from the recorded
 * receive time; `L2-Conn` is "replay" for frames and "rest" for snapshots, plus `L2-Snapshot-Limit`).
 */
export function rawMessageOf(event: RecordedEvent): RawMessage | RawSkip {
  const receiveNs = `${event.receiveTimeUs}000`;
  if (event.type === "snapshot") {
    let lastUpdateId: number;
    try {
      lastUpdateId = parseDepthSnapshot(event.body).lastUpdateId;
    } catch (err) {
      return { skip: "rejected", reason: `snapshot of ${event.symbol}: ${errorMessage(err)}` };
    }
    return {
      subject: subjects.raw("snapshot", event.symbol),
      data: encoder.encode(event.body),
      msgId: msgIds.snapshot(event.symbol, lastUpdateId),
      headers: {
        [HEADERS.receiveNs]: receiveNs,
        [HEADERS.connection]: "rest",
        [HEADERS.snapshotLimit]: String(event.limit),
      },
      kind: "snapshot",
      symbol: event.symbol,
      id: lastUpdateId,
    };
  }
  let route;
  try {
    route = routeFrame(event.data);
  } catch (err) {
    return { skip: "rejected", reason: `${event.stream}: ${errorMessage(err)}` };
  }
  if (route.kind === "bookticker" || route.kind === "shutdown")
    return { skip: "not-stored", reason: `${route.kind} frames are not stored in MD_RAW` };
  const msgId =
    route.kind === "depth"
      ? msgIds.depth(route.symbol, route.id)
      : route.kind === "trade"
        ? msgIds.trade(route.symbol, route.id)
        : msgIds.aggTrade(route.symbol, route.id);
  return {
    subject: subjects.raw(route.kind, route.symbol),
    data: encoder.encode(route.data),
    msgId,
    headers: { [HEADERS.receiveNs]: receiveNs, [HEADERS.connection]: REPLAY_CONNECTION },
    kind: route.kind,
    symbol: route.symbol,
    id: route.id,
  };
}

/** Binance stream name suffix of each stored frame kind (ingest subscribes depth at 100 ms). */
const STREAM_OF_KIND: Partial<Record<string, string>> = {
  trade: "trade",
  aggtrade: "aggTrade",
  depth: "depth@100ms",
};

const decoder = new TextDecoder();

/**
 * The recorded event an `MD_RAW` message stands for (the inverse of `rawMessageOf`), or undefined
 * for what recordings do not hold (status events). The receive time comes from `L2-Receive-Ns`
 * (microsecond precision), else from the time JetStream stored the message.
 */
export function recordedEventOf(message: {
  readonly subject: string;
  readonly data: Uint8Array;
  readonly header: (name: string) => string | undefined;
  readonly storedTimeMs: number;
}): RecordedEvent | undefined {
  const parts = rawSubjectParts(message.subject);
  if (parts === undefined) return undefined;
  const { kind, symbol } = parts;
  const ns = message.header(HEADERS.receiveNs);
  const receiveTimeUs =
    ns !== undefined && /^[0-9]+$/.test(ns)
      ? Number(BigInt(ns) / 1000n)
      : Math.round(message.storedTimeMs * 1000);
  const text = decoder.decode(message.data);
  if (kind === "snapshot") {
    const limit = Number(message.header(HEADERS.snapshotLimit) ?? "");
    return {
      type: "snapshot",
      receiveTimeUs,
      symbol,
      limit: Number.isSafeInteger(limit) && limit > 0 ? limit : countLevels(text),
      body: text,
    };
  }
  const streamKind = STREAM_OF_KIND[kind];
  if (streamKind === undefined) return undefined;
  return {
    type: "frame",
    receiveTimeUs,
    stream: `${symbol.toLowerCase()}@${streamKind}`,
    symbol,
    kind: streamKind,
    data: text,
  };
}

function countLevels(body: string): number {
  try {
    const parsed = JSON.parse(body) as { bids?: unknown };
    return Array.isArray(parsed.bids) ? parsed.bids.length : 0;
  } catch {
    return 0;
  }
}

function errorMessage(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

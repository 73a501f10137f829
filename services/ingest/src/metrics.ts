import { Counter, Gauge, Histogram, type Registry } from "@l2flow/runtime";

/** Ingest's Prometheus metrics (README, "Metrics"). */
export function ingestMetrics(registry: Registry) {
  const registers = [registry];
  return {
    frames: new Counter({
      name: "l2flow_ingest_frames_total",
      help: "Frames received, by kind (rate() gives frames per second)",
      labelNames: ["kind"],
      registers,
    }),
    stored: new Counter({
      name: "l2flow_ingest_stored_total",
      help: "Messages acked by MD_RAW, by kind and whether JetStream found a duplicate",
      labelNames: ["kind", "duplicate"],
      registers,
    }),
    bad: new Counter({
      name: "l2flow_ingest_bad_frames_total",
      help: "Frames rejected as malformed, by code",
      labelNames: ["code"],
      registers,
    }),
    deduped: new Counter({
      name: "l2flow_ingest_deduplicated_total",
      help: "Frames dropped locally as repeats (redundant connections, rotation overlap, backfill)",
      registers,
    }),
    dropped: new Counter({
      name: "l2flow_ingest_frames_dropped_total",
      help: "Frames never stored: the outage buffer overflowed (reason overflow), or JetStream refused them repeatedly (reason failed)",
      labelNames: ["reason"],
      registers,
    }),
    publishErrors: new Counter({
      name: "l2flow_ingest_publish_errors_total",
      help: "Publishes that failed (timeout, refused, reconnect) and were sent again",
      labelNames: ["code"],
      registers,
    }),
    fenced: new Counter({
      name: "l2flow_ingest_fenced_frames_total",
      help: "Frames sent under a batch's fence, by outcome: proven (stored, by the stream sequences of the fence's answer) or unconfirmed (a duplicate or another publisher in the batch, a refusal, a loss; sent again with an ack each)",
      labelNames: ["outcome"],
      registers,
    }),
    bufferBytes: new Gauge({
      name: "l2flow_ingest_buffer_bytes",
      help: "Bytes waiting to be sent to NATS, as OUTAGE_BUFFER_BYTES bounds them",
      registers,
    }),
    bufferLimit: new Gauge({
      name: "l2flow_ingest_buffer_limit_bytes",
      help: "OUTAGE_BUFFER_BYTES: what l2flow_ingest_buffer_bytes may reach before the oldest frames are dropped",
      registers,
    }),
    bufferMemory: new Gauge({
      name: "l2flow_ingest_buffer_memory_bytes",
      help: "Memory the frames waiting through an outage take: packed, full segments deflated (so usually below l2flow_ingest_buffer_bytes), the segment being written at its full size",
      registers,
    }),
    inFlight: new Gauge({
      name: "l2flow_ingest_publish_in_flight",
      help: "Messages waiting (buffered or awaiting JetStream's ack)",
      registers,
    }),
    lag: new Histogram({
      name: "l2flow_ingest_event_lag_seconds",
      help: "Receive time minus the exchange's event time E",
      buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5],
      registers,
    }),
    connections: new Gauge({
      name: "l2flow_ingest_connections_up",
      help: "WebSocket connections up",
      registers,
    }),
    reconnects: new Counter({
      name: "l2flow_ingest_reconnects_total",
      help: "Connections lost (and re-established with backoff)",
      registers,
    }),
    rotations: new Counter({
      name: "l2flow_ingest_rotations_total",
      help: "Make-before-break rotations, by cause",
      labelNames: ["cause"],
      registers,
    }),
    snapshots: new Counter({
      name: "l2flow_ingest_snapshots_total",
      help: "Depth snapshots stored, by trigger",
      labelNames: ["trigger"],
      registers,
    }),
    weight: new Gauge({
      name: "l2flow_ingest_rest_weight_used",
      help: "Binance request weight used in the current minute (X-MBX-USED-WEIGHT-1M)",
      registers,
    }),
    rateLimited: new Counter({
      name: "l2flow_ingest_rest_rate_limited_total",
      help: "REST answers 429 and 418",
      labelNames: ["status"],
      registers,
    }),
    backfilled: new Counter({
      name: "l2flow_ingest_trades_backfilled_total",
      help: "Trades recovered over REST after every connection missed them, by kind",
      labelNames: ["kind"],
      registers,
    }),
    unrecoverable: new Counter({
      name: "l2flow_ingest_trades_unrecoverable_total",
      help: "Trade ids neither the streams nor REST could give (reported as gap events)",
      labelNames: ["kind"],
      registers,
    }),
  };
}

/** The metrics object `ingestMetrics` returns. */
export type IngestMetrics = ReturnType<typeof ingestMetrics>;

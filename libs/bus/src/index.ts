/**
 * l2flow's JetStream layer: connect with reconnects and clear errors, provision the streams and KV
 * buckets of DESIGN.md, publish with message ids and acks, and run durable pull consumers whose
 * handlers end in ack, nak-with-delay or term.
 */
export * from "./errors.js";
export * from "./connect.js";
export * from "./topology.js";
export * from "./publish.js";
export * from "./consume.js";
export * from "./consumers.js";
export type { JsMsg, PubAck } from "@nats-io/jetstream";
export type { KV } from "@nats-io/kv";
export { headers } from "@nats-io/transport-node";
export * from "./pipeline.js";
export * from "./queue.js";
export { PackedQueue, PACKED_RECORD_HEAD_BYTES } from "./packed.js";
export { WireError, type HeaderFields } from "./wire.js";
export { readHeader } from "./read-header.js";

/**
 * The Binance client: frame parsing and routing, the local-book sync rules, and (for ingest) the
 * stream connections and the weight-aware REST queue.
 */
export * from "./parse.js";
export * from "./sync.js";

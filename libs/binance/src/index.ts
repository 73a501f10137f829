/**
 * The Binance client: frame parsing and routing, the local-book sync rules, and (for ingest) the
 * stream connections and the weight-aware REST queue.
 */
export * from "./parse.js";
export * from "./scan.js";
export * from "./sync.js";
export * from "./backoff.js";
export * from "./dedupe.js";
export * from "./ws.js";
export * from "./streams.js";
export * from "./rest.js";

/**
 * l2flow's contracts: the protobuf messages and gRPC service generated from `proto/l2flow/v1`
 * (never edited by hand), plus the names every service agrees on — streams, subjects, message ids
 * and headers.
 */
export * from "./gen/l2flow/v1/market_data.js";
export * from "./gen/l2flow/v1/window.js";
export * from "./gen/l2flow/v1/signal.js";
export * from "./gen/l2flow/v1/market_data_service.js";
export * from "./names.js";
export * from "./fast-encode.js";

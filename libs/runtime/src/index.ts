/**
 * What every l2flow service shares at run time: typed errors, env validation, JSON logging that never
 * writes secrets, Prometheus metrics, health endpoints and a graceful lifecycle. Reads no environment
 * itself: services pass `process.env` in from their `config.ts`.
 */
export * from "./errors.js";
export * from "./config.js";
export * from "./logging.js";
export * from "./ops.js";
export * from "./lifecycle.js";
export * from "./gc.js";
export { Counter, Gauge, Histogram, Registry } from "prom-client";
export * from "./tally.js";

export * from "./fixtures.js";
export * from "./nats.js";
export * from "./simulator/index.js";

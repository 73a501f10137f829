export * from "./fixtures.js";
export * from "./nats.js";

export * from "./fixtures.js";
export * from "./nats.js";
export * from "./simulator/index.js";
export * from "./fake-llm.js";
export * from "./metrics.js";
export * from "./wait.js";
export * from "./stream.js";

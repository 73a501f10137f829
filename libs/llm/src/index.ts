/**
 * Signals from windows: the HolySheep provider (OpenAI-compatible, through the `openai` package), the
 * deterministic rule provider, and `SignalAnalyzer`, which puts timeouts, retries, a concurrency
 * limit, a circuit breaker and a budget around the LLM and degrades to the rules.
 */
export * from "./errors.js";
export * from "./schema.js";
export * from "./prompt.js";
export * from "./pricing.js";
export * from "./rules.js";
export * from "./holysheep.js";
export * from "./http-fetch.js";
export * from "./analyzer.js";

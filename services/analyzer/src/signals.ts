import { DegradedReason, type Signal, type Window } from "@l2flow/contracts";
import { HolySheepClient, SignalAnalyzer } from "@l2flow/llm";
import { Counter, Gauge, Histogram, type Logger, type Registry } from "@l2flow/runtime";
import { modelPrice, type AnalyzerConfig } from "./config.js";

/** What the service needs from the LLM layer. */
export interface SignalMaker {
  readonly llmConfigured: boolean;
  analyze(window: Window, history: readonly Window[]): Promise<Signal>;
  analyzeBatch(items: readonly { window: Window; history: readonly Window[] }[]): Promise<Signal[]>;
}

/** Builds the `SignalAnalyzer` from configuration and exports its metrics. */
export function createSignalMaker(
  config: AnalyzerConfig,
  deps: { logger: Logger; registry: Registry; now: () => number },
): SignalMaker {
  const registers = [deps.registry];
  const calls = new Counter({
    name: "l2flow_analyzer_llm_calls_total",
    help: "LLM calls by outcome",
    labelNames: ["outcome"],
    registers,
  });
  const latency = new Histogram({
    name: "l2flow_analyzer_llm_latency_seconds",
    help: "LLM call latency",
    buckets: [0.1, 0.25, 0.5, 1, 2, 5, 10, 30],
    registers,
  });
  const tokens = new Counter({
    name: "l2flow_analyzer_llm_tokens_total",
    help: "LLM tokens by kind",
    labelNames: ["kind"],
    registers,
  });
  const cost = new Counter({
    name: "l2flow_analyzer_llm_cost_usd_total",
    help: "LLM spend in US dollars",
    registers,
  });
  const degraded = new Counter({
    name: "l2flow_analyzer_degraded_signals_total",
    help: "Signals from the rule provider, by reason",
    labelNames: ["reason"],
    registers,
  });
  const breaker = new Gauge({
    name: "l2flow_analyzer_breaker_open",
    help: "1 while the LLM circuit breaker is open",
    registers,
  });
  const llm =
    config.HOLYSHEEP_API_KEY !== undefined
      ? new HolySheepClient({
          apiKey: config.HOLYSHEEP_API_KEY,
          baseURL: config.HOLYSHEEP_BASE_URL,
          model: config.HOLYSHEEP_MODEL,
          timeoutMs: config.LLM_TIMEOUT_MS,
        })
      : undefined;
  return new SignalAnalyzer({
    ...(llm !== undefined ? { llm } : {}),
    prices: { [config.HOLYSHEEP_MODEL]: modelPrice(config) },
    maxRetries: config.LLM_MAX_RETRIES,
    concurrency: config.LLM_CONCURRENCY,
    breakerFailures: config.LLM_BREAKER_FAILURES,
    breakerCooldownMs: config.LLM_BREAKER_COOLDOWN_MS,
    budget: {
      requestsPerMinute: config.LLM_BUDGET_REQUESTS_PER_MIN,
      tokensPerMinute: config.LLM_BUDGET_TOKENS_PER_MIN,
      usdPerDay: config.LLM_BUDGET_USD_PER_DAY,
    },
    now: deps.now,
    onLlmCall: (e) => {
      calls.inc({ outcome: e.outcome });
      latency.observe(e.latencyMs / 1000);
      tokens.inc({ kind: "prompt" }, e.promptTokens);
      tokens.inc({ kind: "completion" }, e.completionTokens);
      cost.inc(e.costUsd);
    },
    onDegraded: (reason) => degraded.inc({ reason: DegradedReason[reason] ?? String(reason) }),
    onBreakerChange: (state) => {
      breaker.set(state === "open" ? 1 : 0);
      if (state === "open")
        deps.logger.warn("LLM circuit breaker opened: signals come from the rule provider until it closes");
      else deps.logger.info("LLM circuit breaker closed");
    },
  });
}

import { z } from "zod";
import { isInterval, isSymbol } from "@l2flow/contracts";
import { DEFAULT_PRICES, type ModelPrice } from "@l2flow/llm";
import { ConfigError, env, natsEnvShape, opsEnvShape, parseEnv, type Env } from "@l2flow/runtime";

const usdAmount = z.coerce
  .number({ error: "expected a number of US dollars per million tokens, e.g. 0.28" })
  .min(0, { error: "expected a number of US dollars per million tokens >= 0" });

const schema = z.object({
  ...natsEnvShape,
  ...opsEnvShape,
  /** HolySheep API key; without it the analyzer runs on the rule provider and says so at start. */
  HOLYSHEEP_API_KEY: z
    .string()
    .min(8, { error: "expected an API key (at least 8 characters), or leave it unset" })
    .optional(),
  /** OpenAI-compatible base URL of HolySheep. */
  HOLYSHEEP_BASE_URL: env.url("https://api.holysheep.ai/v1", ["https:", "http:"]),
  /** Model name as the provider knows it. */
  HOLYSHEEP_MODEL: z.string().min(1).default("deepseek-v3.2"),
  /** Time allowed for one LLM call. */
  LLM_TIMEOUT_MS: env.positiveInt(10_000),
  /** Retries of a failed LLM call (with backoff honouring Retry-After). */
  LLM_MAX_RETRIES: env.nonNegativeInt(2),
  /** LLM calls in flight at once per replica. */
  LLM_CONCURRENCY: env.positiveInt(4),
  /** Consecutive failures that open the circuit breaker. */
  LLM_BREAKER_FAILURES: env.positiveInt(5),
  /** How long the breaker stays open before one probe call. */
  LLM_BREAKER_COOLDOWN_MS: env.positiveInt(30_000),
  /** Budget: LLM requests per minute per replica. */
  LLM_BUDGET_REQUESTS_PER_MIN: env.positiveInt(120),
  /** Budget: tokens (prompt + completion) per minute per replica. */
  LLM_BUDGET_TOKENS_PER_MIN: env.positiveInt(200_000),
  /**
   * US dollars per million prompt and completion tokens of HOLYSHEEP_MODEL: what a signal costs and
   * what LLM_BUDGET_USD_PER_DAY counts. Needed for a model without a built-in price (`DEFAULT_PRICES`
   * in libs/llm); they replace it otherwise.
   */
  LLM_PRICE_INPUT_USD_PER_M: usdAmount.optional(),
  LLM_PRICE_OUTPUT_USD_PER_M: usdAmount.optional(),
  /** Budget: US dollars per day per replica. */
  LLM_BUDGET_USD_PER_DAY: z.coerce
    .number({ error: "expected a number of US dollars, e.g. 5" })
    .positive({ error: "expected a number of US dollars > 0" })
    .default(5),
  /** Intervals to analyse (windows of other intervals are skipped). */
  ANALYZER_INTERVALS: env.list("1m").refine((v) => v.length > 0 && v.every((i) => isInterval(i)), {
    error: "expected comma-separated intervals such as 1s,1m",
  }),
  /** Symbols to analyse; empty = every symbol. */
  ANALYZER_SYMBOLS: env.list("").refine((v) => v.every((s) => isSymbol(s)), {
    error: "expected comma-separated symbols, e.g. BTCUSDT,ETHUSDT",
  }),
  /** Previous windows of the same symbol included in the prompt. */
  ANALYZER_HISTORY: env.nonNegativeInt(5),
  /** Windows of different symbols analysed in one LLM call (1 = one call per window). */
  ANALYZER_BATCH_SIZE: env.positiveInt(1).refine((v) => v <= 50, { error: "expected 1-50" }),
  /** How long a batch waits to fill before it is sent anyway. */
  ANALYZER_BATCH_WAIT_MS: env.nonNegativeInt(250),
  /**
   * How long a window a replica took stays with it once the replica stops answering (killed, hung)
   * before another replica gets it. A replica that is alive keeps its windows however long their
   * analysis takes (it tells nats-server it is working on them).
   */
  ANALYZER_ACK_WAIT_MS: env.positiveInt(30_000),
  /** Durable consumer name shared by every replica. */
  ANALYZER_DURABLE: z
    .string()
    .regex(/^[A-Za-z0-9_-]+$/, { error: "expected letters, digits, - or _" })
    .default("analyzer"),
});

/** The analyzer's configuration (README, "Configuration"). */
export type AnalyzerConfig = z.infer<typeof schema>;

/** Reads and validates the analyzer's environment; throws `ConfigError` naming each bad variable. */
export function loadConfig(vars: Env): AnalyzerConfig {
  const config = parseEnv(schema, vars, { secretKeys: ["HOLYSHEEP_API_KEY", "NATS_PASSWORD", "NATS_TOKEN"] });
  const {
    LLM_PRICE_INPUT_USD_PER_M: input,
    LLM_PRICE_OUTPUT_USD_PER_M: output,
    HOLYSHEEP_MODEL: model,
  } = config;
  if ((input === undefined) !== (output === undefined))
    throw new ConfigError(
      `invalid configuration:\n  ${input === undefined ? "LLM_PRICE_INPUT_USD_PER_M" : "LLM_PRICE_OUTPUT_USD_PER_M"}: set it too (a model's price is both, in US dollars per million tokens)`,
    );
  if (config.HOLYSHEEP_API_KEY !== undefined && input === undefined && DEFAULT_PRICES[model] === undefined)
    throw new ConfigError(
      `invalid configuration:\n  HOLYSHEEP_MODEL="${model}": no built-in price (known: ${Object.keys(DEFAULT_PRICES).join(", ")}); set LLM_PRICE_INPUT_USD_PER_M and LLM_PRICE_OUTPUT_USD_PER_M (US dollars per million tokens), or the signals' cost and LLM_BUDGET_USD_PER_DAY would count nothing`,
    );
  return { ...config, ANALYZER_SYMBOLS: config.ANALYZER_SYMBOLS.map((s) => s.toUpperCase()) };
}

/** What HOLYSHEEP_MODEL costs: the configured price, else the built-in one (0 for the rule provider). */
export function modelPrice(config: AnalyzerConfig): ModelPrice {
  const input = config.LLM_PRICE_INPUT_USD_PER_M;
  const output = config.LLM_PRICE_OUTPUT_USD_PER_M;
  if (input !== undefined && output !== undefined)
    return { inputPerMillion: input, outputPerMillion: output };
  return DEFAULT_PRICES[config.HOLYSHEEP_MODEL] ?? { inputPerMillion: 0, outputPerMillion: 0 };
}

import { DegradedReason, type Signal, type Window } from "@l2flow/contracts";
import { LlmError, type LlmErrorCode } from "./errors.js";
import type { AnswerParser, HolySheepClient, LlmAnswer } from "./holysheep.js";
import { costUsd, DEFAULT_PRICES, type ModelPrice } from "./pricing.js";
import { buildBatchPrompt, buildPrompt, type ChatMessage } from "./prompt.js";
import { ruleAnswer } from "./rules.js";
import {
  MAX_RATIONALE_CHARS,
  parseBatchAnswer,
  toPressure,
  toSentiment,
  type SignalAnswer,
} from "./schema.js";

/** Spending limits per replica. */
export interface LlmBudget {
  /** Default 120. */
  readonly requestsPerMinute?: number;
  /** Prompt + completion tokens. Default 200 000. */
  readonly tokensPerMinute?: number;
  /** Default 5. */
  readonly usdPerDay?: number;
}

/** One LLM call as the metrics see it. */
export interface LlmCallEvent {
  readonly outcome: "ok" | LlmErrorCode;
  readonly latencyMs: number;
  readonly promptTokens: number;
  readonly completionTokens: number;
  readonly costUsd: number;
}

/** Options for `SignalAnalyzer`. */
export interface SignalAnalyzerOptions {
  /** The LLM; undefined = not configured (every signal from the rules, degraded NOT_CONFIGURED). */
  readonly llm?: HolySheepClient;
  /** Retries after a retryable failure. Default 2. */
  readonly maxRetries?: number;
  /** Backoff base and cap (full jitter). Defaults 500 ms and 10 000 ms. */
  readonly retryBaseMs?: number;
  readonly retryCapMs?: number;
  /** A Retry-After longer than this is not waited for: the signal degrades. Default 30 000 ms. */
  readonly maxRetryAfterMs?: number;
  /** LLM calls in flight at once. Default 4. */
  readonly concurrency?: number;
  /** Calls waiting for a slot; beyond it the signal degrades at once. Default 4 × concurrency. */
  readonly maxQueued?: number;
  /** Consecutive failed calls that open the breaker. Default 5. */
  readonly breakerFailures?: number;
  /** Open time before one probe call. Default 30 000 ms. */
  readonly breakerCooldownMs?: number;
  readonly budget?: LlmBudget;
  /** Default `DEFAULT_PRICES`. */
  readonly prices?: Readonly<Record<string, ModelPrice>>;
  /** Injectable clock and randomness. Defaults `Date.now`, `Math.random`. */
  readonly now?: () => number;
  readonly random?: () => number;
  readonly onLlmCall?: (e: LlmCallEvent) => void;
  readonly onDegraded?: (reason: DegradedReason) => void;
  readonly onBreakerChange?: (state: BreakerState) => void;
}

/** What a failed call still cost (an invalid answer is paid for). */
interface Spent {
  readonly tokens: { promptTokens?: number; completionTokens?: number };
  readonly cost: number;
  readonly model: string;
}

/** Circuit breaker state. */
export type BreakerState = "closed" | "open" | "half-open";

const REASON: Partial<Record<LlmErrorCode, DegradedReason>> = {
  TIMEOUT: DegradedReason.DEGRADED_REASON_TIMEOUT,
  RATE_LIMITED: DegradedReason.DEGRADED_REASON_RATE_LIMITED,
  INVALID_ANSWER: DegradedReason.DEGRADED_REASON_INVALID_ANSWER,
  CIRCUIT_OPEN: DegradedReason.DEGRADED_REASON_CIRCUIT_OPEN,
  BUDGET_EXHAUSTED: DegradedReason.DEGRADED_REASON_BUDGET_EXHAUSTED,
};

/**
 * Turns windows into signals: HolySheep behind a timeout, retries with backoff honouring
 * Retry-After, a concurrency limit, a circuit breaker and a budget; whenever the LLM cannot answer,
 * the rule provider answers and the signal is marked degraded with the reason.
 */
export class SignalAnalyzer {
  readonly #o: Required<
    Omit<SignalAnalyzerOptions, "llm" | "onLlmCall" | "onDegraded" | "onBreakerChange" | "budget">
  > & {
    budget: Required<LlmBudget>;
  };
  readonly #llm: HolySheepClient | undefined;
  readonly #hooks: Pick<SignalAnalyzerOptions, "onLlmCall" | "onDegraded" | "onBreakerChange">;
  #active = 0;
  readonly #waiting: (() => void)[] = [];
  #failures = 0;
  #breaker: BreakerState = "closed";
  #openedAt = 0;
  #probing = false;
  #minute = -1;
  #minuteRequests = 0;
  #minuteTokens = 0;
  #day = -1;
  #dayUsd = 0;

  constructor(options: SignalAnalyzerOptions = {}) {
    const concurrency = options.concurrency ?? 4;
    this.#llm = options.llm;
    this.#hooks = options;
    this.#o = {
      maxRetries: options.maxRetries ?? 2,
      retryBaseMs: options.retryBaseMs ?? 500,
      retryCapMs: options.retryCapMs ?? 10_000,
      maxRetryAfterMs: options.maxRetryAfterMs ?? 30_000,
      concurrency,
      maxQueued: options.maxQueued ?? concurrency * 4,
      breakerFailures: options.breakerFailures ?? 5,
      breakerCooldownMs: options.breakerCooldownMs ?? 30_000,
      budget: {
        requestsPerMinute: options.budget?.requestsPerMinute ?? 120,
        tokensPerMinute: options.budget?.tokensPerMinute ?? 200_000,
        usdPerDay: options.budget?.usdPerDay ?? 5,
      },
      prices: options.prices ?? DEFAULT_PRICES,
      now: options.now ?? Date.now,
      random: options.random ?? Math.random,
    };
  }

  /** True when an LLM is configured. */
  get llmConfigured(): boolean {
    return this.#llm !== undefined;
  }

  /** The breaker's state now. */
  get breakerState(): BreakerState {
    if (this.#breaker === "open" && this.#o.now() - this.#openedAt >= this.#o.breakerCooldownMs)
      return "half-open";
    return this.#breaker;
  }

  /** USD spent today (this replica). */
  get spentTodayUsd(): number {
    return this.#dayUsd;
  }

  /** Produces the signal answering `window`. Never throws for LLM trouble: it degrades instead. */
  async analyze(window: Window, history: readonly Window[]): Promise<Signal> {
    const started = this.#o.now();
    const r = await this.#call<SignalAnswer>(buildPrompt(window, history), 300, undefined);
    if (!r.ok) return this.#degraded(window, started, r.reason, r.detail, r.spent);
    return this.#signal(window, r.res.answer, {
      provider: "holysheep",
      model: r.res.model,
      latencyMs: this.#o.now() - started,
      promptTokens: r.res.promptTokens,
      completionTokens: r.res.completionTokens,
      costUsd: r.cost,
    });
  }

  /**
   * Several symbols' windows in one LLM call (`items` must name distinct symbols). The answer is one
   * JSON object keyed by symbol; a symbol missing or invalid in it is analysed again on its own (one
   * call with its own repair, then the rules). The call's tokens and cost are split evenly across the
   * signals it answered. Never throws for LLM trouble.
   */
  async analyzeBatch(items: readonly { window: Window; history: readonly Window[] }[]): Promise<Signal[]> {
    if (items.length <= 1) return Promise.all(items.map((i) => this.analyze(i.window, i.history)));
    const started = this.#o.now();
    const symbols = items.map((i) => i.window.symbol);
    if (new Set(symbols).size !== symbols.length)
      throw new RangeError(`analyzeBatch needs distinct symbols, got ${symbols.join(",")}`);
    const r = await this.#call(buildBatchPrompt(items), 300 * items.length, parseBatchAnswer(symbols));
    if (!r.ok) return items.map((i) => this.#degraded(i.window, started, r.reason, r.detail));
    const answered = items.filter((i) => r.res.answer.get(i.window.symbol)?.ok === true);
    const share = (total: number, k: number) =>
      Math.floor(total / answered.length) + (k < total % answered.length ? 1 : 0);
    return Promise.all(
      items.map(async (item): Promise<Signal> => {
        const a = r.res.answer.get(item.window.symbol);
        if (a?.ok !== true) return this.analyze(item.window, item.history);
        const k = answered.indexOf(item);
        return this.#signal(item.window, a.answer, {
          provider: "holysheep",
          model: r.res.model,
          latencyMs: this.#o.now() - started,
          promptTokens: share(r.res.promptTokens, k),
          completionTokens: share(r.res.completionTokens, k),
          costUsd: r.cost / answered.length,
        });
      }),
    );
  }

  /**
   * One LLM exchange behind every guard: configured, breaker, budget, concurrency, then retries with
   * backoff honouring Retry-After. Resolves with the answer, or with the reason to degrade.
   */
  async #call<T>(
    messages: ChatMessage[],
    maxTokens: number,
    parse: AnswerParser<T> | undefined,
  ): Promise<
    | { ok: true; res: LlmAnswer<T>; cost: number }
    | { ok: false; reason: DegradedReason; detail: string; spent?: Spent }
  > {
    const llm = this.#llm;
    if (llm === undefined)
      return {
        ok: false,
        reason: DegradedReason.DEGRADED_REASON_NOT_CONFIGURED,
        detail: "no HolySheep API key configured",
      };
    const estimate = Math.ceil(JSON.stringify(messages).length / 4) + maxTokens;
    const refused = this.#refused(estimate);
    if (refused !== undefined) return refused;
    if (this.#active >= this.#o.concurrency) {
      if (this.#waiting.length >= this.#o.maxQueued)
        return {
          ok: false,
          reason: DegradedReason.DEGRADED_REASON_LLM_ERROR,
          detail: "too many LLM calls waiting (concurrency limit)",
        };
      await new Promise<void>((resolve) => this.#waiting.push(resolve));
      // The breaker may have opened, or the budget run out, while this call waited its turn; then
      // its turn goes to the next one waiting.
      const now = this.#refused(estimate);
      if (now !== undefined) {
        this.#waiting.shift()?.();
        return now;
      }
    }
    this.#active++;
    const probe = this.breakerState === "half-open";
    if (probe) this.#probing = true;
    try {
      for (let attempt = 0; ; attempt++) {
        const callStart = this.#o.now();
        this.#charge(0, 0, 1);
        try {
          const res = (
            parse === undefined
              ? await llm.complete(messages)
              : await llm.complete(messages, undefined, parse, maxTokens)
          ) as LlmAnswer<T>;
          // Priced as the model asked for: a provider may answer with another name for it.
          const cost = costUsd(this.#o.prices, llm.model, res.promptTokens, res.completionTokens);
          this.#charge(res.promptTokens + res.completionTokens, cost, res.calls - 1);
          this.#hooks.onLlmCall?.({
            outcome: "ok",
            latencyMs: this.#o.now() - callStart,
            promptTokens: res.promptTokens,
            completionTokens: res.completionTokens,
            costUsd: cost,
          });
          this.#success();
          return { ok: true, res, cost };
        } catch (err) {
          const e =
            err instanceof LlmError
              ? err
              : new LlmError("CONNECTION", "unexpected LLM failure", { retryable: true });
          const used = err as { promptTokens?: number; completionTokens?: number };
          const tokens = (used.promptTokens ?? 0) + (used.completionTokens ?? 0);
          const cost = costUsd(this.#o.prices, llm.model, used.promptTokens ?? 0, used.completionTokens ?? 0);
          if (tokens > 0) this.#charge(tokens, cost, 1);
          this.#hooks.onLlmCall?.({
            outcome: e.code,
            latencyMs: this.#o.now() - callStart,
            promptTokens: used.promptTokens ?? 0,
            completionTokens: used.completionTokens ?? 0,
            costUsd: cost,
          });
          if (e.code === "INVALID_ANSWER") {
            this.#success(); // the service answered; the model's text was bad
            return {
              ok: false,
              reason: DegradedReason.DEGRADED_REASON_INVALID_ANSWER,
              detail: e.message,
              spent: { tokens: used, cost, model: llm.model },
            };
          }
          const waitMs = this.#retryDelay(e, attempt);
          if (
            !e.retryable ||
            attempt >= this.#o.maxRetries ||
            waitMs === undefined ||
            probe ||
            this.#overBudget(estimate) !== undefined
          ) {
            this.#failure();
            return {
              ok: false,
              reason: REASON[e.code] ?? DegradedReason.DEGRADED_REASON_LLM_ERROR,
              detail: e.message,
            };
          }
          await new Promise((r) => setTimeout(r, waitMs));
        }
      }
    } finally {
      if (probe) this.#probing = false;
      this.#active--;
      this.#waiting.shift()?.();
    }
  }

  /** Why a call may not go out now (breaker open or probing, budget spent), if it may not. */
  #refused(estimatedTokens: number): { ok: false; reason: DegradedReason; detail: string } | undefined {
    const state = this.breakerState;
    if (state === "open" || (state === "half-open" && this.#probing))
      return {
        ok: false,
        reason: DegradedReason.DEGRADED_REASON_CIRCUIT_OPEN,
        detail: "circuit breaker open after repeated LLM failures",
      };
    const over = this.#overBudget(estimatedTokens);
    if (over !== undefined)
      return { ok: false, reason: DegradedReason.DEGRADED_REASON_BUDGET_EXHAUSTED, detail: over };
    return undefined;
  }

  #retryDelay(e: LlmError, attempt: number): number | undefined {
    if (e.retryAfterMs !== undefined)
      return e.retryAfterMs <= this.#o.maxRetryAfterMs ? e.retryAfterMs : undefined;
    return this.#o.random() * Math.min(this.#o.retryCapMs, this.#o.retryBaseMs * 2 ** attempt);
  }

  #roll(): void {
    const now = this.#o.now();
    const minute = Math.floor(now / 60_000);
    if (minute !== this.#minute) {
      this.#minute = minute;
      this.#minuteRequests = 0;
      this.#minuteTokens = 0;
    }
    const day = Math.floor(now / 86_400_000);
    if (day !== this.#day) {
      this.#day = day;
      this.#dayUsd = 0;
    }
  }

  #overBudget(estimatedTokens: number): string | undefined {
    this.#roll();
    const b = this.#o.budget;
    if (this.#minuteRequests + 1 > b.requestsPerMinute)
      return `request budget of ${b.requestsPerMinute} per minute spent`;
    if (this.#minuteTokens + estimatedTokens > b.tokensPerMinute)
      return `token budget of ${b.tokensPerMinute} per minute spent`;
    if (this.#dayUsd >= b.usdPerDay) return `daily budget of $${b.usdPerDay} spent`;
    return undefined;
  }

  #charge(tokens: number, usd: number, requests: number): void {
    this.#roll();
    this.#minuteRequests += requests;
    this.#minuteTokens += tokens;
    this.#dayUsd += usd;
  }

  #success(): void {
    this.#failures = 0;
    if (this.#breaker !== "closed") {
      this.#breaker = "closed";
      this.#hooks.onBreakerChange?.("closed");
    }
  }

  #failure(): void {
    this.#failures++;
    const halfOpen = this.breakerState === "half-open";
    if (halfOpen || this.#failures >= this.#o.breakerFailures) {
      this.#breaker = "open";
      this.#openedAt = this.#o.now();
      this.#hooks.onBreakerChange?.("open");
    }
  }

  #degraded(window: Window, started: number, reason: DegradedReason, detail: string, spent?: Spent): Signal {
    this.#hooks.onDegraded?.(reason);
    return this.#signal(window, ruleAnswer(window), {
      provider: "rules",
      model: spent?.model ?? "rules-v1",
      latencyMs: this.#o.now() - started,
      promptTokens: spent?.tokens.promptTokens ?? 0,
      completionTokens: spent?.tokens.completionTokens ?? 0,
      costUsd: spent?.cost ?? 0,
      degraded: true,
      degradedReason: reason,
      degradedDetail: detail.slice(0, 200),
    });
  }

  #signal(
    w: Window,
    a: SignalAnswer,
    meta: {
      provider: string;
      model: string;
      latencyMs: number;
      promptTokens: number;
      completionTokens: number;
      costUsd: number;
      degraded?: boolean;
      degradedReason?: DegradedReason;
      degradedDetail?: string;
    },
  ): Signal {
    return {
      exchange: w.exchange,
      symbol: w.symbol,
      interval: w.interval,
      windowStartTimeMs: w.startTimeMs,
      windowEndTimeMs: w.endTimeMs,
      windowComplete: w.complete,
      sentiment: toSentiment(a.sentiment),
      confidence: a.confidence,
      pressure: toPressure(a.pressure),
      rationale: a.rationale.slice(0, MAX_RATIONALE_CHARS),
      provider: meta.provider,
      model: meta.model,
      latencyMs: Math.round(meta.latencyMs),
      promptTokens: meta.promptTokens,
      completionTokens: meta.completionTokens,
      costUsd: meta.costUsd,
      degraded: meta.degraded ?? false,
      degradedReason: meta.degradedReason ?? DegradedReason.DEGRADED_REASON_UNSPECIFIED,
      degradedDetail: meta.degradedDetail ?? "",
      createdTimeUs: this.#o.now() * 1000,
    };
  }
}

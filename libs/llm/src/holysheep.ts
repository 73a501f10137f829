import OpenAI, { APIConnectionError, APIConnectionTimeoutError, APIError, APIUserAbortError } from "openai";
import { LlmError } from "./errors.js";
import { keepAliveFetch } from "./http-fetch.js";
import type { ChatMessage } from "./prompt.js";
import { parseAnswer, type SignalAnswer } from "./schema.js";

/** HolySheep's OpenAI-compatible endpoint. */
export const HOLYSHEEP_BASE_URL = "https://api.holysheep.ai/v1";
/** The model used unless configured otherwise. */
export const DEFAULT_MODEL = "deepseek-v3.2";

/** Options for `HolySheepClient`. */
export interface HolySheepOptions {
  readonly apiKey: string;
  /** Default `HOLYSHEEP_BASE_URL`. */
  readonly baseURL?: string;
  /** Default "deepseek-v3.2". */
  readonly model?: string;
  /** Per-attempt timeout. Default 10 000 ms. */
  readonly timeoutMs?: number;
  /** The HTTP client. Default: `keepAliveFetch()`'s, over keep-alive connections. */
  readonly fetch?: typeof fetch;
}

/** How a caller checks the model's text: `JSON.parse` plus a schema, never evaluated. */
export type AnswerParser<T> = (text: string) => { ok: true; answer: T } | { ok: false; error: string };

/** One successful call: the validated answer and its usage. */
export interface LlmAnswer<T = SignalAnswer> {
  readonly answer: T;
  readonly model: string;
  readonly promptTokens: number;
  readonly completionTokens: number;
  /** 1, or 2 when the repair attempt was needed. */
  readonly calls: number;
}

/**
 * One chat completion with HolySheep through the official `openai` package (its own retries are off:
 * the analyzer retries with its budget and breaker in view). An answer that is not JSON or fails the
 * schema gets one repair attempt; still invalid → `LlmError` INVALID_ANSWER.
 */
export class HolySheepClient {
  readonly model: string;
  readonly #client: OpenAI;
  readonly #timeoutMs: number;

  constructor(options: HolySheepOptions) {
    this.model = options.model ?? DEFAULT_MODEL;
    this.#timeoutMs = options.timeoutMs ?? 10_000;
    this.#client = new OpenAI({
      apiKey: options.apiKey,
      baseURL: options.baseURL ?? HOLYSHEEP_BASE_URL,
      maxRetries: 0,
      timeout: this.#timeoutMs,
      fetch: options.fetch ?? keepAliveFetch().fetch,
    });
  }

  /**
   * Asks for a signal (or, with another `parse`, any JSON answer such as a batch); throws `LlmError`
   * with a stable code.
   */
  async complete(messages: readonly ChatMessage[], signal?: AbortSignal): Promise<LlmAnswer>;
  async complete<T>(
    messages: readonly ChatMessage[],
    signal: AbortSignal | undefined,
    parse: AnswerParser<T>,
    maxTokens?: number,
  ): Promise<LlmAnswer<T>>;
  async complete<T>(
    messages: readonly ChatMessage[],
    signal?: AbortSignal,
    parse: AnswerParser<T> = parseAnswer as unknown as AnswerParser<T>,
    maxTokens = 300,
  ): Promise<LlmAnswer<T>> {
    let promptTokens = 0;
    let completionTokens = 0;
    const first = await this.#call(messages, signal, maxTokens);
    promptTokens += first.promptTokens;
    completionTokens += first.completionTokens;
    let parsed = parse(first.content);
    if (parsed.ok)
      return { answer: parsed.answer, model: this.model, promptTokens, completionTokens, calls: 1 };
    const repair: ChatMessage[] = [
      ...messages,
      { role: "assistant", content: first.content.slice(0, 2_000) },
      {
        role: "user",
        content: `That answer was rejected (${parsed.error}). Reply with ONLY the corrected JSON object.`,
      },
    ];
    let second: CallResult;
    try {
      second = await this.#call(repair, signal, maxTokens);
    } catch (err) {
      // The first answer was paid for: its tokens go with the failure, to the budget and the metrics.
      throw Object.assign(err as LlmError, { promptTokens, completionTokens });
    }
    promptTokens += second.promptTokens;
    completionTokens += second.completionTokens;
    parsed = parse(second.content);
    if (parsed.ok)
      return { answer: parsed.answer, model: this.model, promptTokens, completionTokens, calls: 2 };
    throw Object.assign(
      new LlmError("INVALID_ANSWER", `the model's answer failed validation twice: ${parsed.error}`),
      {
        promptTokens,
        completionTokens,
      },
    );
  }

  async #call(
    messages: readonly ChatMessage[],
    signal: AbortSignal | undefined,
    maxTokens: number,
  ): Promise<CallResult> {
    try {
      const res = await this.#client.chat.completions.create(
        {
          model: this.model,
          messages: messages.map((m) => ({ role: m.role, content: m.content })),
          response_format: { type: "json_object" },
          temperature: 0.2,
          max_tokens: maxTokens,
        },
        { timeout: this.#timeoutMs, ...(signal !== undefined ? { signal } : {}) },
      );
      return {
        // A completion without a message (a content filter, a proxy's quirk) is an answer that
        // fails validation, paid for, not a connection failure.
        content: res.choices?.[0]?.message?.content ?? "",
        promptTokens: res.usage?.prompt_tokens ?? 0,
        completionTokens: res.usage?.completion_tokens ?? 0,
      };
    } catch (err) {
      throw classify(err);
    }
  }
}

/** One HTTP call's answer text and what it cost. */
interface CallResult {
  readonly content: string;
  readonly promptTokens: number;
  readonly completionTokens: number;
}

/** Maps an `openai` error to an `LlmError` (never copying a message that could hold the key). */
export function classify(err: unknown): LlmError {
  if (err instanceof LlmError) return err;
  if (err instanceof APIConnectionTimeoutError)
    return new LlmError("TIMEOUT", "the LLM did not answer in time", { retryable: true });
  if (err instanceof APIUserAbortError)
    return new LlmError("TIMEOUT", "the LLM call was aborted", { retryable: true });
  if (err instanceof APIConnectionError)
    return new LlmError("CONNECTION", "cannot reach the LLM endpoint", { retryable: true });
  if (err instanceof APIError) {
    const apiErr = err as APIError<number | undefined, Headers | undefined>;
    const status: number = apiErr.status ?? 0;
    const after = retryAfterMs(apiErr.headers);
    const wait = after !== undefined ? { retryAfterMs: after } : {};
    if (status === 429)
      return new LlmError("RATE_LIMITED", "the LLM rate-limited us (429)", { retryable: true, ...wait });
    if (status === 401 || status === 403)
      return new LlmError("AUTH", `the LLM refused our API key (${status}): check HOLYSHEEP_API_KEY`);
    if (status === 408 || status === 409 || status >= 500)
      return new LlmError("SERVER_ERROR", `the LLM failed (${status})`, { retryable: true, ...wait });
    if (status === 404)
      return new LlmError(
        "BAD_REQUEST",
        "the LLM endpoint or model was not found (404): check HOLYSHEEP_BASE_URL (it ends in /v1) and HOLYSHEEP_MODEL",
      );
    return new LlmError("BAD_REQUEST", `the LLM rejected the request (${status})`);
  }
  if ((err as { name?: string } | undefined)?.name === "AbortError")
    return new LlmError("TIMEOUT", "the LLM call was aborted", { retryable: true });
  return new LlmError("CONNECTION", "unexpected LLM client failure", { retryable: true });
}

/**
 * How long the server asked us to wait: `retry-after-ms`, or `Retry-After` as seconds or as an HTTP
 * date (RFC 9110); undefined when absent, empty or unreadable.
 */
export function retryAfterMs(headers: Headers | undefined, now = Date.now()): number | undefined {
  const ms = headers?.get("retry-after-ms")?.trim();
  if (ms !== undefined && /^\d+(\.\d+)?$/.test(ms)) return Number(ms);
  const ra = headers?.get("retry-after")?.trim();
  if (ra === undefined || ra === "") return undefined;
  if (/^\d+(\.\d+)?$/.test(ra)) return Number(ra) * 1000;
  const at = Date.parse(ra);
  return Number.isFinite(at) ? Math.max(0, at - now) : undefined;
}

/** Stable codes of `LlmError`. */
export type LlmErrorCode =
  | "TIMEOUT"
  | "RATE_LIMITED"
  | "SERVER_ERROR"
  | "CONNECTION"
  | "AUTH"
  | "BAD_REQUEST"
  | "INVALID_ANSWER"
  | "CIRCUIT_OPEN"
  | "BUDGET_EXHAUSTED"
  | "OVERLOADED";

/** An LLM failure. The message never contains the API key. */
export class LlmError extends Error {
  readonly code: LlmErrorCode;
  readonly retryable: boolean;
  /** For RATE_LIMITED: the server's Retry-After, in ms. */
  readonly retryAfterMs: number | undefined;
  constructor(
    code: LlmErrorCode,
    message: string,
    options: { retryable?: boolean; retryAfterMs?: number; cause?: unknown } = {},
  ) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = "LlmError";
    this.code = code;
    this.retryable = options.retryable ?? false;
    this.retryAfterMs = options.retryAfterMs;
  }
}

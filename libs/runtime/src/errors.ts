/**
 * Base class of every l2flow error: a stable `code` to branch on (never the message), whether trying
 * again may succeed (`retryable`), and the `cause` it wraps.
 */
export class L2flowError extends Error {
  readonly code: string;
  readonly retryable: boolean;
  constructor(code: string, message: string, options: { retryable?: boolean; cause?: unknown } = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = new.target.name;
    this.code = code;
    this.retryable = options.retryable ?? false;
  }
}

/** Invalid configuration: names the variable and what it accepts. Never retryable. */
export class ConfigError extends L2flowError {
  constructor(message: string, options: { cause?: unknown } = {}) {
    super("CONFIG_INVALID", message, { retryable: false, ...options });
  }
}

/** True when `err` carries `retryable: true`. */
export function isRetryable(err: unknown): boolean {
  return typeof err === "object" && err !== null && (err as { retryable?: unknown }).retryable === true;
}

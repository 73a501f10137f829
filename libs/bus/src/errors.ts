/** A bus failure with a stable `code` and whether trying again may help. */
export class BusError extends Error {
  readonly code: BusErrorCode;
  readonly retryable: boolean;
  constructor(code: BusErrorCode, message: string, options: { retryable?: boolean; cause?: unknown } = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = "BusError";
    this.code = code;
    this.retryable = options.retryable ?? false;
  }
}

/** Stable codes of `BusError`. */
export type BusErrorCode =
  | "NATS_UNREACHABLE"
  | "NATS_AUTH"
  | "NATS_PERMISSION"
  | "JETSTREAM_UNAVAILABLE"
  | "STREAM_CONFIG"
  | "PUBLISH_FAILED"
  | "PUBLISH_TIMEOUT"
  | "CLOSED";

/** A bus failure with a stable `code` and whether trying again may help. */
export class BusError extends Error {
  readonly code: BusErrorCode;
  readonly retryable: boolean;
  /**
   * A publish that JetStream received and refused for this message (an error answer other than
   * 503), as opposed to one that never reached a stream able to take it: NATS down, no stream on the
   * subject, no answer in time, JetStream temporarily unavailable. Those say nothing about the message
   * itself and last as long as the outage; a refusal may repeat for the same message forever.
   */
  readonly refused: boolean;
  constructor(
    code: BusErrorCode,
    message: string,
    options: { retryable?: boolean; refused?: boolean; cause?: unknown } = {},
  ) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = "BusError";
    this.code = code;
    this.retryable = options.retryable ?? false;
    this.refused = options.refused ?? false;
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
  /** A message sent under a fence that did not prove it stored (see `AckPipelineOptions.fences`): send it again. */
  | "PUBLISH_UNCONFIRMED"
  | "CLOSED";

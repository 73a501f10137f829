/** Stable codes of `SimulatorError`. */
export type SimulatorErrorCode = "SIMULATOR_BAD_OPTIONS" | "SIMULATOR_LISTEN" | "SIMULATOR_CLOSED";

/** A simulator failure with a stable `code`; never retryable (they are programming or setup errors). */
export class SimulatorError extends Error {
  readonly code: SimulatorErrorCode;
  readonly retryable = false;
  constructor(code: SimulatorErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.code = code;
    this.name = "SimulatorError";
  }
}

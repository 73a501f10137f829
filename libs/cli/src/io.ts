import { L2flowError } from "@l2flow/runtime";

/** Where a command writes and what it reads from its environment; `main` gets the process's. */
export interface CliIo {
  /** Command output (JSON lines, tables). */
  readonly stdout: CliOutput;
  /** Messages, progress and errors. */
  readonly stderr: CliOutput;
  /** Environment variables (NATS_URL and the NATS credential variables). */
  readonly env: Readonly<Record<string, string | undefined>>;
  /** Aborted on Ctrl-C / SIGTERM: long-running commands stop and return. Default: never. */
  readonly signal?: AbortSignal;
}

/** A writable text stream (process.stdout fits). */
export interface CliOutput {
  /** Returns false when the caller should wait for `drain` before writing more. */
  write(chunk: string): boolean;
  once?(event: "drain", listener: () => void): unknown;
  readonly isTTY?: boolean;
  readonly columns?: number;
}

/** Exit codes: 0 success, 1 failure, 2 usage or configuration error, 130 interrupted. */
export const EXIT = { ok: 0, failure: 1, usage: 2, interrupted: 130 } as const;

/** Wrong command-line usage: printed with a hint to `--help`, exit code 2. */
export class UsageError extends L2flowError {
  constructor(message: string) {
    super("CLI_USAGE", message);
  }
}

/** Writes a line and waits for `drain` when the stream asks to (pipes into `head`, files). */
export async function writeLine(out: CliOutput, line: string): Promise<void> {
  if (out.write(`${line}\n`) || out.once === undefined) return;
  await new Promise<void>((resolve) => out.once?.("drain", resolve));
}

/** Resolves after `ms`, or early when `signal` aborts. */
export function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise<void>((resolve) => {
    if (signal?.aborted) return resolve();
    const timer = setTimeout(done, ms);
    function done() {
      clearTimeout(timer);
      signal?.removeEventListener("abort", done);
      resolve();
    }
    signal?.addEventListener("abort", done, { once: true });
  });
}

/**
 * Parses a time given as ISO 8601 (`2024-08-08T23:54:14Z`) or milliseconds since the Unix epoch;
 * `now` is accepted too. Throws `UsageError` naming the option otherwise.
 */
export function parseTime(value: string, option: string, now = Date.now()): number {
  if (value === "now") return now;
  if (/^[0-9]+$/.test(value)) return Number(value);
  const ms = Date.parse(value);
  if (Number.isNaN(ms))
    throw new UsageError(
      `${option} ${JSON.stringify(value)} is not a time: use ISO 8601 (2024-08-08T23:54:14Z), milliseconds since the epoch, or now`,
    );
  return ms;
}

/** Parses a positive integer option. */
export function parsePositiveInt(value: string | undefined, option: string): number | undefined {
  if (value === undefined) return undefined;
  const n = Number(value);
  if (!Number.isSafeInteger(n) || n <= 0)
    throw new UsageError(`${option} ${JSON.stringify(value)} is not a positive integer`);
  return n;
}

import { EXCHANGE, isInterval, isSymbol } from "@l2flow/contracts";
import { invalidArgument } from "./errors.js";

/** Most levels per side `GetBook` may ask for. */
export const MAX_BOOK_DEPTH = 1_000;
/** Most symbols or intervals one stream request may list. */
export const MAX_FILTER_ENTRIES = 1_000;

/** An upper-case symbol, or INVALID_ARGUMENT saying what a symbol looks like. */
export function parseSymbol(symbol: string, field = "symbol"): string {
  if (symbol === "") throw invalidArgument(`${field} is required, e.g. BTCUSDT`);
  if (!isSymbol(symbol))
    throw invalidArgument(
      `${field} ${JSON.stringify(symbol)} is invalid: expected 2-30 letters or digits, e.g. BTCUSDT`,
    );
  return symbol.toUpperCase();
}

/** An interval token, or INVALID_ARGUMENT saying what an interval looks like. */
export function parseInterval(interval: string, field = "interval"): string {
  if (interval === "") throw invalidArgument(`${field} is required, e.g. 1s or 1m`);
  if (!isInterval(interval))
    throw invalidArgument(
      `${field} ${JSON.stringify(interval)} is invalid: expected a number and a unit (ms, s, m, h, d), e.g. 1s or 1m`,
    );
  return interval;
}

/** `GetBook`'s depth: 0 (every stored level) or 1..1000. */
export function parseDepth(depth: number): number {
  if (!Number.isInteger(depth) || depth < 0 || depth > MAX_BOOK_DEPTH)
    throw invalidArgument(
      `depth ${depth} is out of range: use 0 for every stored level, or 1-${MAX_BOOK_DEPTH}`,
    );
  return depth;
}

/** What a stream request selects: the JetStream filter subject and the gateway-side filter. */
export interface StreamSelection {
  /** One filter subject (nats-server 2.9 allows only one per consumer). */
  readonly filterSubject: string;
  /** Upper-case symbols; empty = all. */
  readonly symbols: ReadonlySet<string>;
  /** Intervals; empty = all. */
  readonly intervals: ReadonlySet<string>;
  /** 0 = from now; otherwise milliseconds since the Unix epoch. */
  readonly startTimeMs: number;
  /** True when a subject `<prefix>.<interval>.<SYMBOL>` is selected. */
  accepts(subject: string): boolean;
}

/** How far ahead a stream's start time may be (clocks differ); beyond, it is a mistake of units. */
const FUTURE_SLACK_MS = 86_400_000;

/**
 * Validates a StreamWindows/StreamSignals request. The server filters by subject when one symbol or
 * one interval is asked (a single literal token); the rest is filtered here.
 */
export function parseStreamRequest(
  prefix: "md.window" | "signal",
  request: { symbols: readonly string[]; intervals: readonly string[]; startTimeMs: number },
): StreamSelection {
  if (request.symbols.length > MAX_FILTER_ENTRIES || request.intervals.length > MAX_FILTER_ENTRIES)
    throw invalidArgument(
      `at most ${MAX_FILTER_ENTRIES} symbols and ${MAX_FILTER_ENTRIES} intervals per stream`,
    );
  const symbols = new Set(request.symbols.map((s, i) => parseSymbol(s, `symbols[${i}]`)));
  const intervals = new Set(request.intervals.map((s, i) => parseInterval(s, `intervals[${i}]`)));
  const { startTimeMs } = request;
  if (!Number.isSafeInteger(startTimeMs) || startTimeMs < 0)
    throw invalidArgument(
      `start_time_ms ${startTimeMs} is invalid: use 0 for "from now" or milliseconds since the Unix epoch`,
    );
  // A time in micro- or nanoseconds would read as tens of thousands of years ahead: nothing would
  // ever come (or, past Date's range, the stream would fail as if NATS were away).
  if (startTimeMs > Date.now() + FUTURE_SLACK_MS)
    throw invalidArgument(
      `start_time_ms ${startTimeMs} is in the future: it is milliseconds since the Unix epoch (not micro- or nanoseconds), or 0 for "from now"`,
    );
  const only = (set: ReadonlySet<string>) => (set.size === 1 ? [...set][0]! : "*");
  const filterSubject = `${prefix}.${EXCHANGE}.${only(intervals)}.${only(symbols)}`;
  const base = prefix.split(".").length + 1;
  return {
    filterSubject,
    symbols,
    intervals,
    startTimeMs,
    accepts: (subject) => {
      const tokens = subject.split(".");
      const interval = tokens[base];
      const symbol = tokens[base + 1];
      if (interval === undefined || symbol === undefined) return false;
      return (intervals.size === 0 || intervals.has(interval)) && (symbols.size === 0 || symbols.has(symbol));
    },
  };
}

/**
 * Readers for recordings of Binance market data: the hftbacktest text format (`<recv ns> <raw>` per
 * line, gzip or plain) and cryptofeed's raw capture format (`<recv s>: <frame>` and
 * `<url> -> <recv s>: <body>` lines). Both become one list of `RecordedEvent`s in arrival order.
 * Pure: takes text or bytes, never reads the environment.
 */
import { readFileSync } from "node:fs";
import { gunzipSync } from "node:zlib";

/** A frame received on a WebSocket stream. */
export interface RecordedFrame {
  readonly type: "frame";
  /** Local receive time, microseconds since the Unix epoch. */
  readonly receiveTimeUs: number;
  /** The stream name, lower case as Binance spells it: `btcusdt@depth@100ms`. */
  readonly stream: string;
  /** Upper-case symbol the stream belongs to. */
  readonly symbol: string;
  /** The stream's kind: the part after the first `@` (`trade`, `aggTrade`, `depth@100ms`, `bookTicker`). */
  readonly kind: string;
  /** The inner `data` object's JSON text, exactly as recorded. */
  readonly data: string;
  /**
   * Set on a copy made under another symbol (the benchmarks' many-symbol replays): the recorded frame
   * it was made from, whose data differs from this one's only in the symbol, so a replayer can parse
   * that once for every copy of it.
   */
  readonly copyOf?: RecordedFrame;
}

/** A REST `/api/v3/depth` snapshot body. */
export interface RecordedSnapshot {
  readonly type: "snapshot";
  readonly receiveTimeUs: number;
  readonly symbol: string;
  readonly limit: number;
  /** The response body exactly as recorded. */
  readonly body: string;
}

/** One recorded event. */
export type RecordedEvent = RecordedFrame | RecordedSnapshot;

/** A parsed recording. */
export interface Recording {
  readonly format: "hftbacktest" | "cryptofeed" | "l2flow";
  /** Upper-case symbols, in order of first appearance. */
  readonly symbols: readonly string[];
  /** Events in arrival order. */
  readonly events: readonly RecordedEvent[];
}

/** Thrown when a recording cannot be parsed; `line` is 1-based. */
export class RecordingFormatError extends Error {
  readonly code = "RECORDING_FORMAT";
  readonly retryable = false;
  constructor(
    message: string,
    readonly line: number,
    options?: { cause?: unknown },
  ) {
    super(`${message} (line ${line})`, options);
    this.name = "RecordingFormatError";
  }
}

/** Options for `parseRecording`. */
export interface ParseRecordingOptions {
  /**
   * Symbol for snapshot lines that do not name one (hftbacktest's single-symbol files). Default: the
   * only symbol seen in the recording's frames.
   */
  readonly defaultSymbol?: string;
}

/** Reads a recording from disk (gzip detected by its magic bytes). */
export function readRecording(path: string, options: ParseRecordingOptions = {}): Recording {
  return parseRecording(readFileSync(path), options);
}

/** Parses a recording from its bytes or text, in whichever supported format it is. */
export function parseRecording(input: Uint8Array | string, options: ParseRecordingOptions = {}): Recording {
  let text: string;
  if (typeof input === "string") {
    text = input;
  } else {
    const gz = input.length > 2 && input[0] === 0x1f && input[1] === 0x8b;
    text = Buffer.from(gz ? gunzipSync(input) : input).toString("utf8");
  }
  const lines = text.split("\n");
  const first = lines[0] ?? "";
  if (first.startsWith("configuration:")) return parseCryptofeed(lines);
  return parseTimestamped(lines, options);
}

const L2FLOW_SNAPSHOT = "snapshot ";

/**
 * hftbacktest and l2flow's own format: `<recv ns> <text>`. The text is a combined-stream frame
 * (`{"stream":..,"data":..}`), a bare depth snapshot body (hftbacktest), or, in l2flow's format,
 * `snapshot <SYMBOL> <limit> <body>`.
 */
function parseTimestamped(lines: readonly string[], options: ParseRecordingOptions): Recording {
  const events: RecordedEvent[] = [];
  const symbols: string[] = [];
  const pendingSnapshots: { index: number; receiveTimeUs: number; body: string; line: number }[] = [];
  let sawL2flow = false;
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i]!;
    if (line.length === 0) continue;
    const space = line.indexOf(" ");
    if (space <= 0) throw new RecordingFormatError("expected `<receive time ns> <frame>`", i + 1);
    const ns = line.slice(0, space);
    if (!/^[0-9]+$/.test(ns))
      throw new RecordingFormatError(`receive time ${JSON.stringify(ns)} is not integer nanoseconds`, i + 1);
    const receiveTimeUs = Number(BigInt(ns) / 1000n);
    const rest = line.slice(space + 1);
    if (rest.startsWith(L2FLOW_SNAPSHOT)) {
      sawL2flow = true;
      const m = /^snapshot ([A-Z0-9]+) ([0-9]+) (.*)$/.exec(rest);
      if (!m) throw new RecordingFormatError("expected `snapshot <SYMBOL> <limit> <body>`", i + 1);
      events.push({ type: "snapshot", receiveTimeUs, symbol: m[1]!, limit: Number(m[2]), body: m[3]! });
      addSymbol(symbols, m[1]!);
    } else if (rest.startsWith('{"stream":')) {
      const frame = splitCombined(rest, i + 1);
      addSymbol(symbols, frame.symbol);
      events.push({ type: "frame", receiveTimeUs, ...frame });
    } else if (rest.startsWith('{"lastUpdateId":')) {
      pendingSnapshots.push({ index: events.length, receiveTimeUs, body: rest, line: i + 1 });
      events.push({ type: "snapshot", receiveTimeUs, symbol: "", limit: 0, body: rest });
    } else {
      throw new RecordingFormatError("expected a combined-stream frame or a depth snapshot", i + 1);
    }
  }
  for (const p of pendingSnapshots) {
    const symbol = options.defaultSymbol ?? (symbols.length === 1 ? symbols[0] : undefined);
    if (!symbol)
      throw new RecordingFormatError(
        "a snapshot line does not say its symbol and the recording has several",
        p.line,
      );
    const levels = countLevels(p.body);
    events[p.index] = {
      type: "snapshot",
      receiveTimeUs: p.receiveTimeUs,
      symbol,
      limit: levels,
      body: p.body,
    };
  }
  return { format: sawL2flow ? "l2flow" : "hftbacktest", symbols, events };
}

/** cryptofeed's raw capture: line 1 configuration, line 2 the stream URL, then frames and REST lines. */
function parseCryptofeed(lines: readonly string[]): Recording {
  const events: RecordedEvent[] = [];
  const symbols: string[] = [];
  for (let i = 2; i < lines.length; i++) {
    const line = lines[i]!;
    if (line.length === 0) continue;
    const arrow = line.indexOf(" -> ");
    if (arrow > 0 && line.startsWith("http")) {
      const url = new URL(line.slice(0, arrow));
      const rest = line.slice(arrow + 4);
      const colon = rest.indexOf(": ");
      if (colon <= 0) throw new RecordingFormatError("expected `<url> -> <recv s>: <body>`", i + 1);
      const symbol = url.searchParams.get("symbol")?.toUpperCase();
      if (!symbol) throw new RecordingFormatError("snapshot URL has no symbol parameter", i + 1);
      const limit = Number(url.searchParams.get("limit") ?? "100");
      addSymbol(symbols, symbol);
      events.push({
        type: "snapshot",
        receiveTimeUs: secondsToUs(rest.slice(0, colon), i + 1),
        symbol,
        limit,
        body: rest.slice(colon + 2),
      });
      continue;
    }
    const colon = line.indexOf(": ");
    if (colon <= 0) throw new RecordingFormatError("expected `<recv s>: <frame>`", i + 1);
    const frame = splitCombined(line.slice(colon + 2), i + 1);
    addSymbol(symbols, frame.symbol);
    events.push({ type: "frame", receiveTimeUs: secondsToUs(line.slice(0, colon), i + 1), ...frame });
  }
  return { format: "cryptofeed", symbols, events };
}

const STREAM_PREFIX = '{"stream":"';

/** Splits `{"stream":"x","data":{...}}` without parsing the data (it stays byte-exact). */
function splitCombined(
  text: string,
  line: number,
): { stream: string; symbol: string; kind: string; data: string } {
  const end = text.indexOf('"', STREAM_PREFIX.length);
  const dataKey = '","data":';
  if (!text.startsWith(STREAM_PREFIX) || end < 0 || !text.startsWith(dataKey, end) || !text.endsWith("}")) {
    throw new RecordingFormatError("malformed combined-stream frame", line);
  }
  const stream = text.slice(STREAM_PREFIX.length, end);
  const at = stream.indexOf("@");
  if (at <= 0) throw new RecordingFormatError(`stream name ${JSON.stringify(stream)} has no @`, line);
  return {
    stream,
    symbol: stream.slice(0, at).toUpperCase(),
    kind: stream.slice(at + 1),
    data: text.slice(end + dataKey.length, -1),
  };
}

function secondsToUs(text: string, line: number): number {
  const m = /^([0-9]+)(?:\.([0-9]+))?$/.exec(text);
  if (!m) throw new RecordingFormatError(`receive time ${JSON.stringify(text)} is not seconds`, line);
  const frac = (m[2] ?? "").padEnd(6, "0").slice(0, 6);
  return Number(m[1]) * 1_000_000 + Number(frac);
}

function countLevels(body: string): number {
  try {
    const parsed = JSON.parse(body) as { bids?: unknown[] };
    return Array.isArray(parsed.bids) ? parsed.bids.length : 0;
  } catch {
    return 0;
  }
}

function addSymbol(symbols: string[], symbol: string): void {
  if (!symbols.includes(symbol)) symbols.push(symbol);
}

/** Formats one event as a line of l2flow's recording format (the inverse of the parser). */
export function formatRecordedEvent(event: RecordedEvent): string {
  const ns = `${event.receiveTimeUs}000`;
  if (event.type === "snapshot") return `${ns} snapshot ${event.symbol} ${event.limit} ${event.body}`;
  return `${ns} {"stream":"${event.stream}","data":${event.data}}`;
}

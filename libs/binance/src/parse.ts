/**
 * Strict parsing of Binance frames and REST bodies into typed events. Bad input becomes a
 * `FrameError` with a stable code, never a crash. Prices and quantities stay the exchange's strings
 * (checked to be non-negative decimals); ids and times are numbers (they fit in a double exactly).
 * Event and trade times are milliseconds since the epoch whatever unit the frame has: a connection
 * opened with `timeUnit=MICROSECOND` gets microseconds, which are divided by 1000 (the fraction kept).
 */

/** Why a frame was rejected. */
export type FrameErrorCode =
  "FRAME_NOT_JSON" | "FRAME_MISSING_FIELD" | "FRAME_BAD_NUMBER" | "FRAME_UNKNOWN_EVENT" | "FRAME_TOO_LARGE";

/** A frame that cannot be used. Never retryable: the same bytes fail the same way. */
export class FrameError extends Error {
  readonly retryable = false;
  constructor(
    readonly code: FrameErrorCode,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
    this.name = "FrameError";
  }
}

/** `<symbol>@depth` / `@depth@100ms` diff event. */
export interface DepthUpdate {
  readonly eventTime: number;
  readonly symbol: string;
  readonly firstUpdateId: number;
  readonly finalUpdateId: number;
  readonly bids: readonly (readonly [string, string])[];
  readonly asks: readonly (readonly [string, string])[];
}

/** `<symbol>@trade` event. */
export interface TradeEvent {
  readonly eventTime: number;
  readonly symbol: string;
  readonly tradeId: number;
  readonly price: string;
  readonly quantity: string;
  readonly tradeTime: number;
  readonly buyerIsMaker: boolean;
}

/** `<symbol>@aggTrade` event. */
export interface AggTradeEvent {
  readonly eventTime: number;
  readonly symbol: string;
  readonly aggTradeId: number;
  readonly price: string;
  readonly quantity: string;
  readonly firstTradeId: number;
  readonly lastTradeId: number;
  readonly tradeTime: number;
  readonly buyerIsMaker: boolean;
}

/** `<symbol>@bookTicker` event (no event type or time in the payload). */
export interface BookTickerEvent {
  readonly updateId: number;
  readonly symbol: string;
  readonly bidPrice: string;
  readonly bidQuantity: string;
  readonly askPrice: string;
  readonly askQuantity: string;
}

/** A REST `/api/v3/depth` body. */
export interface DepthSnapshot {
  readonly lastUpdateId: number;
  readonly bids: readonly (readonly [string, string])[];
  readonly asks: readonly (readonly [string, string])[];
}

/** Frames larger than this are rejected before parsing (Binance's largest are far smaller). */
export const MAX_FRAME_BYTES = 4 * 1024 * 1024;

const DECIMAL = /^[0-9]+(\.[0-9]+)?$/;

function parseJson(text: string | Uint8Array): Record<string, unknown> {
  const len = text.length;
  if (len > MAX_FRAME_BYTES)
    throw new FrameError("FRAME_TOO_LARGE", `frame of ${len} bytes exceeds ${MAX_FRAME_BYTES}`);
  let v: unknown;
  try {
    v = JSON.parse(
      typeof text === "string"
        ? text
        : Buffer.from(text.buffer, text.byteOffset, text.byteLength).toString("utf8"),
    );
  } catch (err) {
    throw new FrameError("FRAME_NOT_JSON", "frame is not JSON", { cause: err });
  }
  if (typeof v !== "object" || v === null || Array.isArray(v))
    throw new FrameError("FRAME_NOT_JSON", "frame is not a JSON object");
  return v as Record<string, unknown>;
}

function int(o: Record<string, unknown>, key: string): number {
  const v = o[key];
  if (v === undefined) throw new FrameError("FRAME_MISSING_FIELD", `field ${key} is missing`);
  if (typeof v !== "number" || !Number.isSafeInteger(v) || v < 0)
    throw new FrameError("FRAME_BAD_NUMBER", `field ${key} is not a non-negative integer`);
  return v;
}

/**
 * Times this large are microseconds: with `timeUnit=MICROSECOND` Binance sends every time of a frame in
 * them. 10^14 ms is the year 5138; 10^14 us was 1973.
 */
const MICROSECONDS_FROM = 1e14;

/** A time field in milliseconds since the epoch; a microsecond one is converted, its fraction kept. */
function time(o: Record<string, unknown>, key: string): number {
  const v = int(o, key);
  return v >= MICROSECONDS_FROM ? v / 1000 : v;
}

function str(o: Record<string, unknown>, key: string): string {
  const v = o[key];
  if (v === undefined) throw new FrameError("FRAME_MISSING_FIELD", `field ${key} is missing`);
  if (typeof v !== "string" || v.length === 0)
    throw new FrameError("FRAME_MISSING_FIELD", `field ${key} is not a string`);
  return v;
}

function decimal(o: Record<string, unknown>, key: string): string {
  const v = str(o, key);
  if (!DECIMAL.test(v))
    throw new FrameError(
      "FRAME_BAD_NUMBER",
      `field ${key} is not a non-negative decimal: ${JSON.stringify(v.slice(0, 40))}`,
    );
  return v;
}

function bool(o: Record<string, unknown>, key: string): boolean {
  const v = o[key];
  if (typeof v !== "boolean")
    throw new FrameError(
      v === undefined ? "FRAME_MISSING_FIELD" : "FRAME_BAD_NUMBER",
      `field ${key} is not a boolean`,
    );
  return v;
}

function levels(o: Record<string, unknown>, key: string): (readonly [string, string])[] {
  const v = o[key];
  if (!Array.isArray(v)) throw new FrameError("FRAME_MISSING_FIELD", `field ${key} is not a list of levels`);
  for (const l of v as unknown[]) {
    if (
      !Array.isArray(l) ||
      l.length < 2 ||
      typeof l[0] !== "string" ||
      typeof l[1] !== "string" ||
      !DECIMAL.test(l[0]) ||
      !DECIMAL.test(l[1])
    ) {
      throw new FrameError(
        "FRAME_BAD_NUMBER",
        `field ${key} holds a level that is not [price, quantity] decimals`,
      );
    }
  }
  return v as (readonly [string, string])[];
}

function expectEvent(o: Record<string, unknown>, type: string): void {
  if (o.e !== type)
    throw new FrameError("FRAME_UNKNOWN_EVENT", `expected event ${type}, got ${JSON.stringify(o.e)}`);
}

/** Parses a depth diff (`depthUpdate`). */
export function parseDepthUpdate(text: string | Uint8Array): DepthUpdate {
  const o = parseJson(text);
  expectEvent(o, "depthUpdate");
  const d = {
    eventTime: time(o, "E"),
    symbol: str(o, "s"),
    firstUpdateId: int(o, "U"),
    finalUpdateId: int(o, "u"),
    bids: levels(o, "b"),
    asks: levels(o, "a"),
  };
  if (d.firstUpdateId > d.finalUpdateId) throw new FrameError("FRAME_BAD_NUMBER", "U is greater than u");
  return d;
}

/** Parses a trade event. */
export function parseTrade(text: string | Uint8Array): TradeEvent {
  const o = parseJson(text);
  expectEvent(o, "trade");
  return {
    eventTime: time(o, "E"),
    symbol: str(o, "s"),
    tradeId: int(o, "t"),
    price: decimal(o, "p"),
    quantity: decimal(o, "q"),
    tradeTime: time(o, "T"),
    buyerIsMaker: bool(o, "m"),
  };
}

/** Parses an aggregate trade event. */
export function parseAggTrade(text: string | Uint8Array): AggTradeEvent {
  const o = parseJson(text);
  expectEvent(o, "aggTrade");
  return {
    eventTime: time(o, "E"),
    symbol: str(o, "s"),
    aggTradeId: int(o, "a"),
    price: decimal(o, "p"),
    quantity: decimal(o, "q"),
    firstTradeId: int(o, "f"),
    lastTradeId: int(o, "l"),
    tradeTime: time(o, "T"),
    buyerIsMaker: bool(o, "m"),
  };
}

/** Parses a bookTicker event. */
export function parseBookTicker(text: string | Uint8Array): BookTickerEvent {
  const o = parseJson(text);
  return {
    updateId: int(o, "u"),
    symbol: str(o, "s"),
    bidPrice: decimal(o, "b"),
    bidQuantity: decimal(o, "B"),
    askPrice: decimal(o, "a"),
    askQuantity: decimal(o, "A"),
  };
}

/** Parses a REST depth snapshot body. */
export function parseDepthSnapshot(text: string | Uint8Array): DepthSnapshot {
  const o = parseJson(text);
  return { lastUpdateId: int(o, "lastUpdateId"), bids: levels(o, "bids"), asks: levels(o, "asks") };
}

/** What ingest needs to route a frame: its kind, symbol and the id its message id is built from. */
export interface FrameRoute {
  readonly kind: "trade" | "aggtrade" | "depth" | "bookticker" | "shutdown";
  readonly symbol: string;
  /** `t`, `a` or `u` (bookTicker's `u` too); 0 for shutdown. */
  readonly id: number;
  /** Exchange event time `E` (0 when absent). */
  readonly eventTime: number;
  /** The inner `data` object's text, sliced from the frame without re-serialising. */
  readonly data: string;
}

/**
 * Routes one WebSocket frame — combined (`{"stream":…,"data":…}`) or raw — without trusting it:
 * throws `FrameError` for anything that is not a known market event.
 */
export function routeFrame(text: string): FrameRoute {
  let data = text;
  if (text.startsWith('{"stream":')) {
    const idx = text.indexOf(',"data":');
    if (idx < 0 || !text.endsWith("}"))
      throw new FrameError("FRAME_MISSING_FIELD", "combined frame without data");
    data = text.slice(idx + 8, -1);
  }
  const o = parseJson(data);
  switch (o.e) {
    case "trade":
      return { kind: "trade", symbol: str(o, "s"), id: int(o, "t"), eventTime: int(o, "E"), data };
    case "aggTrade":
      return { kind: "aggtrade", symbol: str(o, "s"), id: int(o, "a"), eventTime: int(o, "E"), data };
    case "depthUpdate":
      return { kind: "depth", symbol: str(o, "s"), id: int(o, "u"), eventTime: int(o, "E"), data };
    case "serverShutdown":
      return { kind: "shutdown", symbol: "", id: 0, eventTime: typeof o.E === "number" ? o.E : 0, data };
    case undefined:
      if (typeof o.u === "number" && typeof o.b === "string")
        return { kind: "bookticker", symbol: str(o, "s"), id: int(o, "u"), eventTime: 0, data };
      throw new FrameError("FRAME_UNKNOWN_EVENT", "frame has no event type");
    default:
      throw new FrameError("FRAME_UNKNOWN_EVENT", `unknown event ${JSON.stringify(o.e).slice(0, 40)}`);
  }
}

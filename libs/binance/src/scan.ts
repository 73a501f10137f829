/**
 * `routeFrame`'s fast path for ingest: routes a frame from its bytes with one validating pass and no
 * parsed object. `JSON.parse` built every field of every frame (prices, quantities, the levels of a
 * diff) only for ingest to read four of them and store the bytes as they came; at saturation that
 * parse was 12 % of ingest's thread, and its garbage added to the collector's share.
 *
 * The contract is narrow on purpose: `scanFrame` answers only for a frame it can prove well formed
 * (the whole frame is valid JSON, all ASCII, the usual shape, the routed fields plain) and then its
 * answer equals `routeFrame`'s. For anything else (malformed, unusual, escaped, non-ASCII, a
 * `serverShutdown`) it returns `undefined`, and the caller runs `routeFrame` on the text, which
 * accepts or rejects it with the exact `FrameError` as before.
 */
import { MAX_FRAME_BYTES, type FrameRoute } from "./parse.js";

/** What `scanFrame` routes: `FrameRoute` with the inner `data` object as a byte range of the frame. */
export interface ScannedFrame {
  readonly kind: Exclude<FrameRoute["kind"], "shutdown">;
  readonly symbol: string;
  /** `t`, `a` or `u` (as `routeFrame`). */
  readonly id: number;
  /** `E`; 0 for bookTicker (as `routeFrame`). */
  readonly eventTime: number;
  /** Where the inner `data` object starts in the frame (inclusive). */
  readonly dataStart: number;
  /** Where it ends (exclusive). */
  readonly dataEnd: number;
}

const QUOTE = 0x22;
const BACKSLASH = 0x5c;
const OPEN_OBJECT = 0x7b;
const CLOSE_OBJECT = 0x7d;
const OPEN_ARRAY = 0x5b;
const CLOSE_ARRAY = 0x5d;
const COMMA = 0x2c;
const COLON = 0x3a;
const MINUS = 0x2d;
const DOT = 0x2e;
const ZERO = 0x30;
const NINE = 0x39;
/** Deeper nesting is left to `JSON.parse` (Binance's frames nest three levels). */
const MAX_DEPTH = 32;
/** Digits of an integer that is certainly safe (2^53 has 16). */
const SAFE_DIGITS = 15;

const ascii = (s: string) => Uint8Array.from(s, (c) => c.charCodeAt(0));
const COMBINED_HEAD = ascii('{"stream":');
const DATA_KEY = ascii(',"data":');
const EVENTS: readonly {
  readonly name: Uint8Array;
  readonly kind: ScannedFrame["kind"];
  readonly idKey: number;
}[] = [
  { name: ascii("trade"), kind: "trade", idKey: 0x74 /* t */ },
  { name: ascii("aggTrade"), kind: "aggtrade", idKey: 0x61 /* a */ },
  { name: ascii("depthUpdate"), kind: "depth", idKey: 0x75 /* u */ },
];

function skipWhitespace(b: Uint8Array, i: number): number {
  let c = b[i]; // past the end: undefined, which ends the loop
  while (c === 0x20 || c === 0x0a || c === 0x0d || c === 0x09) c = b[++i];
  return i;
}

function isHex(c: number): boolean {
  return (c >= ZERO && c <= NINE) || (c >= 0x41 && c <= 0x46) || (c >= 0x61 && c <= 0x66);
}

/** Whether the last string `skipString` passed held an escape. */
let escaped = false;

/**
 * End of the string starting at `i` (after its closing quote), or -1 when invalid or not ASCII;
 * sets `escaped`.
 */
function skipString(b: Uint8Array, i: number): number {
  const n = b.length;
  escaped = false;
  for (i++; i < n;) {
    const c = b[i]!;
    if (c === QUOTE) return i + 1;
    if (c < 0x20 || c >= 0x80) return -1;
    if (c !== BACKSLASH) {
      i++;
      continue;
    }
    escaped = true;
    const e = b[i + 1];
    if (e === 0x75 /* u */) {
      if (i + 5 >= n || !isHex(b[i + 2]!) || !isHex(b[i + 3]!) || !isHex(b[i + 4]!) || !isHex(b[i + 5]!))
        return -1;
      i += 6;
    } else if (
      e === QUOTE ||
      e === BACKSLASH ||
      e === 0x2f /* / */ ||
      e === 0x62 /* b */ ||
      e === 0x66 /* f */ ||
      e === 0x6e /* n */ ||
      e === 0x72 /* r */ ||
      e === 0x74 /* t */
    ) {
      i += 2;
    } else return -1;
  }
  return -1;
}

function skipDigits(b: Uint8Array, i: number): number {
  while (i < b.length && b[i]! >= ZERO && b[i]! <= NINE) i++;
  return i;
}

/** End of the JSON number starting at `i`, or -1. */
function skipNumber(b: Uint8Array, i: number): number {
  if (b[i] === MINUS) i++;
  if (b[i] === ZERO) i++;
  else {
    const end = skipDigits(b, i);
    if (end === i) return -1;
    i = end;
  }
  if (b[i] === DOT) {
    const end = skipDigits(b, i + 1);
    if (end === i + 1) return -1;
    i = end;
  }
  if (b[i] === 0x65 /* e */ || b[i] === 0x45 /* E */) {
    i++;
    if (b[i] === 0x2b /* + */ || b[i] === MINUS) i++;
    const end = skipDigits(b, i);
    if (end === i) return -1;
    i = end;
  }
  return i;
}

function skipLiteral(b: Uint8Array, i: number, word: string): number {
  for (let k = 0; k < word.length; k++) if (b[i + k] !== word.charCodeAt(k)) return -1;
  return i + word.length;
}

/** End of the JSON value starting at `i` (no whitespace before it), or -1. */
function skipValue(b: Uint8Array, i: number, depth: number): number {
  const c = b[i];
  if (c === QUOTE) return skipString(b, i);
  if (c === OPEN_OBJECT) return skipObject(b, i, depth + 1);
  if (c === OPEN_ARRAY) return skipArray(b, i, depth + 1);
  if (c === MINUS || (c !== undefined && c >= ZERO && c <= NINE)) return skipNumber(b, i);
  if (c === 0x74) return skipLiteral(b, i, "true");
  if (c === 0x66) return skipLiteral(b, i, "false");
  if (c === 0x6e) return skipLiteral(b, i, "null");
  return -1;
}

function skipArray(b: Uint8Array, i: number, depth: number): number {
  if (depth > MAX_DEPTH) return -1;
  i = skipWhitespace(b, i + 1);
  if (b[i] === CLOSE_ARRAY) return i + 1;
  for (;;) {
    i = skipValue(b, i, depth);
    if (i < 0) return -1;
    i = skipWhitespace(b, i);
    if (b[i] === CLOSE_ARRAY) return i + 1;
    if (b[i] !== COMMA) return -1;
    i = skipWhitespace(b, i + 1);
  }
}

function skipObject(b: Uint8Array, i: number, depth: number): number {
  if (depth > MAX_DEPTH) return -1;
  i = skipWhitespace(b, i + 1);
  if (b[i] === CLOSE_OBJECT) return i + 1;
  for (;;) {
    if (b[i] !== QUOTE) return -1;
    i = skipWhitespace(b, skipString(b, i));
    if (i < 0 || b[i] !== COLON) return -1;
    i = skipValue(b, skipWhitespace(b, i + 1), depth);
    if (i < 0) return -1;
    i = skipWhitespace(b, i);
    if (b[i] === CLOSE_OBJECT) return i + 1;
    if (b[i] !== COMMA) return -1;
    i = skipWhitespace(b, i + 1);
  }
}

/** The non-negative integer token b[start, end) when it is plain digits that are certainly safe, else -1. */
function plainInt(b: Uint8Array, start: number, end: number): number {
  if (start < 0 || end - start > SAFE_DIGITS) return -1;
  let v = 0;
  for (let i = start; i < end; i++) {
    const c = b[i]!;
    if (c < ZERO || c > NINE) return -1;
    v = v * 10 + (c - ZERO);
  }
  return end > start ? v : -1;
}

/** True when b[start] opens a string (escapes were refused while scanning). */
function isString(b: Uint8Array, start: number): boolean {
  return start >= 0 && b[start] === QUOTE;
}

function sameBytes(b: Uint8Array, start: number, end: number, want: Uint8Array): boolean {
  if (end - start !== want.length) return false;
  for (let k = 0; k < want.length; k++) if (b[start + k] !== want[k]) return false;
  return true;
}

/**
 * Routes a frame from its bytes, or `undefined` when only `routeFrame` can say (see the file's
 * comment); never throws. A combined frame must be exactly `{"stream":"…","data":{…}}`; any other
 * frame is routed as the data object itself, as `routeFrame` does.
 */
export function scanFrame(b: Buffer): ScannedFrame | undefined {
  const n = b.length;
  if (n > MAX_FRAME_BYTES || n === 0) return undefined;
  let start = 0;
  let end = n;
  if (sameBytes(b, 0, COMBINED_HEAD.length, COMBINED_HEAD)) {
    const afterStream = skipString(b, COMBINED_HEAD.length);
    if (afterStream < 0 || escaped) return undefined;
    if (!sameBytes(b, afterStream, afterStream + DATA_KEY.length, DATA_KEY)) return undefined;
    start = afterStream + DATA_KEY.length;
    end = n - 1;
    if (b[end] !== CLOSE_OBJECT) return undefined;
  }
  if (b[start] !== OPEN_OBJECT) return undefined;

  // The data object's members, keeping the last of a repeated key (as JSON.parse does). Each routed
  // key is one letter; a key with an escape in it could spell one, so such a frame goes the slow way.
  let e0 = -1, e1 = -1; // prettier-ignore
  let bigE0 = -1, bigE1 = -1; // prettier-ignore
  let s0 = -1, s1 = -1; // prettier-ignore
  let t0 = -1, t1 = -1; // prettier-ignore
  let a0 = -1, a1 = -1; // prettier-ignore
  let u0 = -1, u1 = -1; // prettier-ignore
  let bookB0 = -1;
  let i = skipWhitespace(b, start + 1);
  if (b[i] !== CLOSE_OBJECT) {
    for (;;) {
      if (b[i] !== QUOTE) return undefined;
      const keyEnd = skipString(b, i);
      if (keyEnd < 0) return undefined;
      if (escaped) return undefined;
      const key = keyEnd - i === 3 ? b[i + 1]! : -1;
      i = skipWhitespace(b, keyEnd);
      if (b[i] !== COLON) return undefined;
      const v0 = skipWhitespace(b, i + 1);
      const v1 = skipValue(b, v0, 1);
      if (v1 < 0) return undefined;
      // A routed string read with an escape in it is left to JSON.parse (only strings set `escaped`).
      if (b[v0] === QUOTE && escaped && (key === 0x65 || key === 0x73)) return undefined;
      switch (key) {
        case 0x65: e0 = v0; e1 = v1; break; // prettier-ignore
        case 0x45: bigE0 = v0; bigE1 = v1; break; // prettier-ignore
        case 0x73: s0 = v0; s1 = v1; break; // prettier-ignore
        case 0x74: t0 = v0; t1 = v1; break; // prettier-ignore
        case 0x61: a0 = v0; a1 = v1; break; // prettier-ignore
        case 0x75: u0 = v0; u1 = v1; break; // prettier-ignore
        case 0x62: bookB0 = v0; break; // prettier-ignore
      }
      i = skipWhitespace(b, v1);
      if (b[i] === CLOSE_OBJECT) break;
      if (b[i] !== COMMA) return undefined;
      i = skipWhitespace(b, i + 1);
    }
  }
  // The object must end exactly where the data ends (a combined frame's last byte closes the frame).
  if (i + 1 !== end) return undefined;

  if (s1 - s0 < 3 || !isString(b, s0)) return undefined;
  if (e0 < 0) {
    // bookTicker: no event type; `u` a number, `b` a string.
    if (bookB0 < 0 || b[bookB0] !== QUOTE) return undefined;
    const id = plainInt(b, u0, u1);
    if (id < 0) return undefined;
    return {
      kind: "bookticker",
      symbol: b.toString("latin1", s0 + 1, s1 - 1),
      id,
      eventTime: 0,
      dataStart: start,
      dataEnd: end,
    };
  }
  if (!isString(b, e0)) return undefined;
  for (const ev of EVENTS) {
    if (!sameBytes(b, e0 + 1, e1 - 1, ev.name)) continue;
    const id =
      ev.idKey === 0x74 ? plainInt(b, t0, t1) : ev.idKey === 0x61 ? plainInt(b, a0, a1) : plainInt(b, u0, u1);
    const eventTime = plainInt(b, bigE0, bigE1);
    if (id < 0 || eventTime < 0) return undefined;
    return {
      kind: ev.kind,
      symbol: b.toString("latin1", s0 + 1, s1 - 1),
      id,
      eventTime,
      dataStart: start,
      dataEnd: end,
    };
  }
  return undefined;
}

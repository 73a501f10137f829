/**
 * Hand-written encoders for the messages the normalizer publishes most: the book snapshot after every
 * diff, the trade per trade and the window at every close. Each writes exactly the bytes of the
 * generated `encode(m).finish()` (same field order, defaults skipped), sized from the strings' lengths
 * and written in one pass into one pooled buffer, where the generated writer grows buffers, forks and
 * joins a writer per nested message and UTF-8-encodes every string through TextEncoder, a new
 * ArrayBuffer each (book snapshots were a tenth of the normalizer's CPU; a window took 16-30 us to
 * encode that way, 6-7 us this way, a trade 3.2 us against 0.5 us, in the parse suite). Anything
 * outside the fast path (a non-ASCII string, a negative or non-integer number) goes through the
 * generated encoder.
 */
import { BookSnapshot, Trade, type BookLevel } from "./gen/l2flow/v1/market_data.js";
import { Window } from "./gen/l2flow/v1/window.js";

/** Bytes of a varint for 0 ≤ n ≤ 2^53. */
function varintSize(n: number): number {
  let size = 1;
  while (n >= 128) {
    n = Math.floor(n / 128);
    size++;
  }
  return size;
}

function writeVarint(buf: Uint8Array, pos: number, n: number): number {
  while (n >= 128) {
    buf[pos++] = (n % 128) | 128;
    n = Math.floor(n / 128);
  }
  buf[pos++] = n;
  return pos;
}

/** Size of a string field (tag, length, bytes) if every character is ASCII; 0 when empty. */
function stringFieldSize(s: string): number {
  return s === "" ? 0 : 1 + varintSize(s.length) + s.length;
}

/**
 * Writes a string field, one byte per character; returns the new position, or -1 when a character
 * is not ASCII (its UTF-8 form is longer than the size computed from the length).
 */
function writeString(buf: Uint8Array, pos: number, tag: number, s: string): number {
  if (s === "") return pos;
  buf[pos++] = tag;
  pos = writeVarint(buf, pos, s.length);
  let high = 0;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    high |= c;
    buf[pos++] = c;
  }
  return high > 127 ? -1 : pos;
}

function writeInt(buf: Uint8Array, pos: number, tag: number, n: number): number {
  if (n === 0) return pos;
  buf[pos++] = tag;
  return writeVarint(buf, pos, n);
}

function intFieldOk(n: number): boolean {
  return Number.isSafeInteger(n) && n >= 0;
}

/**
 * A fresh buffer of `size` bytes, carved from a shared 8 KiB pool like `Buffer.allocUnsafe` (a
 * `new Uint8Array` of a book's size costs a separate backing store each: ~1–2 µs here). Not zeroed:
 * the encoder writes every byte. A held buffer keeps its pool alive (at most 8 KiB). Larger slabs of
 * our own were tried (2026-12-07): 64 KiB ones cut the allocation alone from ~1 to ~0.1 us, yet made
 * the normalizer slower (25k against 31k raw msgs/s, with twice the minor page faults, ~14 us each on
 * that VM); 8 KiB ones did the same as this.
 */
function allocate(size: number): Uint8Array {
  const b = Buffer.allocUnsafe(size);
  return new Uint8Array(b.buffer, b.byteOffset, size);
}

/** Size of a field of `tag` holding a double, 0 for the default 0 (and -0). */
const doubleSize = (tag: number, v: number) => (v !== 0 ? varintSize(tag) + 8 : 0);

/** The largest int32 the fast path writes as a plain varint (the generated writer does the same). */
const INT32_MAX = 2 ** 31 - 1;

/** Size of a field of `tag` holding a non-negative integer, 0 for the default 0. */
const intSize = (tag: number, n: number) => (n !== 0 ? varintSize(tag) + varintSize(n) : 0);

const scratch = new DataView(new ArrayBuffer(8));
const scratchBytes = new Uint8Array(scratch.buffer);

function writeDouble(buf: Uint8Array, pos: number, tag: number, v: number): number {
  if (v === 0) return pos;
  pos = writeVarint(buf, pos, tag);
  scratch.setFloat64(0, v, true); // protobuf's fixed64: little-endian, whatever this machine is
  buf.set(scratchBytes, pos);
  return pos + 8;
}

/** `writeInt` for tags of any size. */
function writeTaggedInt(buf: Uint8Array, pos: number, tag: number, n: number): number {
  if (n === 0) return pos;
  pos = writeVarint(buf, pos, tag);
  return writeVarint(buf, pos, n);
}

const levelBody = (l: BookLevel) => stringFieldSize(l.price) + stringFieldSize(l.quantity);

/** Size of a repeated `BookLevel` field whose tag takes `tagBytes` bytes. */
function levelsSize(tagBytes: number, side: readonly BookLevel[]): number {
  let size = 0;
  for (const l of side) {
    const body = levelBody(l);
    size += tagBytes + varintSize(body) + body;
  }
  return size;
}

/** Writes a repeated `BookLevel` field; -1 when a string is not ASCII. */
function writeLevels(buf: Uint8Array, pos: number, tag: number, side: readonly BookLevel[]): number {
  for (const l of side) {
    pos = writeVarint(buf, pos, tag);
    pos = writeVarint(buf, pos, levelBody(l));
    pos = writeString(buf, pos, 10, l.price);
    if (pos >= 0) pos = writeString(buf, pos, 18, l.quantity);
    if (pos < 0) return -1;
  }
  return pos;
}

/**
 * `BookSnapshot.encode(s).finish()`, byte for byte, faster. Copying the bytes of the levels a symbol's
 * previous snapshot shared (a per-symbol encoder keeping its last snapshot; 85-95 % of the top 20
 * levels carry over between diffs) was tried on 2026-12-07: faster on encoding alone, slower in the
 * parse suite's full depth path on the 10-symbol file (39-51k against 57-64k frames/s), so not kept.
 */
export function encodeBookSnapshot(s: BookSnapshot): Uint8Array {
  const ints = [s.lastUpdateId, s.epoch, s.eventTimeUs, s.receiveTimeUs];
  let size = stringFieldSize(s.exchange) + stringFieldSize(s.symbol);
  for (const n of ints) {
    if (!intFieldOk(n)) return BookSnapshot.encode(s).finish();
    if (n !== 0) size += 1 + varintSize(n);
  }
  size += levelsSize(1, s.bids) + levelsSize(1, s.asks);
  const buf = allocate(size);
  let pos = writeString(buf, 0, 10, s.exchange);
  if (pos >= 0) pos = writeString(buf, pos, 18, s.symbol);
  if (pos < 0) return BookSnapshot.encode(s).finish();
  pos = writeInt(buf, pos, 24, s.lastUpdateId);
  pos = writeInt(buf, pos, 32, s.epoch);
  pos = writeInt(buf, pos, 40, s.eventTimeUs);
  pos = writeInt(buf, pos, 48, s.receiveTimeUs);
  pos = writeLevels(buf, pos, 58, s.bids);
  if (pos >= 0) pos = writeLevels(buf, pos, 66, s.asks);
  if (pos < 0) return BookSnapshot.encode(s).finish();
  if (pos !== size) throw new Error(`encodeBookSnapshot wrote ${pos} of ${size} bytes`); // cannot happen
  return buf;
}

/** `Trade.encode(t).finish()`, byte for byte, faster (the normalizer publishes one per trade). */
export function encodeTrade(t: Trade): Uint8Array {
  const ints = [t.tradeId, t.tradeTimeUs, t.eventTimeUs, t.receiveTimeUs, t.firstTradeId, t.lastTradeId];
  for (const n of ints) if (!intFieldOk(n)) return Trade.encode(t).finish();
  // Enums are int32s: a negative one takes ten bytes, a larger one is refused by the generated writer.
  for (const e of [t.kind as number, t.takerSide as number])
    if (!intFieldOk(e) || e > INT32_MAX) return Trade.encode(t).finish();
  const size =
    stringFieldSize(t.exchange) +
    stringFieldSize(t.symbol) +
    intSize(24, t.kind) +
    intSize(32, t.tradeId) +
    stringFieldSize(t.price) +
    stringFieldSize(t.quantity) +
    intSize(56, t.takerSide) +
    intSize(64, t.tradeTimeUs) +
    intSize(72, t.eventTimeUs) +
    intSize(80, t.receiveTimeUs) +
    intSize(88, t.firstTradeId) +
    intSize(96, t.lastTradeId);
  const buf = allocate(size);
  let pos = writeString(buf, 0, 10, t.exchange);
  if (pos >= 0) pos = writeString(buf, pos, 18, t.symbol);
  if (pos < 0) return Trade.encode(t).finish();
  pos = writeInt(buf, pos, 24, t.kind);
  pos = writeInt(buf, pos, 32, t.tradeId);
  pos = writeString(buf, pos, 42, t.price);
  if (pos >= 0) pos = writeString(buf, pos, 50, t.quantity);
  if (pos < 0) return Trade.encode(t).finish();
  pos = writeInt(buf, pos, 56, t.takerSide);
  pos = writeInt(buf, pos, 64, t.tradeTimeUs);
  pos = writeInt(buf, pos, 72, t.eventTimeUs);
  pos = writeInt(buf, pos, 80, t.receiveTimeUs);
  pos = writeInt(buf, pos, 88, t.firstTradeId);
  pos = writeInt(buf, pos, 96, t.lastTradeId);
  if (pos !== size) throw new Error(`encodeTrade wrote ${pos} of ${size} bytes`); // cannot happen
  return buf;
}

/** The window's doubles in field order: fields 6-12 (open ... vwap) here, 14-23 in `bookDoubles`. */
const tradeDoubles = (w: Window) => [w.open, w.high, w.low, w.close, w.volume, w.quoteVolume, w.vwap];
const bookDoubles = (w: Window) => [
  w.takerBuyVolume,
  w.takerSellVolume,
  w.tradeFlowImbalance,
  w.orderFlowImbalance,
  w.spreadMean,
  w.spreadMax,
  w.spreadLast,
  w.mid,
  w.microprice,
  w.bookImbalance,
];
/** The window's integer fields, which the fast path needs non-negative and safe. */
const windowInts = (w: Window) => [
  w.startTimeMs,
  w.endTimeMs,
  w.tradeCount,
  w.bookLevels,
  w.lastUpdateId,
  w.bookUpdateCount,
  w.lateEventCount,
  w.closeReason,
  w.epoch,
];

/** `Window.encode(w).finish()`, byte for byte, faster. */
export function encodeWindow(w: Window): Uint8Array {
  for (const n of windowInts(w)) if (!intFieldOk(n)) return Window.encode(w).finish();
  if (w.bookLevels > INT32_MAX || (w.closeReason as number) > INT32_MAX) return Window.encode(w).finish();
  const trade = tradeDoubles(w);
  const book = bookDoubles(w);
  let size =
    stringFieldSize(w.exchange) +
    stringFieldSize(w.symbol) +
    stringFieldSize(w.interval) +
    intSize(32, w.startTimeMs) +
    intSize(40, w.endTimeMs) +
    intSize(104, w.tradeCount) +
    intSize(192, w.bookLevels) +
    doubleSize(209, w.realizedVolatility) +
    intSize(232, w.lastUpdateId) +
    intSize(240, w.bookUpdateCount) +
    (w.complete ? 3 : 0) +
    intSize(256, w.lateEventCount) +
    intSize(264, w.closeReason) +
    intSize(272, w.epoch);
  for (let i = 0; i < trade.length; i++) size += doubleSize(49 + 8 * i, trade[i]!);
  for (let i = 0; i < book.length; i++) size += doubleSize(113 + 8 * i, book[i]!);
  const bands: number[] = [];
  for (const d of w.depth) {
    if (!intFieldOk(d.bps) || d.bps > INT32_MAX) return Window.encode(w).finish();
    const body = intSize(8, d.bps) + doubleSize(17, d.bidQuantity) + doubleSize(25, d.askQuantity);
    bands.push(body);
    size += 2 + varintSize(body) + body;
  }
  size += levelsSize(2, w.bids) + levelsSize(2, w.asks);
  const buf = allocate(size);
  let pos = writeString(buf, 0, 10, w.exchange);
  if (pos >= 0) pos = writeString(buf, pos, 18, w.symbol);
  if (pos >= 0) pos = writeString(buf, pos, 26, w.interval);
  if (pos < 0) return Window.encode(w).finish();
  pos = writeInt(buf, pos, 32, w.startTimeMs);
  pos = writeInt(buf, pos, 40, w.endTimeMs);
  for (let i = 0; i < trade.length; i++) pos = writeDouble(buf, pos, 49 + 8 * i, trade[i]!);
  pos = writeInt(buf, pos, 104, w.tradeCount);
  for (let i = 0; i < book.length; i++) pos = writeDouble(buf, pos, 113 + 8 * i, book[i]!);
  pos = writeTaggedInt(buf, pos, 192, w.bookLevels);
  w.depth.forEach((d, i) => {
    pos = writeVarint(buf, pos, 202);
    pos = writeVarint(buf, pos, bands[i]!);
    pos = writeInt(buf, pos, 8, d.bps);
    pos = writeDouble(buf, pos, 17, d.bidQuantity);
    pos = writeDouble(buf, pos, 25, d.askQuantity);
  });
  pos = writeDouble(buf, pos, 209, w.realizedVolatility);
  pos = writeLevels(buf, pos, 218, w.bids);
  if (pos >= 0) pos = writeLevels(buf, pos, 226, w.asks);
  if (pos < 0) return Window.encode(w).finish();
  pos = writeTaggedInt(buf, pos, 232, w.lastUpdateId);
  pos = writeTaggedInt(buf, pos, 240, w.bookUpdateCount);
  if (w.complete) {
    pos = writeVarint(buf, pos, 248);
    buf[pos++] = 1;
  }
  pos = writeTaggedInt(buf, pos, 256, w.lateEventCount);
  pos = writeTaggedInt(buf, pos, 264, w.closeReason);
  pos = writeTaggedInt(buf, pos, 272, w.epoch);
  if (pos !== size) throw new Error(`encodeWindow wrote ${pos} of ${size} bytes`); // cannot happen
  return buf;
}

/**
 * Hand-written encoders for the messages the normalizer publishes most: the book snapshot after every
 * diff (`BookSnapshotEncoder`, one per symbol, which also copies the levels unchanged since its last
 * snapshot), the trade per trade and the window at every close. Each writes exactly the bytes of the
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
 * our own were tried (2026-12-07): 64 KiB ones made the normalizer slower (twice the page faults under
 * jemalloc, which hands large blocks back to the system), 8 KiB ones the same as this.
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

/** Size of a snapshot's fields before its levels, or -1 when a number is off the fast path. */
function bookHeadSize(s: BookSnapshot): number {
  let size = stringFieldSize(s.exchange) + stringFieldSize(s.symbol);
  for (const n of [s.lastUpdateId, s.epoch, s.eventTimeUs, s.receiveTimeUs]) {
    if (!intFieldOk(n)) return -1;
    if (n !== 0) size += 1 + varintSize(n);
  }
  return size;
}

/** Writes a snapshot's fields before its levels at the start of `buf`; -1 when a string is not ASCII. */
function writeBookHead(buf: Uint8Array, s: BookSnapshot): number {
  let pos = writeString(buf, 0, 10, s.exchange);
  if (pos >= 0) pos = writeString(buf, pos, 18, s.symbol);
  if (pos < 0) return -1;
  pos = writeInt(buf, pos, 24, s.lastUpdateId);
  pos = writeInt(buf, pos, 32, s.epoch);
  pos = writeInt(buf, pos, 40, s.eventTimeUs);
  return writeInt(buf, pos, 48, s.receiveTimeUs);
}

/** `BookSnapshot.encode(s).finish()`, byte for byte, faster. */
export function encodeBookSnapshot(s: BookSnapshot): Uint8Array {
  const head = bookHeadSize(s);
  if (head < 0) return BookSnapshot.encode(s).finish();
  const size = head + levelsSize(1, s.bids) + levelsSize(1, s.asks);
  const buf = allocate(size);
  let pos = writeBookHead(buf, s);
  if (pos >= 0) pos = writeLevels(buf, pos, 58, s.bids);
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

/** Runs of at least this many bytes are copied with `TypedArray.set`; shorter ones byte by byte (cheaper). */
const SET_FROM_BYTES = 128;

/** Copies src[from, to) to dst at `pos`; returns the position after it. */
function copyRun(dst: Uint8Array, pos: number, src: Uint8Array, from: number, to: number): number {
  if (to - from >= SET_FROM_BYTES) {
    dst.set(src.subarray(from, to), pos);
    return pos + to - from;
  }
  for (let i = from; i < to; i++) dst[pos++] = src[i]!;
  return pos;
}

/**
 * One side of the last snapshot a `BookSnapshotEncoder` wrote: its level objects and where each
 * one's bytes (its repeated field: tag, length, body) start in that snapshot, `starts[n]` where the
 * last one's end.
 */
class SideMemo {
  /** The previous side's levels: a copy, so the caller may reuse or change its array. */
  levels: BookLevel[] = [];
  #spareLevels: BookLevel[] = [];
  starts: number[] = [0];
  #next: number[] = [0];
  /** For each level of the side being written: its index in `levels`, or -1 when it is new. */
  readonly #from: number[] = [];
  /** Levels copied from the previous snapshot, over this side's life. */
  reused = 0;

  constructor(readonly tag: number) {}

  /**
   * Matches `levels` with the previous side's (a level object keeps its place in the order: a book's
   * levels are sorted) and returns the bytes the side's field takes.
   */
  match(levels: readonly BookLevel[]): number {
    const prev = this.levels;
    const starts = this.starts;
    const from = this.#from;
    let size = 0;
    let j = 0;
    for (let i = 0; i < levels.length; i++) {
      const l = levels[i]!;
      let k = j;
      while (k < prev.length && prev[k] !== l) k++;
      if (k < prev.length) {
        from[i] = k;
        size += starts[k + 1]! - starts[k]!;
        j = k + 1;
      } else {
        from[i] = -1;
        const body = levelBody(l);
        size += 1 + varintSize(body) + body;
      }
    }
    return size;
  }

  /**
   * Writes `levels` (as last matched) at `pos`, runs of matched levels copied from `prev` (the
   * previous snapshot's bytes); returns the new position, -1 when a string is not ASCII.
   */
  write(buf: Uint8Array, pos: number, levels: readonly BookLevel[], prev: Uint8Array): number {
    const starts = this.starts;
    const from = this.#from;
    const next = this.#next;
    let runFrom = -1;
    let runTo = -1;
    for (let i = 0; i < levels.length; i++) {
      next[i] = pos + (runFrom >= 0 ? starts[runTo]! - starts[runFrom]! : 0);
      const k = from[i]!;
      if (k >= 0 && k === runTo) {
        runTo++;
        continue;
      }
      if (runFrom >= 0) pos = copyRun(buf, pos, prev, starts[runFrom]!, starts[runTo]!);
      runFrom = runTo = -1;
      if (k >= 0) {
        runFrom = k;
        runTo = k + 1;
        continue;
      }
      const l = levels[i]!;
      pos = writeVarint(buf, pos, this.tag);
      pos = writeVarint(buf, pos, levelBody(l));
      pos = writeString(buf, pos, 10, l.price);
      if (pos >= 0) pos = writeString(buf, pos, 18, l.quantity);
      if (pos < 0) return -1;
    }
    if (runFrom >= 0) pos = copyRun(buf, pos, prev, starts[runFrom]!, starts[runTo]!);
    next.length = levels.length + 1;
    next[levels.length] = pos;
    return pos;
  }

  /** The side just written becomes the previous one. */
  commit(levels: readonly BookLevel[]): void {
    const kept = this.#spareLevels;
    kept.length = levels.length;
    for (let i = 0; i < levels.length; i++) {
      kept[i] = levels[i]!;
      if (this.#from[i]! >= 0) this.reused++;
    }
    [this.starts, this.#next] = [this.#next, this.starts];
    [this.levels, this.#spareLevels] = [kept, this.levels];
  }
}

/**
 * `encodeBookSnapshot` for one symbol's successive snapshots, faster: the bytes of a level object
 * that was in the previous snapshot are copied from there instead of encoded again. An order book
 * hands out the same immutable level objects while a level does not change and a diff changes a few
 * of the top levels, so most of each snapshot is copied runs (the bytes are the same either way). The
 * level objects must not be changed once encoded (their arrays may: the encoder keeps its own copy),
 * nor the returned bytes. Holds the last snapshot.
 */
export class BookSnapshotEncoder {
  readonly #bids = new SideMemo(58);
  readonly #asks = new SideMemo(66);
  #prev: Uint8Array = new Uint8Array(0);

  /** Levels copied from a previous snapshot instead of encoded, since this encoder was made. */
  get reusedLevels(): number {
    return this.#bids.reused + this.#asks.reused;
  }

  /** `BookSnapshot.encode(s).finish()`, byte for byte. */
  encode(s: BookSnapshot): Uint8Array {
    const head = bookHeadSize(s);
    if (head < 0) return BookSnapshot.encode(s).finish();
    const size = head + this.#bids.match(s.bids) + this.#asks.match(s.asks);
    const buf = allocate(size);
    let pos = writeBookHead(buf, s);
    if (pos >= 0) pos = this.#bids.write(buf, pos, s.bids, this.#prev);
    if (pos >= 0) pos = this.#asks.write(buf, pos, s.asks, this.#prev);
    if (pos < 0) return BookSnapshot.encode(s).finish();
    if (pos !== size) throw new Error(`BookSnapshotEncoder wrote ${pos} of ${size} bytes`); // cannot happen
    this.#bids.commit(s.bids);
    this.#asks.commit(s.asks);
    this.#prev = buf;
    return buf;
  }
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

/**
 * A hand-written encoder for the message the normalizer publishes after every diff. It writes exactly
 * the bytes of the generated `BookSnapshot.encode(s).finish()` (same field order, defaults skipped),
 * sized from the strings' lengths and written in one pass into one pooled buffer, where the generated
 * writer grows buffers, forks and joins a writer per level and UTF-8-encodes every price through
 * TextEncoder — a tenth of the normalizer's CPU. Anything outside the fast path (a non-ASCII string, a negative or
 * non-integer number) goes through the generated encoder.
 */
import { BookSnapshot } from "./gen/l2flow/v1/market_data.js";

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
 * the encoder writes every byte. A held buffer keeps its pool alive (at most 8 KiB).
 */
function allocate(size: number): Uint8Array {
  const b = Buffer.allocUnsafe(size);
  return new Uint8Array(b.buffer, b.byteOffset, size);
}

/** `BookSnapshot.encode(s).finish()`, byte for byte, faster. */
export function encodeBookSnapshot(s: BookSnapshot): Uint8Array {
  const ints = [s.lastUpdateId, s.epoch, s.eventTimeUs, s.receiveTimeUs];
  let size = stringFieldSize(s.exchange) + stringFieldSize(s.symbol);
  for (const n of ints) {
    if (!intFieldOk(n)) return BookSnapshot.encode(s).finish();
    if (n !== 0) size += 1 + varintSize(n);
  }
  for (const side of [s.bids, s.asks])
    for (const l of side) {
      const body = stringFieldSize(l.price) + stringFieldSize(l.quantity);
      size += 1 + varintSize(body) + body;
    }
  const buf = allocate(size);
  let pos = writeString(buf, 0, 10, s.exchange);
  if (pos >= 0) pos = writeString(buf, pos, 18, s.symbol);
  if (pos < 0) return BookSnapshot.encode(s).finish();
  pos = writeInt(buf, pos, 24, s.lastUpdateId);
  pos = writeInt(buf, pos, 32, s.epoch);
  pos = writeInt(buf, pos, 40, s.eventTimeUs);
  pos = writeInt(buf, pos, 48, s.receiveTimeUs);
  for (const [tag, side] of [
    [58, s.bids],
    [66, s.asks],
  ] as const)
    for (const l of side) {
      buf[pos++] = tag;
      pos = writeVarint(buf, pos, stringFieldSize(l.price) + stringFieldSize(l.quantity));
      pos = writeString(buf, pos, 10, l.price);
      if (pos >= 0) pos = writeString(buf, pos, 18, l.quantity);
      if (pos < 0) return BookSnapshot.encode(s).finish();
    }
  if (pos !== size) throw new Error(`encodeBookSnapshot wrote ${pos} of ${size} bytes`); // cannot happen
  return buf;
}

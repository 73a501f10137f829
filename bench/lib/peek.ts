/**
 * Reads one integer field of a protobuf message without decoding the message: a measuring subscriber
 * that only needs a book's `receive_time_us` then allocates nothing per message, where a full decode
 * builds every level's strings (garbage that made the measuring process itself pause, and that pause
 * was counted as the pipeline's latency).
 */

/** Thrown for bytes that are not a well-formed protobuf message. */
export class PeekError extends Error {
  override readonly name = "PeekError";
}

/** Reads a varint at `pos`; returns the value and the position after it (values up to 2^53 exact). */
function varint(bytes: Uint8Array, pos: number): [number, number] {
  let value = 0;
  let scale = 1;
  for (let i = 0; i < 10; i++) {
    if (pos >= bytes.length) throw new PeekError("truncated varint");
    const b = bytes[pos++]!;
    value += (b & 0x7f) * scale;
    if (b < 0x80) return [value, pos];
    scale *= 128;
  }
  throw new PeekError("varint longer than 10 bytes");
}

/**
 * The value of the first varint field numbered `field` in `bytes` (a non-negative integer field:
 * uint64, int64 holding a non-negative value, enum, bool), or 0 when the message does not carry it
 * (proto3 leaves out zero values). Fields of the other wire types are skipped over.
 */
export function peekVarintField(bytes: Uint8Array, field: number): number {
  let pos = 0;
  while (pos < bytes.length) {
    const [key, afterKey] = varint(bytes, pos);
    pos = afterKey;
    const wireType = key % 8;
    const number = Math.floor(key / 8);
    switch (wireType) {
      case 0: {
        const [value, after] = varint(bytes, pos);
        if (number === field) return value;
        pos = after;
        break;
      }
      case 1:
        pos += 8;
        break;
      case 2: {
        const [length, after] = varint(bytes, pos);
        pos = after + length;
        break;
      }
      case 5:
        pos += 4;
        break;
      default:
        throw new PeekError(`field ${number} has wire type ${wireType}, which proto3 does not write`);
    }
  }
  if (pos > bytes.length) throw new PeekError("a field runs past the end of the message");
  return 0;
}

/** `BookSnapshot.receive_time_us`'s field number (proto/l2flow/v1/market_data.proto). */
export const BOOK_RECEIVE_TIME_US_FIELD = 6;

import { deflateRaw, inflateRawSync } from "node:zlib";
import type { QueuedMessage } from "./queue.js";
import { encodeHeaderBlock, msgIdOfBlock } from "./wire.js";

/** Bytes of one segment; a record larger than this gets a segment of its own size. */
const SEGMENT_BYTES = 1024 * 1024;
/**
 * What a packed message takes besides its subject, encoded headers and payload: its record's head
 * (length u32, flags u8, subject length u16, header block length u32). Its message id is kept only
 * in the header block (`Nats-Msg-Id`, the block's first line), and read from there when asked for.
 */
export const PACKED_RECORD_HEAD_BYTES = 11;
/**
 * zlib level of a sealed segment's compression: the fastest. Binance's JSON with its subjects, ids
 * and headers still shrinks ~3.5× (BTCUSDT's trades and diffs), and an outage is when CPU is least
 * needed for anything else.
 */
const DEFLATE_LEVEL = 1;
const HAS_ID = 1;
const HAS_BLOCK = 2;
const HAS_SETTLE = 4;

/**
 * A message that waited packed: its headers come back as the encoded block (`encode()`, which
 * `AckPipeline.send` writes as is), so `headers` is undefined; its message id is read from the block
 * when asked for (by an `onStored` that wants it, not by sending).
 */
class PackedMessage implements QueuedMessage {
  constructor(
    readonly subject: string,
    readonly data: Uint8Array,
    readonly hasId: boolean,
    readonly settle: ((err?: Error) => void) | undefined,
    readonly block: Uint8Array,
  ) {}
  get msgId(): string | undefined {
    return this.hasId ? msgIdOfBlock(this.block) : undefined;
  }
  encode(): Uint8Array {
    return this.block;
  }
}

/** One segment: its bytes (deflated once sealed, when that made them smaller) and where its records end. */
interface Segment {
  bytes: Buffer;
  end: number;
  deflated: boolean;
}

/**
 * Messages waiting while NATS is unreachable, packed one after another into large byte segments:
 * subject, encoded header block (with the message id) and payload, nothing else. Kept as objects, each
 * waiting frame cost about 290 bytes of V8 heap besides its payload (the message, its headers object
 * and strings, the Buffer object and the queue's entry), all of it promoted to the old generation and
 * freed only by a full collection after the outage. Packed, a frame costs its bytes and 11 more, and
 * an outage's memory is a few large arrays that go when they are read.
 *
 * A segment that is full (sealed: the next record starts another) is deflated off the main thread and
 * kept so while it waits; `shift` inflates it again when reading reaches it. So an outage's frames take
 * a fraction of their bytes in memory (`heldBytes`), while `bytes`, what a queue bounds, stays their
 * packed size: how many frames an outage buffer keeps does not depend on how well they compress.
 *
 * First in, first out; `shift` rebuilds a message (its payload a view of the segment, no copy).
 */
export class PackedQueue {
  #segments: Segment[] = [];
  /** Sealed segments being deflated. */
  #deflating = 0;
  #whenDeflated: (() => void)[] = [];
  /** Read position in the first segment. */
  #read = 0;
  #size = 0;
  #bytes = 0;
  /** Callbacks of the records that have one, in record order. */
  #settles: (((err?: Error) => void) | undefined)[] = [];
  #settleHead = 0;

  /** Records waiting. */
  get size(): number {
    return this.#size;
  }
  /** Bytes of the records waiting (what they weigh against a queue's bound). */
  get bytes(): number {
    return this.#bytes;
  }
  /** Memory the segments take: sealed ones deflated, the one being written and the one read whole. */
  get heldBytes(): number {
    let n = 0;
    for (const seg of this.#segments) n += seg.bytes.length;
    return n;
  }

  /** Resolves when no sealed segment is being deflated (for tests and measurements). */
  deflated(): Promise<void> {
    return this.#deflating === 0 ? Promise.resolve() : new Promise((r) => this.#whenDeflated.push(r));
  }

  /**
   * Appends a message; returns its weight (its record's bytes). Throws a RangeError for headers
   * that cannot be encoded (CR or LF in a value), before anything is written.
   */
  push(item: QueuedMessage): number {
    const withBlock = item.msgId !== undefined || item.headers !== undefined;
    const block = withBlock ? encodeHeaderBlock(item) : undefined;
    const subjectLen = Buffer.byteLength(item.subject, "utf8");
    if (subjectLen > 0xffff) throw new RangeError("subject too long");
    const blockLen = block?.length ?? 0;
    const length = PACKED_RECORD_HEAD_BYTES + subjectLen + blockLen + item.data.length;
    let last = this.#segments[this.#segments.length - 1];
    if (last === undefined || last.bytes.length - last.end < length) {
      if (last !== undefined) this.#seal(last);
      last = { bytes: Buffer.allocUnsafeSlow(Math.max(SEGMENT_BYTES, length)), end: 0, deflated: false };
      this.#segments.push(last);
    }
    const seg = last.bytes;
    const start = last.end;
    let o = start;
    seg.writeUInt32LE(length, o);
    seg[o + 4] =
      (item.msgId !== undefined ? HAS_ID : 0) |
      (block !== undefined ? HAS_BLOCK : 0) |
      (item.settle !== undefined ? HAS_SETTLE : 0);
    seg.writeUInt16LE(subjectLen, o + 5);
    seg.writeUInt32LE(blockLen, o + 7);
    o += PACKED_RECORD_HEAD_BYTES;
    o += seg.write(item.subject, o, "utf8");
    if (block !== undefined) {
      seg.set(block, o);
      o += blockLen;
    }
    seg.set(item.data, o);
    last.end = start + length;
    if (item.settle !== undefined) this.#settles.push(item.settle);
    this.#size++;
    this.#bytes += length;
    return length;
  }

  /** The oldest message and its weight, removed; undefined when empty. */
  shift(): { readonly item: QueuedMessage; readonly weight: number } | undefined {
    if (this.#size === 0) return undefined;
    let head = this.#segments[0]!;
    if (this.#read >= head.end) {
      // This segment is read: the next record starts the next one.
      this.#segments.shift();
      this.#read = 0;
      head = this.#segments[0]!;
    }
    if (head.deflated) {
      head.bytes = inflateRawSync(head.bytes);
      head.deflated = false;
    }
    const seg = head.bytes;
    let o = this.#read;
    const length = seg.readUInt32LE(o);
    const flags = seg[o + 4]!;
    const subjectLen = seg.readUInt16LE(o + 5);
    const blockLen = seg.readUInt32LE(o + 7);
    o += PACKED_RECORD_HEAD_BYTES;
    const subject = seg.toString("utf8", o, o + subjectLen);
    o += subjectLen;
    const block = (flags & HAS_BLOCK) !== 0 ? seg.subarray(o, o + blockLen) : undefined;
    o += blockLen;
    const data = seg.subarray(o, this.#read + length);
    const settle = (flags & HAS_SETTLE) !== 0 ? this.#takeSettle() : undefined;
    this.#read += length;
    this.#size--;
    this.#bytes -= length;
    if (this.#size === 0) {
      // Nothing left: drop every segment now rather than keep the last one for the next outage.
      this.#segments = [];
      this.#read = 0;
    }
    const item: QueuedMessage =
      block !== undefined
        ? new PackedMessage(subject, data, (flags & HAS_ID) !== 0, settle, block)
        : { subject, data, ...(settle !== undefined ? { settle } : {}) };
    return { item, weight: length };
  }

  /**
   * Deflates a sealed segment on libuv's thread pool; the result replaces it only if it is smaller and
   * the segment still waits behind the one being read (reading never meets a segment changing under it).
   */
  #seal(seg: Segment): void {
    this.#deflating++;
    deflateRaw(seg.bytes.subarray(0, seg.end), { level: DEFLATE_LEVEL }, (err, out) => {
      if (err === null && out.length < seg.end && this.#segments.indexOf(seg) > 0) {
        seg.bytes = out;
        seg.deflated = true;
      }
      if (--this.#deflating === 0) for (const resolve of this.#whenDeflated.splice(0)) resolve();
    });
  }

  #takeSettle(): (err?: Error) => void {
    const fn = this.#settles[this.#settleHead]!;
    this.#settles[this.#settleHead++] = undefined;
    if (this.#settleHead === this.#settles.length) {
      this.#settles = [];
      this.#settleHead = 0;
    }
    return fn;
  }
}

/**
 * The byte batches the normalizer's main thread and its processing thread exchange: numbers, strings
 * and byte strings one after another, read back in the order written. One batch per turn of the event
 * loop, moved (not copied) between the threads.
 */
export class BatchWriter {
  #buf: Buffer;
  #off = 0;
  readonly #initial: number;

  constructor(initialBytes = 64 * 1024) {
    this.#initial = initialBytes;
    this.#buf = Buffer.allocUnsafeSlow(initialBytes);
  }

  /** Bytes written so far. */
  get length(): number {
    return this.#off;
  }

  #room(n: number): void {
    if (this.#off + n <= this.#buf.length) return;
    const next = Buffer.allocUnsafeSlow(Math.max(this.#buf.length * 2, this.#off + n));
    this.#buf.copy(next, 0, 0, this.#off);
    this.#buf = next;
  }

  u8(v: number): void {
    this.#room(1);
    this.#buf[this.#off++] = v;
  }

  u32(v: number): void {
    this.#room(4);
    this.#buf.writeUInt32LE(v, this.#off);
    this.#off += 4;
  }

  i32(v: number): void {
    this.#room(4);
    this.#buf.writeInt32LE(v, this.#off);
    this.#off += 4;
  }

  f64(v: number): void {
    this.#room(8);
    this.#buf.writeDoubleLE(v, this.#off);
    this.#off += 8;
  }

  str(s: string): void {
    this.#room(4 + s.length * 3);
    const n = this.#buf.write(s, this.#off + 4, "utf8");
    this.#buf.writeUInt32LE(n, this.#off);
    this.#off += 4 + n;
  }

  bytes(b: Uint8Array): void {
    this.#room(4 + b.length);
    this.#buf.writeUInt32LE(b.length, this.#off);
    this.#buf.set(b, this.#off + 4);
    this.#off += 4 + b.length;
  }

  /**
   * The batch so far, as an ArrayBuffer of its own to transfer (its first `length` bytes count); the
   * writer starts over on `reuse` when given (a batch that came back), else on a new buffer.
   */
  take(reuse?: ArrayBuffer): ArrayBuffer {
    const done = this.#buf.buffer;
    this.#buf =
      reuse !== undefined && reuse.byteLength >= this.#initial
        ? Buffer.from(reuse)
        : Buffer.allocUnsafeSlow(this.#initial);
    this.#off = 0;
    return done as ArrayBuffer;
  }
}

/** Reads a batch `BatchWriter` wrote. Byte strings are views into the batch, not copies. */
export class BatchReader {
  readonly #buf: Buffer;
  #off = 0;
  readonly #end: number;

  constructor(batch: ArrayBuffer, length: number) {
    this.#buf = Buffer.from(batch, 0, length);
    this.#end = length;
  }

  get done(): boolean {
    return this.#off >= this.#end;
  }

  u8(): number {
    return this.#buf[this.#off++]!;
  }

  u32(): number {
    const v = this.#buf.readUInt32LE(this.#off);
    this.#off += 4;
    return v;
  }

  i32(): number {
    const v = this.#buf.readInt32LE(this.#off);
    this.#off += 4;
    return v;
  }

  f64(): number {
    const v = this.#buf.readDoubleLE(this.#off);
    this.#off += 8;
    return v;
  }

  str(): string {
    const n = this.u32();
    const s = this.#buf.toString("utf8", this.#off, this.#off + n);
    this.#off += n;
    return s;
  }

  bytes(): Uint8Array {
    const n = this.u32();
    const b = this.#buf.subarray(this.#off, this.#off + n);
    this.#off += n;
    return b;
  }
}

import type { NatsConnection } from "@nats-io/transport-node";

/** Headers written with one message: any record, and the JetStream message id. */
export interface HeaderFields {
  readonly headers?: Readonly<Record<string, string>> | undefined;
  readonly msgId?: string | undefined;
}

/**
 * The part of nats.js's protocol handler the writer hands its bytes to. `publish()` ends in the
 * same two calls (`sendCommand` queues bytes for the socket, `flushPending` writes them), but
 * builds a protocol line string, encodes it and queues four arrays per message, which nats.js then
 * concatenates into a freshly zeroed buffer on every flush.
 */
interface RawProtocol {
  sendCommand(cmd: Uint8Array): void;
  flushPending(): void;
  readonly info?: { readonly max_payload?: number; readonly headers?: boolean } | undefined;
  /** Set while the connection drains: nats.js's own publish refuses then. */
  readonly noMorePublishing?: boolean;
  outMsgs: number;
  outBytes: number;
  /** Bytes queued for the socket and not yet handed to it (while connecting, they wait here). */
  readonly outbound?: { size(): number } | undefined;
  readonly transport?: { readonly socket?: { readonly writableLength: number } | undefined } | undefined;
}

/** nats.js's protocol handler, or undefined when this nats.js does not have the calls used. */
export function rawProtocol(nc: NatsConnection): RawProtocol | undefined {
  const p = (nc as unknown as { protocol?: Partial<RawProtocol> }).protocol;
  if (p === undefined || typeof p.sendCommand !== "function" || typeof p.flushPending !== "function")
    return undefined;
  return p as RawProtocol;
}

/** Why a message cannot be written; never worth sending again. */
export class WireError extends Error {
  override readonly name = "WireError";
}

const CHUNK_BYTES = 256 * 1024;
/** Bytes written and not handed to nats.js beyond which they go out at once. */
const FLUSH_BYTES = 64 * 1024;
const HEAD = "NATS/1.0\r\n";
const MSG_ID = "Nats-Msg-Id";
const encoder = new TextEncoder();
const latin1 = new TextDecoder("latin1");
const decoder = new TextDecoder();

/**
 * Writes `HPUB` messages for one connection straight into 256 KiB chunks, each filled once by many messages, in the wire format
 * nats.js would write, and hands nats.js one contiguous slice per batch (everything written in the
 * same turn of the event loop, or 64 KiB). One copy of each payload, no per-message string or
 * array, and nats.js finds a single buffer to send, so it does not concatenate.
 *
 * A batch ends in `setImmediate`, after the I/O callbacks of the loop's turn and their microtasks: a
 * consumer reading with `for await` handles each message in a microtask of its own, so a batch ended
 * by `queueMicrotask` was one socket write per message (the normalizer spent 7.7 % of its thread in
 * the write call; 5.2 % with whole batches).
 *
 * A chunk is never overwritten while a slice of it may still be read: each batch is the next slice of
 * it, and a new chunk starts when the rest is too small. A batch starts again at the chunk's beginning
 * only when nothing handed over is waiting anywhere: nats.js holds none of it (it queues while
 * connecting) and the socket has written all it was given (`writableLength` 0: not even part of a
 * write is pending). That is the usual case, so one chunk serves the whole run: the normalizer wrote
 * ~1.1 KB a raw message into fresh 256 KiB chunks before, 11-44 MB a second of memory outside V8's
 * heap to allocate and collect.
 */
export class WireWriter {
  readonly #p: RawProtocol;
  #chunk: Buffer = Buffer.allocUnsafeSlow(CHUNK_BYTES);
  /** Start of the bytes not yet handed over. */
  #start = 0;
  #pos = 0;
  #scheduled = false;
  #chunks = 1;
  readonly #flush = () => {
    this.#scheduled = false;
    this.flush();
  };

  constructor(protocol: RawProtocol) {
    this.#p = protocol;
  }

  /** Chunks allocated so far, the first included: one while the socket keeps up. */
  get chunks(): number {
    return this.#chunks;
  }

  /**
   * Queues one message; it goes out at the end of this turn of the event loop. Its reply subject is
   * `replyPrefix` (bytes, ASCII, up to and with its last dot, already valid) followed by the whole
   * number `replyId`: nothing to build per message; a negative `replyId` sends it without one.
   * `headers` are fields to encode, an encoded block (`NATS/1.0` … blank line), or none (a `PUB`).
   * Throws `WireError` for a subject or size the server would refuse and `RangeError` for a header
   * that would break the block; nothing is written then.
   */
  publish(
    subject: string,
    replyPrefix: Uint8Array,
    replyId: number,
    headers: HeaderFields | Uint8Array | undefined,
    data: Uint8Array | string,
  ): void {
    if (this.#p.noMorePublishing === true) throw new Error("the NATS connection is draining");
    if (this.#pos === this.#start && this.#pos !== 0 && this.#written()) {
      this.#start = 0;
      this.#pos = 0;
    }
    const block = headers instanceof Uint8Array ? headers : undefined;
    const fields = headers instanceof Uint8Array ? undefined : headers;
    // A string (a checkpoint's JSON) is written as UTF-8 straight into the chunk: no encoded copy.
    const size = typeof data === "string" ? Buffer.byteLength(data, "utf8") : data.length;
    if (this.#ascii(subject, replyPrefix, replyId, block, fields, data, size)) return;
    // Something is not ASCII: the header block through a string and TextEncoder (the same bytes),
    // the subjects as UTF-8.
    const replyText = replyId >= 0 ? `${latin1.decode(replyPrefix)}${replyId}` : "";
    const head = block ?? (fields !== undefined ? headerBytes(fields) : undefined);
    const hlen = head !== undefined ? head.length : -1;
    const total = this.#check(hlen, size);
    // HPUB, three spaces, two numbers of at most 16 digits, CRLF, and the trailing CRLF; subjects
    // count three bytes a character in case they are not ASCII.
    const need = 44 + 3 * (subject.length + replyText.length) + total;
    if (this.#chunk.length - this.#pos < need) this.#grow(need);
    const b = this.#chunk;
    let o = hlen >= 0 ? writeAscii(b, this.#pos, "HPUB ") : writeAscii(b, this.#pos, "PUB ");
    o = writeToken(b, o, subject, "subject");
    if (replyId >= 0) {
      b[o++] = 32;
      o = writeToken(b, o, replyText, "reply subject");
    }
    o = writeSizes(b, o, hlen, total, head);
    this.#finish(b, o, data, size, total);
  }

  /**
   * The usual message, every subject and header ASCII, written in one pass over each string that
   * checks it as it copies it; false (nothing written) at the first character that is not ASCII.
   */
  #ascii(
    subject: string,
    replyPrefix: Uint8Array,
    replyId: number,
    block: Uint8Array | undefined,
    fields: HeaderFields | undefined,
    data: Uint8Array | string,
    size: number,
  ): boolean {
    const hlen = block !== undefined ? block.length : fields !== undefined ? asciiHeaderSize(fields) : -1;
    const total = this.#check(hlen, size);
    const need = 60 + subject.length + replyPrefix.length + total;
    if (this.#chunk.length - this.#pos < need) this.#grow(need);
    const b = this.#chunk;
    let o = hlen >= 0 ? writeAscii(b, this.#pos, "HPUB ") : writeAscii(b, this.#pos, "PUB ");
    o = asciiToken(b, o, subject, "subject");
    if (o < 0) return false;
    if (replyId >= 0) {
      b[o++] = 32;
      b.set(replyPrefix, o);
      o = writeInt(b, o + replyPrefix.length, replyId);
    }
    o = writeSizes(b, o, hlen, total, block);
    if (fields !== undefined) {
      o = asciiHeaders(b, o, fields);
      if (o < 0) return false;
    }
    this.#finish(b, o, data, size, total);
    return true;
  }

  /** The payload's length with its headers; throws what the server would refuse. */
  #check(hlen: number, size: number): number {
    const total = Math.max(hlen, 0) + size;
    const max = this.#p.info?.max_payload;
    if (max !== undefined && total > max)
      throw new WireError(`message of ${total} bytes exceeds the server's max_payload of ${max}`);
    if (hlen >= 0 && this.#p.info?.headers === false)
      throw new WireError("the server does not accept headers");
    return total;
  }

  /** Writes the payload and the final CRLF after the headers at `o`, and commits the message. */
  #finish(b: Buffer, o: number, data: Uint8Array | string, size: number, total: number): void {
    if (typeof data === "string") b.write(data, o, "utf8");
    else b.set(data, o);
    o += size;
    b[o++] = 13;
    b[o++] = 10;
    this.#pos = o;
    this.#p.outMsgs++;
    this.#p.outBytes += total;
    if (o - this.#start >= FLUSH_BYTES) this.flush();
    else if (!this.#scheduled) {
      this.#scheduled = true;
      setImmediate(this.#flush);
    }
  }

  /** Hands what was written to nats.js and asks it to write to the socket. */
  flush(): void {
    if (this.#pos === this.#start) return;
    this.#p.sendCommand(this.#chunk.subarray(this.#start, this.#pos));
    this.#start = this.#pos;
    this.#p.flushPending();
  }

  /** True when every byte handed over has been written to the socket: none of the chunk is still read. */
  #written(): boolean {
    const socket = this.#p.transport?.socket;
    return this.#p.outbound?.size() === 0 && socket !== undefined && socket.writableLength === 0;
  }

  /** A new chunk for a message of `need` bytes; what the old one holds goes out first, in order. */
  #grow(need: number): void {
    this.flush();
    this.#chunk = Buffer.allocUnsafeSlow(Math.max(CHUNK_BYTES, need));
    this.#chunks++;
    this.#start = 0;
    this.#pos = 0;
  }
}

/** The header block's byte length if every character of it is ASCII (nothing checked yet). */
function asciiHeaderSize(f: HeaderFields): number {
  let size = HEAD.length + 2;
  if (f.msgId !== undefined) size += MSG_ID.length + f.msgId.length + 4;
  const record = f.headers;
  if (record !== undefined) for (const k in record) size += k.length + record[k]!.length + 4;
  return size;
}

/** Writes the header block at `o`, checking each character once; -1 at one that is not ASCII. */
function asciiHeaders(b: Uint8Array, o: number, f: HeaderFields): number {
  let p = writeAscii(b, o, HEAD);
  if (f.msgId !== undefined) {
    p = writeAscii(b, p, MSG_ID);
    b[p++] = 58;
    b[p++] = 32;
    p = asciiValue(b, p, MSG_ID, f.msgId);
    if (p < 0) return -1;
    b[p++] = 13;
    b[p++] = 10;
  }
  const record = f.headers;
  if (record !== undefined)
    for (const k in record) {
      for (let i = 0; i < k.length; i++) {
        const c = k.charCodeAt(i);
        if (breaksKey(c)) throw headerError(k);
        if (c > 127) return -1;
        b[p++] = c;
      }
      b[p++] = 58;
      b[p++] = 32;
      p = asciiValue(b, p, k, record[k]!);
      if (p < 0) return -1;
      b[p++] = 13;
      b[p++] = 10;
    }
  b[p++] = 13;
  b[p++] = 10;
  return p;
}

/** A header value at `o`: a RangeError at CR or LF, -1 at a character that is not ASCII. */
function asciiValue(b: Uint8Array, o: number, key: string, value: string): number {
  for (let i = 0; i < value.length; i++) {
    const c = value.charCodeAt(i);
    if (breaksValue(c)) throw headerError(key);
    if (c > 127) return -1;
    b[o++] = c;
  }
  return o;
}

/** A subject at `o`, checked as in `writeToken`; -1 at a character that is not ASCII. */
function asciiToken(b: Buffer, o: number, s: string, what: string): number {
  if (s.length === 0) throw new WireError(`empty ${what}`);
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (breaksSubject(c)) throw new WireError(`invalid ${what} ${JSON.stringify(s)}`);
    if (c > 127) return -1;
    b[o++] = c;
  }
  return o;
}

/** The header block of `f`, validated, in one exact-size array. */
export function encodeHeaderBlock(f: HeaderFields): Uint8Array {
  const out = new Uint8Array(asciiHeaderSize(f));
  return asciiHeaders(out, 0, f) < 0 ? headerBytes(f) : out;
}

const ID_LINE_START = HEAD.length + MSG_ID.length + 2; // "NATS/1.0\r\nNats-Msg-Id: "

/**
 * The message id of a block `encodeHeaderBlock` made for fields with a `msgId` (its first header
 * line); undefined when the block does not start with that line.
 */
export function msgIdOfBlock(block: Uint8Array): string | undefined {
  const end = block.indexOf(13, ID_LINE_START);
  if (end < 0 || decoder.decode(block.subarray(0, ID_LINE_START)) !== `${HEAD}${MSG_ID}: `) return undefined;
  return decoder.decode(block.subarray(ID_LINE_START, end));
}

/** The header block of `f` as UTF-8, every key and value checked first (any Unicode). */
function headerBytes(f: HeaderFields): Uint8Array {
  if (f.msgId !== undefined) checkValue(MSG_ID, f.msgId);
  const record = f.headers;
  if (record !== undefined)
    for (const k in record) {
      checkKey(k);
      checkValue(k, record[k]!);
    }
  return encoder.encode(headerText(f));
}

/** The header block as text (any Unicode), as nats.js writes it. */
function headerText(f: HeaderFields): string {
  let text = HEAD;
  if (f.msgId !== undefined) text += `${MSG_ID}: ${f.msgId}\r\n`;
  const record = f.headers;
  if (record !== undefined) for (const k in record) text += `${k}: ${record[k]!}\r\n`;
  return `${text}\r\n`;
}

/** A character that would break a header key: CR, LF, colon or space. */
function breaksKey(c: number): boolean {
  return c === 13 || c === 10 || c === 58 || c === 32;
}

/** A character that would break a header value: CR or LF. */
function breaksValue(c: number): boolean {
  return c === 13 || c === 10;
}

/** A character a subject cannot hold: space, a control character or DEL (the server would drop the connection). */
function breaksSubject(c: number): boolean {
  return c <= 32 || c === 127;
}

function headerError(key: string): RangeError {
  return new RangeError(`invalid NATS header ${JSON.stringify(key)}`);
}

/** A RangeError for a key that would break the block. */
function checkKey(key: string): void {
  for (let i = 0; i < key.length; i++) if (breaksKey(key.charCodeAt(i))) throw headerError(key);
}

/** A RangeError for a value that would break the block. */
function checkValue(key: string, value: string): void {
  for (let i = 0; i < value.length; i++) if (breaksValue(value.charCodeAt(i))) throw headerError(key);
}

function writeAscii(b: Uint8Array, o: number, text: string): number {
  for (let i = 0; i < text.length; i++) b[o++] = text.charCodeAt(i);
  return o;
}

/** A subject: not empty, no space or control character (the server would drop the connection). */
function writeToken(b: Buffer, o: number, s: string, what: string): number {
  if (s.length === 0) throw new WireError(`empty ${what}`);
  for (let i = 0; i < s.length; i++)
    if (breaksSubject(s.charCodeAt(i))) throw new WireError(`invalid ${what} ${JSON.stringify(s)}`);
  return o + b.write(s, o, "utf8");
}

/** ` [hlen ]total` CRLF after the reply subject, then the encoded header block if there is one. */
function writeSizes(
  b: Buffer,
  o: number,
  hlen: number,
  total: number,
  block: Uint8Array | undefined,
): number {
  b[o++] = 32;
  if (hlen >= 0) {
    o = writeInt(b, o, hlen);
    b[o++] = 32;
  }
  o = writeInt(b, o, total);
  b[o++] = 13;
  b[o++] = 10;
  if (block === undefined) return o;
  b.set(block, o);
  return o + block.length;
}

function writeInt(b: Buffer, o: number, n: number): number {
  if (n < 10) {
    b[o] = 48 + n;
    return o + 1;
  }
  const digits = n < 100 ? 2 : n < 1000 ? 3 : n < 10000 ? 4 : n < 100000 ? 5 : String(n).length;
  for (let i = o + digits - 1; i >= o; i--) {
    b[i] = 48 + (n % 10);
    n = Math.floor(n / 10);
  }
  return o + digits;
}

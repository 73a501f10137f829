/**
 * JetStream's PubAck, read straight from its bytes: one arrives for every message ingest stores, so
 * `JSON.parse` of each was a real share of ingest's thread. nats-server writes it with a space after
 * the comma (`{"stream":"MD_RAW", "seq":1,"duplicate": true}` in 2.9); the reader takes JSON's
 * whitespace anywhere between tokens, and anything it does not recognise goes to `JSON.parse`.
 */

/** What JetStream answered for one message: where it is stored, or that its id was already stored. */
export interface StoredAck {
  readonly stream: string;
  readonly seq: number;
  readonly duplicate: boolean;
}

const encoder = new TextEncoder();
const decoder = new TextDecoder();
const STREAM_KEY = encoder.encode('{"stream":"');
const SEQ_KEY = encoder.encode('"seq":');
const DUPLICATE_KEY = encoder.encode('"duplicate":');
const TRUE = encoder.encode("true");
const QUOTE = 0x22;
const BACKSLASH = 0x5c;
const COMMA = 0x2c;
const CLOSE = 0x7d;

function skipSpace(d: Uint8Array, i: number): number {
  let c = d[i];
  while (c === 0x20 || c === 0x09 || c === 0x0a || c === 0x0d) c = d[++i];
  return i;
}

/** `i` past `word` when `d` holds it at `i`, else -1. */
function expectBytes(d: Uint8Array, i: number, word: Uint8Array): number {
  if (i < 0 || i + word.length > d.length) return -1;
  for (let k = 0; k < word.length; k++) if (d[i + k] !== word[k]) return -1;
  return i + word.length;
}

let lastStreamBytes = new Uint8Array(0);
let lastStream = "";
/** The stream's name, decoded once while acks keep naming the same stream. */
function streamName(d: Uint8Array, start: number, end: number): string {
  const len = end - start;
  let same = len === lastStreamBytes.length;
  for (let k = 0; same && k < len; k++) same = d[start + k] === lastStreamBytes[k];
  if (!same) {
    lastStreamBytes = d.slice(start, end);
    lastStream = decoder.decode(lastStreamBytes);
  }
  return lastStream;
}

/** The usual PubAck (`stream`, `seq`, optional `"duplicate": true`, in that order), or undefined. */
function fastPubAck(d: Uint8Array): StoredAck | undefined {
  let i = expectBytes(d, 0, STREAM_KEY);
  if (i < 0) return undefined;
  const streamStart = i;
  while (i < d.length && d[i] !== QUOTE) {
    if (d[i] === BACKSLASH || d[i]! >= 0x80) return undefined;
    i++;
  }
  const streamEnd = i;
  i = skipSpace(d, i + 1);
  if (d[i] !== COMMA) return undefined;
  i = expectBytes(d, skipSpace(d, i + 1), SEQ_KEY);
  if (i < 0) return undefined;
  i = skipSpace(d, i);
  const digits = i;
  let seq = 0;
  for (let c = d[i]; c !== undefined && c >= 0x30 && c <= 0x39; c = d[++i]) seq = seq * 10 + (c - 0x30);
  if (i === digits || i - digits > 15) return undefined;
  i = skipSpace(d, i);
  let duplicate = false;
  if (d[i] === COMMA) {
    i = expectBytes(d, skipSpace(d, i + 1), DUPLICATE_KEY);
    i = expectBytes(d, skipSpace(d, i), TRUE);
    if (i < 0) return undefined;
    duplicate = true;
    i = skipSpace(d, i);
  }
  if (d[i] !== CLOSE || skipSpace(d, i + 1) !== d.length) return undefined;
  return { stream: streamName(d, streamStart, streamEnd), seq, duplicate };
}

/** JetStream's error answer to a publish: its description and HTTP-like code (503: unavailable). */
export interface PubAckError {
  readonly description: string;
  readonly code: number | undefined;
}

/**
 * A PubAck `{"stream","seq","duplicate"?}`, or JetStream's error with its description and code
 * (`code` undefined when the answer is not a JetStream error at all).
 */
export function readPubAck(data: Uint8Array): StoredAck | PubAckError {
  const fast = fastPubAck(data);
  if (fast !== undefined) return fast;
  let o: unknown;
  try {
    o = JSON.parse(decoder.decode(data));
  } catch {
    return { description: "unreadable ack", code: undefined };
  }
  if (typeof o !== "object" || o === null) return { description: "unreadable ack", code: undefined };
  const r = o as {
    stream?: unknown;
    seq?: unknown;
    duplicate?: unknown;
    error?: { description?: unknown; code?: unknown };
  };
  if (r.error !== undefined)
    return {
      description: typeof r.error.description === "string" ? r.error.description : "error",
      code: typeof r.error.code === "number" ? r.error.code : undefined,
    };
  if (typeof r.stream !== "string" || typeof r.seq !== "number")
    return { description: "ack without stream or sequence", code: undefined };
  return { stream: r.stream, seq: r.seq, duplicate: r.duplicate === true };
}

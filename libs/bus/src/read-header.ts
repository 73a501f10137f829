import type { JsMsg } from "@nats-io/jetstream";
import type { Msg } from "@nats-io/transport-node";

/** The fields of nats.js's `MsgImpl` this reader uses: the header block's length and the bytes. */
interface RawMsg {
  readonly _msg?: { readonly hdr?: unknown };
  readonly _rdata?: unknown;
}

const encoder = new TextEncoder();
const keyBytes = new Map<string, Uint8Array>();
const latin1 = new TextDecoder("latin1");
const utf8 = new TextDecoder();

/**
 * The first value of header `key` (exact, case-sensitive name, as nats.js's `headers.get`), read from
 * the message's bytes; undefined when the message has no such header.
 *
 * nats.js's `msg.headers` decodes the whole block into a map of arrays the first time it is touched:
 * a string for the block, one per line, an array per key — for the normalizer, which reads one header
 * of every raw message, 4 % of its thread. This scans the block once and makes only the value's
 * string. It reads nats.js internals (`msg._msg.hdr`, `msg._rdata`); without them it asks nats.js.
 */
export function readHeader(msg: Msg | JsMsg, key: string): string | undefined {
  const inner = ((msg as { msg?: unknown }).msg ?? msg) as RawMsg;
  const hdr = inner._msg?.hdr;
  const data = inner._rdata;
  if (typeof hdr !== "number" || !(data instanceof Uint8Array)) {
    const v = msg.headers?.get(key);
    return v === undefined || v === "" ? undefined : v;
  }
  if (hdr <= 0) return undefined;
  let k = keyBytes.get(key);
  if (k === undefined) {
    k = encoder.encode(key);
    keyBytes.set(key, k);
  }
  const end = Math.min(hdr, data.length);
  // Lines after the first (`NATS/1.0[ code description]`); each is `Key:value`, value trimmed.
  let i = lineAfter(data, 0, end);
  while (i < end) {
    const next = lineAfter(data, i, end);
    const lineEnd = next - 2 >= i && data[next - 2] === 13 && data[next - 1] === 10 ? next - 2 : next;
    if (lineEnd - i > k.length && data[i + k.length] === 58 /* : */) {
      let same = true;
      for (let j = 0; j < k.length && same; j++) same = data[i + j] === k[j];
      if (same) {
        let a = i + k.length + 1;
        let b = lineEnd;
        while (a < b && isSpace(data[a]!)) a++;
        while (b > a && isSpace(data[b - 1]!)) b--;
        if (a === b) return undefined; // nats.js's get gives "" for an empty value; so does a missing one
        let ascii = true;
        for (let j = a; j < b && ascii; j++) ascii = data[j]! < 128;
        if (ascii) return latin1.decode(data.subarray(a, b));
        const v = utf8.decode(data.subarray(a, b)).trim(); // trim also removes non-ASCII spaces
        return v === "" ? undefined : v;
      }
    }
    i = next;
  }
  return undefined;
}

/** Where the line after the one starting at `i` starts (after its CRLF), or `end`. */
function lineAfter(data: Uint8Array, i: number, end: number): number {
  for (let j = i; j + 1 < end; j++) if (data[j] === 13 && data[j + 1] === 10) return j + 2;
  return end;
}

/** What `String.prototype.trim` removes, for the ASCII range. */
function isSpace(c: number): boolean {
  return c === 32 || (c >= 9 && c <= 13);
}

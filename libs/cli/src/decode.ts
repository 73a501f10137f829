import { BookSnapshot, Gap, Signal, Trade, Window } from "@l2flow/contracts";

const decoders: readonly (readonly [string, (b: Uint8Array) => unknown])[] = [
  ["md.book.", (b) => BookSnapshot.toJSON(BookSnapshot.decode(b))],
  ["md.trade.", (b) => Trade.toJSON(Trade.decode(b))],
  ["md.gap.", (b) => Gap.toJSON(Gap.decode(b))],
  ["md.window.", (b) => Window.toJSON(Window.decode(b))],
  ["signal.", (b) => Signal.toJSON(Signal.decode(b))],
];

const utf8 = new TextDecoder("utf-8", { fatal: true });

/**
 * The JSON text of a payload, chosen by subject: `md.raw.*` and `ctl.*` are JSON already and are
 * kept byte for byte; `md.trade/book/gap/window` and `signal` are decoded with their protobuf type
 * (proto3 JSON, camelCase); anything else becomes a JSON string. A payload that does not decode
 * becomes `{"undecodable": reason}`.
 */
export function payloadJson(subject: string, data: Uint8Array): string {
  const decode = decoders.find(([prefix]) => subject.startsWith(prefix))?.[1];
  try {
    if (decode !== undefined) return JSON.stringify(decode(data));
    const text = utf8.decode(data);
    if (subject.startsWith("md.raw.") || subject.startsWith("ctl.")) {
      JSON.parse(text); // verified, then printed as stored
      return text;
    }
    return JSON.stringify(text);
  } catch (err) {
    return JSON.stringify({ undecodable: err instanceof Error ? err.message : String(err) });
  }
}

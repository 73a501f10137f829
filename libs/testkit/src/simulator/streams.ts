/** Binance spot stream names: which are valid, and which the simulator feeds from a recording. */

const KLINE = "(?:1s|1m|3m|5m|15m|30m|1h|2h|4h|6h|8h|12h|1d|3d|1w|1M)";
const SYMBOL_KINDS = new RegExp(
  "^(?:trade|aggTrade|bookTicker|avgPrice|referencePrice|miniTicker|ticker|ticker_(?:1h|4h|1d)" +
    "|depth(?:5|10|20)?(?:@100ms|@1000ms)?" +
    `|kline_${KLINE}(?:@\\+08:00)?)$`,
);
const MARKET_STREAMS = /^!(?:miniTicker@arr|ticker@arr|ticker_(?:1h|4h|1d)@arr|bookTicker)$/;
const SYMBOL = /^[A-Za-z0-9]{1,40}$/;

/**
 * The canonical form of a stream name Binance would accept (symbol part lower-cased), or undefined
 * for a name it would reject. Unknown symbols are accepted: they are just silent.
 */
export function canonicalStream(name: string): string | undefined {
  if (name.startsWith("!")) return MARKET_STREAMS.test(name) ? name : undefined;
  const at = name.indexOf("@");
  if (at <= 0) return undefined;
  const symbol = name.slice(0, at);
  const kind = name.slice(at + 1);
  if (!SYMBOL.test(symbol) || !SYMBOL_KINDS.test(kind)) return undefined;
  return `${symbol.toLowerCase()}@${kind}`;
}

/** The stream names whose subscribers receive a recorded frame of stream `kind` of `streamSymbol`. */
export function deliveryStreams(streamSymbol: string, kind: string): readonly string[] {
  // Recordings hold 100 ms diffs; the 1000 ms stream gets the same diffs (coarser cadence is only a
  // batching of the same updates, and clients must handle any U/u span anyway).
  if (kind === "depth" || kind === "depth@100ms" || kind === "depth@1000ms")
    return [`${streamSymbol}@depth@100ms`, `${streamSymbol}@depth`, `${streamSymbol}@depth@1000ms`];
  return [`${streamSymbol}@${kind}`];
}

/** Appends `000` to the top-level `E` and `T` millisecond times (`timeUnit=MICROSECOND`). */
export function toMicroseconds(data: string): string {
  return data.replace(/"([ET])":(\d+)/g, '"$1":$2000');
}

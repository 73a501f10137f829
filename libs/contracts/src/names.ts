/** The only exchange l2flow speaks today; lower case in subjects and messages. */
export const EXCHANGE = "binance";

/** JetStream stream names (DESIGN.md, "Subjects and streams"). */
export const STREAMS = {
  raw: "MD_RAW",
  norm: "MD_NORM",
  window: "MD_WINDOW",
  signals: "SIGNALS",
} as const;

/** JetStream KV bucket names. */
export const BUCKETS = {
  book: "md_book",
  state: "md_state",
} as const;

/** What ingest stores in `MD_RAW`, one subject token each. */
export type RawKind = "trade" | "aggtrade" | "depth" | "snapshot" | "status";

/** Every raw kind, in subject order. */
export const RAW_KINDS: readonly RawKind[] = ["trade", "aggtrade", "depth", "snapshot", "status"];

/** Headers ingest puts on every `MD_RAW` message. */
export const HEADERS = {
  /** Local receive time of the frame, integer nanoseconds since the Unix epoch, decimal. */
  receiveNs: "L2-Receive-Ns",
  /** Identifier of the WebSocket connection (or "rest") that delivered the frame. */
  connection: "L2-Conn",
  /** For snapshots: the `limit` the REST depth request asked for. */
  snapshotLimit: "L2-Snapshot-Limit",
  /** Message id header JetStream uses for de-duplication. */
  msgId: "Nats-Msg-Id",
  /** Where a raw message came from when not the live stream: "rest-backfill" for recovered trades. */
  source: "L2-Source",
  /**
   * On recovered trades: the highest id of their kind ingest had seen live when it stored them, which
   * a restart continues from (the recovered ids are lower than trades stored before them).
   */
  liveHigh: "L2-Live-High",
} as const;

const SYMBOL_RE = /^[A-Z0-9]{2,30}$/;
const INTERVAL_RE = /^[1-9][0-9]*(ms|s|m|h|d)$/;

/** Upper-cases a symbol and checks it can be a subject token; throws `TypeError` otherwise. */
export function normalizeSymbol(symbol: string): string {
  const upper = symbol.toUpperCase();
  if (!SYMBOL_RE.test(upper)) {
    throw new TypeError(
      `invalid symbol ${JSON.stringify(symbol)}: expected 2-30 letters or digits, e.g. BTCUSDT`,
    );
  }
  return upper;
}

/** Checks an interval token ("1s", "1m", "250ms"); throws `TypeError` otherwise. */
export function checkInterval(interval: string): string {
  if (!INTERVAL_RE.test(interval)) {
    throw new TypeError(
      `invalid interval ${JSON.stringify(interval)}: expected a number and a unit (ms, s, m, h, d), e.g. 1s or 1m`,
    );
  }
  return interval;
}

/** Parses an interval token into milliseconds. */
export function intervalMs(interval: string): number {
  const match = /^([1-9][0-9]*)(ms|s|m|h|d)$/.exec(checkInterval(interval));
  const n = Number(match?.[1]);
  const unit = match?.[2];
  const scale =
    unit === "ms" ? 1 : unit === "s" ? 1_000 : unit === "m" ? 60_000 : unit === "h" ? 3_600_000 : 86_400_000;
  return n * scale;
}

/** Subject builders. Symbols must already be upper case (see `normalizeSymbol`). */
export const subjects = {
  /** `md.raw.binance.<kind>.<SYMBOL>` — exchange bytes verbatim. */
  raw: (kind: RawKind, symbol: string) => `md.raw.${EXCHANGE}.${kind}.${symbol}`,
  /** Every raw subject of one symbol. */
  rawAll: (symbol: string) => `md.raw.${EXCHANGE}.*.${symbol}`,
  /** `md.trade.binance.<SYMBOL>` — `Trade`. */
  trade: (symbol: string) => `md.trade.${EXCHANGE}.${symbol}`,
  /** `md.book.binance.<SYMBOL>` — `BookSnapshot`. */
  book: (symbol: string) => `md.book.${EXCHANGE}.${symbol}`,
  /** `md.gap.binance.<SYMBOL>` — `Gap`. */
  gap: (symbol: string) => `md.gap.${EXCHANGE}.${symbol}`,
  /** `md.window.binance.<interval>.<SYMBOL>` — `Window`. */
  window: (interval: string, symbol: string) => `md.window.${EXCHANGE}.${interval}.${symbol}`,
  /** `signal.binance.<interval>.<SYMBOL>` — `Signal`. */
  signal: (interval: string, symbol: string) => `signal.${EXCHANGE}.${interval}.${symbol}`,
  /** Control: request/reply asking ingest for a fresh depth snapshot of one symbol. */
  resyncRequest: (symbol: string) => `ctl.ingest.${EXCHANGE}.resync.${symbol}`,
  /**
   * Request to every ingest replica to change its symbol set at run time: JSON
   * `{"add":["SOLUSDT"],"remove":["XRPUSDT"]}`; each replica answers `{"ok":true,"symbols":[...]}`.
   */
  ingestSymbols: `ctl.ingest.${EXCHANGE}.symbols`,
} as const;

const RAW_PREFIX = `md.raw.${EXCHANGE}.`;

/**
 * The kind and symbol tokens of a raw subject (`md.raw.binance.<kind>.<SYMBOL>`), undefined for any
 * other subject. Neither token is checked against `RAW_KINDS` or `isSymbol`. Cheap enough for every
 * message.
 */
export function rawSubjectParts(subject: string): { kind: string; symbol: string } | undefined {
  if (!subject.startsWith(RAW_PREFIX)) return undefined;
  const dot = subject.indexOf(".", RAW_PREFIX.length);
  if (dot < 0) return undefined;
  return { kind: subject.slice(RAW_PREFIX.length, dot), symbol: subject.slice(dot + 1) };
}

/** The subject filters each stream binds. */
export const STREAM_SUBJECTS = {
  [STREAMS.raw]: [`md.raw.${EXCHANGE}.>`],
  [STREAMS.norm]: [`md.trade.${EXCHANGE}.>`, `md.book.${EXCHANGE}.>`, `md.gap.${EXCHANGE}.>`],
  [STREAMS.window]: [`md.window.${EXCHANGE}.>`],
  [STREAMS.signals]: [`signal.${EXCHANGE}.>`],
} as const;

/**
 * Message ids (`Nats-Msg-Id`), derived from the data and never from a clock or a counter, so that
 * every replica and every replay produces the same id for the same fact.
 */
export const msgIds = {
  trade: (symbol: string, tradeId: number | string) => `${EXCHANGE}:trade:${symbol}:${tradeId}`,
  aggTrade: (symbol: string, aggId: number | string) => `${EXCHANGE}:aggtrade:${symbol}:${aggId}`,
  depth: (symbol: string, finalUpdateId: number | string) => `${EXCHANGE}:depth:${symbol}:${finalUpdateId}`,
  snapshot: (symbol: string, lastUpdateId: number | string) =>
    `${EXCHANGE}:snapshot:${symbol}:${lastUpdateId}`,
  /** Normalized outputs of the normalizer, keyed by the raw fact they come from. */
  normTrade: (symbol: string, kind: "trade" | "aggtrade", id: number) => `norm:${kind}:${symbol}:${id}`,
  book: (symbol: string, epoch: number, lastUpdateId: number) => `book:${symbol}:${epoch}:${lastUpdateId}`,
  gap: (symbol: string, epoch: number, reason: string, at: number) =>
    `gap:${symbol}:${epoch}:${reason}:${at}`,
  window: (interval: string, symbol: string, startMs: number) => `window:${interval}:${symbol}:${startMs}`,
  signal: (interval: string, symbol: string, startMs: number) => `signal:${interval}:${symbol}:${startMs}`,
} as const;

/** The KV key of a symbol's latest book in `md_book`. */
export const bookKey = (symbol: string) => `${EXCHANGE}.${symbol}`;

/** The subject a KV entry is stored under (`$KV.<bucket>.<key>`): a put is a JetStream publish to it. */
export const kvSubject = (bucket: string, key: string) => `$KV.${bucket}.${key}`;

/** True when `interval` is a valid interval token (see `checkInterval`). */
export function isInterval(interval: string): boolean {
  return INTERVAL_RE.test(interval);
}

/** True when `symbol`, upper-cased, can be a subject token (see `normalizeSymbol`). */
export function isSymbol(symbol: string): boolean {
  return SYMBOL_RE.test(symbol.toUpperCase());
}

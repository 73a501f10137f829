import type { Window } from "@l2flow/contracts";

/** A chat message. */
export interface ChatMessage {
  readonly role: "system" | "user" | "assistant";
  readonly content: string;
}

const SYSTEM = [
  "You are a market microstructure analyst. You receive one closed time window of a crypto spot market",
  "(trades and order book features) and a few previous windows. Judge the short-term direction.",
  'Answer with ONLY a JSON object: {"sentiment":"bearish|neutral|bullish","confidence":0..1,',
  '"pressure":"sell|balanced|buy","rationale":"at most 280 characters"}. No other text.',
].join(" ");

const r = (v: number, digits = 6) => (Number.isFinite(v) ? Number(v.toPrecision(digits)) : 0);

/** A time as ISO 8601; the number itself when it is no date (a corrupt window must not throw here). */
function isoTime(ms: number): string {
  const d = new Date(ms);
  return Number.isNaN(d.getTime()) ? String(ms) : d.toISOString();
}

/** The features of one window, compactly. */
export function windowFeatures(w: Window): Record<string, unknown> {
  return {
    symbol: w.symbol,
    interval: w.interval,
    start: isoTime(w.startTimeMs),
    complete: w.complete,
    ohlc: [r(w.open), r(w.high), r(w.low), r(w.close)],
    volume: r(w.volume),
    vwap: r(w.vwap),
    trades: w.tradeCount,
    takerBuy: r(w.takerBuyVolume),
    takerSell: r(w.takerSellVolume),
    tradeFlowImbalance: r(w.tradeFlowImbalance, 3),
    orderFlowImbalance: r(w.orderFlowImbalance),
    spread: { mean: r(w.spreadMean), max: r(w.spreadMax), last: r(w.spreadLast) },
    mid: r(w.mid),
    microprice: r(w.microprice),
    bookImbalance: r(w.bookImbalance, 3),
    depth: w.depth.map((d) => ({ bps: d.bps, bid: r(d.bidQuantity), ask: r(d.askQuantity) })),
    realizedVolatility: r(w.realizedVolatility, 4),
  };
}

function pastLines(history: readonly Window[]): string[] {
  return history.map(
    (h) =>
      `${isoTime(h.startTimeMs)} o=${r(h.open)} c=${r(h.close)} v=${r(h.volume)} flow=${r(h.tradeFlowImbalance, 3)} book=${r(h.bookImbalance, 3)}`,
  );
}

const BATCH_SYSTEM = [
  "You are a market microstructure analyst. You receive closed time windows of several crypto spot",
  "markets (trades and order book features), each with a few previous windows. Judge each market's",
  "short-term direction independently. Answer with ONLY a JSON object keyed by symbol, each value",
  '{"sentiment":"bearish|neutral|bullish","confidence":0..1,"pressure":"sell|balanced|buy",',
  '"rationale":"at most 280 characters"}. Include every symbol given. No other text.',
].join(" ");

/** Builds one prompt for several symbols' windows (one call instead of one per window). */
export function buildBatchPrompt(
  items: readonly { window: Window; history: readonly Window[] }[],
): ChatMessage[] {
  const user = items
    .map(({ window, history }) => {
      const past = pastLines(history);
      return [
        `${window.symbol}: ${JSON.stringify(windowFeatures(window))}`,
        window.complete
          ? ""
          : `Note: data for ${window.symbol} is incomplete (a gap or disconnect overlapped).`,
        past.length > 0 ? `Previous ${window.symbol} windows:\n${past.join("\n")}` : "",
      ]
        .filter((s) => s.length > 0)
        .join("\n");
    })
    .join("\n\n");
  return [
    { role: "system", content: BATCH_SYSTEM },
    { role: "user", content: user },
  ];
}

/** Builds the chat messages for one window and the symbol's previous windows (oldest first). */
export function buildPrompt(window: Window, history: readonly Window[]): ChatMessage[] {
  const past = pastLines(history);
  const user = [
    `Window: ${JSON.stringify(windowFeatures(window))}`,
    window.complete
      ? ""
      : "Note: data is incomplete for this window (a gap or disconnect overlapped it); lower your confidence.",
    past.length > 0 ? `Previous windows:\n${past.join("\n")}` : "No previous windows.",
  ]
    .filter((s) => s.length > 0)
    .join("\n");
  return [
    { role: "system", content: SYSTEM },
    { role: "user", content: user },
  ];
}

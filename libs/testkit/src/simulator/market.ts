/**
 * What the simulated exchange knows about each symbol at the replay's current moment: the true
 * book, and the trades and aggregate trades replayed so far (for the REST history endpoints).
 */
import type { RecordedEvent, Recording } from "@l2flow/recording";
import { parseSnapshotBody, TrueBook, type BookSnapshot } from "./book.js";
import { significantDecimals, writtenDecimals } from "./decimal.js";

/** A replayed `@trade` event, as `/api/v3/historicalTrades` needs it. */
export interface TradeRecord {
  readonly id: number;
  readonly price: string;
  readonly qty: string;
  readonly time: number;
  readonly isBuyerMaker: boolean;
  readonly isBestMatch: boolean;
}

/** A replayed `@aggTrade` event in `/api/v3/aggTrades`' shape. */
export interface AggTradeRecord {
  readonly a: number;
  readonly p: string;
  readonly q: string;
  readonly f: number;
  readonly l: number;
  readonly T: number;
  readonly m: boolean;
  readonly M: boolean;
}

/** Price and quantity precision seen in the recording for one symbol. */
export interface SymbolPrecision {
  /** Decimals Binance writes prices with (e.g. 8). */
  readonly priceWidth: number;
  /** Decimals that ever carry a non-zero digit in a price (tick = 10^-tickDecimals). */
  readonly tickDecimals: number;
  readonly quantityWidth: number;
  readonly stepDecimals: number;
}

/** One symbol's state. */
export class SymbolMarket {
  readonly symbol: string;
  /** Lower-case symbol, as stream names spell it. */
  readonly streamSymbol: string;
  readonly book = new TrueBook();
  readonly trades: TradeRecord[] = [];
  readonly aggTrades: AggTradeRecord[] = [];
  /** Depth diffs still to withhold from clients (`skipDiffs`). */
  skipDiffs = 0;
  /** Depth diffs withheld so far. */
  diffsSkipped = 0;
  /** Depth diffs replayed so far that the book applied / already contained. */
  diffsApplied = 0;
  diffsAlreadyInBook = 0;
  readonly #seed: BookSnapshot | undefined;

  constructor(symbol: string, seed: BookSnapshot | undefined) {
    this.symbol = symbol;
    this.streamSymbol = symbol.toLowerCase();
    this.#seed = seed;
    this.reset();
  }

  /** Back to the start of the recording: the first snapshot, no trades. */
  reset(): void {
    if (this.#seed) this.book.seed(this.#seed);
    else this.book.clear();
    this.trades.length = 0;
    this.aggTrades.length = 0;
  }
}

/** Builds every symbol's state, seeding each book from the symbol's first recorded snapshot. */
export function buildMarkets(recording: Recording): Map<string, SymbolMarket> {
  const seeds = new Map<string, BookSnapshot>();
  for (const event of recording.events) {
    if (event.type !== "snapshot" || seeds.has(event.symbol)) continue;
    seeds.set(event.symbol, parseSnapshotBody(event.body));
  }
  const markets = new Map<string, SymbolMarket>();
  for (const symbol of recording.symbols) markets.set(symbol, new SymbolMarket(symbol, seeds.get(symbol)));
  return markets;
}

/** Parses a `@trade` event's data; undefined when it lacks the fields. */
export function parseTrade(data: string): TradeRecord | undefined {
  const t = JSON.parse(data) as Record<string, unknown>;
  if (typeof t.t !== "number" || typeof t.p !== "string" || typeof t.q !== "string") return undefined;
  return {
    id: t.t,
    price: t.p,
    qty: t.q,
    time: typeof t.T === "number" ? t.T : 0,
    isBuyerMaker: t.m === true,
    isBestMatch: t.M !== false,
  };
}

/** Parses an `@aggTrade` event's data; undefined when it lacks the fields. */
export function parseAggTrade(data: string): AggTradeRecord | undefined {
  const t = JSON.parse(data) as Record<string, unknown>;
  if (typeof t.a !== "number" || typeof t.p !== "string" || typeof t.q !== "string") return undefined;
  return {
    a: t.a,
    p: t.p,
    q: t.q,
    f: typeof t.f === "number" ? t.f : t.a,
    l: typeof t.l === "number" ? t.l : t.a,
    T: typeof t.T === "number" ? t.T : 0,
    m: t.m === true,
    M: t.M !== false,
  };
}

/** Index of the first record whose id is >= `id` in an array sorted by id (binary search). */
export function lowerBound<T>(items: readonly T[], id: number, idOf: (item: T) => number): number {
  let lo = 0;
  let hi = items.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if (idOf(items[mid]!) < id) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

class PrecisionScan {
  priceWidth = 0;
  tickDecimals = 0;
  quantityWidth = 0;
  stepDecimals = 0;
  price(p: unknown): void {
    if (typeof p !== "string") return;
    this.priceWidth = Math.max(this.priceWidth, writtenDecimals(p));
    this.tickDecimals = Math.max(this.tickDecimals, significantDecimals(p));
  }
  quantity(q: unknown): void {
    if (typeof q !== "string") return;
    this.quantityWidth = Math.max(this.quantityWidth, writtenDecimals(q));
    this.stepDecimals = Math.max(this.stepDecimals, significantDecimals(q));
  }
  levels(levels: unknown): void {
    if (!Array.isArray(levels)) return;
    for (const level of levels as unknown[]) {
      if (!Array.isArray(level)) continue;
      this.price(level[0]);
      this.quantity(level[1]);
    }
  }
}

function scanEvent(scan: PrecisionScan, event: RecordedEvent): void {
  const text = event.type === "frame" ? event.data : event.body;
  let o: Record<string, unknown>;
  try {
    o = JSON.parse(text) as Record<string, unknown>;
  } catch {
    return;
  }
  if (event.type === "snapshot") {
    scan.levels(o.bids);
    scan.levels(o.asks);
    return;
  }
  if (event.kind.startsWith("depth")) {
    scan.levels(o.b);
    scan.levels(o.a);
  } else if (event.kind === "bookTicker") {
    scan.price(o.b);
    scan.price(o.a);
    scan.quantity(o.B);
    scan.quantity(o.A);
  } else {
    scan.price(o.p);
    scan.quantity(o.q);
  }
}

/**
 * The precision of each symbol's prices and quantities, inferred from every number in the
 * recording: the tick is the finest decimal any price uses, the step the finest any quantity uses.
 * The real tick can only be coarser-or-equal to what was seen, never finer.
 */
export function inferPrecision(recording: Recording): Map<string, SymbolPrecision> {
  const scans = new Map<string, PrecisionScan>();
  for (const event of recording.events) {
    let scan = scans.get(event.symbol);
    if (!scan) scans.set(event.symbol, (scan = new PrecisionScan()));
    scanEvent(scan, event);
  }
  const out = new Map<string, SymbolPrecision>();
  for (const [symbol, s] of scans) {
    out.set(symbol, {
      priceWidth: s.priceWidth,
      tickDecimals: s.tickDecimals,
      quantityWidth: s.quantityWidth,
      stepDecimals: s.stepDecimals,
    });
  }
  return out;
}

/**
 * Tumbling windows on exchange event time, one aggregator per symbol and interval. Pure and
 * deterministic: no clocks (idle closing takes the caller's decision), so the same events in give the
 * same windows out. A window closes when the watermark (latest event time minus the allowed
 * lateness) passes its end; events older than an open window are counted as late, never merged.
 */
import {
  intervalMs,
  WindowCloseReason,
  type BookLevel,
  type DepthBand,
  type Window,
} from "@l2flow/contracts";
import type { OrderBook } from "@l2flow/orderbook";

/** Options for `WindowAggregator`. */
export interface WindowAggregatorOptions {
  readonly symbol: string;
  /** "1s", "1m", ... */
  readonly interval: string;
  /** Default "binance". */
  readonly exchange?: string;
  /** Events up to this far behind the latest still land in their window. Default 250 ms. */
  readonly allowedLatenessMs?: number;
  /** Levels in the window's book and its imbalance. Default 10. */
  readonly bookLevels?: number;
  /** Depth bands around mid, in basis points. Default [5, 10, 25]. */
  readonly depthBps?: readonly number[];
  /** At most this many empty windows are emitted to bridge a silence; longer silences are skipped. Default 3 600. */
  readonly maxEmptyWindows?: number;
}

/** A trade as the aggregator needs it. */
export interface WindowTrade {
  readonly timeMs: number;
  readonly price: number;
  readonly quantity: number;
  /** True when the buyer was the maker (the taker sold). */
  readonly buyerIsMaker: boolean;
  /**
   * The trade's id, for its order among trades of the same time: a window's open and close are its
   * first and last trades by (time, id), whatever order they arrive in (a backfill after a
   * reconnect brings older trades after newer ones). Default 0.
   */
  readonly id?: number;
}

interface BookClose {
  mid: number;
  microprice: number;
  imbalance: number;
  depth: DepthBand[];
  bids: BookLevel[];
  asks: BookLevel[];
  lastUpdateId: number;
  epoch: number;
}

/** A number that survives JSON: non-finite values become strings. */
type Num = number | "Infinity" | "-Infinity" | "NaN";
const num = (v: number): Num =>
  Number.isFinite(v) ? v : Number.isNaN(v) ? "NaN" : v > 0 ? "Infinity" : "-Infinity";
const unnum = (v: Num): number => (typeof v === "number" ? v : Number(v));

/** JSON-able state of a `WindowAggregator` (see `serialize`), for checkpoints. */
export interface WindowAggregatorState {
  readonly v: 1;
  readonly interval: string;
  readonly open: readonly Record<string, unknown>[];
  readonly maxTime: Num;
  readonly lastEmittedStart: Num;
  readonly lastClose: number;
  readonly lastBook: BookClose | null;
  readonly prevBest: readonly number[];
  readonly prevMid: Num;
  readonly pendingLate: number;
  readonly hasLatestBook: boolean;
  readonly latestEpoch: number;
  /** The span of event time data was missing in (see `impair`); absent in older checkpoints. */
  readonly impairedFrom?: Num;
  readonly impairedTo?: Num;
  /** Windows ending after this are held open (see `hold`). */
  readonly holdFrom?: Num;
}

class Acc {
  open = 0;
  high = -Infinity;
  low = Infinity;
  close = 0;
  volume = 0;
  quoteVolume = 0;
  trades = 0;
  takerBuy = 0;
  takerSell = 0;
  ofi = 0;
  spreadSum = 0;
  spreadMax = 0;
  spreadLast = 0;
  bookUpdates = 0;
  retN = 0;
  retSum = 0;
  retSumSq = 0;
  complete = true;
  late = 0;
  /** (time, id) of the trades that gave `open` and `close`. */
  openTime = 0;
  openId = 0;
  closeTime = 0;
  closeId = 0;
  bookClose: BookClose | undefined;
  constructor(readonly start: number) {}
}

/** Aggregates one symbol's trades and book updates into tumbling windows of one interval. */
export class WindowAggregator {
  readonly #symbol: string;
  readonly #interval: string;
  readonly #exchange: string;
  readonly #size: number;
  readonly #lateness: number;
  readonly #levels: number;
  readonly #bps: readonly number[];
  readonly #maxEmpty: number;
  #open: Acc[] = [];
  #maxTime = -Infinity;
  #lastEmittedStart = -Infinity;
  #lastClose = 0;
  #lastBook: BookClose | undefined;
  // Previous best bid price, bid qty, ask price, ask qty for order-flow imbalance.
  #prevBest: number[] = [];
  #prevMid = NaN;
  #pendingLate = 0;
  /** Windows ending after this stay open (`hold`). */
  #holdFrom = Infinity;
  /** Event time span data was missing in: windows overlapping it are incomplete (`impair`). */
  #impairedFrom = -Infinity;
  #impairedTo = -Infinity;

  constructor(options: WindowAggregatorOptions) {
    this.#symbol = options.symbol;
    this.#interval = options.interval;
    this.#exchange = options.exchange ?? "binance";
    this.#size = intervalMs(options.interval);
    this.#lateness = options.allowedLatenessMs ?? 250;
    this.#levels = options.bookLevels ?? 10;
    this.#bps = options.depthBps ?? [5, 10, 25];
    this.#maxEmpty = options.maxEmptyWindows ?? 3_600;
  }

  /** The interval this aggregator closes. */
  get interval(): string {
    return this.#interval;
  }

  #acc(timeMs: number, isEvent = true): Acc | undefined {
    const start = timeMs - (((timeMs % this.#size) + this.#size) % this.#size);
    // An event for a window the watermark has passed is late, even when that window has not been
    // emitted yet (it had no event, so it is emitted as an empty one when the next closes).
    if (start <= this.#lastEmittedStart || (isEvent && start + this.#size <= this.#watermark())) {
      if (isEvent) this.#pendingLate++;
      return undefined;
    }
    const open = this.#open;
    let i = open.length - 1;
    for (; i >= 0; i--) {
      const a = open[i]!;
      if (a.start === start) return a;
      if (a.start < start) break;
    }
    const n = this.#newAcc(start);
    open.splice(i + 1, 0, n);
    return n;
  }

  /** A window with nothing in it yet; incomplete when it overlaps the impaired span. */
  #newAcc(start: number): Acc {
    const a = new Acc(start);
    if (start < this.#impairedTo && start + this.#size > this.#impairedFrom) a.complete = false;
    return a;
  }

  /** Adds a trade; returns the windows this closed. */
  onTrade(t: WindowTrade): Window[] {
    const a = this.#acc(t.timeMs);
    if (a !== undefined) {
      const id = t.id ?? 0;
      const first = a.trades === 0;
      if (first || t.timeMs < a.openTime || (t.timeMs === a.openTime && id < a.openId)) {
        a.open = t.price;
        a.openTime = t.timeMs;
        a.openId = id;
      }
      if (first || t.timeMs > a.closeTime || (t.timeMs === a.closeTime && id >= a.closeId)) {
        a.close = t.price;
        a.closeTime = t.timeMs;
        a.closeId = id;
      }
      if (t.price > a.high) a.high = t.price;
      if (t.price < a.low) a.low = t.price;
      a.volume += t.quantity;
      a.quoteVolume += t.price * t.quantity;
      a.trades++;
      if (t.buyerIsMaker) a.takerSell += t.quantity;
      else a.takerBuy += t.quantity;
    }
    return this.#advance(t.timeMs);
  }

  /**
   * Call BEFORE applying a book update with event time `timeMs`: when it starts a new window, the
   * book as it stands now is recorded as the previous window's book at close.
   */
  beforeBookUpdate(timeMs: number, book: OrderBook, epoch: number): void {
    for (const a of this.#open) {
      if (a.start + this.#size <= timeMs && a.bookClose === undefined)
        a.bookClose = this.#capture(book, epoch);
    }
  }

  /** Call after applying a book update with event time `timeMs`; returns the windows this closed. */
  onBook(timeMs: number, book: OrderBook, epoch: number): Window[] {
    const a = this.#acc(timeMs);
    if (epoch !== this.#latestEpoch) {
      // A new epoch is a book rebuilt after a gap: no flow or return spans the two.
      this.#prevBest = [];
      this.#prevMid = NaN;
    }
    if (a !== undefined && book.bidCount > 0 && book.askCount > 0) {
      const bid = book.bestBidPrice();
      const ask = book.bestAskPrice();
      const bq = book.bestBidQuantity();
      const aq = book.bestAskQuantity();
      const spread = ask - bid;
      a.spreadSum += spread;
      if (spread > a.spreadMax) a.spreadMax = spread;
      a.spreadLast = spread;
      a.bookUpdates++;
      const p = this.#prevBest;
      if (p.length === 4) {
        const [pb, pbq, pa, paq] = p as [number, number, number, number];
        a.ofi += (bid >= pb ? bq : 0) - (bid <= pb ? pbq : 0) - (ask <= pa ? aq : 0) + (ask >= pa ? paq : 0);
      }
      this.#prevBest = [bid, bq, ask, aq];
      const mid = (bid + ask) / 2;
      if (Number.isFinite(this.#prevMid) && this.#prevMid > 0 && mid > 0) {
        const r = Math.log(mid / this.#prevMid);
        a.retN++;
        a.retSum += r;
        a.retSumSq += r * r;
      }
      this.#prevMid = mid;
      this.#latestBook = book;
      this.#latestEpoch = epoch;
    }
    return this.#advance(timeMs);
  }

  #latestBook: OrderBook | undefined;
  #latestEpoch = 0;

  /** Everything needed to continue exactly where this aggregator is, as plain JSON. */
  serialize(): WindowAggregatorState {
    return {
      v: 1,
      interval: this.#interval,
      open: this.#open.map((a) => {
        const o: Record<string, unknown> = {};
        for (const [k, v] of Object.entries(a)) o[k] = typeof v === "number" ? num(v) : (v ?? null);
        return o;
      }),
      maxTime: num(this.#maxTime),
      lastEmittedStart: num(this.#lastEmittedStart),
      lastClose: this.#lastClose,
      lastBook: this.#lastBook ?? null,
      prevBest: [...this.#prevBest],
      prevMid: num(this.#prevMid),
      pendingLate: this.#pendingLate,
      hasLatestBook: this.#latestBook !== undefined,
      latestEpoch: this.#latestEpoch,
      impairedFrom: num(this.#impairedFrom),
      impairedTo: num(this.#impairedTo),
      holdFrom: num(this.#holdFrom),
    };
  }

  /**
   * Continues from `serialize()`'s output. `book` is the symbol's book restored to the same point
   * (windows close with the book as it then stands).
   */
  restore(state: WindowAggregatorState, book: OrderBook | undefined): void {
    if (state.v !== 1 || state.interval !== this.#interval)
      throw new RangeError(
        `window state for ${state.interval} (v${state.v}) cannot restore a ${this.#interval} aggregator`,
      );
    this.#open = state.open.map((o) => {
      const a = new Acc(o.start as number);
      const target = a as unknown as Record<string, unknown>;
      for (const [k, v] of Object.entries(o)) {
        if (k === "start") continue;
        target[k] = k === "bookClose" ? (v ?? undefined) : typeof v === "boolean" ? v : unnum(v as Num);
      }
      return a;
    });
    this.#maxTime = unnum(state.maxTime);
    this.#lastEmittedStart = unnum(state.lastEmittedStart);
    this.#lastClose = state.lastClose;
    this.#lastBook = state.lastBook ?? undefined;
    this.#prevBest = [...state.prevBest];
    this.#prevMid = unnum(state.prevMid);
    this.#pendingLate = state.pendingLate;
    this.#latestBook = state.hasLatestBook ? book : undefined;
    this.#latestEpoch = state.latestEpoch;
    this.#impairedFrom = unnum(state.impairedFrom ?? "-Infinity");
    this.#impairedTo = unnum(state.impairedTo ?? "-Infinity");
    this.#holdFrom = unnum(state.holdFrom ?? "Infinity");
  }

  /**
   * Marks the window containing `timeMs` (and any open window after it) incomplete: a gap or
   * disconnect overlapped. `timeMs` 0 (no time known, e.g. no diff applied yet): the latest event
   * time seen (nothing seen: nothing to mark).
   */
  markIncomplete(timeMs: number): void {
    const at = timeMs > 0 ? timeMs : this.#maxTime;
    if (!Number.isFinite(at)) return;
    const a = this.#acc(at, false);
    if (a !== undefined) a.complete = false;
    for (const o of this.#open) if (o.start >= (a?.start ?? at)) o.complete = false;
  }

  /**
   * Data is missing from event time `fromMs` on (the book broke there) until `restored` says up to
   * when: every window overlapping that span is incomplete, those opened meanwhile and the empty ones
   * included, not only the one where the break was seen.
   */
  impair(fromMs: number): void {
    if (this.#impairedTo !== Infinity) this.#impairedFrom = fromMs;
    else this.#impairedFrom = Math.min(this.#impairedFrom, fromMs);
    this.#impairedTo = Infinity;
    this.markIncomplete(fromMs);
  }

  /** Data is whole again from event time `atMs` on (the book resynchronised); see `impair`. */
  restored(atMs: number): void {
    if (this.#impairedTo !== Infinity) return;
    this.#impairedTo = atMs;
    for (const o of this.#open) if (o.start < atMs) o.complete = false;
  }

  /** Closes every open window (idle timeout, shutdown). */
  closeAll(): Window[] {
    const out: Window[] = [];
    while (this.#open.length > 0)
      out.push(...this.#emitUpTo(this.#open[0]!, WindowCloseReason.WINDOW_CLOSE_REASON_IDLE));
    return out;
  }

  /** Windows ending at or before this are closed: the latest event time less the lateness, or held. */
  #watermark(): number {
    return Math.min(this.#maxTime - this.#lateness, this.#holdFrom);
  }

  /**
   * Keeps windows ending after `fromMs` open (undefined: lets them close again): the book is in
   * doubt from there (diffs held for reordering may turn out a gap, which must mark them incomplete
   * before they go).
   */
  hold(fromMs: number | undefined): void {
    this.#holdFrom = fromMs ?? Infinity;
  }

  #advance(timeMs: number): Window[] {
    if (timeMs > this.#maxTime) this.#maxTime = timeMs;
    const watermark = this.#watermark();
    const first = this.#open[0];
    if (first === undefined || first.start + this.#size > watermark) return [];
    const out: Window[] = [];
    while (this.#open.length > 0 && this.#open[0]!.start + this.#size <= watermark) {
      out.push(...this.#emitUpTo(this.#open[0]!, WindowCloseReason.WINDOW_CLOSE_REASON_WATERMARK));
    }
    return out;
  }

  /** Emits empty windows between the last emitted one and `a`, then `a`. */
  #emitUpTo(a: Acc, reason: WindowCloseReason): Window[] {
    const out: Window[] = [];
    if (Number.isFinite(this.#lastEmittedStart)) {
      const missing = (a.start - this.#lastEmittedStart) / this.#size - 1;
      if (missing > 0 && missing <= this.#maxEmpty) {
        for (let s = this.#lastEmittedStart + this.#size; s < a.start; s += this.#size)
          out.push(this.#finish(this.#newAcc(s), reason));
      }
    }
    this.#open.shift();
    out.push(this.#finish(a, reason));
    return out;
  }

  #capture(book: OrderBook, epoch: number): BookClose {
    return {
      mid: finite(book.mid()),
      microprice: finite(book.microprice()),
      imbalance: book.imbalance(this.#levels),
      depth: book.depthWithinBpsAll(this.#bps),
      bids: book.topBids(this.#levels),
      asks: book.topAsks(this.#levels),
      lastUpdateId: book.lastUpdateId,
      epoch,
    };
  }

  #finish(a: Acc, reason: WindowCloseReason): Window {
    let bc = a.bookClose;
    // No book update in the window (an empty one emitted late, when the next closes): the book at
    // its close is the book at the previous close, not the book now, which later updates changed.
    if (bc === undefined && a.bookUpdates === 0) bc = this.#lastBook;
    if (bc === undefined && this.#latestBook !== undefined)
      bc = this.#capture(this.#latestBook, this.#latestEpoch);
    if (bc !== undefined) this.#lastBook = bc;
    else bc = this.#lastBook;
    const trades = a.trades;
    const close = trades > 0 ? a.close : this.#lastClose;
    this.#lastClose = close;
    this.#lastEmittedStart = a.start;
    const late = this.#pendingLate;
    this.#pendingLate = 0;
    const takerTotal = a.takerBuy + a.takerSell;
    const variance = a.retN > 1 ? (a.retSumSq - (a.retSum * a.retSum) / a.retN) / (a.retN - 1) : 0;
    return {
      exchange: this.#exchange,
      symbol: this.#symbol,
      interval: this.#interval,
      startTimeMs: a.start,
      endTimeMs: a.start + this.#size,
      open: trades > 0 ? a.open : close,
      high: trades > 0 ? a.high : close,
      low: trades > 0 ? a.low : close,
      close,
      volume: a.volume,
      quoteVolume: a.quoteVolume,
      vwap: a.volume > 0 ? a.quoteVolume / a.volume : 0,
      tradeCount: trades,
      takerBuyVolume: a.takerBuy,
      takerSellVolume: a.takerSell,
      tradeFlowImbalance: takerTotal > 0 ? (a.takerBuy - a.takerSell) / takerTotal : 0,
      orderFlowImbalance: a.ofi,
      spreadMean: a.bookUpdates > 0 ? a.spreadSum / a.bookUpdates : 0,
      spreadMax: a.spreadMax,
      spreadLast: a.bookUpdates > 0 ? a.spreadLast : 0,
      mid: bc?.mid ?? 0,
      microprice: bc?.microprice ?? 0,
      bookImbalance: bc?.imbalance ?? 0,
      bookLevels: this.#levels,
      depth: bc?.depth ?? [],
      realizedVolatility: variance > 0 ? Math.sqrt(variance) : 0,
      bids: bc?.bids ?? [],
      asks: bc?.asks ?? [],
      lastUpdateId: bc?.lastUpdateId ?? 0,
      bookUpdateCount: a.bookUpdates,
      complete: a.complete,
      lateEventCount: late,
      closeReason: reason,
      epoch: bc?.epoch ?? 0,
    };
  }
}

function finite(v: number): number {
  return Number.isFinite(v) ? v : 0;
}

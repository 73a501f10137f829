/**
 * An exact L2 order book built from the exchange's price and quantity strings. Pure: no I/O.
 *
 * Each side keeps parallel arrays sorted so that the best price is at the END (bids ascending, asks
 * descending): most updates touch prices near the top, so inserts and deletes shift few elements,
 * and reading the top N walks the tail. Prices compare as doubles (the same decimal string always
 * parses to the same double, and distinct exchange prices are distinct doubles); the original strings
 * are kept and returned, so nothing is rounded on the way out.
 */

/** One level as the exchange wrote it. */
export interface Level {
  readonly price: string;
  readonly quantity: string;
}

/** A `[price, quantity]` pair as Binance sends it. */
export type RawLevel = readonly [string, string];

/** True when a decimal string is zero ("0", "0.00000000"). */
export function isZeroQuantity(q: string): boolean {
  for (let i = 0; i < q.length; i++) {
    const c = q.charCodeAt(i);
    if (c !== 48 /* 0 */ && c !== 46 /* . */) return false;
  }
  return true;
}

class Side {
  readonly prices: number[] = [];
  readonly priceText: string[] = [];
  readonly qtyText: string[] = [];
  readonly qty: number[] = [];
  /** +1 for bids (ascending, best = max at end), -1 for asks (descending, best = min at end). */
  constructor(readonly sign: 1 | -1) {}

  get length(): number {
    return this.prices.length;
  }

  clear(): void {
    this.prices.length = 0;
    this.priceText.length = 0;
    this.qtyText.length = 0;
    this.qty.length = 0;
  }

  /** Index of the first element whose key is >= the price's key (keys = price * sign, ascending). */
  private lowerBound(key: number): number {
    const prices = this.prices;
    const sign = this.sign;
    let lo = 0;
    let hi = prices.length;
    // Fast path: most updates land near the top (the end).
    if (hi > 0 && prices[hi - 1]! * sign < key) return hi;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (prices[mid]! * sign < key) lo = mid + 1;
      else hi = mid;
    }
    return lo;
  }

  set(priceText: string, qtyText: string): void {
    const price = +priceText;
    const key = price * this.sign;
    const i = this.lowerBound(key);
    const found = i < this.prices.length && this.prices[i] === price;
    if (isZeroQuantity(qtyText)) {
      if (found) {
        this.prices.splice(i, 1);
        this.priceText.splice(i, 1);
        this.qtyText.splice(i, 1);
        this.qty.splice(i, 1);
      }
      return;
    }
    if (found) {
      this.qtyText[i] = qtyText;
      this.qty[i] = +qtyText;
      return;
    }
    if (i === this.prices.length) {
      this.prices.push(price);
      this.priceText.push(priceText);
      this.qtyText.push(qtyText);
      this.qty.push(+qtyText);
    } else {
      this.prices.splice(i, 0, price);
      this.priceText.splice(i, 0, priceText);
      this.qtyText.splice(i, 0, qtyText);
      this.qty.splice(i, 0, +qtyText);
    }
  }
}

/** An exact order book for one symbol. */
export class OrderBook {
  readonly #bids = new Side(1);
  readonly #asks = new Side(-1);
  /** Update id of the last change applied (the snapshot's `lastUpdateId` or a diff's `u`). */
  lastUpdateId = 0;

  /** Replaces the whole book with a snapshot. */
  applySnapshot(bids: readonly RawLevel[], asks: readonly RawLevel[], lastUpdateId: number): void {
    this.clear();
    for (const l of bids) this.#bids.set(l[0], l[1]);
    for (const l of asks) this.#asks.set(l[0], l[1]);
    this.lastUpdateId = lastUpdateId;
  }

  /** Applies a diff's levels (quantity 0 removes a level) and records its final update id. */
  applyDiff(bids: readonly RawLevel[], asks: readonly RawLevel[], finalUpdateId: number): void {
    for (let i = 0; i < bids.length; i++) this.#bids.set(bids[i]![0], bids[i]![1]);
    for (let i = 0; i < asks.length; i++) this.#asks.set(asks[i]![0], asks[i]![1]);
    this.lastUpdateId = finalUpdateId;
  }

  /** Sets one level; quantity 0 removes it. */
  setLevel(side: "bid" | "ask", price: string, quantity: string): void {
    (side === "bid" ? this.#bids : this.#asks).set(price, quantity);
  }

  /** Empties the book. */
  clear(): void {
    this.#bids.clear();
    this.#asks.clear();
    this.lastUpdateId = 0;
  }

  /** Number of bid and ask levels. */
  get bidCount(): number {
    return this.#bids.length;
  }
  get askCount(): number {
    return this.#asks.length;
  }

  /** Best bid price as a number, NaN when empty. */
  bestBidPrice(): number {
    const s = this.#bids;
    return s.length > 0 ? s.prices[s.length - 1]! : NaN;
  }
  /** Best ask price as a number, NaN when empty. */
  bestAskPrice(): number {
    const s = this.#asks;
    return s.length > 0 ? s.prices[s.length - 1]! : NaN;
  }
  /** Quantity at the best bid, 0 when empty. */
  bestBidQuantity(): number {
    const s = this.#bids;
    return s.length > 0 ? s.qty[s.length - 1]! : 0;
  }
  /** Quantity at the best ask, 0 when empty. */
  bestAskQuantity(): number {
    const s = this.#asks;
    return s.length > 0 ? s.qty[s.length - 1]! : 0;
  }
  /** Best bid as exchange strings, undefined when empty. */
  bestBid(): Level | undefined {
    return this.#level(this.#bids, 0);
  }
  /** Best ask as exchange strings, undefined when empty. */
  bestAsk(): Level | undefined {
    return this.#level(this.#asks, 0);
  }

  #level(s: Side, depth: number): Level | undefined {
    const i = s.length - 1 - depth;
    return i >= 0 ? { price: s.priceText[i]!, quantity: s.qtyText[i]! } : undefined;
  }

  /** The best `n` bids, best first. */
  topBids(n: number): Level[] {
    return this.#top(this.#bids, n);
  }
  /** The best `n` asks, best first. */
  topAsks(n: number): Level[] {
    return this.#top(this.#asks, n);
  }

  #top(s: Side, n: number): Level[] {
    const out: Level[] = [];
    for (let i = s.length - 1, k = 0; i >= 0 && k < n; i--, k++)
      out.push({ price: s.priceText[i]!, quantity: s.qtyText[i]! });
    return out;
  }

  /** True when best bid >= best ask (a fault: a correct Binance book is never crossed). */
  isCrossed(): boolean {
    return this.#bids.length > 0 && this.#asks.length > 0 && this.bestBidPrice() >= this.bestAskPrice();
  }

  /** (best bid + best ask) / 2, NaN when a side is empty. */
  mid(): number {
    return (this.bestBidPrice() + this.bestAskPrice()) / 2;
  }

  /** best ask - best bid, NaN when a side is empty. */
  spread(): number {
    return this.bestAskPrice() - this.bestBidPrice();
  }

  /** Size-weighted mid: (bid * askQty + ask * bidQty) / (bidQty + askQty); NaN when a side is empty. */
  microprice(): number {
    const bq = this.bestBidQuantity();
    const aq = this.bestAskQuantity();
    if (bq + aq === 0) return NaN;
    return (this.bestBidPrice() * aq + this.bestAskPrice() * bq) / (bq + aq);
  }

  /** (bid qty - ask qty) / (bid qty + ask qty) over the top `levels` levels, in [-1, 1]; 0 when empty. */
  imbalance(levels: number): number {
    const b = sumQty(this.#bids, levels);
    const a = sumQty(this.#asks, levels);
    return a + b === 0 ? 0 : (b - a) / (b + a);
  }

  /** Quantity resting within `bps` basis points of the mid, per side. */
  depthWithinBps(bps: number): { bidQuantity: number; askQuantity: number } {
    const mid = this.mid();
    if (!Number.isFinite(mid)) return { bidQuantity: 0, askQuantity: 0 };
    const lo = mid * (1 - bps / 10_000);
    const hi = mid * (1 + bps / 10_000);
    let bidQuantity = 0;
    for (let i = this.#bids.length - 1; i >= 0 && this.#bids.prices[i]! >= lo; i--)
      bidQuantity += this.#bids.qty[i]!;
    let askQuantity = 0;
    for (let i = this.#asks.length - 1; i >= 0 && this.#asks.prices[i]! <= hi; i--)
      askQuantity += this.#asks.qty[i]!;
    return { bidQuantity, askQuantity };
  }

  /** Every level, best first, as `[price, quantity]` strings (for checkpoints). */
  toSnapshot(): { bids: [string, string][]; asks: [string, string][]; lastUpdateId: number } {
    const dump = (s: Side) => {
      const out: [string, string][] = [];
      for (let i = s.length - 1; i >= 0; i--) out.push([s.priceText[i]!, s.qtyText[i]!]);
      return out;
    };
    return { bids: dump(this.#bids), asks: dump(this.#asks), lastUpdateId: this.lastUpdateId };
  }
}

function sumQty(s: Side, levels: number): number {
  let sum = 0;
  for (let i = s.length - 1, k = 0; i >= 0 && k < levels; i--, k++) sum += s.qty[i]!;
  return sum;
}

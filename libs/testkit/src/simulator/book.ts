/**
 * The simulator's own order book of one symbol: the exchange's "true" book that `/api/v3/depth`
 * serves. Deliberately minimal and independent of `@l2flow/orderbook` (which the simulator tests):
 * one map per side keyed by the price string exactly as Binance writes it, sorted only when a
 * snapshot is asked for.
 */

/** One price level as Binance writes it: `[price, quantity]`. */
export type Level = readonly [price: string, quantity: string];

/** A depth diff's fields the book needs. */
export interface DepthDiff {
  readonly U: number;
  readonly u: number;
  readonly b: readonly Level[];
  readonly a: readonly Level[];
}

/** What a depth snapshot body holds. */
export interface BookSnapshot {
  readonly lastUpdateId: number;
  readonly bids: readonly Level[];
  readonly asks: readonly Level[];
}

function isZero(quantity: string): boolean {
  for (let i = 0; i < quantity.length; i++) {
    const c = quantity.charCodeAt(i);
    if (c !== 48 && c !== 46) return false; // anything but '0' and '.'
  }
  return true;
}

/** `value` itself once every entry is checked to be `[price, quantity]` strings (no copy: a diff's levels are many). */
function parseLevels(value: unknown, what: string): readonly Level[] {
  if (!Array.isArray(value)) throw new TypeError(`${what} is not an array`);
  for (const level of value as unknown[]) {
    if (!Array.isArray(level) || typeof level[0] !== "string" || typeof level[1] !== "string")
      throw new TypeError(`${what} has a level that is not [price, quantity]`);
  }
  return value as Level[];
}

/** Parses a `/api/v3/depth` body. Throws TypeError on a malformed body. */
export function parseSnapshotBody(body: string): BookSnapshot {
  const parsed = JSON.parse(body) as { lastUpdateId?: unknown; bids?: unknown; asks?: unknown };
  if (typeof parsed.lastUpdateId !== "number") throw new TypeError("snapshot has no numeric lastUpdateId");
  return {
    lastUpdateId: parsed.lastUpdateId,
    bids: parseLevels(parsed.bids, "snapshot bids"),
    asks: parseLevels(parsed.asks, "snapshot asks"),
  };
}

/** Parses a `depthUpdate` event's data. Throws TypeError on a malformed event. */
export function parseDepthDiff(data: string): DepthDiff {
  const parsed = JSON.parse(data) as { U?: unknown; u?: unknown; b?: unknown; a?: unknown };
  if (typeof parsed.U !== "number" || typeof parsed.u !== "number")
    throw new TypeError("depth diff has no numeric U/u");
  return {
    U: parsed.U,
    u: parsed.u,
    b: parseLevels(parsed.b, "diff bids"),
    a: parseLevels(parsed.a, "diff asks"),
  };
}

interface Sorted {
  readonly bids: readonly Level[];
  readonly asks: readonly Level[];
}

function sortSide(side: ReadonlyMap<string, string>, descending: boolean): Level[] {
  const keyed: { n: number; level: Level }[] = [];
  for (const [price, quantity] of side) keyed.push({ n: Number(price), level: [price, quantity] });
  keyed.sort(descending ? (x, y) => y.n - x.n : (x, y) => x.n - y.n);
  return keyed.map((k) => k.level);
}

/** A symbol's true book: seeded from a snapshot, moved by depth diffs (quantity 0 removes a level). */
export class TrueBook {
  readonly #bids = new Map<string, string>();
  readonly #asks = new Map<string, string>();
  #lastUpdateId = 0;
  #seeded = false;
  #sorted: Sorted | undefined;

  /** Update id of the last change: the snapshot's `lastUpdateId` or the last applied diff's `u`. */
  get lastUpdateId(): number {
    return this.#lastUpdateId;
  }

  /** Whether a snapshot has seeded the book. */
  get seeded(): boolean {
    return this.#seeded;
  }

  /** Replaces the whole book with a snapshot. */
  seed(snapshot: BookSnapshot): void {
    this.#bids.clear();
    this.#asks.clear();
    for (const [p, q] of snapshot.bids) if (!isZero(q)) this.#bids.set(p, q);
    for (const [p, q] of snapshot.asks) if (!isZero(q)) this.#asks.set(p, q);
    this.#lastUpdateId = snapshot.lastUpdateId;
    this.#seeded = true;
    this.#sorted = undefined;
  }

  /** Empties the book (no snapshot). */
  clear(): void {
    this.#bids.clear();
    this.#asks.clear();
    this.#lastUpdateId = 0;
    this.#seeded = false;
    this.#sorted = undefined;
  }

  /**
   * Applies a diff unless the book already contains it (`u <= lastUpdateId`). Returns whether it was
   * applied. A diff that does not follow on (a hole in the recording) is applied all the same: the
   * book is the recording's truth, not a client's.
   */
  apply(diff: DepthDiff): boolean {
    if (diff.u <= this.#lastUpdateId) return false;
    for (const [p, q] of diff.b) {
      if (isZero(q)) this.#bids.delete(p);
      else this.#bids.set(p, q);
    }
    for (const [p, q] of diff.a) {
      if (isZero(q)) this.#asks.delete(p);
      else this.#asks.set(p, q);
    }
    this.#lastUpdateId = diff.u;
    this.#sorted = undefined;
    return true;
  }

  /** Number of levels per side. */
  get depth(): { bids: number; asks: number } {
    return { bids: this.#bids.size, asks: this.#asks.size };
  }

  /** The best `limit` levels per side: bids high to low, asks low to high. */
  snapshot(limit: number): BookSnapshot {
    this.#sorted ??= { bids: sortSide(this.#bids, true), asks: sortSide(this.#asks, false) };
    return {
      lastUpdateId: this.#lastUpdateId,
      bids: this.#sorted.bids.slice(0, limit),
      asks: this.#sorted.asks.slice(0, limit),
    };
  }
}

/**
 * Drops the duplicates two overlapping connections deliver during a make-before-break rotation (or
 * two ingest paths, e.g. WebSocket and REST backfill), keyed by (kind, symbol, id).
 */

/** Options for `DedupeFilter`. */
export interface DedupeFilterOptions {
  /** Ids remembered per (kind, symbol), newest kept. Default 1024 (about 2 s of BTCUSDT trades at peak). */
  readonly windowSize?: number;
  /** Distinct (kind, symbol) keys kept; the oldest key is forgotten beyond it. Default 8192. */
  readonly maxKeys?: number;
}

/**
 * The newest ids of one key in a ring of doubles (8 bytes an id; a `Set` of numbers took ~50 bytes an
 * id, 41 MB for 400 symbols' trades and diffs). It grows to the window size, then is reused: quiet
 * keys stay small.
 */
class KeyWindow {
  constructor(
    readonly kind: string,
    readonly symbol: string,
  ) {}
  highest = -Infinity;
  ring = new Float64Array(16);
  /** Ids held (at most the window size). */
  count = 0;
  /** Where the next id goes once the ring is full. */
  next = 0;

  /** True when `id` is among the ids held, searching from the newest (where a redundant copy is). */
  has(id: number): boolean {
    const ring = this.ring;
    const n = this.count;
    for (let k = 0, i = (this.next === 0 ? n : this.next) - 1; k < n; k++, i--) {
      if (i < 0) i = n - 1;
      if (ring[i] === id) return true;
    }
    return false;
  }

  add(id: number, windowSize: number): void {
    if (id > this.highest) this.highest = id;
    if (this.count < windowSize) {
      if (this.count === this.ring.length) {
        const grown = new Float64Array(Math.min(windowSize, this.ring.length * 2));
        grown.set(this.ring);
        this.ring = grown;
      }
      this.ring[this.count++] = id;
      return;
    }
    this.ring[this.next] = id;
    this.next = (this.next + 1) % windowSize;
  }
}

/**
 * `seen(kind, symbol, id)` is true only when that exact id was already passed for the key, so it never
 * drops a fact it cannot prove was delivered: an id older than everything remembered passes again
 * (JetStream's duplicate window catches those). An id above the key's highest costs no search; a
 * redundant copy is found near the newest; memory is bounded by `windowSize` ids per key (default
 * 1024: 8 KB for a busy key) and `maxKeys` keys (default 8192).
 */
export class DedupeFilter {
  readonly #windowSize: number;
  readonly #maxKeys: number;
  /** kind → symbol → window: looked up by the caller's strings as they are, with no key built per call. */
  readonly #keys = new Map<string, Map<string, KeyWindow>>();
  /** Every window in creation order, the oldest first to be forgotten. */
  readonly #order = new Set<KeyWindow>();
  /** Counts since creation. */
  readonly counters = { passed: 0, duplicates: 0, evictedKeys: 0 };

  constructor(options: DedupeFilterOptions = {}) {
    this.#windowSize = options.windowSize ?? 1024;
    this.#maxKeys = options.maxKeys ?? 8192;
    if (!Number.isInteger(this.#windowSize) || this.#windowSize < 1)
      throw new RangeError(`windowSize must be an integer >= 1, got ${this.#windowSize}`);
  }

  /** True when `id` was already seen for (kind, symbol); otherwise remembers it and returns false. */
  seen(kind: string, symbol: string, id: number): boolean {
    let bySymbol = this.#keys.get(kind);
    if (bySymbol === undefined) this.#keys.set(kind, (bySymbol = new Map<string, KeyWindow>()));
    let w = bySymbol.get(symbol);
    if (w === undefined) {
      if (this.#order.size >= this.#maxKeys) {
        const oldest = this.#order.values().next();
        if (oldest.done !== true) this.#forget(oldest.value);
        this.counters.evictedKeys++;
      }
      w = new KeyWindow(kind, symbol);
      bySymbol.set(symbol, w);
      this.#order.add(w);
    }
    // Ids grow per key, so anything above the highest is new without a lookup.
    if (id <= w.highest && w.has(id)) {
      this.counters.duplicates++;
      return true;
    }
    w.add(id, this.#windowSize);
    this.counters.passed++;
    return false;
  }

  /** Forgets one symbol (all kinds), e.g. after it is removed from the stream set. */
  forgetSymbol(symbol: string): void {
    for (const bySymbol of this.#keys.values()) {
      const w = bySymbol.get(symbol);
      if (w !== undefined) this.#forget(w);
    }
  }

  /** Number of keys tracked. */
  get size(): number {
    return this.#order.size;
  }

  #forget(w: KeyWindow): void {
    this.#keys.get(w.kind)?.delete(w.symbol);
    this.#order.delete(w);
  }
}

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

class KeyWindow {
  highest = -Infinity;
  readonly ids = new Set<number>();
  /** Grows to the window size, then is reused as a ring: quiet keys stay small. */
  readonly ring: number[] = [];
  next = 0;
}

/**
 * `seen(kind, symbol, id)` is true only when that exact id was already passed for the key, so it never
 * drops a fact it cannot prove was delivered: an id older than everything remembered passes again
 * (JetStream's duplicate window catches those). O(1) per call; memory bounded by
 * `windowSize` ids per key (default 1024, about 60 KB for a busy key) and `maxKeys` keys (default 8192).
 */
export class DedupeFilter {
  readonly #windowSize: number;
  readonly #maxKeys: number;
  readonly #keys = new Map<string, KeyWindow>();
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
    const key = `${kind}\u0000${symbol}`;
    let w = this.#keys.get(key);
    if (w === undefined) {
      if (this.#keys.size >= this.#maxKeys) {
        const oldest = this.#keys.keys().next();
        if (oldest.done !== true) this.#keys.delete(oldest.value);
        this.counters.evictedKeys++;
      }
      w = new KeyWindow();
      this.#keys.set(key, w);
    }
    // Ids grow per key, so anything above the highest is new without a lookup.
    if (id <= w.highest && w.ids.has(id)) {
      this.counters.duplicates++;
      return true;
    }
    if (id > w.highest) w.highest = id;
    if (w.ring.length < this.#windowSize) {
      w.ring.push(id);
    } else {
      w.ids.delete(w.ring[w.next] as number);
      w.ring[w.next] = id;
      w.next = (w.next + 1) % this.#windowSize;
    }
    w.ids.add(id);
    this.counters.passed++;
    return false;
  }

  /** Forgets one symbol (all kinds), e.g. after it is removed from the stream set. */
  forgetSymbol(symbol: string): void {
    for (const key of [...this.#keys.keys()]) if (key.endsWith(`\u0000${symbol}`)) this.#keys.delete(key);
  }

  /** Number of keys tracked. */
  get size(): number {
    return this.#keys.size;
  }
}

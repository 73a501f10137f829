/**
 * Most id ranges a symbol keeps as missing, per trade kind; the oldest is forgotten beyond this (its
 * trades, should they come, are then taken for repeats). A range is two numbers whatever its size: a
 * disconnect makes one, and ingest's backfill usually fills it within seconds.
 */
export const MAX_MISSING_RANGES = 256;

/** What `TradeIds.take` made of an id. */
export type TradeIdOutcome = "next" | "late" | "repeat";

/** `TradeIds` as plain JSON (in a checkpoint). */
export interface TradeIdsState {
  readonly last: number;
  /** Missing ids below `last`: inclusive `[from, to]` ranges, ascending, disjoint. */
  readonly missing: readonly (readonly [number, number])[];
}

/**
 * The trade ids of one kind a symbol has had: every id up to the highest seen, except ranges still
 * missing. Binance numbers each symbol's trades consecutively, and MD_RAW holds each id once, but not
 * always in id order: ingest stores the trades its REST backfill recovers after the live trade that
 * showed the hole, and a redundant connection that lags stores its copies after the other's newer
 * ones. Such a trade is `late` (new, published), an id already had is a `repeat` (dropped).
 */
export class TradeIds {
  #last = 0;
  #missing: [number, number][] = [];

  /** The highest id taken (0: none yet). */
  get last(): number {
    return this.#last;
  }

  /**
   * Classifies `id` and records it when new. Every id below the first one taken counts as missing:
   * the normalizer reads a new symbol from its first message in MD_RAW, so a lower id stored after it
   * is one it has not had (the other connection of a redundant pair storing an older trade after this
   * one's newer, or a backfill whose live trade is all retention kept).
   */
  take(id: number): TradeIdOutcome {
    if (id > this.#last) {
      const from = this.#last > 0 ? this.#last + 1 : 0;
      if (id > from) {
        this.#missing.push([from, id - 1]);
        if (this.#missing.length > MAX_MISSING_RANGES) this.#missing.shift();
      }
      this.#last = id;
      return "next";
    }
    const missing = this.#missing;
    // Newest ranges last: a late trade is most often in the newest.
    for (let i = missing.length - 1; i >= 0; i--) {
      const range = missing[i]!;
      const [from, to] = range;
      if (id > to) return "repeat";
      if (id < from) continue;
      if (from === to) missing.splice(i, 1);
      else if (id === from) range[0] = id + 1;
      else if (id === to) range[1] = id - 1;
      else {
        missing.splice(i, 1, [from, id - 1], [id + 1, to]);
        if (missing.length > MAX_MISSING_RANGES) missing.shift();
      }
      return "late";
    }
    return "repeat";
  }

  serialize(): TradeIdsState {
    return { last: this.#last, missing: this.#missing.map(([from, to]) => [from, to] as const) };
  }

  /** From `serialize()`'s output. */
  static restore(state: TradeIdsState): TradeIds {
    const ids = new TradeIds();
    ids.#last = state.last;
    ids.#missing = state.missing.map(([from, to]) => [from, to]);
    return ids;
  }
}

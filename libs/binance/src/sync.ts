import { OrderBook } from "@l2flow/orderbook";
import type { DepthSnapshot, DepthUpdate } from "./parse.js";

/** Why a symbol's book lost sync. */
export type GapKind = "sequence" | "crossed" | "overflow";

/** What one event did to the book. */
export type SyncResult =
  /** The diff (or, after a snapshot, the buffered diffs) was applied; the book is exact. */
  | { readonly type: "applied"; readonly bridged: boolean }
  /** Waiting for a snapshot; the diff was buffered. */
  | { readonly type: "buffered" }
  /** An old or repeated diff (u <= the last applied u): ignored. */
  | { readonly type: "duplicate" }
  /** Continuity broke: the book is cleared, the symbol needs a new snapshot (`needSnapshot`). */
  | {
      readonly type: "gap";
      readonly kind: GapKind;
      readonly epoch: number;
      readonly lastUpdateId: number;
      readonly nextFirstUpdateId: number;
      readonly eventTime: number;
    }
  /** The snapshot is kept until a diff bridges it. */
  | { readonly type: "snapshot-pending" }
  /** The snapshot is older than the buffered diffs: a newer one is needed. */
  | { readonly type: "snapshot-stale" }
  /** The book is already in sync: the snapshot is not needed. */
  | { readonly type: "snapshot-ignored" };

/** Options for `BookSync`. */
export interface BookSyncOptions {
  /** Diffs buffered while waiting for a snapshot; the oldest are dropped beyond it. Default 10 000. */
  readonly maxBufferedDiffs?: number;
}

/** The JSON-able state of a `BookSync`, for checkpoints. */
export interface BookSyncState {
  readonly synced: boolean;
  readonly epoch: number;
  readonly book: { bids: [string, string][]; asks: [string, string][]; lastUpdateId: number };
  readonly buffer: DepthUpdate[];
  readonly pending: DepthSnapshot | null;
  readonly lastEventTime: number;
}

const BUFFERED: SyncResult = { type: "buffered" };
const DUPLICATE: SyncResult = { type: "duplicate" };
const APPLIED: SyncResult = { type: "applied", bridged: false };
const BRIDGED: SyncResult = { type: "applied", bridged: true };
const PENDING: SyncResult = { type: "snapshot-pending" };
const STALE: SyncResult = { type: "snapshot-stale" };
const IGNORED: SyncResult = { type: "snapshot-ignored" };

/**
 * Binance's local-book rules for one symbol, as a deterministic state machine fed in log order:
 * buffer diffs until a snapshot; drop diffs with `u <= lastUpdateId`; the first applied diff must
 * span `lastUpdateId + 1`; every later diff must have `U == previous u + 1`. A break clears the book,
 * reports a gap and waits for a new snapshot. `epoch` counts the snapshots the book was built from.
 */
export class BookSync {
  readonly book = new OrderBook();
  readonly #maxBuffered: number;
  #synced = false;
  #epoch = 0;
  #buffer: DepthUpdate[] = [];
  #pending: DepthSnapshot | undefined;
  #lastEventTime = 0;
  /** Counters since creation. */
  readonly counters = {
    applied: 0,
    duplicates: 0,
    gaps: 0,
    overflowed: 0,
    staleSnapshots: 0,
    ignoredSnapshots: 0,
  };

  constructor(options: BookSyncOptions = {}) {
    this.#maxBuffered = options.maxBufferedDiffs ?? 10_000;
  }

  /** True while the book is exact. */
  get synced(): boolean {
    return this.#synced;
  }
  /** Snapshots the book has been built from (0 before the first). */
  get epoch(): number {
    return this.#epoch;
  }
  /** True while the symbol waits for a snapshot that can bridge its buffered diffs. */
  get needsSnapshot(): boolean {
    return !this.#synced && this.#pending === undefined;
  }
  /** Event time `E` of the last applied diff. */
  get lastEventTime(): number {
    return this.#lastEventTime;
  }
  /** Diffs buffered now. */
  get bufferedDiffs(): number {
    return this.#buffer.length;
  }

  /** Feeds one diff. */
  onDiff(d: DepthUpdate): SyncResult {
    if (this.#synced) {
      const last = this.book.lastUpdateId;
      if (d.finalUpdateId <= last) {
        this.counters.duplicates++;
        return DUPLICATE;
      }
      if (d.firstUpdateId !== last + 1) return this.#gap("sequence", d, [d]);
      this.book.applyDiff(d.bids, d.asks, d.finalUpdateId);
      this.#lastEventTime = d.eventTime;
      if (this.book.isCrossed()) return this.#gap("crossed", d, []);
      this.counters.applied++;
      return APPLIED;
    }
    const tail = this.#buffer[this.#buffer.length - 1];
    if (tail !== undefined && d.finalUpdateId <= tail.finalUpdateId) {
      this.counters.duplicates++;
      return DUPLICATE;
    }
    if (this.#buffer.length >= this.#maxBuffered) {
      this.#buffer.shift();
      this.counters.overflowed++;
    }
    this.#buffer.push(d);
    return this.#pending !== undefined ? this.#bridge() : BUFFERED;
  }

  /** Feeds one REST snapshot. */
  onSnapshot(s: DepthSnapshot): SyncResult {
    if (this.#synced) {
      this.counters.ignoredSnapshots++;
      return IGNORED;
    }
    this.#pending = s;
    return this.#bridge();
  }

  #bridge(): SyncResult {
    const snap = this.#pending!;
    let drop = 0;
    while (drop < this.#buffer.length && this.#buffer[drop]!.finalUpdateId <= snap.lastUpdateId) drop++;
    if (drop > 0) this.#buffer.splice(0, drop);
    const first = this.#buffer[0];
    if (first === undefined) return PENDING;
    if (first.firstUpdateId > snap.lastUpdateId + 1) {
      // The diffs we hold start after the snapshot: the snapshot is too old to bridge them.
      this.#pending = undefined;
      this.counters.staleSnapshots++;
      return STALE;
    }
    this.book.applySnapshot(snap.bids, snap.asks, snap.lastUpdateId);
    this.#epoch++;
    this.#pending = undefined;
    const buffered = this.#buffer;
    this.#buffer = [];
    this.#synced = true;
    for (let i = 0; i < buffered.length; i++) {
      const d = buffered[i]!;
      if (i > 0 && d.firstUpdateId !== this.book.lastUpdateId + 1)
        return this.#gap("sequence", d, buffered.slice(i));
      this.book.applyDiff(d.bids, d.asks, d.finalUpdateId);
      this.#lastEventTime = d.eventTime;
      this.counters.applied++;
    }
    if (this.book.isCrossed()) return this.#gap("crossed", buffered[buffered.length - 1]!, []);
    return BRIDGED;
  }

  #gap(kind: GapKind, d: DepthUpdate, keep: DepthUpdate[]): SyncResult {
    const lastUpdateId = this.book.lastUpdateId;
    this.#synced = false;
    this.book.clear();
    this.#buffer = keep;
    this.#pending = undefined;
    this.counters.gaps++;
    return {
      type: "gap",
      kind,
      epoch: this.#epoch,
      lastUpdateId,
      nextFirstUpdateId: d.firstUpdateId,
      eventTime: d.eventTime,
    };
  }

  /** The full state as plain JSON, for a checkpoint. */
  serialize(): BookSyncState {
    return {
      synced: this.#synced,
      epoch: this.#epoch,
      book: this.book.toSnapshot(),
      buffer: [...this.#buffer],
      pending: this.#pending ?? null,
      lastEventTime: this.#lastEventTime,
    };
  }

  /** Rebuilds a `BookSync` from `serialize()` output. */
  static restore(state: BookSyncState, options: BookSyncOptions = {}): BookSync {
    const s = new BookSync(options);
    s.#synced = state.synced;
    s.#epoch = state.epoch;
    s.book.applySnapshot(state.book.bids, state.book.asks, state.book.lastUpdateId);
    s.#buffer = [...state.buffer];
    s.#pending = state.pending ?? undefined;
    s.#lastEventTime = state.lastEventTime;
    return s;
  }
}

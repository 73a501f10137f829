import { OrderBook, type PackedBook } from "@l2flow/orderbook";
import type { DepthSnapshot, DepthUpdate } from "./parse.js";

/**
 * Why a symbol's book lost sync. (A full buffer while waiting for a snapshot is not a loss of sync:
 * it is reported with the `buffered` result's `overflow`.)
 */
export type GapKind = "sequence" | "crossed";

/** What one event did to the book. */
export type SyncResult =
  /**
   * The diff (or, after a snapshot, the buffered diffs) was applied; the book is exact. `refreshed`: a
   * snapshot that was ahead of the book was merged in on the way (see `onSnapshot`).
   */
  | { readonly type: "applied"; readonly bridged: boolean; readonly refreshed?: boolean }
  /** A snapshot taken while in sync corrected the book; its update id is unchanged. */
  | { readonly type: "refreshed" }
  /** A snapshot taken while in sync is ahead of the book: it is merged when the diffs reach it. */
  | { readonly type: "refresh-pending" }
  /**
   * Waiting for a snapshot; the diff was buffered. `dropped`: the buffer was full and its oldest diff
   * went (a snapshot older than the buffer then cannot bridge it: `snapshot-stale`, and a newer one is
   * needed). `overflow`: set on the first drop of a wait (the next is reported after the book has
   * synced or broken again), with the dropped diff's ids and the update id the buffer now starts at.
   */
  | {
      readonly type: "buffered";
      readonly dropped?: boolean;
      readonly overflow?: {
        readonly epoch: number;
        readonly droppedFirstUpdateId: number;
        readonly droppedFinalUpdateId: number;
        readonly nextFirstUpdateId: number;
        /** Event times of the dropped diff and of the diff that made it drop. */
        readonly droppedEventTime: number;
        readonly eventTime: number;
      };
    }
  /** An old or repeated diff (u <= the last applied u): ignored. */
  | { readonly type: "duplicate" }
  /**
   * In sync, a diff that skips ahead (`U` > last `u` + 1) is held (`reorderDiffs`) until the diffs
   * before it arrive; more than that many held is a gap.
   */
  | { readonly type: "held" }
  /** Continuity broke: the book is cleared, the symbol needs a new snapshot (`needSnapshot`). */
  | {
      readonly type: "gap";
      readonly kind: GapKind;
      readonly epoch: number;
      readonly lastUpdateId: number;
      readonly nextFirstUpdateId: number;
      /** Event time of the first diff after the break. */
      readonly eventTime: number;
      /** Event time of the last diff applied before it (0: none since the start). */
      readonly lastGoodEventTime: number;
    }
  /** The snapshot is kept until a diff bridges it. */
  | { readonly type: "snapshot-pending" }
  /** The snapshot is older than the buffered diffs: a newer one is needed. */
  | { readonly type: "snapshot-stale" }
  /**
   * The book is in sync and the snapshot cannot correct it (refreshing is off, or the snapshot is older
   * than the diffs the book keeps).
   */
  | { readonly type: "snapshot-ignored" };

/** Options for `BookSync`. */
export interface BookSyncOptions {
  /**
   * Diffs buffered while waiting for a snapshot; the oldest are dropped beyond it. Default 10 000. Only
   * the diffs from the snapshot's update id on are used, and a snapshot sits in the log next to the
   * diffs of when it was taken, so this needs to cover how late a snapshot can be stored, not how long
   * the wait for it lasts.
   */
  readonly maxBufferedDiffs?: number;
  /**
   * Applied diffs kept so that a snapshot taken while in sync, and older than the book by up to this
   * many diffs, can still correct it (0, the default: such snapshots are ignored). See `onSnapshot`.
   */
  readonly historyDiffs?: number;
  /** Levels kept per side; the ones furthest from the top go beyond it. Default: no limit. */
  readonly maxLevelsPerSide?: number;
  /**
   * Diffs that skip ahead held, in sync, until the ones before them arrive (0, the default: a skip is
   * a gap at once). Two redundant connections can store a diff after a later one (the lagging copy
   * of one a reconnected connection never had); holding a few absorbs that, and a diff really lost is
   * found that many diffs later.
   */
  readonly reorderDiffs?: number;
  /**
   * Called just before each diff is applied to the book (in sync, drained after being held, or
   * bridged from the buffer), with its event time: the book is then still as it was before it.
   */
  readonly beforeApply?: (eventTime: number) => void;
  /** Called just after each diff is applied (and the book trimmed), with its event time. */
  readonly afterApply?: (eventTime: number) => void;
}

/** The JSON-able state of a `BookSync`, for checkpoints. */
export interface BookSyncState {
  readonly synced: boolean;
  readonly epoch: number;
  /** The book packed (`OrderBook.pack`), or as `[price, quantity]` strings in states written before. */
  readonly book: PackedBook | { bids: [string, string][]; asks: [string, string][]; lastUpdateId: number };
  readonly buffer: DepthUpdate[];
  readonly pending: DepthSnapshot | null;
  readonly lastEventTime: number;
  /** Recent applied diffs (absent in states written before refreshing existed). */
  readonly history?: DepthUpdate[];
  /** Diffs held ahead of the book (`reorderDiffs`), by `U` (absent in states written before). */
  readonly ahead?: DepthUpdate[];
  /** The callers' tags of `ahead`. */
  readonly aheadTags?: number[];
  /** A snapshot ahead of the book, waiting for the diffs to reach it. */
  readonly refresh?: DepthSnapshot | null;
  /** The buffer has overflowed since the book last synced or broke (absent in states written before). */
  readonly overflowed?: boolean;
  /**
   * Set (with `buffer` empty) when the buffered diffs were left out of the state (`serialize({
   * bufferAsRange: true })`): the first buffered diff's tag and how many there were. The caller hands
   * the restored `BookSync` the diffs again from that tag on with `refill` (see there).
   */
  readonly bufferRange?: BufferRange | null;
}

/** Where buffered diffs left out of a state start (the tag of the first) and how many there were. */
export interface BufferRange {
  readonly fromTag: number;
  readonly count: number;
}

/**
 * A diff waiting in the buffer for a snapshot: its ids, and its levels as one JSON string. Parsed, a
 * BTCUSDT diff (36 levels) holds ~4.3 KB of heap, packed ~1.3 KB; a normalizer starting with hundreds
 * of symbols buffers hundreds of diffs for each while their snapshots come.
 */
interface BufferedDiff {
  /** The caller's position of the diff (a stream sequence), for `bufferRange`. */
  readonly tag: number;
  readonly eventTime: number;
  readonly symbol: string;
  readonly firstUpdateId: number;
  readonly finalUpdateId: number;
  /** `JSON.stringify([bids, asks])`: exact for any strings. */
  readonly levels: string;
}

function pack(d: DepthUpdate, tag: number): BufferedDiff {
  const { eventTime, symbol, firstUpdateId, finalUpdateId } = d;
  const levels = JSON.stringify([d.bids, d.asks]);
  return { tag, eventTime, symbol, firstUpdateId, finalUpdateId, levels };
}

function unpack(b: BufferedDiff): DepthUpdate {
  const [bids, asks] = JSON.parse(b.levels) as [[string, string][], [string, string][]];
  const { eventTime, symbol, firstUpdateId, finalUpdateId } = b;
  return { eventTime, symbol, firstUpdateId, finalUpdateId, bids, asks };
}

const BUFFERED: SyncResult = { type: "buffered" };
const BUFFERED_DROPPED: SyncResult = { type: "buffered", dropped: true };
const DUPLICATE: SyncResult = { type: "duplicate" };
const HELD: SyncResult = { type: "held" };
const APPLIED: SyncResult = { type: "applied", bridged: false };
const BRIDGED: SyncResult = { type: "applied", bridged: true };
const PENDING: SyncResult = { type: "snapshot-pending" };
const STALE: SyncResult = { type: "snapshot-stale" };
const IGNORED: SyncResult = { type: "snapshot-ignored" };
const REFRESHED: SyncResult = { type: "refreshed" };
const REFRESH_PENDING: SyncResult = { type: "refresh-pending" };
const APPLIED_REFRESHED: SyncResult = { type: "applied", bridged: false, refreshed: true };

/**
 * Binance's local-book rules for one symbol, as a deterministic state machine fed in log order:
 * buffer diffs until a snapshot; drop diffs with `u <= lastUpdateId`; the first applied diff must
 * span `lastUpdateId + 1`; every later diff must have `U == previous u + 1`. A break clears the book,
 * reports a gap and waits for a new snapshot. `epoch` counts the snapshots the book was built from.
 *
 * A snapshot that arrives while the book is in sync can correct it (`historyDiffs` > 0): the levels a
 * first snapshot was too shallow to hold, and that no diff has touched since, are otherwise wrong for
 * good once the price moves to them.
 */
export class BookSync {
  readonly book = new OrderBook();
  readonly #maxBuffered: number;
  readonly #historyMax: number;
  readonly #maxLevels: number;
  readonly #reorderMax: number;
  /** Diffs ahead of the book, held until the ones before them come (`reorderDiffs`), ascending `U`. */
  #ahead: { readonly d: DepthUpdate; readonly tag: number }[] = [];
  /** The last `#historyMax` applied diffs, oldest first, contiguous (each `U` = previous `u` + 1). */
  #history: DepthUpdate[] = [];
  /** A snapshot ahead of the book, merged when a diff spans its update id. */
  #refresh: DepthSnapshot | undefined;
  #synced = false;
  #epoch = 0;
  #buffer: BufferedDiff[] = [];
  #pending: DepthSnapshot | undefined;
  /** The buffer dropped a diff since the book last synced or broke (reported once per wait). */
  #overflowed = false;
  #lastEventTime = 0;
  /** Restored without its buffered diffs: the range `refill` takes them back from. */
  #refill: BufferRange | undefined;
  /** Counters since creation. */
  readonly counters = {
    applied: 0,
    duplicates: 0,
    gaps: 0,
    overflowed: 0,
    staleSnapshots: 0,
    ignoredSnapshots: 0,
    refreshes: 0,
    trimmedLevels: 0,
    held: 0,
  };

  constructor(options: BookSyncOptions = {}) {
    this.#maxBuffered = options.maxBufferedDiffs ?? 10_000;
    this.#historyMax = options.historyDiffs ?? 0;
    this.#maxLevels = options.maxLevelsPerSide ?? Infinity;
    this.#reorderMax = options.reorderDiffs ?? 0;
    this.#beforeApply = options.beforeApply;
    this.#afterApply = options.afterApply;
  }
  readonly #beforeApply: ((eventTime: number) => void) | undefined;
  readonly #afterApply: ((eventTime: number) => void) | undefined;

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
  /**
   * In sync with diffs held (`reorderDiffs`): whether the book continues after `lastEventTime` is not
   * known yet (the missing diffs may still come, or this becomes a gap).
   */
  get holding(): boolean {
    return this.#ahead.length > 0;
  }

  /**
   * Feeds one diff. `tag` is the caller's position of it (a stream sequence, increasing), kept with a
   * buffered diff for `serialize({ bufferAsRange: true })`.
   */
  onDiff(d: DepthUpdate, tag = 0): SyncResult {
    this.#refill = undefined;
    if (this.#synced) {
      const last = this.book.lastUpdateId;
      if (d.finalUpdateId <= last) {
        this.counters.duplicates++;
        return DUPLICATE;
      }
      if (d.firstUpdateId > last + 1) return this.#skip(d, tag);
      // Overlapping the book (U <= last u < u): a break in the sequence, as DESIGN has it.
      if (d.firstUpdateId !== last + 1) return this.#sequenceGap(d, tag);
      const applied = this.#continue(d);
      if (applied.type !== "applied" || this.#ahead.length === 0) return applied;
      return this.#drainAhead(applied);
    }
    const tail = this.#buffer[this.#buffer.length - 1];
    if (tail !== undefined && d.finalUpdateId <= tail.finalUpdateId) {
      this.counters.duplicates++;
      return DUPLICATE;
    }
    const full = this.#buffer.length >= this.#maxBuffered;
    const dropped = full ? this.#buffer.shift() : undefined;
    if (full) this.counters.overflowed++;
    this.#buffer.push(pack(d, tag));
    if (this.#pending !== undefined) return this.#bridge();
    if (dropped === undefined) return BUFFERED;
    if (this.#overflowed) return BUFFERED_DROPPED;
    this.#overflowed = true;
    return {
      type: "buffered",
      dropped: true,
      overflow: {
        epoch: this.#epoch,
        droppedFirstUpdateId: dropped.firstUpdateId,
        droppedFinalUpdateId: dropped.finalUpdateId,
        nextFirstUpdateId: this.#buffer[0]!.firstUpdateId,
        droppedEventTime: dropped.eventTime,
        eventTime: d.eventTime,
      },
    };
  }

  /** Applies a diff with `U` = last `u` + 1 (merging a pending refresh snapshot it spans). */
  #continue(d: DepthUpdate): SyncResult {
    const r = this.#refresh;
    const merge =
      r !== undefined && d.firstUpdateId <= r.lastUpdateId + 1 && r.lastUpdateId < d.finalUpdateId;
    if (merge) {
      // The diff spans the snapshot's update id: the snapshot, then this diff, is the book at `u`.
      this.#refresh = undefined;
      this.book.applyRefresh(r.bids, r.asks, r.lastUpdateId);
      this.counters.refreshes++;
    }
    this.#apply(d);
    if (this.book.isCrossed()) return this.#gap("crossed", d, []);
    return merge ? APPLIED_REFRESHED : APPLIED;
  }

  /** In sync, a diff past the next one: held while `reorderDiffs` allows, else a gap. */
  #skip(d: DepthUpdate, tag: number): SyncResult {
    const ahead = this.#ahead;
    if (ahead.length >= this.#reorderMax) return this.#sequenceGap(d, tag);
    let i = ahead.length;
    while (i > 0 && ahead[i - 1]!.d.firstUpdateId > d.firstUpdateId) i--;
    if (i > 0 && ahead[i - 1]!.d.firstUpdateId === d.firstUpdateId) {
      this.counters.duplicates++;
      return DUPLICATE;
    }
    ahead.splice(i, 0, { d, tag });
    this.counters.held++;
    return HELD;
  }

  /** A break in the sequence at `d`: it and the diffs held go to the buffer, in update id order. */
  #sequenceGap(d: DepthUpdate, tag: number): SyncResult {
    const keep = [...this.#ahead, { d, tag }].sort((a, b) => a.d.firstUpdateId - b.d.firstUpdateId);
    return this.#gap(
      "sequence",
      keep[0]!.d,
      keep.map((k) => pack(k.d, k.tag)),
    );
  }

  /** After a diff was applied: the held diffs it lets through, in order, while they continue the book. */
  #drainAhead(result: SyncResult): SyncResult {
    let refreshed = result.type === "applied" && result.refreshed === true;
    const ahead = this.#ahead;
    while (ahead.length > 0) {
      const next = ahead[0]!.d;
      const last = this.book.lastUpdateId;
      if (next.finalUpdateId <= last) {
        ahead.shift();
        this.counters.duplicates++;
        continue;
      }
      if (next.firstUpdateId !== last + 1) break;
      ahead.shift();
      const r = this.#continue(next);
      if (r.type !== "applied") return r; // crossed: a gap
      refreshed ||= r.refreshed === true;
    }
    return refreshed ? APPLIED_REFRESHED : APPLIED;
  }

  /** Set while a `BookSync` restored from a state without its buffered diffs waits for them (`refill`). */
  get refillRange(): BufferRange | undefined {
    return this.#refill;
  }

  /**
   * Hands back, after `restore`, one diff the serialized state left out (`bufferRange`): the caller
   * feeds every diff it fed before from the range's first tag up to the state's position, in the same
   * order with the same tags; diffs before the first tag are ignored. The buffer then holds what it
   * held when serialized: the diffs buffered since the first, less those whose `u` did not exceed the
   * one before (all a buffer ever drops after its first diff is its head, which that diff is).
   */
  refill(d: DepthUpdate, tag: number): void {
    const range = this.#refill;
    if (range === undefined || tag < range.fromTag) return;
    const tail = this.#buffer[this.#buffer.length - 1];
    if (tail !== undefined && d.finalUpdateId <= tail.finalUpdateId) return;
    if (this.#buffer.length < this.#maxBuffered) this.#buffer.push(pack(d, tag));
  }

  /**
   * Ends refilling (also ended by the next `onDiff` or `onSnapshot`). False when the buffer did not get
   * back as many diffs as it held (the caller's log lost some): continuity checks then find the hole
   * when the snapshot comes, and the symbol is resynchronised.
   */
  endRefill(): boolean {
    const range = this.#refill;
    this.#refill = undefined;
    return range === undefined || this.#buffer.length === range.count;
  }

  /**
   * Feeds one REST snapshot. While the book is in sync (and `historyDiffs` > 0) the snapshot corrects
   * it instead: on each side the levels from the snapshot's best to its worst price become the
   * snapshot's and the levels beyond stay. A snapshot older than the book is brought forward with the
   * kept diffs after it; one ahead of the book waits for the diff that spans its update id; one older
   * than every kept diff is ignored. The update id sequence and the epoch do not change.
   */
  onSnapshot(s: DepthSnapshot): SyncResult {
    this.#refill = undefined;
    if (!this.#synced) {
      this.#pending = s;
      return this.#bridge();
    }
    if (this.#historyMax === 0) {
      this.counters.ignoredSnapshots++;
      return IGNORED;
    }
    const last = this.book.lastUpdateId;
    if (s.lastUpdateId > last) {
      this.#refresh = s;
      return REFRESH_PENDING;
    }
    const h = this.#history;
    let from = h.length;
    while (from > 0 && h[from - 1]!.finalUpdateId > s.lastUpdateId) from--;
    // Diffs h[from..] are after the snapshot; the first of them must span its update id.
    if (from < h.length ? h[from]!.firstUpdateId > s.lastUpdateId + 1 : s.lastUpdateId !== last) {
      this.counters.ignoredSnapshots++;
      return IGNORED;
    }
    this.#refresh = undefined;
    this.book.applyRefresh(s.bids, s.asks, s.lastUpdateId);
    for (let i = from; i < h.length; i++) this.book.applyDiff(h[i]!.bids, h[i]!.asks, h[i]!.finalUpdateId);
    this.#trim();
    this.counters.refreshes++;
    if (!this.book.isCrossed()) return REFRESHED;
    return this.#gap("crossed", { eventTime: this.#lastEventTime, firstUpdateId: last + 1 }, []);
  }

  /** Applies a diff that continues the book, and keeps it in the history. */
  #apply(d: DepthUpdate): void {
    this.#beforeApply?.(d.eventTime);
    this.book.applyDiff(d.bids, d.asks, d.finalUpdateId);
    this.#lastEventTime = d.eventTime;
    this.counters.applied++;
    if (this.#historyMax > 0) {
      if (this.#history.length >= this.#historyMax) this.#history.shift();
      this.#history.push(d);
    }
    this.#trim();
    this.#afterApply?.(d.eventTime);
  }

  #trim(): void {
    const max = this.#maxLevels;
    if (this.book.bidCount > max || this.book.askCount > max)
      this.counters.trimmedLevels += this.book.trimTo(max);
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
    this.#trim();
    this.#epoch++;
    this.#pending = undefined;
    const buffered = this.#buffer;
    this.#buffer = [];
    this.#synced = true;
    this.#overflowed = false;
    for (let i = 0; i < buffered.length; i++) {
      const d = buffered[i]!;
      if (i > 0 && d.firstUpdateId !== this.book.lastUpdateId + 1)
        return this.#gap("sequence", d, buffered.slice(i));
      this.#apply(unpack(d));
    }
    if (this.book.isCrossed()) return this.#gap("crossed", buffered[buffered.length - 1]!, []);
    return BRIDGED;
  }

  #gap(kind: GapKind, d: Pick<DepthUpdate, "firstUpdateId" | "eventTime">, keep: BufferedDiff[]): SyncResult {
    const lastUpdateId = this.book.lastUpdateId;
    this.#synced = false;
    this.book.clear();
    this.#buffer = keep;
    this.#pending = undefined;
    this.#history = [];
    this.#refresh = undefined;
    this.#ahead = [];
    this.#overflowed = false;
    this.counters.gaps++;
    return {
      type: "gap",
      kind,
      epoch: this.#epoch,
      lastUpdateId,
      nextFirstUpdateId: d.firstUpdateId,
      eventTime: d.eventTime,
      lastGoodEventTime: this.#lastEventTime,
    };
  }

  /**
   * The full state as plain JSON, for a checkpoint. With `bufferAsRange`, buffered diffs are left out
   * and only their range is kept (`bufferRange`): a symbol waiting long for its snapshot buffers
   * thousands of diffs, which the caller's log (MD_RAW) holds anyway.
   */
  serialize(options: { readonly bufferAsRange?: boolean } = {}): BookSyncState {
    const first = this.#buffer[0];
    // While refilling, the buffer is not whole yet: its range stands for it.
    const asRange = this.#refill !== undefined || (options.bufferAsRange === true && first !== undefined);
    return {
      synced: this.#synced,
      epoch: this.#epoch,
      book: this.book.pack(),
      buffer: asRange ? [] : this.#buffer.map(unpack),
      bufferRange: !asRange ? null : (this.#refill ?? { fromTag: first!.tag, count: this.#buffer.length }),
      pending: this.#pending ?? null,
      lastEventTime: this.#lastEventTime,
      history: [...this.#history],
      refresh: this.#refresh ?? null,
      ahead: this.#ahead.map((a) => a.d),
      aheadTags: this.#ahead.map((a) => a.tag),
      ...(this.#overflowed ? { overflowed: true } : {}),
    };
  }

  /** Rebuilds a `BookSync` from `serialize()` output. */
  static restore(state: BookSyncState, options: BookSyncOptions = {}): BookSync {
    const s = new BookSync(options);
    s.#synced = state.synced;
    s.#epoch = state.epoch;
    const book = state.book;
    if (isPacked(book)) s.book.applyPacked(book);
    else s.book.applySnapshot(book.bids, book.asks, book.lastUpdateId);
    s.#buffer = state.buffer.map((d) => pack(d, 0));
    const range = state.bufferRange;
    if (range !== undefined && range !== null && range.count > 0) s.#refill = range;
    s.#pending = state.pending ?? undefined;
    s.#lastEventTime = state.lastEventTime;
    s.#history = [...(state.history ?? [])].slice(-s.#historyMax || Infinity);
    s.#refresh = state.refresh ?? undefined;
    s.#ahead = (state.ahead ?? []).map((d, i) => ({ d, tag: state.aheadTags?.[i] ?? 0 }));
    s.#overflowed = state.overflowed === true;
    return s;
  }
}

/** A packed book, not the `[price, quantity]` strings of states written before packing existed. */
function isPacked(book: BookSyncState["book"]): book is PackedBook {
  return !Array.isArray(book.bids);
}

import {
  BookSync,
  parseAggTrade,
  parseDepthSnapshot,
  parseDepthUpdate,
  parseTrade,
  type BookSyncState,
  type SyncResult,
} from "@l2flow/binance";
import {
  encodeBookSnapshot,
  encodeTrade,
  encodeWindow,
  type BookSnapshot,
  EXCHANGE,
  Gap,
  GapReason,
  msgIds,
  Side,
  subjects,
  type Trade,
  TradeKind,
  type Window,
} from "@l2flow/contracts";
import { L2flowError } from "@l2flow/runtime";
import { WindowAggregator, type WindowAggregatorState } from "@l2flow/windows";
import { TradeIds } from "./trade-ids.js";

/** One message the processor produced, bound for MD_NORM or MD_WINDOW. */
export interface Output {
  readonly subject: string;
  readonly data: Uint8Array;
  readonly msgId: string;
}

/** What one raw message produced, besides its outputs. */
export interface Effects {
  /** The book lost sync: a new snapshot is needed for this symbol. */
  resync: boolean;
  /** The latest book snapshot bytes, when one was published (for KV `md_book`). */
  book: Uint8Array | undefined;
}

/** The processor's settings (from the normalizer's configuration). */
export interface ProcessorOptions {
  readonly bookDepth: number;
  readonly bookEveryNDiffs: number;
  readonly intervals: readonly string[];
  readonly latenessMs: number;
  readonly maxBufferedDiffs: number;
  /** Levels kept per side of the book (`BookSync`'s `maxLevelsPerSide`). */
  readonly maxLevelsPerSide: number;
  /** Applied diffs kept for refresh snapshots (0 = snapshots never correct an in-sync book). */
  readonly refreshHistory: number;
  /**
   * Diffs that skip ahead held until the ones before them come (`BookSync`'s `reorderDiffs`; 0 or
   * absent: a skip is a gap at once). Not part of the fingerprint: a state holds none or some, and
   * either restores under any value.
   */
  readonly reorderDiffs?: number;
}

/** Counts a caller may turn into metrics. */
export interface ProcessorEvents {
  /** A raw message handled (usable or not), by its subject's kind token. */
  raw?(kind: string): void;
  bookUpdate?(): void;
  bookSnapshot?(): void;
  gap?(reason: string, crossed: boolean): void;
  /** A snapshot corrected the in-sync book. */
  refresh?(): void;
  /** The diff buffer (waiting for a snapshot) was full: its oldest diff went. */
  bufferDrop?(): void;
  /**
   * A trade out of id order: `late` fills a missing id (published; its windows may have closed), a
   * `repeat` has an id already had (dropped).
   */
  tradeOutOfOrder?(outcome: "late" | "repeat"): void;
  window?(w: ClosedWindow): void;
}

/** What `ProcessorEvents.window` is told of a closed window. */
export type ClosedWindow = Pick<Window, "interval" | "closeReason" | "lateEventCount" | "endTimeMs">;

/** A raw message the processor cannot use (counted and skipped). */
export class CorruptRaw extends L2flowError {
  constructor(code: string, message: string, cause?: unknown) {
    super(code, message, { retryable: false, cause });
  }
}

/** The JSON a checkpoint holds for one symbol. */
export interface ProcessorState {
  readonly v: 1;
  /** The options the state was built with; a checkpoint from other options is not used. */
  readonly fingerprint: string;
  readonly sync: BookSyncState;
  readonly windows: readonly WindowAggregatorState[];
  readonly diffsSinceBook: number;
  readonly lastTradeId: number;
  readonly lastAggId: number;
  /** Trade ids below `lastTradeId` not had yet (`[from, to]` ranges); absent in older checkpoints. */
  readonly missingTradeIds?: readonly (readonly [number, number])[];
  readonly missingAggIds?: readonly (readonly [number, number])[];
  /** The highest trade id an aggTrade counted in the windows covered (absent: 0). */
  readonly aggWindowedTo?: number;
}

type Kind = "depth" | "snapshot" | "trade" | "aggtrade" | "status";

/**
 * Microseconds of a time in milliseconds. Parsed times have a fraction when Binance sent microseconds
 * (`timeUnit=MICROSECOND`): rounding gives its microseconds back exactly.
 */
const us = (ms: number): number => Math.round(ms * 1000);

/**
 * One symbol's normalization, as a pure function of its raw messages in stream order: the exact book
 * by Binance's rules, normalized trades, gap events and windows. No clocks and no I/O — the same raw
 * messages give the same output bytes, and `serialize`/`restore` continue exactly where it stopped.
 */
export class SymbolProcessor {
  readonly symbol: string;
  readonly #o: ProcessorOptions;
  readonly #events: ProcessorEvents;
  #sync: BookSync;
  readonly #windows: WindowAggregator[];
  #diffsSinceBook = 0;
  #tradeIds = new TradeIds();
  #aggIds = new TradeIds();
  /**
   * The highest trade id (`l`) of the aggTrades counted in the windows, which happens only before
   * the first @trade: a @trade up to it is already in them.
   */
  #aggWindowedTo = 0;

  constructor(symbol: string, options: ProcessorOptions, events: ProcessorEvents = {}) {
    this.symbol = symbol;
    this.#o = options;
    this.#events = events;
    this.#sync = new BookSync(this.#syncOptions());
    this.#windows = options.intervals.map(
      (interval) =>
        new WindowAggregator({
          symbol,
          interval,
          exchange: EXCHANGE,
          allowedLatenessMs: options.latenessMs,
          bookLevels: options.bookDepth,
        }),
    );
  }

  /** Price levels the book holds, both sides (what its memory grows with). */
  get bookLevels(): number {
    return this.#sync.book.bidCount + this.#sync.book.askCount;
  }

  /** Diffs buffered while the book waits for a snapshot. */
  get bufferedDiffs(): number {
    return this.#sync.bufferedDiffs;
  }

  /** Whether the book waits for a snapshot. */
  get needsSnapshot(): boolean {
    return this.#sync.needsSnapshot;
  }

  #syncOptions() {
    const o = this.#o;
    return {
      maxBufferedDiffs: o.maxBufferedDiffs,
      maxLevelsPerSide: o.maxLevelsPerSide,
      historyDiffs: o.refreshHistory,
      reorderDiffs: o.reorderDiffs ?? 0,
      beforeApply: (eventTime: number) => this.#beforeBookUpdate(eventTime),
      afterApply: (eventTime: number) => this.#afterBookUpdate(eventTime),
    };
  }

  /**
   * Windows closed by book updates, collected as each diff is applied (a held diff drained, a buffer
   * bridged: several per message) and published after the message's book snapshot.
   */
  readonly #bookWindows: Window[] = [];

  /** Every applied diff is a book update of the windows, at its own event time. */
  #afterBookUpdate(eventTime: number): void {
    const book = this.#sync.book;
    if (book.isCrossed()) return; // a fault: the sync reports it as a gap
    for (const w of this.#windows) this.#bookWindows.push(...w.onBook(eventTime, book, this.#sync.epoch));
  }

  #beforeBookUpdate(eventTime: number): void {
    for (const w of this.#windows) w.beforeBookUpdate(eventTime, this.#sync.book, this.#sync.epoch);
  }

  /** Identifies the options a state belongs to. */
  static fingerprint(o: ProcessorOptions): string {
    return JSON.stringify([
      o.bookDepth,
      o.bookEveryNDiffs,
      o.intervals,
      o.latenessMs,
      o.maxBufferedDiffs,
      o.maxLevelsPerSide,
      o.refreshHistory,
    ]);
  }

  /**
   * The state as plain JSON. Diffs buffered while the book waits for a snapshot are left out (only
   * where they start in the raw stream is kept): after `restore`, they are handed back with `refill`.
   */
  serialize(): ProcessorState {
    return {
      v: 1,
      fingerprint: SymbolProcessor.fingerprint(this.#o),
      sync: this.#sync.serialize({ bufferAsRange: true }),
      windows: this.#windows.map((w) => w.serialize()),
      diffsSinceBook: this.#diffsSinceBook,
      lastTradeId: this.#tradeIds.last,
      lastAggId: this.#aggIds.last,
      missingTradeIds: this.#tradeIds.serialize().missing,
      missingAggIds: this.#aggIds.serialize().missing,
      ...(this.#aggWindowedTo > 0 ? { aggWindowedTo: this.#aggWindowedTo } : {}),
    };
  }

  /** Continues from `serialize()`; false (and nothing changed) when the state is from other options. */
  restore(state: ProcessorState): boolean {
    if (state.v !== 1 || state.fingerprint !== SymbolProcessor.fingerprint(this.#o)) return false;
    this.#sync = BookSync.restore(state.sync, this.#syncOptions());
    this.#windows.forEach((w, i) => w.restore(state.windows[i]!, this.#sync.book));
    this.#diffsSinceBook = state.diffsSinceBook;
    this.#tradeIds = TradeIds.restore({ last: state.lastTradeId, missing: state.missingTradeIds ?? [] });
    this.#aggIds = TradeIds.restore({ last: state.lastAggId, missing: state.missingAggIds ?? [] });
    this.#aggWindowedTo = state.aggWindowedTo ?? 0;
    return true;
  }

  /**
   * The stream sequence the restored state's buffered diffs start at, while they have not been handed
   * back with `refill` yet (undefined otherwise).
   */
  get refillFrom(): number | undefined {
    return this.#sync.refillRange?.fromTag;
  }

  /**
   * After `restore`: one raw message at or before the restored state's position (`seq`: its stream
   * sequence), handed back so that the diffs the state left out return to the buffer. Only depth
   * diffs matter; anything unusable was skipped the first time too. Produces nothing.
   */
  refill(kind: string, data: Uint8Array, seq: number): void {
    if (kind !== "depth" || this.#sync.refillRange === undefined) return;
    let d;
    try {
      d = parseDepthUpdate(data);
    } catch {
      return;
    }
    this.#sync.refill(d, seq);
  }

  /** Ends refilling; false when fewer diffs came back than the state had buffered (see `BookSync.endRefill`). */
  endRefill(): boolean {
    return this.#sync.endRefill();
  }

  /**
   * Handles one raw message of this symbol (`kind` is the subject's kind token, `seq` its stream
   * sequence); appends outputs to `out`. Throws `CorruptRaw` (or the parser's `FrameError`) for a
   * message it cannot use — nothing of it is applied.
   */
  handle(kind: string, data: Uint8Array, receiveTimeUs: number, out: Output[], fx: Effects, seq = 0): void {
    this.#events.raw?.(kind);
    switch (kind as Kind) {
      case "depth": {
        const d = parseDepthUpdate(data);
        // Windows take their book at close just before a diff after their end is applied (the sync's
        // beforeApply), so a held diff applied later still lands in its window's book; without a book
        // (waiting for a snapshot) they take the empty one.
        if (!this.#sync.synced) this.#beforeBookUpdate(d.eventTime);
        this.#synced(out, fx, this.#sync.onDiff(d, seq), d.eventTime, receiveTimeUs);
        return;
      }
      case "snapshot": {
        const snap = parseDepthSnapshot(data);
        const r = this.#sync.onSnapshot(snap);
        this.#synced(out, fx, r, this.#sync.lastEventTime, receiveTimeUs);
        return;
      }
      case "trade": {
        const t = parseTrade(data);
        if (!this.#newId(this.#tradeIds, t.tradeId)) return;
        // With both streams collected, the aggTrades before the first @trade fed the windows: the
        // trades they aggregated are not counted again.
        const counted = t.tradeId <= this.#aggWindowedTo;
        this.#trade(out, TradeKind.TRADE_KIND_TRADE, t.tradeId, t, receiveTimeUs, 0, 0, !counted);
        return;
      }
      case "aggtrade": {
        const a = parseAggTrade(data);
        if (!this.#newId(this.#aggIds, a.aggTradeId)) return;
        // A symbol collected with both streams would count its trades twice; windows use @trade when present.
        const intoWindows = this.#tradeIds.last === 0;
        if (intoWindows && a.lastTradeId > this.#aggWindowedTo) this.#aggWindowedTo = a.lastTradeId;
        this.#trade(
          out,
          TradeKind.TRADE_KIND_AGG_TRADE,
          a.aggTradeId,
          a,
          receiveTimeUs,
          a.firstTradeId,
          a.lastTradeId,
          intoWindows,
        );
        return;
      }
      case "status":
        this.#status(out, data);
        return;
      default:
        throw new CorruptRaw("UNKNOWN_RAW_KIND", `unknown raw kind ${JSON.stringify(kind)}`);
    }
  }

  /**
   * After the sync took a diff or a snapshot: its result's outputs, then the windows its applied
   * diffs closed. While diffs are held for reordering, windows after the last applied diff stay open:
   * if the held diffs become a gap, those windows must be marked incomplete, which an emitted window
   * cannot be.
   */
  #synced(out: Output[], fx: Effects, r: SyncResult, eventTimeMs: number, receiveTimeUs: number): void {
    const from = this.#sync.holding ? this.#sync.lastEventTime : undefined;
    for (const w of this.#windows) w.hold(from);
    this.#onSync(out, fx, r, eventTimeMs, receiveTimeUs);
    this.#windowOuts(out, this.#bookWindows.splice(0));
  }

  /** Whether a trade id is new (counting one out of id order). */
  #newId(ids: TradeIds, id: number): boolean {
    const outcome = ids.take(id);
    if (outcome !== "next") this.#events.tradeOutOfOrder?.(outcome);
    return outcome !== "repeat";
  }

  /** Closes every open window (the stream went quiet); appends them to `out`. */
  closeWindows(out: Output[]): void {
    for (const w of this.#windows) this.#windowOuts(out, w.closeAll());
  }

  #windowOuts(out: Output[], closed: readonly Window[]): void {
    for (const w of closed) {
      out.push({
        subject: subjects.window(w.interval, w.symbol),
        data: encodeWindow(w),
        msgId: msgIds.window(w.interval, w.symbol, w.startTimeMs),
      });
      this.#events.window?.(w);
    }
  }

  #bookOut(out: Output[], fx: Effects, receiveTimeUs: number): void {
    const book = this.#sync.book;
    const snap: BookSnapshot = {
      exchange: EXCHANGE,
      symbol: this.symbol,
      lastUpdateId: book.lastUpdateId,
      epoch: this.#sync.epoch,
      eventTimeUs: us(this.#sync.lastEventTime),
      receiveTimeUs,
      bids: book.topBids(this.#o.bookDepth),
      asks: book.topAsks(this.#o.bookDepth),
    };
    const data = encodeBookSnapshot(snap);
    out.push({
      subject: subjects.book(this.symbol),
      data,
      msgId: msgIds.book(this.symbol, this.#sync.epoch, book.lastUpdateId),
    });
    fx.book = data;
    this.#diffsSinceBook = 0;
    this.#events.bookSnapshot?.();
  }

  #gapOut(out: Output[], g: Gap): void {
    const reason = GapReason[g.reason] ?? String(g.reason);
    out.push({
      subject: subjects.gap(this.symbol),
      data: Gap.encode(g).finish(),
      msgId: msgIds.gap(
        this.symbol,
        g.epoch,
        reason,
        g.nextFirstUpdateId || g.lastMissingTradeId || g.endTimeUs,
      ),
    });
    this.#events.gap?.(reason, g.reason === GapReason.GAP_REASON_CROSSED_BOOK);
  }

  #onSync(out: Output[], fx: Effects, r: SyncResult, eventTimeMs: number, receiveTimeUs: number): void {
    const sync = this.#sync;
    switch (r.type) {
      case "applied":
        this.#events.bookUpdate?.();
        if (r.refreshed === true) this.#events.refresh?.();
        if (r.bridged || ++this.#diffsSinceBook >= this.#o.bookEveryNDiffs)
          this.#bookOut(out, fx, receiveTimeUs);
        // Rebuilt after a gap: the span without a book ends here.
        if (r.bridged) for (const w of this.#windows) w.restored(sync.lastEventTime || eventTimeMs);
        return;
      case "gap": {
        const reason =
          r.kind === "crossed" ? GapReason.GAP_REASON_CROSSED_BOOK : GapReason.GAP_REASON_SEQUENCE_BREAK;
        this.#gapOut(out, {
          exchange: EXCHANGE,
          symbol: this.symbol,
          reason,
          epoch: r.epoch,
          lastUpdateId: r.lastUpdateId,
          nextFirstUpdateId: r.nextFirstUpdateId,
          firstMissingTradeId: 0,
          lastMissingTradeId: 0,
          // From the last good diff to the first after the break (Gap's contract).
          startTimeUs: us(r.lastGoodEventTime || r.eventTime),
          endTimeUs: us(r.eventTime),
          detail: `${r.kind}: last applied u=${r.lastUpdateId}, next U=${r.nextFirstUpdateId}; resynchronising ${this.symbol} from a new snapshot`,
        });
        // Every window from the last good diff until the book is rebuilt lacks data.
        for (const w of this.#windows) w.impair(r.lastGoodEventTime || r.eventTime);
        fx.resync = true;
        return;
      }
      case "snapshot-stale":
        fx.resync = true;
        return;
      case "refreshed":
        // Not published: a book with this update id (and message id) already was. The next diff's is.
        this.#events.refresh?.();
        return;
      case "buffered":
        if (r.dropped === true) this.#events.bufferDrop?.();
        if (r.overflow !== undefined) {
          const o = r.overflow;
          this.#gapOut(out, {
            exchange: EXCHANGE,
            symbol: this.symbol,
            reason: GapReason.GAP_REASON_BUFFER_OVERFLOW,
            epoch: o.epoch,
            lastUpdateId: o.droppedFirstUpdateId - 1,
            nextFirstUpdateId: o.nextFirstUpdateId,
            firstMissingTradeId: 0,
            lastMissingTradeId: 0,
            startTimeUs: us(o.droppedEventTime),
            endTimeUs: us(o.eventTime),
            detail: `overflow: ${this.symbol}'s buffer of diffs waiting for a snapshot is full; dropping from U=${o.droppedFirstUpdateId} (u=${o.droppedFinalUpdateId}) on, so only a snapshot with lastUpdateId >= ${o.nextFirstUpdateId - 1} can bridge the rest`,
          });
        }
        return;
      case "refresh-pending":
      case "held":
      case "duplicate":
      case "snapshot-pending":
      case "snapshot-ignored":
        return;
    }
  }

  #trade(
    out: Output[],
    kind: TradeKind,
    id: number,
    t: { price: string; quantity: string; buyerIsMaker: boolean; tradeTime: number; eventTime: number },
    receiveTimeUs: number,
    firstTradeId: number,
    lastTradeId: number,
    intoWindows: boolean,
  ): void {
    const trade: Trade = {
      exchange: EXCHANGE,
      symbol: this.symbol,
      kind,
      tradeId: id,
      price: t.price,
      quantity: t.quantity,
      takerSide: t.buyerIsMaker ? Side.SIDE_SELL : Side.SIDE_BUY,
      tradeTimeUs: us(t.tradeTime),
      eventTimeUs: us(t.eventTime),
      receiveTimeUs,
      firstTradeId,
      lastTradeId,
    };
    const tag = kind === TradeKind.TRADE_KIND_TRADE ? "trade" : "aggtrade";
    out.push({
      subject: subjects.trade(this.symbol),
      data: encodeTrade(trade),
      msgId: msgIds.normTrade(this.symbol, tag, id),
    });
    if (!intoWindows) return;
    const w = {
      timeMs: t.tradeTime,
      price: +t.price,
      quantity: +t.quantity,
      buyerIsMaker: t.buyerIsMaker,
      id,
    };
    for (const agg of this.#windows) this.#windowOuts(out, agg.onTrade(w));
  }

  #status(out: Output[], data: Uint8Array): void {
    let st: {
      type?: unknown;
      reason?: unknown;
      timeUs?: unknown;
      kind?: unknown;
      fromId?: unknown;
      toId?: unknown;
    };
    try {
      st = JSON.parse(new TextDecoder().decode(data)) as typeof st;
    } catch (err) {
      throw new CorruptRaw("STATUS_NOT_JSON", "status event is not JSON", err);
    }
    if (typeof st !== "object" || st === null)
      throw new CorruptRaw("STATUS_NOT_JSON", "status event is not an object");
    if (st.type !== "disconnected" && st.type !== "gap" && st.type !== "trades-missing") return;
    const at = this.#sync.lastEventTime;
    for (const w of this.#windows) w.markIncomplete(at);
    const trades = st.type === "trades-missing";
    const int = (v: unknown) => (typeof v === "number" && Number.isSafeInteger(v) && v >= 0 ? v : 0);
    this.#gapOut(out, {
      exchange: EXCHANGE,
      symbol: this.symbol,
      reason: trades
        ? GapReason.GAP_REASON_TRADES_MISSING
        : st.type === "gap"
          ? GapReason.GAP_REASON_BUFFER_OVERFLOW
          : GapReason.GAP_REASON_DISCONNECT,
      epoch: this.#sync.epoch,
      lastUpdateId: this.#sync.book.lastUpdateId,
      nextFirstUpdateId: 0,
      firstMissingTradeId: trades ? int(st.fromId) : 0,
      lastMissingTradeId: trades ? int(st.toId) : 0,
      startTimeUs: us(at),
      endTimeUs: int(st.timeUs),
      detail: `ingest reported ${String(st.type)}${trades ? ` of ${typeof st.kind === "string" ? st.kind : "trade"} ids` : ""}${typeof st.reason === "string" ? ` (${st.reason.slice(0, 200)})` : ""}`,
    });
  }
}

import { readHeader, type Bus, type JsMsg, type KV, type PublishQueue } from "@l2flow/bus";
import { HEADERS, subjects } from "@l2flow/contracts";
import type { Logger, LogLimiter } from "@l2flow/runtime";
import type { NormalizerMetrics } from "./metrics.js";
import { partitionOf } from "./partition.js";
import type { Handled, ProcessorHost, SymbolPort } from "./port.js";
import type { Output, ProcessorState } from "./symbol.js";

/** Where the normalizer's one consumer of MD_RAW is: shared by every worker. */
export interface StreamPosition {
  /** Stream sequence of the last raw message handled (every message up to it has been). */
  seq: number;
  /** True while nothing is pending on the consumer: the normalizer has read all of MD_RAW. */
  caughtUp: boolean;
  /** Messages of MD_RAW not yet read, as the last one read said (its consumer's pending count). */
  pending: number;
}

/** What every worker of a normalizer shares. */
export interface WorkerContext {
  readonly position: StreamPosition;
  readonly bus: Bus;
  /** Where outputs go: acked queues onto MD_NORM and MD_WINDOW. */
  readonly queue: Pick<PublishQueue, "push">;
  /** Reads checkpoints. */
  readonly stateKv: KV;
  /** Writes a checkpoint to KV `md_state` with one acked publish; rejects when it is not stored. */
  readonly putState: (key: string, json: string) => Promise<void>;
  /**
   * Writes a symbol's latest book to KV `md_book` with one acked publish; false when it cannot be
   * sent now. `failed` runs if it is not stored.
   */
  readonly putBook: (symbol: string, bytes: Uint8Array, failed: () => void) => boolean;
  /** Where the symbols' processors run (this thread or the processing thread). */
  readonly host: ProcessorHost;
  /** Checkpoint keys are `<name>.binance.<SYMBOL>` in `md_state`. */
  readonly name: string;
  readonly checkpointIntervalMs: number;
  readonly idleTimeoutMs: number;
  readonly resyncTimeoutMs: number;
  /** A checkpoint's buffered diffs further back in MD_RAW than this many messages are not re-read. */
  readonly maxRefillMessages: number;
  /** Ask for a snapshot that corrects each in-sync book this often (0 = never). */
  readonly refreshIntervalMs: number;
  readonly logger: Logger;
  readonly limiter: LogLimiter;
  readonly m: NormalizerMetrics;
}

/** The checkpoint as stored: the processor's state after stream sequence `seq`. */
interface Checkpoint {
  readonly seq: number;
  readonly state: ProcessorState;
}

/** Waiting for its outputs to be stored before it is written. */
interface PendingCheckpoint {
  readonly json: string;
  readonly seq: number;
  /** Every output numbered below this must be stored first. */
  readonly outputsBefore: number;
}

const BOOK_KV_MIN_INTERVAL_MS = 250;
/** A book still without a snapshot this long (and caught up) asks ingest for one. */
const SNAPSHOT_GRACE_MS = 3_000;

/** A symbol quiet for this many checkpoint intervals still moves its checkpoint up to the stream position. */
const QUIET_CHECKPOINT_INTERVALS = 12;

/**
 * One symbol: its raw messages (handed over by the normalizer's one consumer of MD_RAW, in stream
 * order), its `SymbolProcessor` (through a `SymbolPort`: on the processing thread its answers come
 * later), outputs through the shared acked publish queues, and a checkpoint to KV `md_state` every
 * interval — written only once every output before it is stored, so a restart from it (SIGKILL
 * included) republishes at most what the duplicate window then drops. A checkpoint holds
 * the stream position it was taken at: every message of the symbol up to it is in the state, but for
 * diffs buffered while the book waits for a snapshot, which are read back from MD_RAW after a restart.
 */
export class SymbolWorker {
  readonly symbol: string;
  readonly #c: WorkerContext;
  readonly #proc: SymbolPort;
  /** Stream sequence the state includes everything up to (the checkpoint's, then the last handled). */
  #seq = 0;
  #stopped = false;
  /** Output numbers not yet stored, in push order (a Map keeps insertion order: first = lowest). */
  readonly #unsettled = new Map<number, true>();
  #outputs = 0;
  #pending: PendingCheckpoint | undefined;
  /** A checkpoint's state asked of the processor and not yet given. */
  #capturing: Promise<void> | undefined;
  /** An output was never stored: no checkpoint may be written past it. */
  #lost = false;
  #writing = false;
  #lastCheckpointAt = Date.now();
  #checkpointSeq = 0;
  #lastMessageAt = Date.now();
  #idleClosed = true;
  #sawDepth = false;
  #unsyncedSince: number | undefined;
  #resyncNow = false;
  #resyncInFlight = false;
  #lastResyncAt = 0;
  /** When to ask for the next refresh snapshot (spread over the interval by symbol). */
  #nextRefreshAt: number;
  #bookBytes: Uint8Array | undefined;
  #lastBookPutAt = 0;
  /** Books sent to KV `md_book`. */
  #bookPuts = 0;

  constructor(symbol: string, context: WorkerContext) {
    this.symbol = symbol;
    this.#c = context;
    const every = context.refreshIntervalMs;
    const spread = partitionOf(symbol, 1_000_003);
    this.#nextRefreshAt = Date.now() + (every > 0 ? spread % every : 0);
    // Checkpoints spread over the interval by symbol: a checkpoint serializes the whole book, and
    // hundreds of symbols seen first at the same moment would otherwise all serialize in the same
    // tick, every interval (with 100 BTCUSDT books the e2e bench's p99 did not change measurably,
    // but a burst grows with the books' size and count).
    this.#lastCheckpointAt = Date.now() - (spread % context.checkpointIntervalMs);
    this.#proc = context.host.open(symbol, { handled: (h, seq) => this.#handled(h, seq) });
  }

  get #key(): string {
    return `${this.#c.name}.binance.${this.symbol}`;
  }

  /** Price levels the symbol's book holds, both sides. */
  get bookLevels(): number {
    return this.#proc.bookLevels;
  }

  /** Diffs the symbol's book buffers while it waits for a snapshot. */
  get bufferedDiffs(): number {
    return this.#proc.bufferedDiffs;
  }

  /** Stream sequence up to which every message of this symbol is in its state. */
  get seq(): number {
    return this.#seq;
  }

  /**
   * The first stream sequence this symbol needs read: after its checkpoint's position, or from its
   * first buffered diff when the checkpoint left the diffs waiting for a snapshot out (0: no checkpoint).
   */
  get readFrom(): number {
    if (this.#seq === 0) return 0;
    return Math.min(this.#seq + 1, this.#proc.refillFrom ?? Number.POSITIVE_INFINITY);
  }

  /**
   * Loads the checkpoint; returns the stream sequence its state includes everything up to (0 without
   * one: the symbol is read from its first message).
   */
  async load(): Promise<number> {
    const cp = await this.#loadCheckpoint();
    if (cp === undefined) return 0;
    this.#seq = cp.seq;
    this.#checkpointSeq = cp.seq;
    const from = this.#proc.refillFrom;
    if (from !== undefined && cp.seq + 1 - from > this.#c.maxRefillMessages) {
      // The whole partition would re-read from there; without those diffs the symbol only needs a
      // snapshot newer than them (the one it waits for may be, or it asks for another).
      this.#proc.endRefill();
      this.#c.logger.warn(
        { symbol: this.symbol, fromSeq: from, seq: cp.seq, maxRefillMessages: this.#c.maxRefillMessages },
        "the checkpoint's buffered diffs start too far back in MD_RAW to re-read; given up, the symbol waits for a newer snapshot",
      );
    }
    // The checkpoint may hold open windows: they close on the idle timeout once the normalizer is
    // caught up, even if nothing more of this symbol ever comes.
    this.#idleClosed = false;
    this.#lastMessageAt = Date.now();
    this.#c.logger.info({ symbol: this.symbol, seq: cp.seq }, "resuming from checkpoint");
    return cp.seq;
  }

  async #loadCheckpoint(): Promise<Checkpoint | undefined> {
    const entry = await this.#c.stateKv.get(this.#key);
    if (entry === null || entry.operation !== "PUT" || entry.value.length === 0) return undefined;
    try {
      const cp = JSON.parse(entry.string()) as Checkpoint;
      if (await this.#proc.restore(cp.state)) return cp;
      this.#c.logger.warn(
        { symbol: this.symbol },
        "checkpoint was written with other settings (book depth, intervals, lateness); rebuilding from the start of MD_RAW",
      );
    } catch (err) {
      this.#c.logger.warn(
        { symbol: this.symbol, err },
        "checkpoint unreadable; rebuilding from the start of MD_RAW",
      );
    }
    return undefined;
  }

  /** Handles one raw message of this symbol (`kind` is its subject's kind token), in stream order. */
  handle(msg: JsMsg, kind: string): void {
    if (this.#stopped) return;
    // A checkpoint that left out its buffered diffs is refilled from the messages up to its position
    // (`#seq` until the first message after it): those go back into the buffer instead of being skipped.
    const refilling = this.#proc.refillFrom !== undefined;
    if (msg.seq <= this.#seq) {
      if (refilling) this.#proc.refill(kind, msg.data, msg.seq);
      return;
    }
    if (refilling) this.#endRefill();
    const { position } = this.#c;
    const recvNs = readHeader(msg, HEADERS.receiveNs);
    const receiveTimeUs =
      recvNs !== undefined && /^[0-9]{1,20}$/.test(recvNs) ? Number(BigInt(recvNs) / 1000n) : 0;
    this.#proc.handle(kind, msg.data, receiveTimeUs, msg.seq);
    this.#seq = msg.seq;
    this.#lastMessageAt = Date.now();
    this.#idleClosed = false;
    if (kind === "depth") this.#sawDepth = true;
    if (position.caughtUp) this.tick(this.#lastMessageAt);
    else if (this.#lastMessageAt - this.#lastCheckpointAt >= this.#c.checkpointIntervalMs)
      this.#captureCheckpoint();
  }

  /** What the processor gave for a raw message (`seq`) or for closing the windows (`seq` 0). */
  #handled(h: Handled, seq: number): void {
    const { m, limiter, logger } = this.#c;
    if (h.error !== undefined) {
      const { code, message } = h.error;
      m.bad.inc({ code });
      const suppressed = limiter.take(`bad:${code}`);
      if (suppressed >= 0)
        logger.warn(
          { suppressed, symbol: this.symbol, seq, code, error: message },
          "skipped a raw message that cannot be used",
        );
    }
    if (h.resync) this.#resyncNow = true;
    if (h.book !== undefined) this.#bookBytes = h.book;
    this.#emit(h.outputs);
  }

  #emit(out: readonly Output[]): void {
    for (const o of out) {
      const n = this.#outputs++;
      this.#unsettled.set(n, true);
      this.#c.queue.push({
        subject: o.subject,
        data: o.data,
        msgId: o.msgId,
        settle: (err) => {
          this.#unsettled.delete(n);
          if (err !== undefined) {
            this.#c.m.outputsLost.inc();
            // Never checkpoint past a lost output: a restart then republishes it.
            this.#lost = true;
            this.#pending = undefined;
            this.#lastCheckpointAt = Number.POSITIVE_INFINITY;
          }
        },
      });
    }
  }

  /** Every message up to the checkpoint's position has been read: the buffer is whole again. */
  #endRefill(): void {
    this.#proc.endRefill((whole) => {
      if (!whole)
        this.#c.logger.warn(
          { symbol: this.symbol },
          "MD_RAW no longer holds every diff the checkpoint had buffered; the symbol resynchronises when its snapshot comes",
        );
    });
  }

  /** Periodic work: idle close, snapshots wanted, the book in KV, checkpoints. */
  tick(now: number): void {
    if (this.#stopped) return;
    if (this.#proc.refillFrom !== undefined && this.#c.position.seq >= this.#seq) this.#endRefill();
    if (this.#c.position.caughtUp) {
      if (!this.#idleClosed && now - this.#lastMessageAt >= this.#c.idleTimeoutMs) {
        this.#idleClosed = true;
        this.#proc.closeWindows();
      }
      this.#maybeResync(now);
      this.#maybeRefresh(now);
    }
    if (this.#bookBytes !== undefined && now - this.#lastBookPutAt >= BOOK_KV_MIN_INTERVAL_MS) {
      const bytes = this.#bookBytes;
      const put = ++this.#bookPuts;
      // A failed put is sent again on a later tick unless a newer book was sent meanwhile (which
      // may already be stored: the older one must not land after it).
      const failed = () => {
        if (put === this.#bookPuts) this.#bookBytes ??= bytes;
      };
      if (this.#c.putBook(this.symbol, bytes, failed)) {
        this.#bookBytes = undefined;
        this.#lastBookPutAt = now;
      }
    }
    if (this.#pending === undefined && this.#capturing === undefined) {
      const since = now - this.#lastCheckpointAt;
      const every = this.#c.checkpointIntervalMs;
      if (
        (this.#seq > this.#checkpointSeq && since >= every) ||
        // A quiet symbol's checkpoint follows the stream position now and then, so a restart does
        // not have to read MD_RAW from that symbol's last message.
        (this.#c.position.seq > this.#checkpointSeq && since >= every * QUIET_CHECKPOINT_INTERVALS)
      )
        this.#captureCheckpoint();
    }
    void this.#writeCheckpoint();
  }

  #maybeResync(now: number): void {
    if (!this.#proc.needsSnapshot || !this.#sawDepth) {
      this.#unsyncedSince = undefined;
      this.#resyncNow = false;
      return;
    }
    this.#unsyncedSince ??= now;
    if (this.#resyncInFlight || now - this.#lastResyncAt < this.#c.resyncTimeoutMs) return;
    if (!this.#resyncNow && now - this.#unsyncedSince < SNAPSHOT_GRACE_MS) return;
    this.#resyncNow = false;
    this.#lastResyncAt = now;
    this.#requestSnapshot("gap");
  }

  /** Asks for a snapshot that corrects the in-sync book, every `refreshIntervalMs`. */
  #maybeRefresh(now: number): void {
    const every = this.#c.refreshIntervalMs;
    if (every === 0 || now < this.#nextRefreshAt || this.#resyncInFlight || this.#proc.needsSnapshot) return;
    this.#nextRefreshAt = now + every;
    if (this.#sawDepth) this.#requestSnapshot("refresh");
  }

  /** Asks ingest (any replica) to store a fresh snapshot of this symbol in MD_RAW. */
  #requestSnapshot(reason: "gap" | "refresh"): void {
    this.#resyncInFlight = true;
    const { bus, m, logger, limiter } = this.#c;
    bus.nc
      .request(subjects.resyncRequest(this.symbol), new Uint8Array(0), { timeout: this.#c.resyncTimeoutMs })
      .then(
        (reply) => {
          const r = reply.json<{ ok?: boolean; error?: string }>();
          m.resyncs.inc({ reason, outcome: r.ok === true ? "ok" : "refused" });
          if (r.ok !== true)
            logger.warn({ symbol: this.symbol, error: r.error }, "ingest could not provide a snapshot");
        },
        (err: unknown) => {
          m.resyncs.inc({ reason, outcome: "no-answer" });
          const suppressed = limiter.take(`resync:${this.symbol}`);
          if (suppressed >= 0)
            logger.warn(
              { suppressed, symbol: this.symbol, err, reason },
              "no ingest answered the snapshot request; asking again later",
            );
        },
      )
      .finally(() => {
        this.#resyncInFlight = false;
      });
  }

  #captureCheckpoint(): void {
    // Every message up to the stream position has been handed out, so the state covers all of this
    // symbol's up to there, not only up to its own last message.
    const seq = Math.max(this.#seq, this.#c.position.seq);
    this.#seq = seq;
    this.#lastCheckpointAt = Date.now();
    // The state comes after the outputs of every message before it: those are the ones the
    // checkpoint waits for. Written as JSON.stringify({ seq, state }) would write it.
    const capturing = this.#proc.serialize().then(
      (state) => {
        if (!this.#lost)
          this.#pending = { json: `{"seq":${seq},"state":${state}}`, seq, outputsBefore: this.#outputs };
      },
      (err: unknown) => {
        const suppressed = this.#c.limiter.take("checkpoint");
        if (suppressed >= 0)
          this.#c.logger.warn({ suppressed, err, symbol: this.symbol }, "could not take a checkpoint");
      },
    );
    this.#capturing = capturing;
    void capturing.finally(() => {
      if (this.#capturing === capturing) this.#capturing = undefined;
    });
  }

  async #writeCheckpoint(): Promise<void> {
    const p = this.#pending;
    if (p === undefined || this.#writing) return;
    const lowest = this.#unsettled.keys().next();
    if (lowest.done !== true && lowest.value < p.outputsBefore) return; // outputs still in flight
    this.#writing = true;
    try {
      await this.#c.putState(this.#key, p.json);
      if (this.#pending === p) this.#pending = undefined;
      this.#checkpointSeq = p.seq;
      this.#c.m.checkpoints.inc();
    } catch (err) {
      const suppressed = this.#c.limiter.take("checkpoint");
      if (suppressed >= 0)
        this.#c.logger.warn(
          { suppressed, err, symbol: this.symbol },
          "could not write a checkpoint; will try again",
        );
    } finally {
      this.#writing = false;
    }
  }

  /** Stops handling messages; with `flush`, waits for the outputs and writes a final checkpoint. */
  async stop(flush: boolean): Promise<void> {
    if (this.#stopped) return;
    this.#stopped = true;
    if (!flush || Math.max(this.#seq, this.#c.position.seq) <= this.#checkpointSeq) return;
    this.#captureCheckpoint();
    await this.#capturing;
    const deadline = Date.now() + 5_000;
    while (this.#pending !== undefined && Date.now() < deadline) {
      await this.#writeCheckpoint();
      if (this.#pending !== undefined) await new Promise((r) => setTimeout(r, 10));
    }
  }
}

import { DeliverPolicy, type Consumer, type ConsumerMessages } from "@nats-io/jetstream";
import type { Bus, KV, PublishQueue } from "@l2flow/bus";
import { FrameError } from "@l2flow/binance";
import { bookKey, HEADERS, STREAMS, subjects } from "@l2flow/contracts";
import { L2flowError, type Logger, type LogLimiter } from "@l2flow/runtime";
import type { NormalizerMetrics } from "./metrics.js";
import {
  SymbolProcessor,
  type Effects,
  type Output,
  type ProcessorOptions,
  type ProcessorState,
} from "./symbol.js";

/** What every worker of a normalizer shares. */
export interface WorkerContext {
  readonly bus: Bus;
  readonly queue: PublishQueue;
  readonly stateKv: KV;
  readonly bookKv: KV;
  readonly options: ProcessorOptions;
  /** Checkpoint keys are `<name>.binance.<SYMBOL>` in `md_state`. */
  readonly name: string;
  readonly checkpointIntervalMs: number;
  readonly idleTimeoutMs: number;
  readonly resyncTimeoutMs: number;
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

/**
 * One symbol: an ordered consumer on `md.raw.binance.*.<SYMBOL>` from its checkpoint, the
 * `SymbolProcessor`, outputs through the shared acked publish queue, and a checkpoint to KV
 * `md_state` every interval — written only once every output before it is stored, so a restart from
 * it (SIGKILL included) republishes at most what the duplicate window then drops.
 */
export class SymbolWorker {
  readonly symbol: string;
  readonly #c: WorkerContext;
  readonly #proc: SymbolProcessor;
  #seq = 0;
  #messages: ConsumerMessages | undefined;
  #consumer: Consumer | undefined;
  #loop: Promise<void> | undefined;
  #stopped = false;
  #failed = false;
  /** Output numbers not yet stored, in push order (a Map keeps insertion order: first = lowest). */
  readonly #unsettled = new Map<number, true>();
  #outputs = 0;
  #pending: PendingCheckpoint | undefined;
  #writing = false;
  #lastCheckpointAt = Date.now();
  #checkpointSeq = 0;
  #lastMessageAt = Date.now();
  #caughtUp = false;
  #idleClosed = true;
  #sawDepth = false;
  #unsyncedSince: number | undefined;
  #resyncNow = false;
  #resyncInFlight = false;
  #lastResyncAt = 0;
  #bookBytes: Uint8Array | undefined;
  #lastBookPutAt = 0;

  constructor(symbol: string, context: WorkerContext) {
    this.symbol = symbol;
    this.#c = context;
    const m = context.m;
    this.#proc = new SymbolProcessor(symbol, context.options, {
      bookUpdate: () => m.bookUpdates.inc(),
      bookSnapshot: () => m.books.inc(),
      gap: (reason, crossed) => {
        m.gaps.inc({ reason });
        if (crossed) m.crossed.inc();
      },
      window: (w) => {
        m.windows.inc({ interval: w.interval, reason: String(w.closeReason) });
        if (w.lateEventCount > 0) m.late.inc(w.lateEventCount);
        m.windowLag.set(Math.max(0, (Date.now() - w.endTimeMs) / 1000));
      },
    });
  }

  get #key(): string {
    return `${this.#c.name}.binance.${this.symbol}`;
  }

  /** True once its consumer failed for good; the service replaces it with a new worker. */
  get failed(): boolean {
    return this.#failed;
  }

  /** Stream sequence of the last raw message handled. */
  get seq(): number {
    return this.#seq;
  }

  /** Loads the checkpoint and starts consuming after it. */
  async start(): Promise<void> {
    const cp = await this.#loadCheckpoint();
    if (cp !== undefined) {
      this.#seq = cp.seq;
      this.#checkpointSeq = cp.seq;
    }
    const consumer = await this.#c.bus.js.consumers.get(STREAMS.raw, {
      filter_subjects: subjects.rawAll(this.symbol),
      ...(cp !== undefined
        ? { deliver_policy: DeliverPolicy.StartSequence, opt_start_seq: cp.seq + 1 }
        : { deliver_policy: DeliverPolicy.All }),
    });
    // A small window per symbol bounds what waits in this process while behind: 400 symbols × 64
    // messages, and each waiting message keeps the socket chunk it was read from alive (the soak saw
    // the normalizer at 300 MB RSS with 256). Not a byte window: a message larger than it (a
    // 5000-level snapshot) would never come.
    const messages = await consumer.consume({ max_messages: 64 });
    if (this.#stopped) {
      // stop() came while the consumer was being created: nothing may read after it.
      await messages.close().catch(() => undefined);
      await consumer.delete().catch(() => undefined);
      return;
    }
    this.#consumer = consumer;
    this.#messages = messages;
    this.#loop = this.#run(messages).catch((err: unknown) => {
      if (this.#stopped) return; // the connection closing under a stopped worker
      this.#failed = true;
      this.#c.logger.error(
        { err, symbol: this.symbol, seq: this.#seq },
        "stopped reading MD_RAW for this symbol; it restarts from its checkpoint at the next discovery",
      );
    });
    if (cp !== undefined) void this.#caughtUpAtStart(consumer, cp.seq);
    this.#c.logger.info(
      { symbol: this.symbol, fromSeq: cp === undefined ? "start of MD_RAW" : cp.seq + 1 },
      cp === undefined ? "normalizing a new symbol" : "resuming from checkpoint",
    );
  }

  /**
   * A worker resumed from a checkpoint with nothing after it is caught up from the start. No message
   * will come to say so (caught-up is otherwise read from each message's pending count), and the
   * windows the checkpoint holds open must still close on the idle timeout: without this they waited
   * for the symbol's next message, so a process killed after its last checkpoint but before an idle
   * close never published that window.
   */
  async #caughtUpAtStart(consumer: Consumer, fromSeq: number): Promise<void> {
    try {
      const info = await consumer.info();
      if (this.#stopped || this.#seq !== fromSeq) return; // messages came meanwhile: they tell
      if (info.num_pending === 0 && info.delivered.consumer_seq === 0) {
        this.#caughtUp = true;
        this.#idleClosed = false;
        this.#lastMessageAt = Date.now();
      }
    } catch {
      // Unknown: the next message (if any) says whether it is caught up.
    }
  }

  async #loadCheckpoint(): Promise<Checkpoint | undefined> {
    const entry = await this.#c.stateKv.get(this.#key);
    if (entry === null || entry.operation !== "PUT" || entry.value.length === 0) return undefined;
    try {
      const cp = JSON.parse(entry.string()) as Checkpoint;
      if (this.#proc.restore(cp.state)) return cp;
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

  async #run(messages: ConsumerMessages): Promise<void> {
    const { m, queue } = this.#c;
    for await (const msg of messages) {
      if (msg.seq <= this.#seq) continue; // already in the restored state
      const kind = msg.subject.split(".")[3] ?? "";
      const recvNs = msg.headers?.get(HEADERS.receiveNs);
      const receiveTimeUs =
        recvNs !== undefined && /^[0-9]{1,20}$/.test(recvNs) ? Number(BigInt(recvNs) / 1000n) : 0;
      const out: Output[] = [];
      const fx: Effects = { resync: false, book: undefined };
      m.raw.inc({ kind });
      try {
        this.#proc.handle(kind, msg.data, receiveTimeUs, out, fx);
      } catch (err) {
        const code = err instanceof FrameError || err instanceof L2flowError ? err.code : "UNEXPECTED";
        m.bad.inc({ code });
        out.length = 0;
        if (this.#c.limiter.take(`bad:${code}`) >= 0)
          this.#c.logger.warn(
            { err, subject: msg.subject, seq: msg.seq },
            "skipped a raw message that cannot be used",
          );
      }
      this.#seq = msg.seq;
      this.#lastMessageAt = Date.now();
      this.#caughtUp = msg.info.pending === 0;
      this.#idleClosed = false;
      if (kind === "depth") this.#sawDepth = true;
      if (fx.resync) this.#resyncNow = true;
      if (fx.book !== undefined) this.#bookBytes = fx.book;
      this.#emit(out);
      if (this.#caughtUp) this.tick(Date.now());
      else if (Date.now() - this.#lastCheckpointAt >= this.#c.checkpointIntervalMs) this.#captureCheckpoint();
      // Backpressure: stop reading while the outputs wait on JetStream.
      while (queue.pending > 50_000 && !this.#stopped) await new Promise((r) => setTimeout(r, 5));
      if (this.#stopped) break;
    }
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
            this.#pending = undefined;
            this.#lastCheckpointAt = Number.POSITIVE_INFINITY;
          }
        },
      });
    }
  }

  /** Periodic work: idle close, snapshots wanted, the book in KV, checkpoints. */
  tick(now: number): void {
    if (this.#stopped) return;
    if (this.#caughtUp) {
      if (!this.#idleClosed && now - this.#lastMessageAt >= this.#c.idleTimeoutMs) {
        this.#idleClosed = true;
        const out: Output[] = [];
        this.#proc.closeWindows(out);
        this.#emit(out);
      }
      this.#maybeResync(now);
    }
    if (this.#bookBytes !== undefined && now - this.#lastBookPutAt >= BOOK_KV_MIN_INTERVAL_MS) {
      const bytes = this.#bookBytes;
      this.#bookBytes = undefined;
      this.#lastBookPutAt = now;
      this.#c.bookKv.put(bookKey(this.symbol), bytes).catch((err: unknown) => {
        if (this.#c.limiter.take("kv") >= 0) this.#c.logger.warn({ err }, "could not update KV md_book");
      });
    }
    if (
      this.#pending === undefined &&
      this.#seq > this.#checkpointSeq &&
      now - this.#lastCheckpointAt >= this.#c.checkpointIntervalMs
    )
      this.#captureCheckpoint();
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
    this.#resyncInFlight = true;
    this.#lastResyncAt = now;
    const { bus, m, logger, limiter } = this.#c;
    bus.nc
      .request(subjects.resyncRequest(this.symbol), new Uint8Array(0), { timeout: this.#c.resyncTimeoutMs })
      .then(
        (reply) => {
          const r = reply.json<{ ok?: boolean; error?: string }>();
          m.resyncs.inc({ outcome: r.ok === true ? "ok" : "refused" });
          if (r.ok !== true)
            logger.warn({ symbol: this.symbol, error: r.error }, "ingest could not provide a snapshot");
        },
        (err: unknown) => {
          m.resyncs.inc({ outcome: "no-answer" });
          if (limiter.take(`resync:${this.symbol}`) >= 0)
            logger.warn(
              { symbol: this.symbol, err },
              "no ingest answered the resync request; asking again later",
            );
        },
      )
      .finally(() => {
        this.#resyncInFlight = false;
      });
  }

  #captureCheckpoint(): void {
    const cp: Checkpoint = { seq: this.#seq, state: this.#proc.serialize() };
    this.#pending = { json: JSON.stringify(cp), seq: this.#seq, outputsBefore: this.#outputs };
    this.#lastCheckpointAt = Date.now();
  }

  async #writeCheckpoint(): Promise<void> {
    const p = this.#pending;
    if (p === undefined || this.#writing) return;
    const lowest = this.#unsettled.keys().next();
    if (lowest.done !== true && lowest.value < p.outputsBefore) return; // outputs still in flight
    this.#writing = true;
    try {
      await this.#c.stateKv.put(this.#key, p.json);
      if (this.#pending === p) this.#pending = undefined;
      this.#checkpointSeq = p.seq;
      this.#c.m.checkpoints.inc();
    } catch (err) {
      if (this.#c.limiter.take("checkpoint") >= 0)
        this.#c.logger.warn({ err, symbol: this.symbol }, "could not write a checkpoint; will try again");
    } finally {
      this.#writing = false;
    }
  }

  /** Stops consuming; with `flush`, waits for the outputs and writes a final checkpoint. */
  async stop(flush: boolean): Promise<void> {
    if (this.#stopped) return;
    this.#stopped = true;
    await this.#messages?.close().catch(() => undefined);
    await this.#loop?.catch(() => undefined);
    // An ordered consumer would otherwise stay on the server until its 5-minute inactivity threshold.
    await this.#consumer?.delete().catch(() => undefined);
    if (!flush || this.#seq <= this.#checkpointSeq) return;
    this.#captureCheckpoint();
    const deadline = Date.now() + 5_000;
    while (this.#pending !== undefined && Date.now() < deadline) {
      await this.#writeCheckpoint();
      if (this.#pending !== undefined) await new Promise((r) => setTimeout(r, 10));
    }
  }
}

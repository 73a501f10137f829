import type { Bus } from "./connect.js";
import { BusError } from "./errors.js";
import { PackedQueue } from "./packed.js";
import { AckPipeline, type AckTarget, type FenceOutcome, type StoredAck } from "./pipeline.js";

/** One message bound for a stream. */
export interface QueuedMessage {
  readonly subject: string;
  readonly data: Uint8Array;
  readonly msgId?: string | undefined;
  /**
   * Sent with the message. A message that waited packed (`PackedQueue`) comes back to `onStored` and
   * `onDropped` without them: its headers are kept encoded.
   */
  readonly headers?: Readonly<Record<string, string>> | undefined;
  /** Resolved when stored (or known duplicate), rejected if dropped. */
  readonly settle?: ((err?: Error) => void) | undefined;
}

/** Options for `PublishQueue`. */
export interface PublishQueueOptions {
  /** Publishes awaiting JetStream's ack at once. */
  readonly maxInFlight: number;
  /**
   * Memory the waiting messages may take; beyond it the oldest are dropped (and reported). A message
   * pushed while NATS is unreachable waits packed and counts its bytes (payload, subject, id,
   * encoded headers, 13 of framing); one waiting while connected (the stream slower than the
   * producer) counts its payload plus `QUEUED_MESSAGE_OVERHEAD_BYTES`.
   */
  readonly maxBytes: number;
  /**
   * In flight at most while sending what waited packed through an outage (default 4 096, at most
   * `maxInFlight`): the backlog goes out as fast, near enough, with a quarter of the write buffers
   * and acks at once. Ingest at 7k frames/s after a 5 s outage peaked 15-25 MB lower (180/181 MB
   * against 196/205 MB draining 16 384), while at saturation 16 384 in flight gave ~8 % more frames/s.
   */
  readonly drainInFlight?: number;
  /** A message not acked this long is sent again. Default 5 000 ms. */
  readonly ackTimeoutMs?: number;
  /**
   * JetStream's refusals of one message (`BusError.refused`: an error answer about it) before it is
   * given up as lost, reported like a drop. Default 20; `Infinity` never gives up. Sends that fail
   * because nothing could take the message (NATS down, no stream, no answer in time, JetStream
   * unavailable) are not counted however often they repeat: the message waits, as in an outage,
   * bounded by `maxBytes`. Counting those gave up the oldest frames of a long NATS restart, each
   * failed again at every reconnect and ack timeout, while newer ones were stored.
   */
  readonly maxRefusals?: number;
  readonly onStored?: (item: QueuedMessage, duplicate: boolean) => void;
  /** A message that will never be stored: the buffer overflowed, or JetStream refused it `maxRefusals` times. */
  readonly onDropped?: (item: QueuedMessage, reason: "overflow" | "failed", err?: BusError) => void;
  readonly onPublishError?: (err: BusError) => void;
  /**
   * Confirm each batch sent by a fence on its last message instead of an ack per message (see
   * `AckPipelineOptions.fences`): for a queue whose messages all go to one stream.
   */
  readonly fences?: boolean;
  /** With `fences`: see `AckPipelineOptions.onFenced` (unconfirmed messages are sent again at once). */
  readonly onFenced?: (outcome: FenceOutcome, messages: number) => void;
}

/**
 * What a message waiting as an object holds besides its payload: the queue's entry, the message
 * object, its headers and id strings, the payload's Buffer object. Measured in ingest: a NATS outage
 * of a few seconds grew its V8 heap by ~300 bytes a frame while its Buffers grew by the payloads
 * (which is why what waits through an outage is packed instead, see `PackedQueue`).
 */
export const QUEUED_MESSAGE_OVERHEAD_BYTES = 320;

/** Messages waiting that are sent at once instead of on the next turn of the event loop. */
const SEND_SLICE = 64;
/** With fences, a fence at least this often in a batch (a fence that proves nothing sends back at most this many). */
const FENCE_EVERY = 128;

/** One message in the queue; it takes its own ack (no closure per message in flight). */
class Entry implements AckTarget {
  refusals = 0;
  constructor(
    readonly item: QueuedMessage,
    /** Arrival order, so retries go out again in the order they first arrived. */
    readonly ordinal: number,
    readonly onAnswer: (e: Entry, err: BusError | undefined, ack: StoredAck | undefined) => void,
  ) {}
  onAck(err: BusError | undefined, ack: StoredAck | undefined): void {
    this.onAnswer(this, err, ack);
  }
}

function weight(item: QueuedMessage): number {
  return item.data.length + QUEUED_MESSAGE_OVERHEAD_BYTES;
}

/**
 * The bounded, acked path from a producer to JetStream (ingest's frames to `MD_RAW`, the
 * normalizer's outputs). Messages wait in arrival order; up to `maxInFlight` are
 * out on an `AckPipeline` (core publishes, every one acked by the stream). While NATS is down nothing
 * is sent and frames wait, packed into large byte segments (`PackedQueue`); when waiting bytes exceed
 * `maxBytes` the oldest are dropped and reported, never unbounded memory. A message that fails
 * (timeout, reconnect, refused) goes back ahead of newer ones, in its original order; its message id
 * keeps it stored once.
 */
export class PublishQueue {
  readonly #o: PublishQueueOptions;
  readonly #pipe: AckPipeline;
  readonly #maxRefusals: number;
  readonly #drainInFlight: number;
  #queue: (Entry | undefined)[] = [];
  #head = 0;
  /** Failed sends waiting to go out again, before anything in `#queue`. */
  #retry: Entry[] = [];
  /** Pushed while NATS was unreachable, and everything after them until they are sent: after `#queue`. */
  readonly #packed = new PackedQueue();
  #retrySorted = true;
  #retryTimer: NodeJS.Timeout | undefined;
  #bytes = 0;
  #ordinal = 0;
  #closed = false;
  #pumpScheduled = false;
  readonly #bus: Bus;

  constructor(bus: Bus, options: PublishQueueOptions) {
    this.#bus = bus;
    this.#o = options;
    this.#maxRefusals = options.maxRefusals ?? 20;
    this.#drainInFlight = Math.min(options.maxInFlight, options.drainInFlight ?? 4_096);
    this.#pipe = new AckPipeline(bus, {
      maxInFlight: options.maxInFlight,
      ackTimeoutMs: options.ackTimeoutMs ?? 5_000,
      onReady: () => this.#pump(),
      fences: options.fences === true,
      ...(options.onFenced !== undefined ? { onFenced: options.onFenced } : {}),
    });
    bus.onConnectionChange((up) => {
      if (up) this.#pump();
    });
  }

  /** Memory of the messages waiting to be sent, as `maxBytes` counts it (in flight not included). */
  get bytes(): number {
    return this.#bytes;
  }
  /**
   * Memory the messages waiting packed through an outage take now (`PackedQueue.heldBytes`: sealed
   * segments deflated, so usually well below what `bytes` counts for them).
   */
  get packedMemory(): number {
    return this.#packed.heldBytes;
  }
  /** Sent and not yet answered. */
  get inFlight(): number {
    return this.#pipe.inFlight;
  }
  /** Items waiting plus in flight. */
  get pending(): number {
    return this.#queue.length - this.#head + this.#retry.length + this.#packed.size + this.#pipe.inFlight;
  }

  /** Adds a message; drops the oldest waiting ones when over the byte bound. */
  push(item: QueuedMessage): void {
    if (this.#closed) {
      item.settle?.(new Error("the publish queue is closed"));
      return;
    }
    if (this.#packed.size > 0 || !this.#bus.isConnected()) {
      // Through an outage (and until what waited is sent, to keep the order) messages wait packed.
      let packed: number;
      try {
        packed = this.#packed.push(item);
      } catch (err) {
        // Headers that cannot be encoded: sending it would fail the same way, so it is answered as
        // a send that cannot be retried.
        const e = new BusError("PUBLISH_FAILED", `publish to ${item.subject} failed: ${String(err)}`, {
          cause: err,
        });
        this.#answered(new Entry(item, this.#ordinal++, this.#answered), e, undefined);
        return;
      }
      this.#bytes += packed;
    } else {
      this.#queue.push(new Entry(item, this.#ordinal++, this.#answered));
      this.#bytes += weight(item);
    }
    while (this.#bytes > this.#o.maxBytes && this.#dropOldest()) {
      /* keep dropping */
    }
    // A burst (one socket read can carry hundreds of frames) goes out in slices as it is pushed, not
    // after the last frame of it: the first ones would otherwise wait for the whole burst.
    if (this.#queue.length - this.#head >= SEND_SLICE && this.#retryTimer === undefined) this.#pump();
    else this.#schedulePump();
  }

  /**
   * Sends on the next turn of the event loop rather than per push: everything pushed meanwhile goes
   * out together, in one socket write, instead of one write per message.
   */
  #schedulePump(): void {
    if (this.#pumpScheduled) return;
    this.#pumpScheduled = true;
    setImmediate(() => {
      this.#pumpScheduled = false;
      this.#pump();
    });
  }

  /** Drops the oldest waiting message (never the one just pushed); false when there is none to drop. */
  #dropOldest(): boolean {
    let item: QueuedMessage | undefined;
    let w = 0;
    if (this.#retry.length > 0) {
      this.#sortRetry();
      item = this.#retry.shift()!.item;
      w = weight(item);
    } else if (this.#head < this.#queue.length - (this.#packed.size > 0 ? 0 : 1)) {
      item = this.#queue[this.#head]!.item;
      this.#queue[this.#head++] = undefined;
      w = weight(item);
    } else if (this.#packed.size > 1) {
      ({ item, weight: w } = this.#packed.shift()!);
    }
    if (item === undefined) return false;
    this.#bytes -= w;
    this.#o.onDropped?.(item, "overflow");
    item.settle?.(new Error("dropped: outage buffer full"));
    return true;
  }

  #sortRetry(): void {
    if (this.#retrySorted) return;
    this.#retry.sort((a, b) => a.ordinal - b.ordinal);
    this.#retrySorted = true;
  }

  #pump(): void {
    if (this.#retryTimer !== undefined) return; // a back-off is running; it pumps when it ends
    // The batch is gathered first, so that its last message is known: that one carries the fence.
    const room = this.#pipe.room;
    const batch: Entry[] = [];
    while (batch.length < room) {
      let e: Entry | undefined;
      if (this.#retry.length > 0) {
        this.#sortRetry();
        e = this.#retry.shift();
      } else if (this.#head < this.#queue.length) {
        e = this.#queue[this.#head];
        this.#queue[this.#head++] = undefined;
      } else if (this.#packed.size > 0) {
        if (this.#pipe.inFlight + batch.length >= this.#drainInFlight) break; // the next ack pumps again
        const { item, weight: packed } = this.#packed.shift()!;
        // From here it weighs as any message sent (and, if it fails, waiting again as an entry).
        this.#bytes += weight(item) - packed;
        e = new Entry(item, this.#ordinal++, this.#answered);
      }
      if (e === undefined) break;
      batch.push(e);
    }
    const last = batch.length - 1;
    for (let i = 0; i <= last; i++) {
      const e = batch[i]!;
      this.#bytes -= weight(e.item);
      this.#pipe.send(e.item.subject, e.item.data, e.item, e, i === last || (i + 1) % FENCE_EVERY === 0);
    }
    if (this.#head > 4096 && this.#head * 2 > this.#queue.length) {
      this.#queue = this.#queue.slice(this.#head);
      this.#head = 0;
    }
  }

  /** Every entry's answer, one function for all of them. */
  readonly #answered = (e: Entry, err: BusError | undefined, ack: StoredAck | undefined): void => {
    const { item } = e;
    if (err === undefined) {
      this.#o.onStored?.(item, ack?.duplicate ?? false);
      item.settle?.();
      if (this.#packed.size > 0) this.#schedulePump();
      return;
    }
    if (err.code === "PUBLISH_UNCONFIRMED" && !this.#closed) {
      // Not a failure: sent again at once, ahead of newer messages, this time with an ack of its own.
      this.#requeue(e);
      this.#schedulePump();
      return;
    }
    this.#o.onPublishError?.(err);
    if (this.#closed || !err.retryable || (err.refused && ++e.refusals >= this.#maxRefusals)) {
      this.#o.onDropped?.(item, "failed", err);
      item.settle?.(err);
      return;
    }
    this.#requeue(e);
    // A refusal or timeout while connected: back off briefly so a stuck stream is not hammered.
    if (this.#bus.isConnected() && err.code !== "PUBLISH_TIMEOUT" && this.#retryTimer === undefined) {
      this.#retryTimer = setTimeout(() => {
        this.#retryTimer = undefined;
        this.#pump();
      }, 250);
      this.#retryTimer.unref();
    } else {
      this.#schedulePump();
    }
  };

  /** Puts a sent message back to go out again before newer ones, in its original order. */
  #requeue(e: Entry): void {
    this.#bytes += weight(e.item);
    if (this.#retry.length > 0 && this.#retry[this.#retry.length - 1]!.ordinal > e.ordinal)
      this.#retrySorted = false;
    this.#retry.push(e);
  }

  /** Resolves when everything pushed so far is stored (or at `timeoutMs`); then refuses new items. */
  async close(timeoutMs = 10_000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (this.pending > 0 && this.#bus.isConnected() && Date.now() < deadline)
      await new Promise((r) => setTimeout(r, 5));
    this.#closed = true;
    if (this.#retryTimer !== undefined) clearTimeout(this.#retryTimer);
    this.#pipe.close();
    const left = [...this.#retry, ...this.#queue.slice(this.#head)].map((e) => e?.item);
    for (let p = this.#packed.shift(); p !== undefined; p = this.#packed.shift()) left.push(p.item);
    this.#retry = [];
    this.#queue = [];
    this.#head = 0;
    this.#bytes = 0;
    for (const item of left)
      item?.settle?.(new Error("the publish queue closed before this message was stored"));
  }
}

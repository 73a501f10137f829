import { publish, type Bus } from "@l2flow/bus";

/** One message bound for `MD_RAW`. */
export interface RawItem {
  readonly subject: string;
  readonly data: Uint8Array;
  readonly msgId?: string;
  readonly headers: Readonly<Record<string, string>>;
  /** Resolved when stored (or known duplicate), rejected if dropped. */
  readonly settle?: (err?: Error) => void;
}

/** Options for `RawQueue`. */
export interface RawQueueOptions {
  /** Publishes awaiting JetStream's ack at once. */
  readonly maxInFlight: number;
  /** Bytes waiting; beyond it the oldest are dropped (and reported). */
  readonly maxBytes: number;
  readonly onStored?: (item: RawItem, duplicate: boolean) => void;
  readonly onDropped?: (item: RawItem) => void;
  readonly onPublishError?: (err: unknown) => void;
}

/**
 * The bounded, pipelined path from frames to `MD_RAW`: up to `maxInFlight` publishes awaiting their
 * ack, the rest waiting in arrival order. While NATS is down nothing is sent and frames wait; when
 * waiting bytes exceed `maxBytes` the oldest are dropped and reported, never unbounded memory. A
 * publish that fails is retried ahead of newer frames (its message id keeps it stored once).
 */
export class RawQueue {
  readonly #bus: Bus;
  readonly #o: RawQueueOptions;
  #queue: RawItem[] = [];
  #head = 0;
  #bytes = 0;
  #inFlight = 0;
  #closed = false;
  readonly #idle: (() => void)[] = [];

  constructor(bus: Bus, options: RawQueueOptions) {
    this.#bus = bus;
    this.#o = options;
    bus.onConnectionChange((up) => {
      if (up) this.#pump();
    });
  }

  /** Bytes waiting to be sent. */
  get bytes(): number {
    return this.#bytes;
  }
  /** Items waiting plus in flight. */
  get pending(): number {
    return this.#queue.length - this.#head + this.#inFlight;
  }

  /** Adds a message; drops the oldest waiting ones when over the byte bound. */
  push(item: RawItem): void {
    if (this.#closed) {
      item.settle?.(new Error("ingest is shutting down"));
      return;
    }
    this.#queue.push(item);
    this.#bytes += item.data.length;
    while (this.#bytes > this.#o.maxBytes && this.#head < this.#queue.length - 1) {
      const old = this.#queue[this.#head]!;
      this.#queue[this.#head++] = undefined as unknown as RawItem;
      this.#bytes -= old.data.length;
      this.#o.onDropped?.(old);
      old.settle?.(new Error("dropped: outage buffer full"));
    }
    this.#pump();
  }

  #pump(): void {
    while (
      this.#inFlight < this.#o.maxInFlight &&
      this.#head < this.#queue.length &&
      this.#bus.isConnected()
    ) {
      const item = this.#queue[this.#head]!;
      this.#queue[this.#head++] = undefined as unknown as RawItem;
      this.#bytes -= item.data.length;
      this.#inFlight++;
      publish(this.#bus, item.subject, item.data, {
        ...(item.msgId !== undefined ? { msgId: item.msgId } : {}),
        headers: item.headers,
        timeoutMs: 5_000,
      }).then(
        (ack) => {
          this.#done();
          this.#o.onStored?.(item, ack.duplicate);
          item.settle?.();
        },
        (err: unknown) => {
          this.#o.onPublishError?.(err);
          this.#done();
          if (this.#closed) {
            item.settle?.(err instanceof Error ? err : new Error(String(err)));
            return;
          }
          // Retry ahead of newer frames.
          this.#queue.splice(this.#head, 0, item);
          this.#bytes += item.data.length;
          setTimeout(() => this.#pump(), 250).unref();
        },
      );
    }
    if (this.#head > 4096 && this.#head * 2 > this.#queue.length) {
      this.#queue = this.#queue.slice(this.#head);
      this.#head = 0;
    }
  }

  #done(): void {
    this.#inFlight--;
    this.#pump();
    if (this.pending === 0) for (const r of this.#idle.splice(0)) r();
  }

  /** Resolves when everything pushed so far is stored (or at `timeoutMs`); then refuses new items. */
  async close(timeoutMs = 10_000): Promise<void> {
    if (this.pending > 0 && this.#bus.isConnected()) {
      await Promise.race([
        new Promise<void>((r) => this.#idle.push(r)),
        new Promise((r) => setTimeout(r, timeoutMs).unref()),
      ]);
    }
    this.#closed = true;
  }
}

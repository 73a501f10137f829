import { status, type ServerWritableStream } from "@grpc/grpc-js";
import type { Bus } from "@l2flow/bus";
import type { Logger } from "@l2flow/runtime";
import type { StreamSelection } from "./args.js";
import { RpcError } from "./errors.js";

type Consumer = Awaited<ReturnType<Bus["js"]["consumers"]["get"]>>;
type Batch = Awaited<ReturnType<Consumer["fetch"]>>;

/** Where the next consumer starts: a stream sequence, or a time (the request's start). */
type Cursor = { readonly seq: number } | { readonly time: string };

/** Options for `StreamPump`. */
export interface StreamPumpOptions<Res> {
  readonly bus: Bus;
  /** JetStream stream to read (MD_WINDOW or SIGNALS). */
  readonly stream: string;
  readonly selection: StreamSelection;
  readonly call: ServerWritableStream<unknown, Res>;
  /** Payload bytes → response message; throwing skips the message (counted). */
  readonly decode: (data: Uint8Array) => Res;
  /** Messages pulled from JetStream at a time: the most held for a slow client. */
  readonly bufferSize: number;
  /** A client that drains nothing for this long is disconnected with RESOURCE_EXHAUSTED. */
  readonly slowClientTimeoutMs: number;
  /** How long to wait for NATS to come back before ending with UNAVAILABLE. */
  readonly resumeTimeoutMs: number;
  readonly logger: Logger;
  readonly on: {
    message(): void;
    slowWait(): void;
    dropped(): void;
    undecodable(): void;
    resume(): void;
  };
}

/** How long one pull waits for messages before pulling again. */
const FETCH_EXPIRES_MS = 5_000;
/** Consecutive failures while NATS is connected before a stream gives up. */
const MAX_FAILURES = 5;

/**
 * Feeds one server-streaming call from a JetStream ordered consumer, pulling `bufferSize` messages at
 * a time and pulling again only after the client took them: when `call.write()` says the client is
 * behind, nothing more is pulled until it drains, so a slow client costs at most one batch. A NATS
 * outage or a lost consumer recreates the consumer from the last delivered sequence; a cancelled
 * call deletes its consumer at once.
 */
export class StreamPump<Res> {
  readonly #o: StreamPumpOptions<Res>;
  #stopped = false;
  #end: RpcError | undefined;
  #batch: Batch | undefined;
  #wake: (() => void) | undefined;
  #reconnected = false;

  constructor(options: StreamPumpOptions<Res>) {
    this.#o = options;
  }

  /** Ends the stream with `reason` (or silently when the client is gone). Idempotent. */
  stop(reason?: RpcError): void {
    if (this.#stopped) return;
    this.#stopped = true;
    this.#end = reason;
    this.#batch?.stop();
    this.#wake?.();
  }

  /** Streams until stopped; resolves with the status to end the call with (undefined: none to send). */
  async run(): Promise<RpcError | undefined> {
    const { bus } = this.#o;
    const off = bus.onConnectionChange((up) => {
      if (!up) return;
      // The server may have lost the consumer (a restart): recreate it from the cursor.
      this.#reconnected = true;
      this.#batch?.stop();
    });
    let cursor: Cursor | undefined;
    let failures = 0;
    try {
      while (!this.#stopped) {
        let consumer: Consumer | undefined;
        try {
          cursor ??= await this.#startCursor();
          this.#reconnected = false;
          consumer = await bus.js.consumers.get(this.#o.stream, {
            filter_subjects: this.#o.selection.filterSubject,
            ...("seq" in cursor ? { opt_start_seq: cursor.seq } : { opt_start_time: cursor.time }),
            // Outlives a slow-client wait, so the server never removes it under a live stream.
            inactive_threshold: this.#o.slowClientTimeoutMs + 60_000,
          });
          while (!this.#stopped && !this.#reconnected) {
            const batch = await consumer.fetch({
              max_messages: this.#o.bufferSize,
              expires: FETCH_EXPIRES_MS,
            });
            this.#batch = batch;
            for await (const m of batch) {
              failures = 0;
              cursor = { seq: m.seq + 1 };
              if (this.#stopped) break;
              if (this.#o.selection.accepts(m.subject)) await this.#send(m.data);
            }
            this.#batch = undefined;
          }
        } catch (err) {
          if (this.#stopped) break;
          failures++;
          this.#o.logger.debug({ err, failures }, "stream consumer failed; recreating it");
          if (!(await this.#usableAgain(failures))) {
            const why = err instanceof Error ? err.message : String(err);
            this.#end ??= new RpcError(
              status.UNAVAILABLE,
              `the stream lost NATS (${why}); call again with start_time_ms to resume`,
              { cause: err },
            );
            break;
          }
        } finally {
          this.#batch = undefined;
          consumer?.delete().catch(() => undefined);
        }
        if (!this.#stopped) this.#o.on.resume();
      }
    } finally {
      off();
    }
    return this.#end;
  }

  async #startCursor(): Promise<Cursor> {
    const { startTimeMs } = this.#o.selection;
    if (startTimeMs > 0) return { time: new Date(startTimeMs).toISOString() };
    const info = await this.#o.bus.jsm.streams.info(this.#o.stream);
    return { seq: info.state.last_seq + 1 };
  }

  async #send(data: Uint8Array): Promise<void> {
    let response: Res;
    try {
      response = this.#o.decode(data);
    } catch {
      this.#o.on.undecodable();
      return;
    }
    this.#o.on.message();
    if (this.#o.call.write(response)) return;
    this.#o.on.slowWait();
    const drained = await this.#wait(this.#o.slowClientTimeoutMs, (done) => {
      this.#o.call.once("drain", done);
      return () => this.#o.call.off("drain", done);
    });
    if (!drained && !this.#stopped) {
      this.#o.on.dropped();
      this.stop(
        new RpcError(
          status.RESOURCE_EXHAUSTED,
          `client read nothing for ${this.#o.slowClientTimeoutMs} ms while the stream had data; ` +
            "read faster or narrow the request (symbols, intervals), then call again with start_time_ms to resume",
        ),
      );
    }
  }

  /** After a failure: wait for NATS (bounded), or back off briefly; false = give up. */
  async #usableAgain(failures: number): Promise<boolean> {
    const { bus } = this.#o;
    if (bus.isConnected()) {
      if (failures >= MAX_FAILURES) return false;
      await this.#wait(200 * failures, () => () => undefined);
      return !this.#stopped;
    }
    const up = await this.#wait(this.#o.resumeTimeoutMs, (done) => {
      const offUp = bus.onConnectionChange((connected) => {
        if (connected) done();
      });
      return () => void offUp();
    });
    return up && !this.#stopped;
  }

  /**
   * Waits until `subscribe`'s callback fires (true), `stop()` is called (true; callers check
   * `#stopped`) or `timeoutMs` passes (false).
   */
  #wait(timeoutMs: number, subscribe: (done: () => void) => () => void): Promise<boolean> {
    return new Promise<boolean>((resolve) => {
      let finished = false;
      const cleanups: (() => void)[] = [];
      const finish = (value: boolean) => {
        if (finished) return;
        finished = true;
        clearTimeout(timer);
        for (const cleanup of cleanups) cleanup();
        this.#wake = undefined;
        resolve(value);
      };
      const timer = setTimeout(() => finish(false), timeoutMs);
      this.#wake = () => finish(true);
      const unsubscribe = subscribe(() => finish(true));
      if (finished) unsubscribe();
      else cleanups.push(unsubscribe);
    });
  }
}

import { createInbox, type Msg, type MsgHdrs, type Subscription } from "@nats-io/transport-node";
import type { Bus } from "./connect.js";
import { BusError } from "./errors.js";
import { readPubAck, type StoredAck } from "./pub-ack.js";
import { WaitingRing } from "./waiting.js";
import { encodeHeaderBlock, rawProtocol, WireError, WireWriter, type HeaderFields } from "./wire.js";

export type { StoredAck } from "./pub-ack.js";

/** Called once per message: with an ack when it is known stored, or with the reason it is not. */
export type AckCallback = (err: BusError | undefined, ack: StoredAck | undefined) => void;

/**
 * `AckCallback` as an object's method: a caller that keeps an object per message anyway (a queue's
 * entry) passes it instead of a closure, one object fewer per message in flight for the GC to copy.
 */
export interface AckTarget {
  onAck(err: BusError | undefined, ack: StoredAck | undefined): void;
}

function settle(to: AckCallback | AckTarget, err: BusError | undefined, ack: StoredAck | undefined): void {
  if (typeof to === "function") to(err, ack);
  else to.onAck(err, ack);
}

/** Options for `AckPipeline`. */
export interface AckPipelineOptions {
  /** Messages sent and not yet acked, at most. Default 16 384. */
  readonly maxInFlight?: number;
  /** A message not acked this long fails with PUBLISH_TIMEOUT (retry it: its id keeps it stored once). Default 5 000. */
  readonly ackTimeoutMs?: number;
  /** Called whenever room frees up after `ready` was false, so a producer can resume. */
  readonly onReady?: () => void;
  /**
   * Publish through nats.js's `publish()` instead of writing the protocol bytes directly. Default
   * false; the pipeline falls back to it by itself when nats.js lacks the calls the writer uses.
   */
  readonly natsPublish?: boolean;
  /**
   * Confirm batches by fences instead of acking every message. Only for a pipeline whose messages
   * all go to one stream and that is the stream's only publisher in the usual case (ingest and
   * `MD_RAW`). Default false. See `AckPipeline` and `send`'s `fence`.
   */
  readonly fences?: boolean;
  /**
   * With `fences`: told, once a batch's fence is answered, how many messages it covered and whether
   * the answer proved them stored (`proven`) or they failed with PUBLISH_UNCONFIRMED (`unconfirmed`).
   */
  readonly onFenced?: (outcome: FenceOutcome, messages: number) => void;
}

/** What a fence's answer did for the messages it covered. */
export type FenceOutcome = "proven" | "unconfirmed";

/** After a fence that proved nothing, every message is sent with its own reply for this long. */
const PER_MESSAGE_AFTER_MISMATCH_MS = 5_000;

/** A message sent with a reply subject that answers for the messages sent without one just before it. */
interface Fence {
  readonly id: number;
  /** The message with a reply sent before it (0: none since the connection came up). */
  readonly prev: number;
  /** Messages written in `(prev, id]`, or -1 when one of them failed to be written. */
  readonly count: number;
}

/** The last message with a reply that JetStream stored as new: where the next fence's count starts. */
interface Base {
  readonly id: number;
  readonly stream: string;
  readonly seq: number;
}

const encoder = new TextEncoder();

/**
 * NATS headers encoded once, up front. nats.js's `headers()` validates and re-encodes every key on
 * every publish, which costs more than the rest of a small publish; `publish` only ever calls
 * `encode()` on what it is given, so a pre-encoded block is equivalent on the wire.
 */
export class EncodedHeaders {
  readonly #bytes: Uint8Array;
  /** Keys are sent as given; values must not contain CR or LF (a `RangeError` otherwise). */
  constructor(record: Readonly<Record<string, string>>, msgId?: string) {
    this.#bytes = encodeHeaderBlock({ headers: record, msgId });
  }
  /** The wire form: `NATS/1.0`, one `Key: value` line per header, a blank line. */
  encode(): Uint8Array {
    return this.#bytes;
  }
}

/**
 * JetStream publishing at the speed of core NATS, with an ack for every message.
 *
 * `js.publish()` makes a request per message (an inbox, a promise and a timer each) and tops out near
 * 15k msgs/s on 2 cores. This pipeline core-publishes each message with a reply subject under one
 * wildcard inbox it subscribes to once; JetStream answers every message there with its stream sequence
 * or `duplicate: true`, and one sweep times out what gets no answer. So every message is confirmed
 * stored (or known to be a duplicate) individually — the fence is per message, nothing is assumed —
 * while the client spends almost nothing per message.
 *
 * Messages from one connection reach the stream in the order sent. When the connection drops, every
 * message in flight fails at once (in send order) with a retryable error so the caller can send them
 * again in order; their message ids make the resend harmless when the first copy was stored.
 *
 * With `fences`, a caller sending a batch asks for a reply on its last message only (`send`'s
 * `fence`); the others go without one, as plain core publishes. JetStream handles one stream's
 * messages from one connection in the order they arrive and answers each after storing it, so the
 * fence's answer comes after every message before it has been handled — stored, found a duplicate,
 * or refused without a word (nobody to tell). The stream sequences tell which: the fence's answer
 * is accepted for the batch only when the fence is new (not a duplicate) and its sequence is exactly
 * the previous replied message's plus the number of messages written since, i.e. every one of them
 * took a sequence of its own, in order, and none was a duplicate or lost. Anything else (a
 * duplicate in the batch, a refusal, a message lost on the way, another publisher's messages in
 * between, the previous answer missing) proves nothing: the fence itself is settled by its own
 * answer, the messages it covered fail with the retryable PUBLISH_UNCONFIRMED to be sent again (their
 * message ids drop any copy that was stored), and for a few seconds every message gets its own reply
 * again. Nothing is assumed stored that the sequences do not prove; the saving is the server's
 * answer and the client's handling of it for all but one message a batch. Another publisher's
 * messages stored between two fences make the count fail, so they cost speed, not safety, with one
 * exception: a message of this batch lost while exactly as many of theirs were stored in between
 * would pass. Hence fences are for a stream this pipeline is the only publisher of (with a second
 * ingest replica, the other's frames are mostly the same frames: duplicates, which take no sequence).
 */
export class AckPipeline {
  readonly #bus: Bus;
  readonly #max: number;
  readonly #timeoutMs: number;
  readonly #onReady: (() => void) | undefined;
  readonly #prefix = createInbox();
  /** `<prefix>.` as bytes: each message's reply subject is this and its number. */
  readonly #replyPrefix = encoder.encode(`${this.#prefix}.`);
  readonly #waiting: WaitingRing<AckCallback | AckTarget>;
  readonly #sub: Subscription;
  readonly #sweep: NodeJS.Timeout;
  readonly #offConn: () => void;
  /** Writes the protocol bytes itself; undefined with a nats.js that lacks the calls it uses. */
  readonly #wire: WireWriter | undefined;
  readonly #fences: boolean;
  readonly #onFenced: ((outcome: FenceOutcome, messages: number) => void) | undefined;
  /** Fences sent and not yet answered, oldest first (`#fenceHead` is the first live one). */
  #pendingFences: Fence[] = [];
  #fenceHead = 0;
  /** The last message sent with a reply (0: none on this connection yet). */
  #lastReply = 0;
  /** Messages written without a reply since `#lastReply`. */
  #unreplied = 0;
  /** One failed to be written since `#lastReply`: the next fence proves nothing. */
  #broken = false;
  #base: Base | undefined;
  /** Until then every message is sent with its own reply. */
  #perMessageUntil = 0;
  #next = 1;
  #blocked = false;
  #closed = false;

  constructor(bus: Bus, options: AckPipelineOptions = {}) {
    this.#bus = bus;
    this.#max = options.maxInFlight ?? 16_384;
    this.#waiting = new WaitingRing(Math.min(this.#max, 1 << 20));
    this.#timeoutMs = options.ackTimeoutMs ?? 5_000;
    this.#onReady = options.onReady;
    this.#onFenced = options.onFenced;
    const protocol = rawProtocol(bus.nc);
    this.#wire =
      protocol !== undefined && options.natsPublish !== true ? new WireWriter(protocol) : undefined;
    this.#fences = options.fences === true && this.#wire !== undefined;
    if (!Number.isInteger(this.#max) || this.#max < 1)
      throw new RangeError(`maxInFlight must be an integer >= 1, got ${this.#max}`);
    const skip = this.#replyPrefix.length; // an ack's subject is the reply subject: prefix, dot, number
    this.#sub = bus.nc.subscribe(`${this.#prefix}.*`, {
      callback: (err, msg) => {
        if (err) return;
        this.#answer(replyId(msg, skip), msg.data, msg.headers?.code ?? 0, msg.headers?.description);
      },
    });
    this.#sweep = setInterval(() => this.#expire(), Math.max(10, Math.floor(this.#timeoutMs / 4)));
    this.#sweep.unref();
    this.#offConn = bus.onConnectionChange((up) => {
      // Acks of what was in flight may be lost with the old connection: fail it all now, in order.
      if (up)
        this.#failAll("PUBLISH_TIMEOUT", "the NATS connection was re-established before the ack arrived");
    });
  }

  /** Messages sent and not yet answered. */
  get inFlight(): number {
    return this.#waiting.size;
  }

  /** How many messages `send` may take now (0 when not `ready`). */
  get room(): number {
    return this.ready ? this.#max - this.#waiting.size : 0;
  }

  /** True when `send` may be called now: connected, open and below `maxInFlight`. */
  get ready(): boolean {
    const ok = !this.#closed && this.#waiting.size < this.#max && this.#bus.isConnected();
    if (!ok) this.#blocked = true;
    return ok;
  }

  /**
   * Publishes one message (a string is sent as UTF-8); `cb` (or `cb.onAck`) runs exactly once. Call
   * only when `ready` (otherwise the message fails at once with a retryable error). With `fences`,
   * `fence` false sends it without a reply when the pipeline may (the caller promises a message with
   * `fence` true soon after: the last of its batch); without `fences` every message has a reply.
   */
  send(
    subject: string,
    data: Uint8Array | string,
    headers: MsgHdrs | EncodedHeaders | HeaderFields | undefined,
    cb: AckCallback | AckTarget,
    fence = true,
  ): void {
    if (this.#closed) {
      settle(cb, new BusError("CLOSED", "the publish pipeline is closed"), undefined);
      return;
    }
    if (!this.#bus.isConnected()) {
      settle(cb, new BusError("PUBLISH_FAILED", "NATS is not connected", { retryable: true }), undefined);
      return;
    }
    const id = this.#next++;
    const now = Date.now();
    this.#waiting.add(id, cb, now);
    // Full now: whoever filled it (by `room`, without asking `ready` again) hears `onReady`.
    if (this.#waiting.size >= this.#max) this.#blocked = true;
    const reply = fence || !this.#fences || this.#lastReply === 0 || now < this.#perMessageUntil;
    try {
      // nats.js's MsgHdrs and EncodedHeaders are encoded blocks already: nats.js calls nothing but
      // encode() on headers when publishing.
      const fields = headers === undefined || isEncoded(headers) ? undefined : (headers as HeaderFields);
      if (this.#wire !== undefined) {
        this.#wire.publish(
          subject,
          this.#replyPrefix,
          reply ? id : -1,
          fields ?? (headers as EncodedHeaders | undefined)?.encode(),
          data,
        );
        if (this.#fences) this.#wrote(id, reply);
      } else {
        const reply = `${this.#prefix}.${id}`;
        const h = fields !== undefined ? new EncodedHeaders(fields.headers ?? {}, fields.msgId) : headers;
        this.#bus.nc.publish(subject, data, { reply, ...(h !== undefined ? { headers: h as MsgHdrs } : {}) });
      }
    } catch (err) {
      this.#waiting.take(id);
      if (!reply) this.#broken = true;
      const message = err instanceof Error ? err.message : String(err);
      // A message the server would refuse (size, subject, header) fails the same way every time.
      const retryable = !(err instanceof WireError || err instanceof RangeError);
      settle(
        cb,
        new BusError("PUBLISH_FAILED", `publish to ${subject} failed: ${message}`, { retryable, cause: err }),
        undefined,
      );
    }
  }

  /** Keeps count of what the next fence answers for. */
  #wrote(id: number, reply: boolean): void {
    if (!reply) {
      this.#unreplied++;
      return;
    }
    if (this.#unreplied > 0 || this.#broken)
      this.#pendingFences.push({
        id,
        prev: this.#lastReply,
        count: this.#broken ? -1 : this.#unreplied + 1,
      });
    this.#lastReply = id;
    this.#unreplied = 0;
    this.#broken = false;
  }

  /** The fence sent as `id`, if it is one, dropping the records of older fences (never answered). */
  #fenceFor(id: number): Fence | undefined {
    const list = this.#pendingFences;
    let h = this.#fenceHead;
    while (h < list.length && list[h]!.id < id) h++;
    const f = h < list.length && list[h]!.id === id ? list[h++] : undefined;
    if (h === list.length) {
      list.length = 0;
      h = 0;
    } else if (h > 1024 && h * 2 > list.length) {
      list.splice(0, h);
      h = 0;
    }
    this.#fenceHead = h;
    return f;
  }

  /**
   * `send` as a promise, for a caller that waits on each message: resolves with the ack, rejects with
   * the `BusError` (`retryable` as `send` reports it). Unlike `js.publish`, no request, inbox or
   * timer per message, and messages sent in the same turn of the event loop share one socket write.
   */
  publish(
    subject: string,
    data: Uint8Array | string,
    headers?: MsgHdrs | EncodedHeaders | HeaderFields,
  ): Promise<StoredAck> {
    return new Promise<StoredAck>((resolve, reject) => {
      this.send(subject, data, headers, (err, ack) => {
        if (err !== undefined) reject(err);
        else resolve(ack!);
      });
    });
  }

  /** Resolves when nothing is in flight, or after `timeoutMs`. */
  async idle(timeoutMs = 10_000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (this.#waiting.size > 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 5));
  }

  /** Stops: fails whatever is still in flight with CLOSED and unsubscribes. Idempotent. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    clearInterval(this.#sweep);
    this.#offConn();
    this.#failAll("CLOSED", "the publish pipeline was closed before JetStream answered");
    this.#sub.unsubscribe();
  }

  #answer(id: number, data: Uint8Array, status: number, description: string | undefined): void {
    const cb = this.#waiting.take(id);
    const fence = this.#fences ? this.#fenceFor(id) : undefined;
    if (cb === undefined) {
      // Answered after a timeout or a reconnect: the resend settles it (and what it covered, which
      // timed out with it).
      if (this.#fences) this.#base = undefined;
      return;
    }
    let err: BusError | undefined;
    let ack: StoredAck | undefined;
    if (status === 503) {
      err = new BusError("PUBLISH_FAILED", "no stream stores this subject: provision the topology first", {
        retryable: true,
      });
    } else if (status >= 400) {
      err = new BusError("PUBLISH_FAILED", `JetStream answered ${status} ${description ?? ""}`.trim(), {
        retryable: true,
        refused: true,
      });
    } else {
      const a = readPubAck(data);
      if ("description" in a)
        err = new BusError("PUBLISH_FAILED", `JetStream refused the message: ${a.description}`, {
          retryable: true,
          // 503 in the body: JetStream is there but cannot store anything now (no leader, stream
          // recovering); like an outage, not a verdict on the message.
          refused: a.code !== 503,
        });
      else ack = a;
    }
    if (this.#fences) {
      if (fence !== undefined) this.#settleCovered(fence, ack);
      this.#base = ack !== undefined && !ack.duplicate ? { id, stream: ack.stream, seq: ack.seq } : undefined;
    }
    settle(cb, err, ack);
    this.#maybeReady();
  }

  /**
   * Settles the messages a fence covered (`(fence.prev, fence.id)`), in order: stored with their
   * sequences when the fence's answer proves it (see the class), otherwise failed to be sent again.
   */
  #settleCovered(fence: Fence, ack: StoredAck | undefined): void {
    const base = this.#base;
    const proven =
      ack !== undefined &&
      !ack.duplicate &&
      fence.count > 0 &&
      base !== undefined &&
      base.id === fence.prev &&
      base.stream === ack.stream &&
      ack.seq - base.seq === fence.count;
    if (proven) {
      let settled = 0;
      for (let k = fence.prev + 1; k < fence.id; k++) {
        const cb = this.#waiting.take(k);
        if (cb === undefined) continue;
        settled++;
        settle(cb, undefined, { stream: ack.stream, seq: base.seq + (k - fence.prev), duplicate: false });
      }
      if (settled > 0) this.#onFenced?.("proven", settled);
      return;
    }
    this.#perMessageUntil = Date.now() + PER_MESSAGE_AFTER_MISMATCH_MS;
    let failed = 0;
    for (let k = fence.prev + 1; k < fence.id; k++) {
      const cb = this.#waiting.take(k);
      if (cb === undefined) continue;
      failed++;
      settle(
        cb,
        new BusError("PUBLISH_UNCONFIRMED", "the batch's fence did not prove this message stored", {
          retryable: true,
        }),
        undefined,
      );
    }
    if (failed > 0) this.#onFenced?.("unconfirmed", failed);
  }

  #expire(): void {
    const expired = this.#waiting.takeSentBefore(Date.now() - this.#timeoutMs);
    for (const cb of expired)
      settle(
        cb,
        new BusError("PUBLISH_TIMEOUT", `no ack from JetStream within ${this.#timeoutMs} ms`, {
          retryable: true,
        }),
        undefined,
      );
    // Nothing waits: no fence record can be answered any more.
    if (this.#waiting.size === 0) {
      this.#pendingFences = [];
      this.#fenceHead = 0;
    }
    this.#maybeReady();
  }

  #failAll(code: "PUBLISH_TIMEOUT" | "CLOSED", message: string): void {
    // A new connection starts over: its first message has a reply of its own.
    this.#lastReply = 0;
    this.#unreplied = 0;
    this.#broken = false;
    this.#base = undefined;
    this.#pendingFences = [];
    this.#fenceHead = 0;
    if (this.#waiting.size === 0) return;
    for (const cb of this.#waiting.takeAll())
      settle(cb, new BusError(code, message, { retryable: code !== "CLOSED" }), undefined);
    this.#maybeReady();
  }

  #maybeReady(): void {
    if (!this.#blocked || this.#closed) return;
    if (this.#waiting.size >= this.#max || !this.#bus.isConnected()) return;
    this.#blocked = false;
    this.#onReady?.();
  }
}

/**
 * The number after the inbox prefix in an ack's subject (`<prefix>.<id>`), read from the subject's
 * bytes when nats.js exposes them (`msg._msg.subject`): nats.js otherwise decodes every subject into
 * a string with a TextDecoder. NaN for anything else (no waiting message has it).
 */
function replyId(msg: Msg, skip: number): number {
  const bytes = (msg as unknown as { _msg?: { subject?: unknown } })._msg?.subject;
  if (!(bytes instanceof Uint8Array)) return Number(msg.subject.slice(skip));
  const n = bytes.length;
  if (n <= skip || n - skip > 15) return NaN;
  let id = 0;
  for (let i = skip; i < n; i++) {
    const d = bytes[i]! - 48;
    if (d < 0 || d > 9) return NaN;
    id = id * 10 + d;
  }
  return id;
}

/** Headers that are an encoded block: nats.js's `MsgHdrs` (whose type hides `encode`) or `EncodedHeaders`. */
function isEncoded(h: MsgHdrs | EncodedHeaders | HeaderFields): h is EncodedHeaders {
  return typeof (h as Partial<EncodedHeaders>).encode === "function";
}

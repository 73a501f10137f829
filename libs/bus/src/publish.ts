import { headers as natsHeaders, type MsgHdrs } from "@nats-io/transport-node";
import type { PubAck } from "@nats-io/jetstream";
import type { Bus } from "./connect.js";
import { BusError } from "./errors.js";

/** Options of one JetStream publish. */
export interface PublishOptions {
  /** `Nats-Msg-Id`: JetStream drops a second message with the same id within the duplicate window. */
  readonly msgId?: string;
  /** Extra headers. */
  readonly headers?: Readonly<Record<string, string>>;
  /** Time to wait for the stream's ack. Default 10 000 ms. */
  readonly timeoutMs?: number;
}

/** Builds NATS headers from a record (undefined when empty). */
export function toHeaders(record: Readonly<Record<string, string>> | undefined): MsgHdrs | undefined {
  if (record === undefined) return undefined;
  const keys = Object.keys(record);
  if (keys.length === 0) return undefined;
  const h = natsHeaders();
  for (const k of keys) h.set(k, record[k]!);
  return h;
}

/**
 * Publishes one message to JetStream and waits for the stream's ack. `ack.duplicate` is true when the
 * message id was already stored. Throws `BusError` PUBLISH_TIMEOUT or PUBLISH_FAILED (both retryable
 * unless the server refused the subject).
 */
export async function publish(
  bus: Bus,
  subject: string,
  data: Uint8Array,
  options: PublishOptions = {},
): Promise<PubAck> {
  const h = toHeaders(options.headers);
  try {
    return await bus.js.publish(subject, data, {
      ...(options.msgId !== undefined ? { msgID: options.msgId } : {}),
      ...(h !== undefined ? { headers: h } : {}),
      timeout: options.timeoutMs ?? 10_000,
    });
  } catch (err) {
    throw toPublishError(subject, err);
  }
}

/** Maps a nats.js publish failure to a `BusError`. */
export function toPublishError(subject: string, err: unknown): BusError {
  const name = (err as { name?: string } | undefined)?.name ?? "";
  const message = err instanceof Error ? err.message : String(err);
  if (name === "PermissionViolationError") {
    return new BusError(
      "NATS_PERMISSION",
      `not allowed to publish to ${subject}: check this service's NATS user permissions`,
      {
        cause: err,
      },
    );
  }
  if (name === "TimeoutError") {
    return new BusError("PUBLISH_TIMEOUT", `no ack from JetStream for ${subject} in time`, {
      retryable: true,
      cause: err,
    });
  }
  if (name === "NoRespondersError") {
    return new BusError("PUBLISH_FAILED", `no stream stores ${subject}: provision the topology first`, {
      retryable: true,
      cause: err,
    });
  }
  return new BusError("PUBLISH_FAILED", `publish to ${subject} failed: ${message}`, {
    retryable: true,
    cause: err,
  });
}

/** Options for `Publisher`. */
export interface PublisherOptions {
  /** Publishes awaiting their ack at once; `publish` waits for room beyond it. Default 1 024. */
  readonly maxInFlight?: number;
  /** Per-message ack timeout. Default 10 000 ms. */
  readonly timeoutMs?: number;
}

/**
 * Pipelined JetStream publishing: many publishes in flight at once (bounded), each resolving with
 * its own ack, so throughput is not one round trip per message and memory stays bounded.
 */
export class Publisher {
  readonly #bus: Bus;
  readonly #maxInFlight: number;
  readonly #timeoutMs: number;
  #inFlight = 0;
  readonly #waiters: (() => void)[] = [];
  #idle: { promise: Promise<void>; resolve: () => void } | undefined;

  constructor(bus: Bus, options: PublisherOptions = {}) {
    this.#bus = bus;
    this.#maxInFlight = options.maxInFlight ?? 1_024;
    this.#timeoutMs = options.timeoutMs ?? 10_000;
  }

  /** Publishes awaiting their ack now. */
  get inFlight(): number {
    return this.#inFlight;
  }

  /** Waits for room, publishes, and resolves with the ack (or rejects with a `BusError`). */
  async publish(subject: string, data: Uint8Array, options: PublishOptions = {}): Promise<PubAck> {
    while (this.#inFlight >= this.#maxInFlight) {
      await new Promise<void>((resolve) => this.#waiters.push(resolve));
    }
    this.#inFlight++;
    try {
      return await publish(this.#bus, subject, data, { timeoutMs: this.#timeoutMs, ...options });
    } finally {
      this.#inFlight--;
      this.#waiters.shift()?.();
      if (this.#inFlight === 0 && this.#idle !== undefined) {
        this.#idle.resolve();
        this.#idle = undefined;
      }
    }
  }

  /** Resolves when every publish started so far has been acked or has failed. */
  async flush(): Promise<void> {
    if (this.#inFlight === 0) return;
    if (this.#idle === undefined) {
      let resolve!: () => void;
      const promise = new Promise<void>((r) => (resolve = r));
      this.#idle = { promise, resolve };
    }
    await this.#idle.promise;
  }
}

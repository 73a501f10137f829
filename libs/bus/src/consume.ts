import { nanos } from "@nats-io/transport-node";
import { AckPolicy, DeliverPolicy, type ConsumerConfig, type JsMsg } from "@nats-io/jetstream";
import type { Bus, BusLogger } from "./connect.js";
import { BusError } from "./errors.js";

/** How a handled message ended. */
export type Outcome = "ack" | "nak" | "term";

/** Options for `startConsumer`. */
export interface ConsumerOptions {
  readonly stream: string;
  /** Durable name: every replica that binds it shares the messages. */
  readonly durable: string;
  /** One subject filter (several need nats-server 2.10). Default: the whole stream. */
  readonly filterSubject?: string;
  /** Where a new durable starts. Default "all". */
  readonly deliverPolicy?: "all" | "new";
  /**
   * Redelivery after this long without an ack or a progress note (the consumer sends those while it
   * holds a message): how long a replica that stopped answering keeps its messages. Default 30 000 ms.
   */
  readonly ackWaitMs?: number;
  /** Unacked messages outstanding at most. Default 1 000. */
  readonly maxAckPending?: number;
  /** Deliveries before the server gives up on a message; -1 = unlimited. Default -1. */
  readonly maxDeliver?: number;
  /** Messages pulled per request. Default 256. */
  readonly batchSize?: number;
  /** Handlers running at once. 1 keeps the stream's order. Default 1. */
  readonly concurrency?: number;
  /**
   * Handles one message. Resolving acks it. Throwing an error with `retryable: true` naks it with
   * `nakDelayMs(deliveryCount)`; any other error terminates it (poison: never redelivered).
   */
  readonly handler: (msg: JsMsg) => Promise<void>;
  /** Delay before a retryable failure is redelivered. Default: 500 ms doubling per delivery, capped at 30 s. */
  readonly nakDelayMs?: (deliveryCount: number) => number;
  /** Called after each message with its outcome (for metrics). */
  readonly onOutcome?: (outcome: Outcome, msg: JsMsg, err?: unknown) => void;
  readonly logger?: BusLogger;
}

/** A running consumer loop. */
export interface RunningConsumer {
  /** Stops pulling, lets running handlers finish. Idempotent. */
  stop(): Promise<void>;
  /** Resolves when the loop has ended. */
  readonly done: Promise<void>;
}

const defaultNakDelay = (n: number) => Math.min(30_000, 500 * 2 ** Math.max(0, n - 1));

/**
 * `expires` of every pull a consumer makes (`consume()` options). nats.js also waits this long between
 * its checks that a consumer still exists after a reconnect: with its 30 s default, a nats-server
 * restart that took a few seconds to recover a large stream (its first check failing) left consumers
 * idle for 30-40 s (400-symbol soak); with 5 s they read on within ~5 s. Heartbeats come every 2.5 s.
 */
export const PULL_EXPIRES_MS = 5_000;

/**
 * Creates or updates a durable pull consumer with explicit acks. Idempotent. `fromSeq`: a consumer
 * made now starts at that stream sequence instead of `deliverPolicy` (one made again after it was
 * deleted goes on where its reader was).
 */
export async function ensureConsumer(
  bus: Bus,
  options: Omit<ConsumerOptions, "handler">,
  fromSeq?: number,
): Promise<void> {
  const config: Partial<ConsumerConfig> = {
    durable_name: options.durable,
    ack_policy: AckPolicy.Explicit,
    ...(fromSeq !== undefined
      ? { deliver_policy: DeliverPolicy.StartSequence, opt_start_seq: fromSeq }
      : { deliver_policy: options.deliverPolicy === "new" ? DeliverPolicy.New : DeliverPolicy.All }),
    ack_wait: nanos(options.ackWaitMs ?? 30_000),
    max_ack_pending: options.maxAckPending ?? 1_000,
    max_deliver: options.maxDeliver ?? -1,
    ...(options.filterSubject !== undefined ? { filter_subject: options.filterSubject } : {}),
  };
  try {
    const info = await bus.jsm.consumers.info(options.stream, options.durable).catch(() => undefined);
    if (info === undefined) await bus.jsm.consumers.add(options.stream, config);
    else {
      const { durable_name: _d, deliver_policy: _p, opt_start_seq: _s, ...updatable } = config;
      await bus.jsm.consumers.update(options.stream, options.durable, updatable);
    }
  } catch (err) {
    throw new BusError(
      "STREAM_CONFIG",
      `cannot create consumer ${options.durable} on ${options.stream}: ${err instanceof Error ? err.message : String(err)}`,
      { cause: err },
    );
  }
}

/** A message held longer than this since its delivery or its last progress note gets another. */
const noteInterval = (ackWaitMs: number) => Math.max(50, Math.floor(ackWaitMs / 4));

/** A message delivered and not yet acked, nak'ed or terminated. */
interface Held {
  readonly msg: JsMsg;
  /** When the server last restarted its ack wait: the delivery, or the last `working()`. */
  touchedAt: number;
}

/**
 * Binds a durable pull consumer and runs `handler` on every message, ending each in exactly one of
 * ack, nak with a delay (retryable errors) or term (poison), chosen from the error.
 *
 * Every message this consumer holds, waiting for one of the `concurrency` handlers (at most
 * `maxAckPending` of them) or in its handler, gets a progress note (`working()`, which restarts its
 * ack wait) every quarter of the ack wait. So the ack wait is how long a replica that stopped
 * answering (killed, hung) keeps its messages, not a limit on waiting plus handling: a message held
 * longer used to be delivered again (to this or another replica) and handled twice (for the
 * analyzer, an LLM call paid twice, behind slow calls or a long Retry-After). A handler must end on
 * its own (every wait in it bounded). Messages still waiting when the consumer stops are left to
 * their ack wait, as a killed replica's are: a nak would have nats-server deliver them again into
 * this consumer's pull requests still open (up to `PULL_EXPIRES_MS`), where nobody reads them (tried:
 * of four nak'ed messages one never reached the next replica and one came twice).
 */
export async function startConsumer(bus: Bus, options: ConsumerOptions): Promise<RunningConsumer> {
  await ensureConsumer(bus, options);
  const concurrency = Math.max(1, options.concurrency ?? 1);
  const nakDelay = options.nakDelayMs ?? defaultNakDelay;
  const noteEvery = noteInterval(options.ackWaitMs ?? 30_000);
  const log = options.logger;
  let stopped = false;
  let stopCurrent: (() => void) | undefined;
  const running = new Set<Promise<void>>();
  const held = new Set<Held>();
  /** The latest stream sequence delivered here. */
  let lastSeq = 0;
  const waiting: Held[] = [];

  const handle = async (msg: JsMsg) => {
    try {
      await options.handler(msg);
      msg.ack();
      options.onOutcome?.("ack", msg);
    } catch (err) {
      const retryable = (err as { retryable?: unknown } | undefined)?.retryable === true;
      if (retryable) {
        msg.nak(nakDelay(msg.info.deliveryCount));
        options.onOutcome?.("nak", msg, err);
      } else {
        // No reason text: nats-server 2.9 does not understand "+TERM <reason>" and would leave it pending.
        msg.term();
        log?.error(
          { err, subject: msg.subject, seq: msg.seq, stream: options.stream },
          "terminated a message that cannot be processed",
        );
        options.onOutcome?.("term", msg, err);
      }
    }
  };

  /** Starts handlers for waiting messages, in delivery order, while fewer than `concurrency` run. */
  const pump = () => {
    while (!stopped && running.size < concurrency && waiting.length > 0) {
      const h = waiting.shift()!;
      const p = handle(h.msg).finally(() => {
        held.delete(h);
        running.delete(p);
        pump();
      });
      running.add(p);
    }
  };
  const notes = setInterval(() => {
    const now = Date.now();
    for (const h of held)
      if (now - h.touchedAt >= noteEvery) {
        h.msg.working();
        h.touchedAt = now;
      }
  }, noteEvery);
  notes.unref();

  const loop = async () => {
    for (let bound = true; !stopped; bound = false) {
      try {
        // A consumer deleted meanwhile (by an operator, or with its stream) is made again: nats.js
        // would otherwise wait for someone else to make it, forever.
        if (!bound) await ensureConsumer(bus, options, lastSeq > 0 ? lastSeq + 1 : undefined);
        const consumer = await bus.js.consumers.get(options.stream, options.durable);
        const messages = await consumer.consume({
          max_messages: options.batchSize ?? 256,
          expires: PULL_EXPIRES_MS,
          abort_on_missing_resource: true,
        });
        stopCurrent = () => void messages.stop();
        if (stopped) messages.stop();
        for await (const msg of messages) {
          if (msg.seq > lastSeq) lastSeq = msg.seq;
          const h: Held = { msg, touchedAt: Date.now() };
          held.add(h);
          waiting.push(h);
          pump();
          if (stopped) break;
        }
        stopCurrent = undefined;
      } catch (err) {
        if (stopped) break;
        log?.warn(
          { err, stream: options.stream, durable: options.durable },
          "consumer interrupted; rebinding",
        );
        await new Promise((r) => setTimeout(r, 1_000));
      }
    }
    for (const h of waiting.splice(0)) held.delete(h);
    await Promise.allSettled(running);
    clearInterval(notes);
  };
  const done = loop();
  let stopping: Promise<void> | undefined;
  return {
    done,
    stop: () =>
      (stopping ??= (async () => {
        stopped = true;
        stopCurrent?.();
        await done;
        // Acks are fire-and-forget: flush so the server has them before we report stopped.
        if (!bus.nc.isClosed()) await bus.nc.flush().catch(() => undefined);
      })()),
  };
}

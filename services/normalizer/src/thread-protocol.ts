import type { BatchReader, BatchWriter } from "./batch.js";
import type { Handled } from "./port.js";
import type { ClosedWindow, Output, ProcessorEvents, ProcessorOptions } from "./symbol.js";

/**
 * What the normalizer's main thread and its processing thread say to each other. Each message is a
 * batch: commands (main → thread) or answers (thread → main), one after another, each starting with
 * its op and the symbol's slot (the order `open` was called in).
 */

/** Commands, main → thread. */
export const CMD = {
  /** symbol: str */
  open: 1,
  /** state: an index into the message's extras */
  restore: 2,
  /** kind: str, seq: f64, receiveTimeUs: f64, data: bytes → ANS.handled */
  handle: 3,
  /** kind: str, seq: f64, data: bytes */
  refill: 4,
  /** → ANS.refillEnded */
  endRefill: 5,
  /** → ANS.handled */
  closeWindows: 6,
  /** → ANS.serialized */
  serialize: 7,
} as const;

/** Answers, thread → main. */
export const ANS = {
  /** restored: u8, then the counts */
  restored: 1,
  /** seq: f64, then `writeHandled`'s fields */
  handled: 2,
  /** whole: u8 */
  refillEnded: 3,
  /** the state's JSON: an index into the message's extras */
  serialized: 4,
} as const;

/** A batch of either direction. */
export interface Batch {
  /** The bytes, moved to the receiver; the first `length` count. */
  readonly bytes: ArrayBuffer;
  readonly length: number;
  /** What does not go as bytes (states, checkpoints' JSON), referred to by index. */
  readonly extras: readonly unknown[];
  /** A batch from the other side, read and given back to write the next one into. */
  readonly returned: ArrayBuffer | undefined;
}

/** An answer batch, with the processors' events of its commands. */
export interface AnswerBatch extends Batch {
  readonly events: EventLog;
}

/** The processing thread's V8 heap in bytes, which the main thread's metrics do not see. */
export interface ThreadHeap {
  readonly used: number;
  readonly committed: number;
  readonly external: number;
}

/** A message of its own from the processing thread, every `HEAP_REPORT_MS` (and once at start). */
export interface HeapReport {
  readonly heap: ThreadHeap;
}

/** How often the processing thread reports its heap: about a metrics scrape's interval. */
export const HEAP_REPORT_MS = 5_000;

/** The processing thread's first message: its code is loaded. */
export const READY = "ready";

/** What the processing thread starts with. */
export interface ThreadData {
  readonly options: ProcessorOptions;
}

/** A processor's counts after a command: what the main thread's `SymbolPort` reports. */
export interface Counts {
  needsSnapshot: boolean;
  bookLevels: number;
  bufferedDiffs: number;
  refillFrom: number | undefined;
}

/** Writes the counts (a `SymbolProcessor` is one: its getters are read, nothing is made). */
export function writeCounts(w: BatchWriter, c: Readonly<Counts>): void {
  w.u8(c.needsSnapshot ? 1 : 0);
  w.u32(c.bookLevels);
  w.u32(c.bufferedDiffs);
  w.f64(c.refillFrom ?? -1);
}

export function readCounts(r: BatchReader, into: Counts): void {
  into.needsSnapshot = r.u8() === 1;
  into.bookLevels = r.u32();
  into.bufferedDiffs = r.u32();
  const from = r.f64();
  into.refillFrom = from < 0 ? undefined : from;
}

const ERROR = 1;
const RESYNC = 2;
/** `book` is one of the outputs' bytes (its index follows), else its own bytes follow. */
const BOOK_OUTPUT = 4;
const BOOK_BYTES = 8;

export function writeHandled(w: BatchWriter, h: Handled): void {
  const bookAt = h.book === undefined ? -1 : h.outputs.findIndex((o) => o.data === h.book);
  w.u8(
    (h.error !== undefined ? ERROR : 0) |
      (h.resync ? RESYNC : 0) |
      (bookAt >= 0 ? BOOK_OUTPUT : h.book !== undefined ? BOOK_BYTES : 0),
  );
  w.u32(h.outputs.length);
  for (const o of h.outputs) {
    w.str(o.subject);
    w.str(o.msgId);
    w.bytes(o.data);
  }
  if (bookAt >= 0) w.u32(bookAt);
  else if (h.book !== undefined) w.bytes(h.book);
  if (h.error !== undefined) {
    w.str(h.error.code);
    w.str(h.error.message);
  }
}

/** Reads what `writeHandled` wrote; the bytes are copies, so the batch can be given back at once. */
export function readHandled(r: BatchReader): Handled {
  const flags = r.u8();
  const n = r.u32();
  const outputs: Output[] = new Array<Output>(n);
  for (let i = 0; i < n; i++) outputs[i] = { subject: r.str(), msgId: r.str(), data: Buffer.from(r.bytes()) };
  const book =
    (flags & BOOK_OUTPUT) !== 0
      ? outputs[r.u32()]!.data
      : (flags & BOOK_BYTES) !== 0
        ? Buffer.from(r.bytes())
        : undefined;
  const error = (flags & ERROR) !== 0 ? { code: r.str(), message: r.str() } : undefined;
  return { outputs, resync: (flags & RESYNC) !== 0, book, error };
}

/**
 * The processors' events of one batch, kept on the processing thread and replayed on the main
 * thread (where the metrics are) in the same order as far as each kind goes.
 */
export interface EventLog {
  /** Raw messages handled, by kind (any subject token, `__proto__` included: a Map). */
  raw: Map<string, number>;
  bookUpdates: number;
  bookSnapshots: number;
  refreshes: number;
  bufferDrops: number;
  /** The events with arguments, in order. */
  calls: (["gap", string, boolean] | ["tradeOutOfOrder", "late" | "repeat"] | ["window", ClosedWindow])[];
}

/** Keeps the events of the processors it is given to (as their `ProcessorEvents`). */
export class EventRecorder implements ProcessorEvents {
  #log: EventLog = EventRecorder.#empty();

  static #empty(): EventLog {
    return { raw: new Map(), bookUpdates: 0, bookSnapshots: 0, refreshes: 0, bufferDrops: 0, calls: [] };
  }

  raw(kind: string): void {
    this.#log.raw.set(kind, (this.#log.raw.get(kind) ?? 0) + 1);
  }

  bookUpdate(): void {
    this.#log.bookUpdates++;
  }
  bookSnapshot(): void {
    this.#log.bookSnapshots++;
  }
  refresh(): void {
    this.#log.refreshes++;
  }
  bufferDrop(): void {
    this.#log.bufferDrops++;
  }
  gap(reason: string, crossed: boolean): void {
    this.#log.calls.push(["gap", reason, crossed]);
  }
  tradeOutOfOrder(outcome: "late" | "repeat"): void {
    this.#log.calls.push(["tradeOutOfOrder", outcome]);
  }
  window(w: ClosedWindow): void {
    const { interval, closeReason, lateEventCount, endTimeMs } = w;
    this.#log.calls.push(["window", { interval, closeReason, lateEventCount, endTimeMs }]);
  }

  /** The events since the last `take`. */
  take(): EventLog {
    const log = this.#log;
    this.#log = EventRecorder.#empty();
    return log;
  }
}

/** Tells `events` what a recorder kept. */
export function replayEvents(log: EventLog, events: ProcessorEvents): void {
  for (const [kind, n] of log.raw) for (let i = 0; i < n; i++) events.raw?.(kind);
  for (let i = 0; i < log.bookUpdates; i++) events.bookUpdate?.();
  for (let i = 0; i < log.bookSnapshots; i++) events.bookSnapshot?.();
  for (let i = 0; i < log.refreshes; i++) events.refresh?.();
  for (let i = 0; i < log.bufferDrops; i++) events.bufferDrop?.();
  for (const call of log.calls) {
    if (call[0] === "gap") events.gap?.(call[1], call[2]);
    else if (call[0] === "tradeOutOfOrder") events.tradeOutOfOrder?.(call[1]);
    else events.window?.(call[1]);
  }
}

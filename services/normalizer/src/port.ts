import { FrameError } from "@l2flow/binance";
import { L2flowError } from "@l2flow/runtime";
import {
  SymbolProcessor,
  type Effects,
  type Output,
  type ProcessorEvents,
  type ProcessorOptions,
  type ProcessorState,
} from "./symbol.js";

/** What one raw message, or closing the windows, gave back. */
export interface Handled {
  readonly outputs: readonly Output[];
  /** The book lost sync: a new snapshot is needed. */
  readonly resync: boolean;
  /** The latest book snapshot's bytes, when one was published (for KV `md_book`). */
  readonly book: Uint8Array | undefined;
  /** Why the message could not be used: nothing of it was applied and it gave no outputs. */
  readonly error: { readonly code: string; readonly message: string } | undefined;
}

/** A symbol's answers, in the order of the calls that asked for them. */
export interface PortListener {
  /** After `handle` (`seq`: the message's stream sequence) and `closeWindows` (`seq` 0). */
  handled(h: Handled, seq: number): void;
}

/**
 * One symbol's `SymbolProcessor`, in this thread or on the processing thread. Calls apply in the
 * order they are made; what they give back comes through the listener or the promise, in that order
 * too, so a `serialize` answers with the state after every `handle` made before it and after their
 * outputs went to the listener. The counts are as of the last answer.
 */
export interface SymbolPort {
  readonly bookLevels: number;
  readonly bufferedDiffs: number;
  readonly needsSnapshot: boolean;
  /** As `SymbolProcessor.refillFrom`; cleared at once by `endRefill`. */
  readonly refillFrom: number | undefined;
  /** As `SymbolProcessor.restore`. */
  restore(state: ProcessorState): Promise<boolean>;
  refill(kind: string, data: Uint8Array, seq: number): void;
  /** As `SymbolProcessor.endRefill`; `done` gets its answer. */
  endRefill(done?: (whole: boolean) => void): void;
  handle(kind: string, data: Uint8Array, receiveTimeUs: number, seq: number): void;
  closeWindows(): void;
  /** The state as JSON (`SymbolProcessor.serialize`). */
  serialize(): Promise<string>;
}

/** Where the symbols' processors run. */
export interface ProcessorHost {
  open(symbol: string, listener: PortListener): SymbolPort;
  /** Raw messages and window closes handed over and not answered yet. */
  readonly pending: number;
  /** Resolves once at most `n` are pending (or the host failed). */
  below(n: number): Promise<void>;
  /** Resolves once nothing is pending. */
  idle(): Promise<void>;
  /** Why processing stopped for good, if it did (the thread died). */
  readonly failure: Error | undefined;
  close(): Promise<void>;
}

/** Runs one raw message through a processor; an unusable one gives its error and no outputs. */
export function handleRaw(
  proc: SymbolProcessor,
  kind: string,
  data: Uint8Array,
  receiveTimeUs: number,
  seq: number,
): Handled {
  const outputs: Output[] = [];
  const fx: Effects = { resync: false, book: undefined };
  try {
    proc.handle(kind, data, receiveTimeUs, outputs, fx, seq);
  } catch (err) {
    const code = err instanceof FrameError || err instanceof L2flowError ? err.code : "UNEXPECTED";
    const message = err instanceof Error ? err.message : String(err);
    return { outputs: [], resync: false, book: undefined, error: { code, message } };
  }
  return { outputs, resync: fx.resync, book: fx.book, error: undefined };
}

/** The windows a processor closes when its symbol went quiet. */
export function closeWindowsOf(proc: SymbolProcessor): Handled {
  const outputs: Output[] = [];
  proc.closeWindows(outputs);
  return { outputs, resync: false, book: undefined, error: undefined };
}

/** The processors in this thread, answering at once (`NORMALIZER_THREAD=off`). */
export class LocalHost implements ProcessorHost {
  readonly #options: ProcessorOptions;
  readonly #events: ProcessorEvents;

  constructor(options: ProcessorOptions, events: ProcessorEvents) {
    this.#options = options;
    this.#events = events;
  }

  open(symbol: string, listener: PortListener): SymbolPort {
    const proc = new SymbolProcessor(symbol, this.#options, this.#events);
    return {
      get bookLevels() {
        return proc.bookLevels;
      },
      get bufferedDiffs() {
        return proc.bufferedDiffs;
      },
      get needsSnapshot() {
        return proc.needsSnapshot;
      },
      get refillFrom() {
        return proc.refillFrom;
      },
      restore: (state) => Promise.resolve(proc.restore(state)),
      refill: (kind, data, seq) => proc.refill(kind, data, seq),
      endRefill: (done) => {
        const whole = proc.endRefill();
        done?.(whole);
      },
      handle: (kind, data, receiveTimeUs, seq) =>
        listener.handled(handleRaw(proc, kind, data, receiveTimeUs, seq), seq),
      closeWindows: () => listener.handled(closeWindowsOf(proc), 0),
      serialize: () => Promise.resolve(JSON.stringify(proc.serialize())),
    };
  }

  get pending(): number {
    return 0;
  }

  below(): Promise<void> {
    return Promise.resolve();
  }

  idle(): Promise<void> {
    return Promise.resolve();
  }

  get failure(): Error | undefined {
    return undefined;
  }

  close(): Promise<void> {
    return Promise.resolve();
  }
}

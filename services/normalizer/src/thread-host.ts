import { Worker } from "node:worker_threads";
import { BatchReader, BatchWriter } from "./batch.js";
import type { PortListener, ProcessorHost, SymbolPort } from "./port.js";
import type { ProcessorEvents, ProcessorOptions, ProcessorState } from "./symbol.js";
import {
  ANS,
  CMD,
  READY,
  readCounts,
  readHandled,
  replayEvents,
  type AnswerBatch,
  type Batch,
  type Counts,
  type HeapReport,
  type ThreadData,
  type ThreadHeap,
} from "./thread-protocol.js";

/**
 * A batch goes to the thread at this size without waiting for the end of the event loop's turn, so
 * the thread works on the start of a long read from the socket while the rest is handed over.
 */
const SEND_BYTES = 64 * 1024;
/** Command batches the thread sent back, kept for reuse. */
const SPARE_BATCHES = 4;

interface Waiter {
  readonly n: number;
  readonly resolve: () => void;
}

/** What the host tells its owner besides the answers. */
export interface ThreadHooks {
  /** The thread died: nothing is processed after. */
  readonly onFailure: (err: Error) => void;
  /** The thread's heap, every `HEAP_REPORT_MS`. */
  readonly onHeap?: (heap: ThreadHeap) => void;
}

/** Starts the processing thread. */
export async function startProcessingThread(
  options: ProcessorOptions,
  events: ProcessorEvents,
  hooks: ThreadHooks,
): Promise<ProcessorHost> {
  const data: ThreadData = { options };
  const here = import.meta.url;
  // Under the tests the sources are TypeScript: the thread loads them the way the test runner does.
  const worker = here.endsWith(".ts")
    ? new Worker(
        `import("tsx/esm/api").then(({ register }) => { register(); return import(${JSON.stringify(new URL("./thread-main.ts", here).href)}); });`,
        { eval: true, workerData: data, execArgv: ["--conditions=l2flow-source"] },
      )
    : new Worker(new URL("./thread-main.js", here), { workerData: data });
  // Its code loaded, it says so; until then an error or an exit is a failure to start.
  let onMessage: (m: unknown) => void = () => undefined;
  let onError: (err: Error) => void = () => undefined;
  let onExit: (code: number) => void = () => undefined;
  try {
    await new Promise<void>((resolve, reject) => {
      onMessage = (m) => (m === READY ? resolve() : reject(new Error("the processing thread did not start")));
      onError = reject;
      onExit = (code) => reject(new Error(`the processing thread exited (code ${code})`));
      worker.once("message", onMessage).once("error", onError).once("exit", onExit);
    });
  } catch (err) {
    await worker.terminate();
    throw err;
  }
  worker.off("error", onError).off("exit", onExit);
  return new ThreadHost(worker, events, hooks);
}

class ThreadPort implements SymbolPort {
  readonly counts: Counts = { needsSnapshot: true, bookLevels: 0, bufferedDiffs: 0, refillFrom: undefined };
  readonly restores: { resolve: (ok: boolean) => void; reject: (err: Error) => void }[] = [];
  readonly serializes: { resolve: (json: string) => void; reject: (err: Error) => void }[] = [];
  readonly refillsEnded: ((whole: boolean) => void)[] = [];

  constructor(
    readonly host: ThreadHost,
    readonly slot: number,
    readonly listener: PortListener,
  ) {}

  get bookLevels() {
    return this.counts.bookLevels;
  }
  get bufferedDiffs() {
    return this.counts.bufferedDiffs;
  }
  get needsSnapshot() {
    return this.counts.needsSnapshot;
  }
  get refillFrom() {
    return this.counts.refillFrom;
  }

  restore(state: ProcessorState): Promise<boolean> {
    return new Promise((resolve, reject) => {
      if (this.host.failure !== undefined) return reject(this.host.failure);
      this.restores.push({ resolve, reject });
      this.host.command(CMD.restore, this.slot).u32(this.host.extra(state));
      this.host.sent();
    });
  }

  refill(kind: string, data: Uint8Array, seq: number): void {
    const w = this.host.command(CMD.refill, this.slot);
    w.str(kind);
    w.f64(seq);
    w.bytes(data);
    this.host.sent();
  }

  endRefill(done?: (whole: boolean) => void): void {
    this.counts.refillFrom = undefined;
    this.refillsEnded.push(done ?? (() => undefined));
    this.host.command(CMD.endRefill, this.slot);
    this.host.sent();
  }

  handle(kind: string, data: Uint8Array, receiveTimeUs: number, seq: number): void {
    const w = this.host.command(CMD.handle, this.slot);
    w.str(kind);
    w.f64(seq);
    w.f64(receiveTimeUs);
    w.bytes(data);
    this.host.sent(true);
  }

  closeWindows(): void {
    this.host.command(CMD.closeWindows, this.slot);
    this.host.sent(true);
  }

  serialize(): Promise<string> {
    return new Promise((resolve, reject) => {
      if (this.host.failure !== undefined) return reject(this.host.failure);
      this.serializes.push({ resolve, reject });
      this.host.command(CMD.serialize, this.slot);
      this.host.sent();
    });
  }

  fail(err: Error): void {
    for (const p of this.restores.splice(0)) p.reject(err);
    for (const p of this.serializes.splice(0)) p.reject(err);
  }
}

/**
 * The main thread's side of the processing thread: commands are written into a batch that goes to the
 * thread at the end of the event loop's turn (or once it is `SEND_BYTES` long); the answers come back
 * in command order, a batch at a time, and go to each symbol's listener.
 */
class ThreadHost implements ProcessorHost {
  readonly #worker: Worker;
  readonly #events: ProcessorEvents;
  readonly #hooks: ThreadHooks;
  readonly #ports: ThreadPort[] = [];
  readonly #spare: ArrayBuffer[] = [];
  /** Answer batches read, to give back to the thread with the next command batch. */
  readonly #read: ArrayBuffer[] = [];
  #w = new BatchWriter(SEND_BYTES * 2);
  #extras: unknown[] = [];
  #scheduled = false;
  #pending = 0;
  #waiters: Waiter[] = [];
  #failure: Error | undefined;
  #closed = false;

  constructor(worker: Worker, events: ProcessorEvents, hooks: ThreadHooks) {
    this.#worker = worker;
    this.#events = events;
    this.#hooks = hooks;
    worker.on("message", (m: AnswerBatch | HeapReport) => {
      if ("heap" in m) this.#hooks.onHeap?.(m.heap);
      else this.#answers(m);
    });
    worker.on("error", (err) => this.#fail(err));
    worker.on("exit", (code) => {
      if (!this.#closed) this.#fail(new Error(`the processing thread exited (code ${code})`));
    });
  }

  get pending(): number {
    return this.#pending;
  }

  get failure(): Error | undefined {
    return this.#failure;
  }

  open(symbol: string, listener: PortListener): SymbolPort {
    const port = new ThreadPort(this, this.#ports.length, listener);
    this.#ports.push(port);
    this.command(CMD.open, port.slot).str(symbol);
    this.sent();
    return port;
  }

  /** Starts a command in the batch; its fields follow, then `sent`. */
  command(op: number, slot: number): BatchWriter {
    this.#w.u8(op);
    this.#w.u32(slot);
    return this.#w;
  }

  /** Keeps a value to send with the batch; its index. */
  extra(value: unknown): number {
    return this.#extras.push(value) - 1;
  }

  /** A command is written (`answered`: one that counts as pending until its answer). */
  sent(answered = false): void {
    if (answered) this.#pending++;
    if (this.#w.length >= SEND_BYTES) this.#send();
    else if (!this.#scheduled) {
      this.#scheduled = true;
      setImmediate(() => {
        this.#scheduled = false;
        this.#send();
      });
    }
  }

  #send(): void {
    if (this.#w.length === 0 || this.#failure !== undefined) return;
    const length = this.#w.length;
    const bytes = this.#w.take(this.#spare.pop());
    const returned = this.#read.pop();
    const batch: Batch = { bytes, length, extras: this.#extras, returned };
    this.#extras = [];
    this.#worker.postMessage(batch, returned === undefined ? [bytes] : [bytes, returned]);
  }

  #answers(m: AnswerBatch): void {
    if (m.returned !== undefined && this.#spare.length < SPARE_BATCHES) this.#spare.push(m.returned);
    replayEvents(m.events, this.#events);
    const r = new BatchReader(m.bytes, m.length);
    while (!r.done) {
      const op = r.u8();
      const port = this.#ports[r.u32()]!;
      switch (op) {
        case ANS.handled: {
          const seq = r.f64();
          readCounts(r, port.counts);
          const h = readHandled(r);
          this.#pending--;
          port.listener.handled(h, seq);
          break;
        }
        case ANS.restored: {
          const ok = r.u8() === 1;
          readCounts(r, port.counts);
          port.restores.shift()?.resolve(ok);
          break;
        }
        case ANS.refillEnded:
          port.refillsEnded.shift()?.(r.u8() === 1);
          break;
        case ANS.serialized:
          port.serializes.shift()?.resolve(m.extras[r.u32()] as string);
          break;
        default:
          this.#fail(new Error(`the processing thread sent an unknown answer ${op}`));
          return;
      }
    }
    if (this.#read.length < SPARE_BATCHES) this.#read.push(m.bytes);
    this.#wake();
  }

  #wake(): void {
    if (this.#waiters.length === 0) return;
    const still: Waiter[] = [];
    for (const w of this.#waiters)
      if (this.#pending <= w.n || this.#failure !== undefined) w.resolve();
      else still.push(w);
    this.#waiters = still;
  }

  #fail(err: Error): void {
    if (this.#failure !== undefined) return;
    this.#failure = err;
    for (const p of this.#ports) p.fail(err);
    this.#wake();
    this.#hooks.onFailure(err);
  }

  below(n: number): Promise<void> {
    if (this.#pending <= n || this.#failure !== undefined) return Promise.resolve();
    return new Promise((resolve) => this.#waiters.push({ n, resolve }));
  }

  idle(): Promise<void> {
    this.#send();
    return this.below(0);
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    await this.#worker.terminate();
  }
}

import type { Signal, Window } from "@l2flow/contracts";

interface Pending {
  readonly window: Window;
  readonly history: readonly Window[];
  readonly resolve: (s: Signal) => void;
  readonly reject: (err: unknown) => void;
}

/**
 * Gathers windows of different symbols into batches for one LLM call each: a batch goes when it holds
 * `size` windows, when `waitMs` has passed since its first, or at once when a window of a symbol it
 * already holds arrives. Each caller gets its own window's signal.
 */
export class WindowBatcher {
  readonly #size: number;
  readonly #waitMs: number;
  readonly #run: (items: readonly { window: Window; history: readonly Window[] }[]) => Promise<Signal[]>;
  #batch: Pending[] = [];
  #timer: NodeJS.Timeout | undefined;

  constructor(
    size: number,
    waitMs: number,
    run: (items: readonly { window: Window; history: readonly Window[] }[]) => Promise<Signal[]>,
  ) {
    this.#size = size;
    this.#waitMs = waitMs;
    this.#run = run;
  }

  /** The signal for `window`, produced in a batch. */
  submit(window: Window, history: readonly Window[]): Promise<Signal> {
    if (this.#batch.some((p) => p.window.symbol === window.symbol)) this.#flush();
    return new Promise<Signal>((resolve, reject) => {
      this.#batch.push({ window, history, resolve, reject });
      if (this.#batch.length >= this.#size) this.#flush();
      else this.#timer ??= setTimeout(() => this.#flush(), this.#waitMs);
    });
  }

  #flush(): void {
    if (this.#timer !== undefined) clearTimeout(this.#timer);
    this.#timer = undefined;
    const batch = this.#batch;
    this.#batch = [];
    if (batch.length === 0) return;
    this.#run(batch).then(
      (signals) => batch.forEach((p, i) => p.resolve(signals[i]!)),
      (err: unknown) => batch.forEach((p) => p.reject(err)),
    );
  }
}

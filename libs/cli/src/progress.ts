import type { CliOutput } from "./io.js";

/** A one-line progress bar, drawn only when the output is a terminal; at most every 100 ms. */
export class ProgressBar {
  readonly #out: CliOutput;
  readonly #total: number;
  readonly #label: string;
  readonly #enabled: boolean;
  readonly #started = performance.now();
  #lastDraw = 0;

  constructor(out: CliOutput, total: number, label: string) {
    this.#out = out;
    this.#total = Math.max(1, total);
    this.#label = label;
    this.#enabled = out.isTTY === true;
  }

  /** Shows `done` of the total (throttled). */
  update(done: number): void {
    if (!this.#enabled) return;
    const now = performance.now();
    if (now - this.#lastDraw < 100 && done < this.#total) return;
    this.#lastDraw = now;
    const width = Math.max(10, Math.min(40, (this.#out.columns ?? 80) - 50));
    const ratio = Math.min(1, done / this.#total);
    const filled = Math.round(ratio * width);
    const seconds = ((now - this.#started) / 1000).toFixed(1);
    this.#out.write(
      `\r${this.#label} [${"#".repeat(filled)}${"-".repeat(width - filled)}] ${(ratio * 100).toFixed(0).padStart(3)}% ${done}/${this.#total} ${seconds}s`,
    );
  }

  /** Clears the bar's line. */
  done(): void {
    if (this.#enabled) this.#out.write("\r\x1b[2K");
  }
}

/**
 * Latency histograms on node:perf_hooks `createHistogram` (an HDR histogram: fixed relative error,
 * constant memory, so recording millions of values costs nothing and percentiles stay exact to 3
 * significant figures). Values are recorded in nanoseconds.
 */
import { createHistogram, type RecordableHistogram } from "node:perf_hooks";
import type { Metric } from "./types.js";

/** Percentiles of a histogram, in milliseconds. */
export interface LatencySummary {
  readonly count: number;
  readonly minMs: number;
  readonly meanMs: number;
  readonly p50Ms: number;
  readonly p90Ms: number;
  readonly p99Ms: number;
  readonly p999Ms: number;
  readonly maxMs: number;
}

/** Options for `LatencyHistogram`. */
export interface LatencyHistogramOptions {
  /** Largest value tracked; larger values are recorded as this. Default 120 s. */
  readonly highestNs?: number;
  /** Significant figures kept (1–5). Default 3. */
  readonly figures?: number;
}

/** An HDR latency histogram recording nanoseconds and reporting milliseconds. */
export class LatencyHistogram {
  readonly #h: RecordableHistogram;
  readonly #highest: number;

  constructor(options: LatencyHistogramOptions = {}) {
    this.#highest = options.highestNs ?? 120e9;
    this.#h = createHistogram({ lowest: 1, highest: this.#highest, figures: options.figures ?? 3 });
  }

  /** Records one latency in nanoseconds (clamped to [1, highestNs]). */
  recordNs(ns: number | bigint): void {
    const v = typeof ns === "bigint" ? Number(ns) : ns;
    this.#h.record(Math.min(this.#highest, Math.max(1, Math.round(v))));
  }

  /** Records the time elapsed since `startNs`, a `process.hrtime.bigint()` reading. */
  recordSince(startNs: bigint): void {
    this.recordNs(process.hrtime.bigint() - startNs);
  }

  /** Values recorded so far. */
  get count(): number {
    return this.#h.count;
  }

  /** Adds every value of another histogram. */
  add(other: LatencyHistogram): void {
    this.#h.add(other.#h);
  }

  /** Forgets every value. */
  reset(): void {
    this.#h.reset();
  }

  /** Count, min, mean, p50, p90, p99, p99.9 and max in milliseconds (all 0 when empty). */
  summary(): LatencySummary {
    const h = this.#h;
    const ms = (ns: number) => ns / 1e6;
    if (h.count === 0)
      return { count: 0, minMs: 0, meanMs: 0, p50Ms: 0, p90Ms: 0, p99Ms: 0, p999Ms: 0, maxMs: 0 };
    return {
      count: h.count,
      minMs: ms(h.min),
      meanMs: ms(h.mean),
      p50Ms: ms(h.percentile(50)),
      p90Ms: ms(h.percentile(90)),
      p99Ms: ms(h.percentile(99)),
      p999Ms: ms(h.percentile(99.9)),
      maxMs: ms(h.max),
    };
  }
}

/** p50, p99, p99.9 and max of a summary as report metrics (milliseconds), for a suite's row. */
export function latencyMetrics(s: LatencySummary, prefix = ""): Metric[] {
  return [
    { name: `${prefix}p50`, value: s.p50Ms, unit: "ms" },
    { name: `${prefix}p99`, value: s.p99Ms, unit: "ms" },
    { name: `${prefix}p99.9`, value: s.p999Ms, unit: "ms" },
    { name: `${prefix}max`, value: s.maxMs, unit: "ms" },
  ];
}

/**
 * (time, value) pairs kept in two growing `Float64Array`s: a measuring process recording one per
 * message leaves nothing per sample for the GC to trace or promote (an object per sample did, and
 * its collections paused the process that was timing the pipeline).
 */
export class TimedValues {
  #at = new Float64Array(4096);
  #values = new Float64Array(4096);
  #n = 0;

  /** Records `value` at time `at` (any clock; times must not decrease). */
  push(at: number, value: number): void {
    if (this.#n === this.#at.length) {
      const grow = (a: Float64Array) => {
        const b = new Float64Array(a.length * 2);
        b.set(a);
        return b;
      };
      this.#at = grow(this.#at);
      this.#values = grow(this.#values);
    }
    this.#at[this.#n] = at;
    this.#values[this.#n++] = value;
  }

  /** Pairs recorded. */
  get length(): number {
    return this.#n;
  }

  /** The values recorded at or after time `from`, in the order recorded. */
  valuesFrom(from: number): number[] {
    let i = 0;
    while (i < this.#n && this.#at[i]! < from) i++;
    return Array.from(this.#values.subarray(i, this.#n));
  }
}

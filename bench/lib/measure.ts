/**
 * Timing helpers: process.hrtime.bigint, warm-up runs, several repeats, median and spread. Candidates
 * that are compared run in the same process, round-robin in a rotating order, so drift (thermal,
 * other load, GC pressure) spreads over all of them instead of favouring whichever ran first.
 */
import { setFlagsFromString } from "node:v8";
import { runInNewContext } from "node:vm";

/** Summary of repeated samples (all in the samples' unit). */
export interface Stats {
  readonly n: number;
  readonly median: number;
  readonly min: number;
  readonly max: number;
  readonly mean: number;
  /** (max - min) / median; 0 for a single sample. */
  readonly spread: number;
}

/** Median, min, max, mean and relative spread of a non-empty list. */
export function stats(samples: readonly number[]): Stats {
  if (samples.length === 0) throw new RangeError("stats() needs at least one sample");
  const sorted = [...samples].sort((a, b) => a - b);
  const n = sorted.length;
  const median = n % 2 === 1 ? sorted[(n - 1) / 2]! : (sorted[n / 2 - 1]! + sorted[n / 2]!) / 2;
  const min = sorted[0]!;
  const max = sorted[n - 1]!;
  const mean = sorted.reduce((a, b) => a + b, 0) / n;
  return { n, median, min, max, mean, spread: median === 0 ? 0 : (max - min) / median };
}

/** Nanoseconds now, as a number (exact for about 104 days of uptime). */
export function nowNs(): number {
  return Number(process.hrtime.bigint());
}

/** Nanoseconds one synchronous call takes. */
export function timeNs(fn: () => void): number {
  const t0 = process.hrtime.bigint();
  fn();
  return Number(process.hrtime.bigint() - t0);
}

/** What one sample of a candidate measured. */
export interface Sample {
  /** Wall-clock nanoseconds of the timed region (`process.hrtime.bigint`). */
  readonly ns: number;
  /** Process CPU nanoseconds (user + system, all threads) over the same region, when measured. */
  readonly cpuNs?: number;
  /** Units of work done in the timed region. */
  readonly units: number;
}

/** Accumulates wall and CPU time over one or more timed regions of a sample. */
export class SampleTimer {
  ns = 0;
  cpuNs = 0;
  #t0 = 0n;
  #c0: NodeJS.CpuUsage = { user: 0, system: 0 };

  /** Starts a timed region. */
  start(): void {
    this.#c0 = process.cpuUsage();
    this.#t0 = process.hrtime.bigint();
  }

  /** Ends the timed region started last. */
  stop(): void {
    this.ns += Number(process.hrtime.bigint() - this.#t0);
    const c = process.cpuUsage(this.#c0);
    this.cpuNs += (c.user + c.system) * 1000;
  }
}

/** One candidate of a comparison. */
export interface Candidate {
  readonly name: string;
  /**
   * Runs one sample and returns what it measured (the candidate times its own region, so untimed
   * setup such as building a fresh book can happen inside).
   */
  sample(): Sample;
}

/** Options for `compare`. */
export interface CompareOptions {
  /** Untimed samples per candidate before measuring (JIT warm-up). Default 3. */
  readonly warmup?: number;
  /** Measured samples per candidate. Default 10. */
  readonly repeats?: number;
}

/** Per-candidate result of `compare`. */
export interface CandidateResult {
  readonly name: string;
  /** Units per second of wall time of each measured sample, in round order (index r = round r for every candidate). */
  readonly ratesPerS: readonly number[];
  readonly rate: Stats;
  /** Units per second of process CPU time, per sample in round order (empty when not measured). */
  readonly cpuRatesPerS: readonly number[];
  /** Units per sample (the same every time for a deterministic workload). */
  readonly units: number;
  /** Wall nanoseconds per unit at the median rate. */
  readonly nsPerUnit: number;
}

/**
 * Measures throughput of several candidates side by side: `warmup` rounds, then `repeats` rounds,
 * each round running every candidate once, starting with a different candidate each round.
 */
export function compare(candidates: readonly Candidate[], options: CompareOptions = {}): CandidateResult[] {
  const warmup = options.warmup ?? 3;
  const repeats = options.repeats ?? 10;
  const k = candidates.length;
  for (let w = 0; w < warmup; w++) for (const c of candidates) c.sample();
  const rates: number[][] = candidates.map(() => []);
  const cpuRates: number[][] = candidates.map(() => []);
  const units: number[] = candidates.map(() => 0);
  for (let r = 0; r < repeats; r++) {
    for (let j = 0; j < k; j++) {
      const i = (r + j) % k;
      const s = candidates[i]!.sample();
      rates[i]!.push(s.units / (s.ns / 1e9));
      if (s.cpuNs !== undefined && s.cpuNs > 0) cpuRates[i]!.push(s.units / (s.cpuNs / 1e9));
      units[i] = s.units;
    }
  }
  return candidates.map((c, i) => {
    const rate = stats(rates[i]!);
    return {
      name: c.name,
      ratesPerS: rates[i]!,
      rate,
      cpuRatesPerS: cpuRates[i]!,
      units: units[i]!,
      nsPerUnit: 1e9 / rate.median,
    };
  });
}

let gcFn: (() => void) | undefined;

/**
 * Runs a full garbage collection. Works without `--expose-gc` by enabling the flag at run time and
 * taking `gc` from a fresh context (V8 installs it there once the flag is set).
 */
export function forceGc(): void {
  if (gcFn === undefined) {
    const g = (globalThis as { gc?: () => void }).gc;
    if (typeof g === "function") gcFn = g;
    else {
      setFlagsFromString("--expose-gc");
      gcFn = runInNewContext("gc") as () => void;
    }
  }
  gcFn();
  gcFn();
}

/**
 * A full collection, then a pause while V8's helper threads finish sweeping. Call it between untimed
 * setup and a timed region: right after a forced GC the sweeper threads compete with the timed code
 * for cores (measured here: a 2–3× slower order-book replay with a 150 MB heap), which would charge
 * the setup's garbage to whatever is measured next. The pause grows with the heap (20 ms + 1 ms per
 * 2 MiB in use).
 */
export function settle(): void {
  forceGc();
  const ms = 20 + Math.ceil(process.memoryUsage().heapUsed / 2 ** 21);
  Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);
}

/** Heap in use after a full collection, in bytes: subtract two of these to size what a structure retains. */
export function settledHeapBytes(): number {
  forceGc();
  return process.memoryUsage().heapUsed;
}

/**
 * Ratio of two candidates' rates (by wall or CPU time), round by round (`a` / `b` within each round, then the median):
 * load that changes during a run hits both sides of each pair alike, so this is steadier than the
 * ratio of the two medians.
 */
export function pairedRatio(a: CandidateResult, b: CandidateResult, clock: "wall" | "cpu" = "wall"): Stats {
  const x = clock === "wall" ? a.ratesPerS : a.cpuRatesPerS;
  const y = clock === "wall" ? b.ratesPerS : b.cpuRatesPerS;
  const n = Math.min(x.length, y.length);
  if (n === 0) throw new RangeError(`pairedRatio: no ${clock} samples for ${a.name} and ${b.name}`);
  const ratios: number[] = [];
  for (let r = 0; r < n; r++) ratios.push(x[r]! / y[r]!);
  return stats(ratios);
}

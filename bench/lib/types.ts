/**
 * The contract between `bench/run.ts` and a suite. A suite is a module in `bench/suites/<name>.ts`
 * that exports `name`, `title` and `run(ctx)` (and optionally `order`); see bench/README.md.
 */

/** One measured value in a row. */
export interface Metric {
  /** Column name, e.g. "level updates/s". Rows of one group share columns by this name. */
  readonly name: string;
  /** The value (a number is formatted by its unit; a string is printed as is). */
  readonly value: number | string;
  /** Unit of a numeric value: "/s", "ms", "µs", "ns", "B", "MB", "x", "%", or "" for a plain count. */
  readonly unit?: string;
  /** Relative spread of the repeats, (max - min) / median, as a fraction (0.03 = ±3 %). */
  readonly spread?: number;
}

/** One line of a result table. */
export interface Row {
  /** Table this row belongs to (one Markdown table per group, in order of first appearance). */
  readonly group?: string;
  /** First column: what was measured. */
  readonly label: string;
  readonly metrics: readonly Metric[];
  /** Free text printed in the last column. */
  readonly notes?: string;
}

/** A pass/fail statement a suite makes about its own run (e.g. "all books agree"). */
export interface Check {
  readonly name: string;
  readonly pass: boolean;
  readonly message: string;
}

/** What a suite returns. */
export interface SuiteResult {
  readonly rows: readonly Row[];
  readonly checks: readonly Check[];
  /** Paragraphs printed under the suite's tables: method, inputs, caveats. */
  readonly notes?: readonly string[];
  /** Anything else worth keeping in the JSON (raw samples, parameters); not printed. */
  readonly data?: Readonly<Record<string, unknown>>;
}

/** What `run.ts` passes to every suite. */
export interface SuiteContext {
  /** `--quick`: fewer repeats and shorter runs, for a smoke test of the harness. */
  readonly quick: boolean;
  /** Absolute path of the repository root. */
  readonly repoRoot: string;
  /** Progress output (stderr, so stdout stays the Markdown report). */
  log(message: string): void;
  /** Aborted on SIGINT: long suites should stop early and return what they have. */
  readonly signal: AbortSignal;
}

/** The shape of a suite module. */
export interface SuiteModule {
  /** Short id used by `--only` (the file name without `.ts` by convention). */
  readonly name: string;
  /** Heading of the suite's section in the report. */
  readonly title: string;
  /** Position in the report (lower first; default 100, ties by name). */
  readonly order?: number;
  run(ctx: SuiteContext): Promise<SuiteResult>;
}

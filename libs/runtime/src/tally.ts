import type { Counter, LabelValues } from "prom-client";

/** What a counter's `collect` hook is, as prom-client calls it before every read. */
type Collect = (this: unknown) => unknown;

const tallies = new WeakMap<object, Tally[]>();

/**
 * One label set of a prom-client `Counter`, counted on a per-message path: `inc()` adds to a number,
 * and the sum goes into the counter when it is read (prom-client calls a metric's `collect` before
 * every scrape and every `get()`). prom-client's own `inc()` hashes the label set, validates the labels
 * and the value, every call: ~4 % of ingest's thread at 45k frames/s. A scrape sees every count made
 * before it, as with `inc()`.
 */
export class Tally {
  #n = 0;
  readonly #counter: Counter<string>;
  readonly #labels: LabelValues<string>;

  constructor(counter: Counter<string>, labels: LabelValues<string> = {}) {
    this.#counter = counter;
    this.#labels = labels;
    let list = tallies.get(counter);
    if (list === undefined) {
      const all: Tally[] = (list = []);
      tallies.set(counter, all);
      const target = counter as unknown as { collect?: Collect };
      const before = target.collect;
      target.collect = function (this: unknown) {
        for (const t of all) t.#flush();
        return before?.call(this);
      };
    }
    list.push(this);
  }

  /** Counts `by` (default 1; a whole, non-negative number, as a counter takes). */
  inc(by = 1): void {
    this.#n += by;
  }

  #flush(): void {
    if (this.#n === 0) return;
    const n = this.#n;
    this.#n = 0;
    this.#counter.inc(this.#labels, n);
  }
}

/**
 * The tallies of `counter` by the value of one label (beside the `fixed` labels, default none), each
 * made on its value's first use: `talliesBy(frames, "kind")("trade").inc()`.
 */
export function talliesBy(
  counter: Counter<string>,
  label: string,
  fixed: LabelValues<string> = {},
): (value: string) => Tally {
  const byValue = new Map<string, Tally>();
  return (value) => {
    let t = byValue.get(value);
    if (t === undefined) byValue.set(value, (t = new Tally(counter, { ...fixed, [label]: value })));
    return t;
  };
}

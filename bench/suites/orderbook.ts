/**
 * Order book throughput (issue 8 item 1, issue 4 item 1): l2flow's `OrderBook` against tardis-dev's
 * and ccxt's on the recorded diffs of both recordings, same input, same process, reading the top 10
 * of each side after every diff as the normalizer does.
 */
import { OrderBook } from "@l2flow/orderbook";
import { pro as ccxtPro } from "ccxt";
import { OrderBook as TardisBook, type BookChange, type BookPriceLevel } from "tardis-dev";
import {
  compare,
  pairedRatio,
  SampleTimer,
  stats,
  settle,
  settledHeapBytes,
  type Candidate,
  type CandidateResult,
} from "../lib/measure.js";
import { depthWorkload, RECORDINGS, type DepthWorkload, type StrLevel } from "../lib/recorded.js";
import type { Check, Metric, Row, SuiteContext, SuiteResult } from "../lib/types.js";

/** Suite id for `--only`. */
export const name = "orderbook";
/** Report heading. */
export const title = "Order book: level updates per second on recorded Binance diffs";
/** First in the report. */
export const order = 10;

/** Levels read per side after every diff. */
const TOP = 10;
/** The target of issues 4 and 8: at least this many times tardis-dev's rate. */
const TARGET_VS_TARDIS = 3;
/** Rates measured on this machine before l2flow had a book (issue 8), by recording label prefix. */
const ANCHORS: Readonly<Record<string, { tardis: number; ccxt: number }>> = {
  BTCUSDT: { tardis: 0.9e6, ccxt: 0.28e6 },
  "10 symbols": { tardis: 0.32e6, ccxt: 0.24e6 },
};

/** ccxt's order book as its Binance watcher creates it (`Exchange.orderBook()`). */
type CcxtBook = ReturnType<InstanceType<typeof ccxtPro.binance>["orderBook"]>;
type CcxtRow = [number, number];

/** Keeps the top-N reads alive so the compiler cannot drop them. */
const keep: unknown[] = new Array<unknown>(16);

/** A book implementation under test: builds per-symbol books, then runs the timed diff loop. */
interface Impl<B> {
  readonly name: string;
  /** What this implementation is given and how it reads the top (printed in the notes). */
  readonly input: string;
  build(w: DepthWorkload): B[];
  /** Applies every diff in order and reads the top `TOP` of both sides after each (timed). */
  replay(w: DepthWorkload, books: B[]): void;
  /** Top `n` levels per side as numbers, best first (for the agreement check, untimed). */
  top(book: B, n: number): { bids: number[][]; asks: number[][] };
}

const ours: Impl<OrderBook> = {
  name: "l2flow",
  input:
    "the exchange's `[price, qty]` strings; each price is parsed once per level update inside the book; " +
    "`topBids(10)`/`topAsks(10)` return fresh arrays of `{price, quantity}` holding the exchange's exact strings",
  build(w) {
    return w.snapshots.map((s) => {
      const b = new OrderBook();
      b.applySnapshot(s.bids, s.asks, s.lastUpdateId);
      return b;
    });
  },
  replay(w, books) {
    const diffs = w.diffs;
    for (let k = 0; k < diffs.length; k++) {
      const d = diffs[k]!;
      const b = books[d.sym]!;
      b.applyDiff(d.bids, d.asks, d.finalUpdateId);
      keep[k & 15] = b.topBids(TOP);
      keep[(k + 8) & 15] = b.topAsks(TOP);
    }
  },
  top(book, n) {
    const num = (l: { price: string; quantity: string }) => [+l.price, +l.quantity];
    return { bids: book.topBids(n).map(num), asks: book.topAsks(n).map(num) };
  },
};

const EPOCH = new Date(0);

function tardisLevels(levels: readonly StrLevel[]): BookPriceLevel[] {
  const out = new Array<BookPriceLevel>(levels.length);
  for (let i = 0; i < levels.length; i++) {
    const l = levels[i]!;
    out[i] = { price: +l[0], amount: +l[1] };
  }
  return out;
}

function tardisChange(isSnapshot: boolean, bids: readonly StrLevel[], asks: readonly StrLevel[]): BookChange {
  return {
    type: "book_change",
    symbol: "",
    exchange: "binance",
    isSnapshot,
    bids: tardisLevels(bids),
    asks: tardisLevels(asks),
    timestamp: EPOCH,
    localTimestamp: EPOCH,
  };
}

function firstN(it: IterableIterator<BookPriceLevel>, n: number): BookPriceLevel[] {
  const out: BookPriceLevel[] = [];
  for (const l of it) {
    out.push(l);
    if (out.length === n) break;
  }
  return out;
}

const tardis: Impl<TardisBook> = {
  name: "tardis-dev",
  input:
    "the same strings, converted inside the timed loop to its `BookChange` of numeric `{price, amount}` " +
    "(what its Binance mapper produces); `update()`, then the first 10 of `bids()`/`asks()` into fresh arrays",
  build(w) {
    return w.snapshots.map((s) => {
      const b = new TardisBook();
      b.update(tardisChange(true, s.bids, s.asks));
      return b;
    });
  },
  replay(w, books) {
    const diffs = w.diffs;
    for (let k = 0; k < diffs.length; k++) {
      const d = diffs[k]!;
      const b = books[d.sym]!;
      b.update(tardisChange(false, d.bids, d.asks));
      keep[k & 15] = firstN(b.bids(), TOP);
      keep[(k + 8) & 15] = firstN(b.asks(), TOP);
    }
  },
  top(book, n) {
    const num = (l: BookPriceLevel) => [l.price, l.amount];
    return { bids: firstN(book.bids(), n).map(num), asks: firstN(book.asks(), n).map(num) };
  },
};

let ccxtExchange: InstanceType<typeof ccxtPro.binance> | undefined;
function ccxtBook(): CcxtBook {
  ccxtExchange ??= new ccxtPro.binance();
  return ccxtExchange.orderBook();
}

function ccxtRows(levels: readonly StrLevel[]): CcxtRow[] {
  return levels.map((l) => [+l[0], +l[1]]);
}

function ccxtTop(side: CcxtBook["bids"], n: number): CcxtRow[] {
  const out: CcxtRow[] = [];
  const len = Math.min(n, side.length);
  for (let i = 0; i < len; i++) out.push(side[i] as CcxtRow);
  return out;
}

const ccxt: Impl<CcxtBook> = {
  name: "ccxt",
  input:
    "the same strings, converted inside the timed loop with `Number()` and stored with `side.store(price, size)` " +
    "as ccxt's Binance watcher does (it uses `safeFloat`, slower; its per-message `iso8601` is left out); " +
    "the first 10 rows of `bids`/`asks` into fresh arrays",
  build(w) {
    return w.snapshots.map((s) => {
      const b = ccxtBook();
      b.reset({ bids: ccxtRows(s.bids), asks: ccxtRows(s.asks), nonce: s.lastUpdateId });
      return b;
    });
  },
  replay(w, books) {
    const diffs = w.diffs;
    for (let k = 0; k < diffs.length; k++) {
      const d = diffs[k]!;
      const b = books[d.sym]!;
      const asks = d.asks;
      for (let i = 0; i < asks.length; i++) b.asks.store(+asks[i]![0], +asks[i]![1]);
      const bids = d.bids;
      for (let i = 0; i < bids.length; i++) b.bids.store(+bids[i]![0], +bids[i]![1]);
      b.nonce = d.finalUpdateId;
      keep[k & 15] = ccxtTop(b.bids, TOP);
      keep[(k + 8) & 15] = ccxtTop(b.asks, TOP);
    }
  },
  top(book, n) {
    return { bids: ccxtTop(book.bids, n), asks: ccxtTop(book.asks, n) };
  },
};

/**
 * A candidate that builds fresh books for `passes` replays (untimed), collects the garbage of building
 * them, then times the replays: the timed region pays only for its own allocations.
 */
function candidate<B>(impl: Impl<B>, w: DepthWorkload, passes: number): Candidate {
  /**
   * The last sample's books, dropped only once the next sample's exist. A feed handler always holds
   * its books; a benchmark that drops every book of an implementation before the forced GC of another's
   * sample makes V8 discard optimized code that depends on them (for l2flow's book, a deoptimization
   * loop: every other sample ran about twice as slow, by chance of the rotation).
   */
  const live: { books?: B[][] } = {};
  return {
    name: impl.name,
    sample() {
      const books = Array.from({ length: passes }, () => impl.build(w));
      live.books = books;
      settle();
      const timer = new SampleTimer();
      for (let p = 0; p < passes; p++) {
        timer.start();
        impl.replay(w, books[p]!);
        timer.stop();
      }
      return { ns: timer.ns, cpuNs: timer.cpuNs, units: w.levelUpdates * passes };
    },
  };
}

/** Heap the books retain after the whole replay, in bytes (from settled heap readings). */
function retainedHeap<B>(impl: Impl<B>, w: DepthWorkload): number {
  const before = settledHeapBytes();
  const books = impl.build(w);
  impl.replay(w, books);
  keep.fill(undefined);
  keep[0] = books; // alive across the reading
  const after = settledHeapBytes();
  keep[0] = undefined;
  return after - before;
}

function sameLevels(a: number[][], b: number[][]): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i]![0] !== b[i]![0] || a[i]![1] !== b[i]![1]) return false;
  return true;
}

interface Agreement {
  readonly diffs: number;
  readonly topMismatches: number;
  readonly firstMismatch: string | null;
  readonly finalTop: string;
  readonly finalAgree: boolean;
  readonly tickerMatches: number;
  readonly tickerMismatches: number;
}

/**
 * Replays the workload through all three books (untimed) and compares the top `TOP` levels of both
 * sides after every diff, and l2flow's exact strings against every bookTicker with the same update id.
 */
function agreement(w: DepthWorkload): Agreement {
  const a = ours.build(w);
  const t = tardis.build(w);
  const c = ccxt.build(w);
  let topMismatches = 0;
  let firstMismatch: string | null = null;
  let tickerMatches = 0;
  let tickerMismatches = 0;
  for (const d of w.diffs) {
    const one: DepthWorkload = { ...w, diffs: [d] };
    ours.replay(one, a);
    tardis.replay(one, t);
    ccxt.replay(one, c);
    const x = ours.top(a[d.sym]!, TOP);
    const y = tardis.top(t[d.sym]!, TOP);
    const z = ccxt.top(c[d.sym]!, TOP);
    const ok =
      sameLevels(x.bids, y.bids) &&
      sameLevels(x.asks, y.asks) &&
      sameLevels(x.bids, z.bids) &&
      sameLevels(x.asks, z.asks);
    if (!ok) {
      topMismatches++;
      firstMismatch ??= `${w.symbols[d.sym]} u=${d.finalUpdateId}`;
    }
    const ticker = w.tickers.get(w.symbols[d.sym]!)?.get(d.finalUpdateId);
    if (ticker !== undefined) {
      const bb = a[d.sym]!.bestBid();
      const ba = a[d.sym]!.bestAsk();
      const exact =
        bb?.price === ticker.bidPrice &&
        bb.quantity === ticker.bidQty &&
        ba?.price === ticker.askPrice &&
        ba.quantity === ticker.askQty;
      if (exact) tickerMatches++;
      else tickerMismatches++;
    }
  }
  const finals = w.symbols.map((_, i) => {
    const x = ours.top(a[i]!, 1);
    const y = tardis.top(t[i]!, 1);
    const z = ccxt.top(c[i]!, 1);
    const agree =
      sameLevels(x.bids, y.bids) &&
      sameLevels(x.asks, y.asks) &&
      sameLevels(x.bids, z.bids) &&
      sameLevels(x.asks, z.asks);
    return {
      agree,
      text: `${w.symbols[i]} ${a[i]!.bestBid()?.price ?? "-"} / ${a[i]!.bestAsk()?.price ?? "-"}`,
    };
  });
  return {
    diffs: w.diffs.length,
    topMismatches,
    firstMismatch,
    finalTop: finals.map((f) => f.text).join(", "),
    finalAgree: finals.every((f) => f.agree),
    tickerMatches,
    tickerMismatches,
  };
}

function byName(results: readonly CandidateResult[], n: string): CandidateResult {
  const r = results.find((x) => x.name === n);
  if (r === undefined) throw new Error(`no result for ${n}`);
  return r;
}

function anchorFor(label: string): { tardis: number; ccxt: number } | undefined {
  for (const [prefix, v] of Object.entries(ANCHORS)) if (label.startsWith(prefix)) return v;
  return undefined;
}

/** `a`'s rate over `b`'s, as the median of per-round ratios (1 for a candidate against itself). */
function ratioMetric(label: string, a: CandidateResult, b: CandidateResult): Metric {
  if (a === b) return { name: label, value: 1, unit: "x" };
  const r = pairedRatio(a, b);
  return { name: label, value: r.median, unit: "x", spread: r.spread };
}

function fmtM(v: number): string {
  return `${(v / 1e6).toFixed(2)}M`;
}

/** Runs the suite. */
export async function run(ctx: SuiteContext): Promise<SuiteResult> {
  const rows: Row[] = [];
  const checks: Check[] = [];
  const data: Record<string, unknown> = {};
  // Short samples and many rounds: each round's ratio then sees the same load on the machine.
  const repeats = ctx.quick ? 5 : 31;
  // Warm-up: enough replays for the JIT to settle (a single BTCUSDT replay is not).
  const warmup = ctx.quick ? 3 : 5;
  const targetUnits = ctx.quick ? 100_000 : 120_000;
  const impls = [ours, tardis, ccxt] as const;
  const passesByFile: Record<string, number> = {};

  for (const rec of RECORDINGS) {
    if (ctx.signal.aborted) break;
    const w = depthWorkload(rec.label, rec.path);
    const passes = Math.max(1, Math.ceil(targetUnits / w.levelUpdates));
    passesByFile[w.label] = passes;
    ctx.log(
      `  ${w.label}: ${w.diffs.length} diffs, ${w.levelUpdates} level updates, ${passes} pass(es) per sample`,
    );

    const agree = agreement(w);
    checks.push({
      name: `${w.label}: same top ${TOP} after every diff`,
      pass: agree.topMismatches === 0,
      message:
        agree.topMismatches === 0
          ? `l2flow, tardis-dev and ccxt agree on the top ${TOP} bids and asks (price and size) after all ${agree.diffs} diffs`
          : `${agree.topMismatches} of ${agree.diffs} diffs disagree, first at ${agree.firstMismatch}`,
    });
    checks.push({
      name: `${w.label}: same top of book at the end`,
      pass: agree.finalAgree,
      message: `${agree.finalAgree ? "all three end with" : "they differ; l2flow ends with"} best bid / ask ${agree.finalTop}`,
    });
    checks.push({
      name: `${w.label}: l2flow matches bookTicker`,
      pass: agree.tickerMismatches === 0 && agree.tickerMatches > 0,
      message: `${agree.tickerMatches + agree.tickerMismatches} bookTicker frames carry the update id of a diff; after those diffs l2flow's best bid and ask (price and size strings) equal ${agree.tickerMatches} of them exactly, ${agree.tickerMismatches} differ`,
    });

    const results = compare(
      impls.map((impl) => candidate(impl as Impl<unknown>, w, passes)),
      { warmup, repeats },
    );
    const heap = new Map(impls.map((impl) => [impl.name, retainedHeap(impl as Impl<unknown>, w)]));
    const l2 = byName(results, ours.name);
    const td = byName(results, tardis.name);
    const cx = byName(results, ccxt.name);
    for (const r of results) {
      rows.push({
        group: w.label,
        label: r.name,
        metrics: [
          { name: "level updates", value: r.rate.median, unit: "/s", spread: r.rate.spread },
          { name: "per level update", value: r.nsPerUnit, unit: "ns" },
          { name: "by CPU time", value: stats(r.cpuRatesPerS).median, unit: "/s" },
          { name: "diffs", value: (r.rate.median * w.diffs.length) / w.levelUpdates, unit: "/s" },
          ratioMetric("vs tardis-dev", r, td),
          ratioMetric("vs ccxt", r, cx),
          { name: "heap of the books", value: heap.get(r.name) ?? 0, unit: "B" },
        ],
      });
    }
    const ratio = pairedRatio(l2, td);
    const cpuRatio = pairedRatio(l2, td, "cpu");
    checks.push({
      name: `${w.label}: l2flow ≥ ${TARGET_VS_TARDIS}× tardis-dev`,
      pass: ratio.median >= TARGET_VS_TARDIS,
      message:
        `${ratio.median.toFixed(2)}× by wall clock (median of per-round ratios, range ${ratio.min.toFixed(2)}–` +
        `${ratio.max.toFixed(2)}; medians ${fmtM(l2.rate.median)} vs ${fmtM(td.rate.median)} level updates/s); ` +
        `${cpuRatio.median.toFixed(2)}× by process CPU time (range ${cpuRatio.min.toFixed(2)}–${cpuRatio.max.toFixed(2)})`,
    });
    const anchor = anchorFor(w.label);
    data[w.label] = {
      diffs: w.diffs.length,
      levelUpdates: w.levelUpdates,
      droppedBeforeSnapshot: w.dropped,
      passesPerSample: passes,
      repeats,
      warmup,
      anchors: anchor ?? null,
      results,
      heapBytes: Object.fromEntries(heap),
      agreement: agree,
    };
    await new Promise((r) => setImmediate(r));
  }

  const passesText = Object.entries(passesByFile)
    .map(([label, n]) => `${n} time${n === 1 ? "" : "s"} (${label})`)
    .join(" or ");
  const anchorText = Object.entries(ANCHORS)
    .map(([k, v]) => `${k}: tardis-dev ${fmtM(v.tardis)}, ccxt ${fmtM(v.ccxt)}`)
    .join("; ");
  return {
    rows,
    checks,
    data,
    notes: [
      `Each sample starts from fresh books built from each symbol's REST snapshot (untimed), then applies every ` +
        `diff of the recording that follows the snapshot, in recorded order across symbols, and reads the top ${TOP} ` +
        `bids and asks after every diff (timed). One level update = one \`[price, qty]\` entry of a diff. ` +
        `A sample replays a recording ${passesText} (about ${targetUnits / 1000}k level updates), on books built before a ` +
        `forced GC and a pause for V8's sweeper threads; each implementation's books of the previous sample stay ` +
        `alive until the next sample's are built, as a feed handler's books always are (when a full GC found none ` +
        `alive, V8 threw away the optimized code of l2flow's book and half of its samples ran ~2× slower). Median of ${repeats} samples after ${warmup} warm-up rounds, the three books taking turns in a rotating ` +
        `order; ± is half the range of the samples relative to the median. Ratios are medians of per-round ` +
        `ratios (each round runs the three books back to back, so changing load on the machine hits both sides ` +
        `of a ratio alike). Heap is what the finished books retain (settled heap after a forced GC, before ` +
        `and after; the price and size strings are shared with the input and not counted). "by CPU time" is the ` +
        `rate per second of process CPU time (user + system, GC threads included) over the same regions: other ` +
        `load on the machine moves it far less than the wall-clock rate.`,
      `Input: JSON is parsed once outside the timed region; all three receive the same arrays of price/size strings. ` +
        `l2flow: ${ours.input}. tardis-dev: ${tardis.input}. ccxt: ${ccxt.input}.`,
      `Anchors measured on this machine before l2flow had a book (issue 8): ${anchorText}.`,
    ],
  };
}

/**
 * Many symbols from a few real ones: each copy of a recording gets its symbols renamed (`C07ZILUSDT`),
 * the `s` field of every frame rewritten to match, and its timeline compressed by `compress`; copies
 * are interleaved event by event, so the load is spread like a real many-symbol feed. With `stagger`,
 * each copy starts at another point of the recording, so the copies do not trade in lockstep; with
 * `loop` as well, each copy then goes round the recording once, so every copy lasts as long.
 */
import type { RecordedEvent, RecordedFrame, RecordedSnapshot, Recording } from "@l2flow/recording";
import {
  parseDepthDiff,
  parseSnapshotBody,
  TrueBook,
  type TrueBookSnapshot as BookSnapshot,
} from "@l2flow/testkit";

/** Options of `scaleRecording`. */
export interface ScaleOptions {
  /** Copies of the recording (symbols in total = copies × the recording's symbols). */
  readonly copies: number;
  /** Divide the timeline by this (2 = twice as fast). Default 1. */
  readonly compress?: number;
  /** Leave out these stream kinds (e.g. bookTicker, which ingest does not subscribe). */
  readonly dropKinds?: readonly string[];
  /**
   * Copy `c` starts `c × stagger` seconds into the recording (before compression) instead of at its
   * start, its book seeded there (a snapshot built from the recording's first snapshot and the diffs
   * up to that point), and everything before left out. Default 0: every copy replays the same moment
   * of the recording at the same time, so a burst of trades in the recording arrives as `copies`
   * bursts at once, which real symbols never do. Depth updates keep their phase when `stagger` is a
   * multiple of 0.1 s (Binance sends every symbol's 100 ms updates on the same tick).
   */
  readonly stagger?: number;
  /**
   * With `stagger`: a copy that reaches the recording's end goes on, `LOOP_GAP_S` later, from the
   * recording's start up to where it began, as a continuation of the same market: one depth update
   * (the wrap) takes its book from the recording's last book to the book after the recording's first
   * diff past its snapshot, and every update id, trade id and event time from there on is moved past
   * the first pass's (`LoopShifts`). Every copy then replays the whole recording once and they all
   * last as long, so `stagger` may be up to the recording's length ÷ `copies`; without `loop` a copy
   * ends with the recording and the last copies are short.
   */
  readonly loop?: boolean;
}

/**
 * Recording seconds between the end of a looping copy's first pass and the start of its second: one
 * 100 ms tick, so depth updates keep their phase and the trades' event times go on without a whole
 * second empty of trades (which the soak would count as a window missing).
 */
export const LOOP_GAP_S = 0.1;

/** The name of `symbol` in copy `copy`: `C07ZILUSDT`. */
export const copyName = (copy: number, symbol: string) => `C${String(copy).padStart(2, "0")}${symbol}`;

/** A recording of `copies` renamed copies of `recording`. */
export function scaleRecording(recording: Recording, options: ScaleOptions): Recording {
  if ((options.stagger ?? 0) > 0) return staggered(recording, options);
  const compress = options.compress ?? 1;
  const drop = new Set(options.dropKinds ?? []);
  const t0 = recording.events.find((e) => e.type === "frame")?.receiveTimeUs ?? 0;
  const events: RecordedEvent[] = [];
  let lastTime = t0;
  for (const e of recording.events) {
    if (e.type === "frame") lastTime = e.receiveTimeUs;
    for (let c = 0; c < options.copies; c++) {
      if (e.type === "snapshot") {
        events.push({ ...e, symbol: copyName(c, e.symbol) });
        continue;
      }
      if (drop.has(e.kind)) continue;
      events.push(renamed(e, c, t0 + Math.round((lastTime - t0) / compress)));
    }
  }
  return { format: recording.format, symbols: copiedSymbols(recording, options.copies), events };
}

/** Every copy's symbols, copy after copy. */
function copiedSymbols(recording: Recording, copies: number): string[] {
  const symbols: string[] = [];
  for (let c = 0; c < copies; c++) for (const s of recording.symbols) symbols.push(copyName(c, s));
  return symbols;
}

/** `frame` renamed into copy `copy`, at `receiveTimeUs`. */
function renamed(frame: RecordedFrame, copy: number, receiveTimeUs: number): RecordedFrame {
  const symbol = copyName(copy, frame.symbol);
  const data = JSON.parse(frame.data) as Record<string, unknown>;
  if (typeof data.s === "string") data.s = symbol;
  return {
    ...frame,
    symbol,
    stream: `${symbol.toLowerCase()}@${frame.kind}`,
    receiveTimeUs,
    data: JSON.stringify(data),
    copyOf: frame.copyOf ?? frame,
  };
}

/** `scaleRecording` with `stagger`: the copies of a `CopyLayout`, interleaved in time. */
function staggered(recording: Recording, options: ScaleOptions): Recording {
  const layout = new CopyLayout(recording, options);
  const events: RecordedEvent[] = [];
  for (let c = 0; c < options.copies; c++) {
    for (const { event, at } of layout.copy(c)) {
      events.push(
        event.type === "snapshot"
          ? { ...event, symbol: copyName(c, event.symbol), receiveTimeUs: at }
          : renamed(event, c, at),
      );
    }
  }
  // Copies interleaved in time (a stable sort keeps each copy's own order, and copy order at a tie).
  events.sort((a, b) => a.receiveTimeUs - b.receiveTimeUs);
  return { format: recording.format, symbols: copiedSymbols(recording, options.copies), events };
}

/** How a looping copy's second pass moves one symbol's ids and times past its first pass. */
export interface LoopShifts {
  /** Added to event and trade times (`E`, `T`), in ms. */
  readonly timeMs: number;
  /** Added to depth update ids (`U`, `u`, and bookTicker's `u`). */
  readonly updateId: number;
  /** Added to trade ids (`t`, and aggTrade's `f` and `l`). */
  readonly tradeId: number;
  /** Added to aggregate trade ids (`a`). */
  readonly aggTradeId: number;
}

/** One event of a copy before renaming, at its time in the scaled recording. */
export interface CopyEvent {
  /**
   * What the copy replays: a recorded event (first pass), its shifted twin (second pass; the same
   * object for every copy), the wrap diff (one per symbol), or the snapshot seeding the copy.
   */
  readonly event: RecordedEvent;
  /** Receive time in the scaled recording (µs). */
  readonly at: number;
}

/**
 * Where each copy of a staggered recording starts and what it replays, event by event, without
 * building the scaled recording (the soak plans its checks from this while the simulator's process
 * replays `scaleRecording`'s output, built from the same layout).
 */
export class CopyLayout {
  readonly #recording: Recording;
  readonly #compress: number;
  readonly #drop: ReadonlySet<string>;
  readonly #t0: number;
  readonly #starts: number[] = [];
  /** Per copy: each symbol's seed snapshot (none for copy 0, which keeps the recording's own). */
  readonly #seeds: Map<string, { body: string; limit: number }>[] = [];
  readonly #loop: Loop | undefined;

  constructor(recording: Recording, options: ScaleOptions) {
    this.#recording = recording;
    this.#compress = options.compress ?? 1;
    this.#drop = new Set(options.dropKinds ?? []);
    const staggerUs = Math.round((options.stagger ?? 0) * 1e6);
    const { t0, spanUs } = recordingSpan(recording);
    this.#t0 = t0;
    const fits =
      options.loop === true
        ? options.copies * staggerUs <= spanUs
        : (options.copies - 1) * staggerUs < spanUs;
    if (!fits)
      throw new RangeError(
        `stagger ${options.stagger} s × ${options.copies - (options.loop === true ? 0 : 1)} copies does not fit the recording's ${(spanUs / 1e6).toFixed(0)} s`,
      );
    for (let c = 0; c < options.copies; c++) this.#starts.push(this.#t0 + c * staggerUs);
    // The recording's book at each copy's start, the simulator's way: each symbol's book seeded from
    // its first snapshot wherever it sits (a diff received before the snapshot may span it), moved by
    // every diff past it; a snapshot of each taken as each copy's start is passed.
    const books = firstBooks(recording);
    const capture = () => {
      const seed = new Map<string, { body: string; limit: number }>();
      for (const [symbol, book] of books) {
        const s = book.snapshot(Number.MAX_SAFE_INTEGER);
        seed.set(symbol, { body: snapshotBody(s), limit: Math.max(s.bids.length, s.asks.length) });
      }
      this.#seeds.push(seed);
    };
    // Copy 0 starts where the recording does, with its own snapshots; so do all copies in lockstep.
    this.#seeds.push(new Map());
    if (staggerUs === 0) while (this.#seeds.length < options.copies) this.#seeds.push(new Map());
    for (const e of recording.events) {
      while (this.#seeds.length < options.copies && e.receiveTimeUs >= this.#starts[this.#seeds.length]!)
        capture();
      if (e.type === "frame" && e.kind.startsWith("depth"))
        books.get(e.symbol)?.apply(parseDepthDiff(e.data));
    }
    while (this.#seeds.length < options.copies) capture();
    if (options.loop === true) this.#loop = new Loop(recording, books, spanUs + LOOP_GAP_S * 1e6);
  }

  /** The recording's symbol's shifts on a looping copy's second pass (undefined without `loop`). */
  shifts(symbol: string): LoopShifts | undefined {
    return this.#loop?.shifts.get(symbol);
  }

  /** Copy `c`'s events in the order it replays them (by time; the recording's order at a tie). */
  copy(c: number): CopyEvent[] {
    const startUs = this.#starts[c]!;
    const seed = this.#seeds[c]!;
    const out: CopyEvent[] = [];
    for (const [symbol, { body, limit }] of seed) {
      const snapshot: RecordedSnapshot = { type: "snapshot", receiveTimeUs: this.#t0, symbol, limit, body };
      out.push({ event: snapshot, at: this.#t0 });
    }
    const at = (t: number) => this.#t0 + Math.round((t - startUs) / this.#compress);
    for (const e of this.#recording.events) {
      if (e.receiveTimeUs < startUs) continue;
      if (e.type === "snapshot") {
        // A symbol seeded above has its book from there; a later snapshot of it is the recording's.
        if (!seed.has(e.symbol)) out.push({ event: e, at: at(e.receiveTimeUs) });
      } else if (!this.#drop.has(e.kind)) out.push({ event: e, at: at(e.receiveTimeUs) });
    }
    const loop = this.#loop;
    if (loop !== undefined) {
      for (const e of this.#recording.events) {
        if (e.receiveTimeUs >= startUs) break;
        if (e.type === "snapshot" || this.#drop.has(e.kind)) continue;
        const twin = loop.twin(e);
        if (twin !== undefined) out.push({ event: twin, at: at(twin.receiveTimeUs) });
      }
    }
    // Stable: events at one time stay in the recording's order (the wrap diff sits at its bridge's).
    return out.sort((a, b) => a.at - b.at);
  }
}

/** Each symbol's book from its first snapshot in the recording (not yet moved by any diff). */
function firstBooks(recording: Recording): Map<string, TrueBook> {
  const books = new Map<string, TrueBook>();
  for (const e of recording.events) {
    if (e.type !== "snapshot" || books.has(e.symbol)) continue;
    const book = new TrueBook();
    book.seed(parseSnapshotBody(e.body));
    books.set(e.symbol, book);
  }
  return books;
}

const snapshotBody = (s: BookSnapshot) =>
  JSON.stringify({ lastUpdateId: s.lastUpdateId, bids: s.bids, asks: s.asks });

/**
 * The second pass of a looping copy: each recorded frame's twin moved `period` µs (and its ids) on,
 * the same object for every copy, so the simulator still parses each once; and each symbol's wrap diff.
 */
class Loop {
  readonly shifts = new Map<string, LoopShifts>();
  readonly #period: number;
  /** Per symbol: the `u` of the recording's first diff past its first snapshot (the bridge). */
  readonly #bridgeU = new Map<string, number>();
  readonly #twins = new Map<RecordedFrame, RecordedFrame | null>();

  /** `endBooks`: each symbol's book after the whole recording (its last diff applied). */
  constructor(recording: Recording, endBooks: ReadonlyMap<string, TrueBook>, periodUs: number) {
    this.#period = periodUs;
    const startBooks = firstBooks(recording);
    const ranges = new Map<string, { trade: MinMax; agg: MinMax; update: MinMax }>();
    const bridges = new Map<string, RecordedFrame>();
    for (const e of recording.events) {
      if (e.type !== "frame") continue;
      let r = ranges.get(e.symbol);
      if (r === undefined)
        ranges.set(e.symbol, (r = { trade: new MinMax(), agg: new MinMax(), update: new MinMax() }));
      if (e.kind === "bookTicker") r.update.add((JSON.parse(e.data) as { u: number }).u);
      else if (e.kind === "trade") r.trade.add((JSON.parse(e.data) as { t: number }).t);
      else if (e.kind === "aggTrade") {
        const o = JSON.parse(e.data) as { a: number; f: number; l: number };
        r.agg.add(o.a);
        r.trade.add(o.f);
        r.trade.add(o.l);
      } else if (e.kind.startsWith("depth") && !bridges.has(e.symbol)) {
        const book = startBooks.get(e.symbol);
        if (book !== undefined && parseDepthDiff(e.data).u > book.lastUpdateId) bridges.set(e.symbol, e);
      }
    }
    for (const symbol of recording.symbols) {
      const end = endBooks.get(symbol);
      const bridge = bridges.get(symbol);
      const r = ranges.get(symbol);
      if (end === undefined || bridge === undefined)
        throw new RangeError(`loop: ${symbol} needs a snapshot and a diff past it in the recording`);
      const diff = parseDepthDiff(bridge.data);
      const start = startBooks.get(symbol)!;
      start.apply(diff);
      this.#bridgeU.set(symbol, diff.u);
      // The wrap diff follows the recording's last diff on, takes the book to where it stood after the
      // bridge, and ends past every update id the first pass showed (bookTickers after the last diff
      // included); the second pass's updates follow it on.
      const wrapU = Math.max(end.lastUpdateId, r?.update.empty === false ? r.update.max : 0) + 1;
      const shifts: LoopShifts = {
        timeMs: Math.round(periodUs / 1000),
        updateId: wrapU - diff.u,
        tradeId: r === undefined || r.trade.empty ? 0 : r.trade.max - r.trade.min + 1,
        aggTradeId: r === undefined || r.agg.empty ? 0 : r.agg.max - r.agg.min + 1,
      };
      this.shifts.set(symbol, shifts);
      const data = JSON.parse(bridge.data) as Record<string, unknown>;
      const wrapData = {
        ...data,
        E: (data.E as number) + shifts.timeMs,
        U: end.lastUpdateId + 1,
        u: wrapU,
        ...levelsBetween(end.snapshot(Number.MAX_SAFE_INTEGER), start.snapshot(Number.MAX_SAFE_INTEGER)),
      };
      this.#twins.set(bridge, {
        ...bridge,
        receiveTimeUs: bridge.receiveTimeUs + periodUs,
        data: JSON.stringify(wrapData),
      });
    }
  }

  /** `frame`'s twin on the second pass (the wrap diff in its bridge's place), or undefined if it has none. */
  twin(frame: RecordedFrame): RecordedFrame | undefined {
    let twin = this.#twins.get(frame);
    if (twin === undefined) this.#twins.set(frame, (twin = this.#make(frame)));
    return twin ?? undefined;
  }

  #make(frame: RecordedFrame): RecordedFrame | null {
    const s = this.shifts.get(frame.symbol);
    const bridgeU = this.#bridgeU.get(frame.symbol);
    if (s === undefined || bridgeU === undefined) return null;
    const o = JSON.parse(frame.data) as Record<string, unknown>;
    const move = (key: string, by: number) => {
      if (typeof o[key] === "number") o[key] = o[key] + by;
    };
    // Updates the wrap diff already covers (the bridge's and older) and bookTickers of books before it
    // are left out: the second pass's book starts at the wrap.
    if (frame.kind.startsWith("depth") || frame.kind === "bookTicker")
      if (typeof o.u !== "number" || o.u < bridgeU || (o.u === bridgeU && frame.kind !== "bookTicker"))
        return null;
    move("E", s.timeMs);
    move("T", s.timeMs);
    move("U", s.updateId);
    move("u", s.updateId);
    move("t", s.tradeId);
    move("f", s.tradeId);
    move("l", s.tradeId);
    move("a", frame.kind === "aggTrade" ? s.aggTradeId : 0);
    return { ...frame, receiveTimeUs: frame.receiveTimeUs + this.#period, data: JSON.stringify(o) };
  }
}

class MinMax {
  min = Infinity;
  max = -Infinity;
  get empty(): boolean {
    return this.min > this.max;
  }
  add(x: number): void {
    if (x < this.min) this.min = x;
    if (x > this.max) this.max = x;
  }
}

/** The levels of a depth update that turns book `from` into book `to`: `b` and `a`. */
function levelsBetween(from: BookSnapshot, to: BookSnapshot) {
  const side = (a: BookSnapshot["bids"], b: BookSnapshot["bids"]) => {
    const target = new Map(b.map(([p, q]) => [p, q]));
    const zero = a[0]?.[1].replace(/[1-9]/g, "0") ?? "0";
    const out: [string, string][] = [];
    for (const [p] of a) if (!target.has(p)) out.push([p, zero]);
    const current = new Map(a.map(([p, q]) => [p, q]));
    for (const [p, q] of b) if (current.get(p) !== q) out.push([p, q]);
    return out;
  };
  return { b: side(from.bids, to.bids), a: side(from.asks, to.asks) };
}

/**
 * The most seconds between looping copies' starts that fit `copies` of them in `recording` (what
 * `CopyLayout` allows with `loop`), a multiple of 0.1 s so depth updates keep their 100 ms phase.
 */
export function loopStaggerLimit(recording: Recording, copies: number): number {
  return Math.max(0, Math.floor((recordingSpan(recording).spanUs / 1e6 / copies) * 10) / 10);
}

/**
 * Where a recording's timeline starts for scaling (its first frame's receive time, µs) and how long
 * it runs from there to its last event (µs): what a copy replays and a looping copy goes round.
 */
export function recordingSpan(recording: Recording): { t0: number; spanUs: number } {
  const t0 = recording.events.find((e) => e.type === "frame")?.receiveTimeUs ?? 0;
  return { t0, spanUs: (recording.events.at(-1)?.receiveTimeUs ?? t0) - t0 };
}

/** Frames per second of a recording's market frames over its duration. */
export function frameRate(recording: Recording): number {
  const frames = recording.events.filter((e) => e.type === "frame");
  if (frames.length < 2) return 0;
  const span = (frames[frames.length - 1]!.receiveTimeUs - frames[0]!.receiveTimeUs) / 1e6;
  return frames.length / span;
}

/**
 * Many symbols from a few real ones: each copy of a recording gets its symbols renamed (`C07ZILUSDT`),
 * the `s` field of every frame rewritten to match, and its timeline compressed by `compress`; copies
 * are interleaved event by event, so the load is spread like a real many-symbol feed. With `stagger`,
 * each copy starts at another point of the recording, so the copies do not trade in lockstep.
 */
import type { RecordedEvent, RecordedFrame, Recording } from "@l2flow/recording";
import { parseDepthDiff, parseSnapshotBody, TrueBook } from "@l2flow/testkit";

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
}

const rename = (copy: number, symbol: string) => `C${String(copy).padStart(2, "0")}${symbol}`;

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
        events.push({ ...e, symbol: rename(c, e.symbol) });
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
  for (let c = 0; c < copies; c++) for (const s of recording.symbols) symbols.push(rename(c, s));
  return symbols;
}

/** `frame` renamed into copy `copy`, at `receiveTimeUs`. */
function renamed(frame: RecordedFrame, copy: number, receiveTimeUs: number): RecordedFrame {
  const symbol = rename(copy, frame.symbol);
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

/**
 * `scaleRecording` with `stagger`: copy `c` is the recording from `c × stagger` s on, shifted to start
 * with the others, each of its symbols seeded by a snapshot of the book at that point.
 */
function staggered(recording: Recording, options: ScaleOptions): Recording {
  const compress = options.compress ?? 1;
  const drop = new Set(options.dropKinds ?? []);
  const staggerUs = Math.round((options.stagger ?? 0) * 1e6);
  const t0 = recording.events.find((e) => e.type === "frame")?.receiveTimeUs ?? 0;
  const span = (recording.events.at(-1)?.receiveTimeUs ?? t0) - t0;
  if ((options.copies - 1) * staggerUs >= span)
    throw new RangeError(
      `stagger ${options.stagger} s × ${options.copies - 1} copies does not fit the recording's ${(span / 1e6).toFixed(0)} s`,
    );
  // The recording's book at each copy's start, the simulator's way: each symbol's book seeded from its
  // first snapshot wherever it sits (a diff received before the snapshot may span it), moved by every
  // diff past it; a snapshot of each taken as each copy's start is passed.
  const books = new Map<string, TrueBook>();
  for (const e of recording.events) {
    if (e.type !== "snapshot" || books.has(e.symbol)) continue;
    const book = new TrueBook();
    book.seed(parseSnapshotBody(e.body));
    books.set(e.symbol, book);
  }
  const seeds: Map<string, string>[] = [];
  const capture = () => {
    const seed = new Map<string, string>();
    for (const [symbol, book] of books) {
      const s = book.snapshot(Number.MAX_SAFE_INTEGER);
      seed.set(symbol, JSON.stringify({ lastUpdateId: s.lastUpdateId, bids: s.bids, asks: s.asks }));
    }
    seeds.push(seed);
  };
  for (const e of recording.events) {
    // Copy 0 starts where the recording does, with its own snapshots.
    if (seeds.length === 0) seeds.push(new Map());
    while (seeds.length < options.copies && e.receiveTimeUs - t0 >= seeds.length * staggerUs) capture();
    if (e.type === "frame" && e.kind.startsWith("depth")) books.get(e.symbol)?.apply(parseDepthDiff(e.data));
  }
  const events: RecordedEvent[] = [];
  for (let c = 0; c < options.copies; c++) {
    const startUs = t0 + c * staggerUs;
    const seed = seeds[c]!;
    for (const [symbol, body] of seed) {
      const { bids, asks } = parseSnapshotBody(body);
      events.push({
        type: "snapshot",
        receiveTimeUs: t0,
        symbol: rename(c, symbol),
        limit: Math.max(bids.length, asks.length),
        body,
      });
    }
    for (const e of recording.events) {
      if (e.receiveTimeUs < startUs) continue;
      const at = t0 + Math.round((e.receiveTimeUs - startUs) / compress);
      if (e.type === "snapshot") {
        // A symbol seeded above has its book from there; a later snapshot of it is the recording's.
        if (!seed.has(e.symbol)) events.push({ ...e, symbol: rename(c, e.symbol), receiveTimeUs: at });
      } else if (!drop.has(e.kind)) events.push(renamed(e, c, at));
    }
  }
  // Copies interleaved in time (a stable sort keeps each copy's own order, and copy order at a tie).
  events.sort((a, b) => a.receiveTimeUs - b.receiveTimeUs);
  return { format: recording.format, symbols: copiedSymbols(recording, options.copies), events };
}

/** Frames per second of a recording's market frames over its duration. */
export function frameRate(recording: Recording): number {
  const frames = recording.events.filter((e) => e.type === "frame");
  if (frames.length < 2) return 0;
  const span = (frames[frames.length - 1]!.receiveTimeUs - frames[0]!.receiveTimeUs) / 1e6;
  return frames.length / span;
}

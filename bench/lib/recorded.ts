/**
 * The recorded Binance data the CPU suites replay, loaded and parsed once outside any timed region.
 */
import { readRecording, type RecordedEvent } from "@l2flow/recording";
import { L2flowError } from "@l2flow/runtime";
import { fixtures } from "@l2flow/testkit";

/** A `[price, quantity]` pair as Binance sends it. */
export type StrLevel = readonly [string, string];

/** One diff event, parsed. */
export interface Diff {
  /** Index of the symbol in `DepthWorkload.symbols`. */
  readonly sym: number;
  readonly firstUpdateId: number;
  readonly finalUpdateId: number;
  readonly eventTime: number;
  readonly bids: readonly StrLevel[];
  readonly asks: readonly StrLevel[];
}

/** The snapshot a symbol's book starts from. */
export interface Snapshot {
  readonly lastUpdateId: number;
  readonly bids: readonly StrLevel[];
  readonly asks: readonly StrLevel[];
}

/** Every diff that applies on top of each symbol's snapshot, in recorded (interleaved) order. */
export interface DepthWorkload {
  readonly label: string;
  readonly symbols: readonly string[];
  readonly snapshots: readonly Snapshot[];
  /** Diffs after each symbol's snapshot, the first bridging it, continuity checked. */
  readonly diffs: readonly Diff[];
  /** Sum of bid and ask entries over `diffs`: the level updates a book applies. */
  readonly levelUpdates: number;
  /** Diffs older than their symbol's snapshot (dropped, as Binance's rules say). */
  readonly dropped: number;
  /** bookTicker frames `{u, b, B, a, A}` by symbol: an independent check of the top of book. */
  readonly tickers: ReadonlyMap<string, ReadonlyMap<number, BookTicker>>;
}

/** A bookTicker frame's top of book at update id `u`. */
export interface BookTicker {
  readonly bidPrice: string;
  readonly bidQty: string;
  readonly askPrice: string;
  readonly askQty: string;
}

/** The two recordings shipped in the test kit. */
export const RECORDINGS = [
  { label: "BTCUSDT (1 symbol, 346 s)", path: fixtures.btcusdt },
  { label: "10 symbols (119 s)", path: fixtures.tenSymbols },
] as const;

/**
 * The recording's events. Not cached: a recording's text and events take tens to hundreds of MB, and
 * a large live heap slows every GC-heavy measurement that follows (callers keep only what they need).
 */
export function recordedEvents(path: string): readonly RecordedEvent[] {
  return readRecording(path).events;
}

interface RawDiff {
  U: number;
  u: number;
  E: number;
  b: StrLevel[];
  a: StrLevel[];
}

/**
 * Builds the depth workload of a recording: per symbol its first snapshot and the diffs that apply on
 * top of it (`u > lastUpdateId`; the first must span `lastUpdateId + 1`, later ones `U == previous
 * u + 1`). Throws when the recording breaks those rules: the benchmark must replay a valid book.
 */
export function depthWorkload(label: string, path: string): DepthWorkload {
  const events = recordedEvents(path);
  const symbols: string[] = [];
  const snapshots = new Map<string, Snapshot>();
  const tickers = new Map<string, Map<number, BookTicker>>();
  for (const e of events) {
    if (e.type === "snapshot" && !snapshots.has(e.symbol)) {
      const body = JSON.parse(e.body) as { lastUpdateId: number; bids: StrLevel[]; asks: StrLevel[] };
      snapshots.set(e.symbol, body);
    } else if (e.type === "frame" && e.kind === "bookTicker") {
      const t = JSON.parse(e.data) as { u: number; b: string; B: string; a: string; A: string };
      let m = tickers.get(e.symbol);
      if (m === undefined) tickers.set(e.symbol, (m = new Map<number, BookTicker>()));
      m.set(t.u, { bidPrice: t.b, bidQty: t.B, askPrice: t.a, askQty: t.A });
    }
  }
  const lastApplied = new Map<string, number>();
  const diffs: Diff[] = [];
  let levelUpdates = 0;
  let dropped = 0;
  for (const e of events) {
    if (e.type !== "frame" || !e.kind.startsWith("depth")) continue;
    const snap = snapshots.get(e.symbol);
    if (snap === undefined) {
      dropped++;
      continue;
    }
    const d = JSON.parse(e.data) as RawDiff;
    const last = lastApplied.get(e.symbol);
    if (last === undefined) {
      if (d.u <= snap.lastUpdateId) {
        dropped++;
        continue;
      }
      if (d.U > snap.lastUpdateId + 1)
        throw new L2flowError(
          "RECORDING_INVALID",
          `${label}: ${e.symbol}'s first diff after the snapshot does not bridge it; use a recording whose snapshot precedes a bridging diff`,
        );
    } else if (d.U !== last + 1) {
      throw new L2flowError(
        "RECORDING_INVALID",
        `${label}: ${e.symbol} breaks continuity at U=${d.U} (previous u=${last}); the benchmark needs contiguous diffs`,
      );
    }
    lastApplied.set(e.symbol, d.u);
    let sym = symbols.indexOf(e.symbol);
    if (sym < 0) sym = symbols.push(e.symbol) - 1;
    diffs.push({ sym, firstUpdateId: d.U, finalUpdateId: d.u, eventTime: d.E, bids: d.b, asks: d.a });
    levelUpdates += d.b.length + d.a.length;
  }
  return {
    label,
    symbols,
    snapshots: symbols.map((s) => snapshots.get(s)!),
    diffs,
    levelUpdates,
    dropped,
    tickers,
  };
}

/** One raw frame as the normalizer receives it from MD_RAW: the inner `data` JSON bytes. */
export interface RawFrame {
  readonly kind: "trade" | "aggtrade" | "depth" | "snapshot";
  readonly symbol: string;
  readonly bytes: Buffer;
}

/** The recording's frames (trades, aggTrades, depth diffs, snapshots) as MD_RAW payload bytes. */
export function rawFrames(path: string): RawFrame[] {
  const out: RawFrame[] = [];
  for (const e of recordedEvents(path)) {
    if (e.type === "snapshot") {
      out.push({ kind: "snapshot", symbol: e.symbol, bytes: Buffer.from(e.body) });
      continue;
    }
    const kind =
      e.kind === "trade"
        ? "trade"
        : e.kind === "aggTrade"
          ? "aggtrade"
          : e.kind.startsWith("depth")
            ? "depth"
            : undefined;
    if (kind !== undefined) out.push({ kind, symbol: e.symbol, bytes: Buffer.from(e.data) });
  }
  return out;
}

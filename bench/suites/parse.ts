/**
 * Frame parsing and normalization (issue 8 item 2): frames per second from the raw bytes the
 * normalizer reads from MD_RAW (the inner `data` JSON of each frame) to the normalized protobuf it
 * publishes, following services/normalizer/src/service.ts step by step, minus NATS.
 */
import {
  BookSync,
  parseAggTrade,
  parseDepthSnapshot,
  parseDepthUpdate,
  parseTrade,
  type AggTradeEvent,
  type TradeEvent,
} from "@l2flow/binance";
import {
  BookSnapshot,
  encodeBookSnapshot,
  encodeTrade,
  encodeWindow,
  EXCHANGE,
  msgIds,
  Side,
  STREAM_SUBJECTS,
  STREAMS,
  subjects,
  Trade,
  TradeKind,
  Window,
} from "@l2flow/contracts";
import { WindowAggregator } from "@l2flow/windows";
import { compare, SampleTimer, settle, type Candidate } from "../lib/measure.js";
import { rawFrames, RECORDINGS, type RawFrame } from "../lib/recorded.js";
import type { Check, Row, SuiteContext, SuiteResult } from "../lib/types.js";

/** Suite id for `--only`. */
export const name = "parse";
/** Report heading. */
export const title = "Frame parsing and normalization: raw MD_RAW bytes to normalized protobuf";
/** After the order book. */
export const order = 20;

/** Levels per side in a published book snapshot (the normalizer's BOOK_DEPTH default). */
const BOOK_DEPTH = 20;

/** What one normalized frame produces (as the normalizer builds it before publishing). */
interface Out {
  readonly subject: string;
  readonly data: Uint8Array;
  readonly msgId: string;
}

/**
 * A row encoding `messages` (built beforehand, untimed) with `encode`: its "frames" are the messages,
 * counted as the first `messages.length` of `frames`.
 */
function encodeAlone<T>(
  name: string,
  frames: readonly RawFrame[],
  messages: readonly T[],
  encode: (m: T) => Uint8Array,
): Workload<undefined> {
  return {
    name,
    frames: frames.slice(0, messages.length),
    encodeOnly: true,
    setup: () => undefined,
    pass() {
      let n = 0;
      for (const m of messages) n += encode(m).length;
      return n;
    },
  };
}

/** A workload: frames, a fresh state per pass (untimed), and the timed pass returning output bytes. */
interface Workload<S> {
  readonly name: string;
  readonly frames: readonly RawFrame[];
  /** True when the pass encodes prebuilt messages (no input bytes are read). */
  readonly encodeOnly?: boolean;
  setup(): S;
  pass(state: S): number;
}

function tradeOut(
  symbol: string,
  kind: TradeKind,
  id: number,
  t: TradeEvent | AggTradeEvent,
  firstTradeId: number,
  lastTradeId: number,
): Out {
  const trade: Trade = {
    exchange: EXCHANGE,
    symbol,
    kind,
    tradeId: id,
    price: t.price,
    quantity: t.quantity,
    takerSide: t.buyerIsMaker ? Side.SIDE_SELL : Side.SIDE_BUY,
    tradeTimeUs: t.tradeTime * 1000,
    eventTimeUs: t.eventTime * 1000,
    receiveTimeUs: 0,
    firstTradeId,
    lastTradeId,
  };
  const tag = kind === TradeKind.TRADE_KIND_TRADE ? "trade" : "aggtrade";
  return {
    subject: subjects.trade(symbol),
    data: encodeTrade(trade), // as the normalizer does
    msgId: msgIds.normTrade(symbol, tag, id),
  };
}

function bookOut(symbol: string, sync: BookSync): Out {
  const book = sync.book;
  const snap: BookSnapshot = {
    exchange: EXCHANGE,
    symbol,
    lastUpdateId: book.lastUpdateId,
    epoch: sync.epoch,
    eventTimeUs: sync.lastEventTime * 1000,
    receiveTimeUs: 0,
    bids: book.topBids(BOOK_DEPTH),
    asks: book.topAsks(BOOK_DEPTH),
  };
  return {
    subject: subjects.book(symbol),
    data: encodeBookSnapshot(snap), // as the normalizer does
    msgId: msgIds.book(symbol, sync.epoch, book.lastUpdateId),
  };
}

function sumBytes(out: readonly Out[]): number {
  let n = 0;
  for (const o of out) n += o.data.length;
  return n;
}

/** Per-symbol state of the full normalizer path. */
interface SymbolState {
  readonly sync: BookSync;
  readonly windows: WindowAggregator[];
  lastTradeId: number;
  lastAggId: number;
}

/**
 * The normalizer's per-message work for any raw frame (services/normalizer/src/service.ts `handle`):
 * route by subject, parse, dedupe trades by id, apply diffs and snapshots through `BookSync`, build and
 * encode a `BookSnapshot` after every applied diff, a `Trade` per trade, and feed the windows.
 */
function normalizeFrame(
  subject: string,
  bytes: Buffer,
  states: Map<string, SymbolState>,
  withWindows: boolean,
  out: Out[],
): void {
  const parts = subject.split(".");
  const kind = parts[3] ?? "";
  const symbol = parts[4] ?? "";
  let s = states.get(symbol);
  if (s === undefined) {
    s = {
      sync: new BookSync(),
      windows: withWindows
        ? [new WindowAggregator({ symbol, interval: "1s", exchange: EXCHANGE, bookLevels: BOOK_DEPTH })]
        : [],
      lastTradeId: 0,
      lastAggId: 0,
    };
    states.set(symbol, s);
  }
  const windowOuts = (closed: readonly Window[]) => {
    for (const w of closed)
      out.push({
        subject: subjects.window(w.interval, w.symbol),
        data: encodeWindow(w),
        msgId: msgIds.window(w.interval, w.symbol, w.startTimeMs),
      });
  };
  switch (kind) {
    case "depth": {
      const d = parseDepthUpdate(bytes);
      for (const w of s.windows) w.beforeBookUpdate(d.eventTime, s.sync.book, s.sync.epoch);
      if (s.sync.onDiff(d).type === "applied") {
        out.push(bookOut(symbol, s.sync));
        for (const w of s.windows)
          windowOuts(w.onBook(s.sync.lastEventTime || d.eventTime, s.sync.book, s.sync.epoch));
      }
      return;
    }
    case "snapshot": {
      if (s.sync.onSnapshot(parseDepthSnapshot(bytes)).type === "applied") out.push(bookOut(symbol, s.sync));
      return;
    }
    case "trade": {
      const t = parseTrade(bytes);
      if (t.tradeId <= s.lastTradeId) return;
      s.lastTradeId = t.tradeId;
      out.push(tradeOut(symbol, TradeKind.TRADE_KIND_TRADE, t.tradeId, t, 0, 0));
      const wt = {
        timeMs: t.tradeTime,
        price: +t.price,
        quantity: +t.quantity,
        buyerIsMaker: t.buyerIsMaker,
      };
      for (const w of s.windows) windowOuts(w.onTrade(wt));
      return;
    }
    case "aggtrade": {
      const a = parseAggTrade(bytes);
      if (a.aggTradeId <= s.lastAggId) return;
      s.lastAggId = a.aggTradeId;
      out.push(
        tradeOut(symbol, TradeKind.TRADE_KIND_AGG_TRADE, a.aggTradeId, a, a.firstTradeId, a.lastTradeId),
      );
      const wt = {
        timeMs: a.tradeTime,
        price: +a.price,
        quantity: +a.quantity,
        buyerIsMaker: a.buyerIsMaker,
      };
      for (const w of s.windows) windowOuts(w.onTrade(wt));
      return;
    }
    default:
      throw new Error(`unexpected raw kind ${kind}`);
  }
}

function workloads(frames: readonly RawFrame[]): Workload<unknown>[] {
  const trades = frames.filter((f) => f.kind === "trade" || f.kind === "aggtrade");
  const depth = frames.filter((f) => f.kind === "depth");
  const snapshots = frames.filter((f) => f.kind === "snapshot");
  const agg = trades[0]?.kind === "aggtrade";
  const subjectsOf = frames.map((f) => `md.raw.${EXCHANGE}.${f.kind}.${f.symbol}`);
  const newSyncs = () => {
    const m = new Map<string, BookSync>();
    for (const f of snapshots) {
      if (m.has(f.symbol)) continue;
      const sync = new BookSync();
      sync.onSnapshot(parseDepthSnapshot(f.bytes));
      m.set(f.symbol, sync);
    }
    return m;
  };
  const list: Workload<unknown>[] = [
    {
      name: `${agg ? "aggTrade" : "trade"}: JSON.parse only`,
      frames: trades,
      setup: () => undefined,
      pass() {
        let n = 0;
        for (const f of trades) n += (JSON.parse(f.bytes.toString("utf8")) as { p: string }).p.length;
        return n;
      },
    },
    {
      name: `${agg ? "aggTrade" : "trade"}: ${agg ? "parseAggTrade" : "parseTrade"} (JSON.parse + checks)`,
      frames: trades,
      setup: () => undefined,
      pass() {
        let n = 0;
        for (const f of trades) n += (agg ? parseAggTrade(f.bytes) : parseTrade(f.bytes)).price.length;
        return n;
      },
    },
    {
      name: `${agg ? "aggTrade" : "trade"}: bytes → Trade protobuf`,
      frames: trades,
      setup: () => undefined,
      pass() {
        let n = 0;
        for (const f of trades) {
          if (agg) {
            const a = parseAggTrade(f.bytes);
            n += tradeOut(
              f.symbol,
              TradeKind.TRADE_KIND_AGG_TRADE,
              a.aggTradeId,
              a,
              a.firstTradeId,
              a.lastTradeId,
            ).data.length;
          } else {
            const t = parseTrade(f.bytes);
            n += tradeOut(f.symbol, TradeKind.TRADE_KIND_TRADE, t.tradeId, t, 0, 0).data.length;
          }
        }
        return n;
      },
    },
    {
      name: "depth: JSON.parse only",
      frames: depth,
      setup: () => undefined,
      pass() {
        let n = 0;
        for (const f of depth) n += (JSON.parse(f.bytes.toString("utf8")) as { b: unknown[] }).b.length;
        return n;
      },
    },
    {
      name: "depth: parseDepthUpdate (JSON.parse + checks)",
      frames: depth,
      setup: () => undefined,
      pass() {
        let n = 0;
        for (const f of depth) n += parseDepthUpdate(f.bytes).bids.length;
        return n;
      },
    },
    {
      name: `depth: bytes → exact book → BookSnapshot (top ${BOOK_DEPTH}) protobuf`,
      frames: depth,
      setup: newSyncs,
      pass(state) {
        const syncs = state as Map<string, BookSync>;
        let n = 0;
        for (const f of depth) {
          const sync = syncs.get(f.symbol)!;
          if (sync.onDiff(parseDepthUpdate(f.bytes)).type === "applied")
            n += bookOut(f.symbol, sync).data.length;
        }
        return n;
      },
    },
  ];
  // Encoding alone, on the messages the rows above build (prebuilt untimed), to show its share.
  const builtTrades: Trade[] = [];
  for (const f of trades) {
    const out = agg
      ? (() => {
          const a = parseAggTrade(f.bytes);
          return tradeOut(
            f.symbol,
            TradeKind.TRADE_KIND_AGG_TRADE,
            a.aggTradeId,
            a,
            a.firstTradeId,
            a.lastTradeId,
          );
        })()
      : (() => {
          const t = parseTrade(f.bytes);
          return tradeOut(f.symbol, TradeKind.TRADE_KIND_TRADE, t.tradeId, t, 0, 0);
        })();
    builtTrades.push(Trade.decode(out.data));
  }
  const builtBooks: BookSnapshot[] = [];
  const syncs = newSyncs();
  for (const f of depth) {
    const sync = syncs.get(f.symbol)!;
    if (sync.onDiff(parseDepthUpdate(f.bytes)).type === "applied")
      builtBooks.push(BookSnapshot.decode(bookOut(f.symbol, sync).data));
  }
  // The 1 s windows the last row closes, as the normalizer builds them.
  const builtWindows: Window[] = [];
  {
    const states = new Map<string, SymbolState>();
    const outs: Out[] = [];
    frames.forEach((f, i) => normalizeFrame(subjectsOf[i]!, f.bytes, states, true, outs));
    // MD_WINDOW's subjects (`md.window.binance.>`) without the wildcard, as the normalizer routes them.
    const windowPrefix = STREAM_SUBJECTS[STREAMS.window][0].slice(0, -1);
    for (const o of outs) if (o.subject.startsWith(windowPrefix)) builtWindows.push(Window.decode(o.data));
  }
  list.push(
    encodeAlone("Trade.encode alone (prebuilt messages)", trades, builtTrades, (t) =>
      Trade.encode(t).finish(),
    ),
    encodeAlone("encodeTrade alone, the normalizer's encoder (same bytes)", trades, builtTrades, encodeTrade),
    encodeAlone(`BookSnapshot.encode alone (top ${BOOK_DEPTH}, prebuilt messages)`, depth, builtBooks, (b) =>
      BookSnapshot.encode(b).finish(),
    ),
    encodeAlone(
      "encodeBookSnapshot alone, the normalizer's encoder (same bytes)",
      depth,
      builtBooks,
      encodeBookSnapshot,
    ),
    encodeAlone("Window.encode alone (1 s windows, prebuilt messages)", frames, builtWindows, (w) =>
      Window.encode(w).finish(),
    ),
    encodeAlone(
      "encodeWindow alone, the normalizer's encoder (same bytes)",
      frames,
      builtWindows,
      encodeWindow,
    ),
  );
  for (const withWindows of [false, true]) {
    list.push({
      name: `all frames in recorded order: normalizer per-message work${withWindows ? " + 1 s windows" : ""}`,
      frames,
      setup: () => new Map<string, SymbolState>(),
      pass(state) {
        const states = state as Map<string, SymbolState>;
        const out: Out[] = [];
        let n = 0;
        for (let i = 0; i < frames.length; i++) {
          normalizeFrame(subjectsOf[i]!, frames[i]!.bytes, states, withWindows, out);
          n += sumBytes(out);
          out.length = 0;
        }
        return n;
      },
    });
  }
  return list;
}

/** Times `passes` passes per sample, each on fresh state built (untimed) before a forced GC. */
function candidate(w: Workload<unknown>, passes: number, outBytes: { value: number }): Candidate {
  return {
    name: w.name,
    sample() {
      const states = Array.from({ length: passes }, () => w.setup());
      settle();
      const timer = new SampleTimer();
      for (let p = 0; p < passes; p++) {
        timer.start();
        outBytes.value = w.pass(states[p]);
        timer.stop();
      }
      return { ns: timer.ns, cpuNs: timer.cpuNs, units: w.frames.length * passes };
    },
  };
}

/** Runs the suite. */
export async function run(ctx: SuiteContext): Promise<SuiteResult> {
  const rows: Row[] = [];
  const checks: Check[] = [];
  const data: Record<string, unknown> = {};
  const repeats = ctx.quick ? 3 : 10;
  const warmup = ctx.quick ? 1 : 3;
  const targetNs = ctx.quick ? 30e6 : 100e6;
  for (const rec of RECORDINGS) {
    if (ctx.signal.aborted) break;
    const frames = rawFrames(rec.path);
    const list = workloads(frames);
    const outBytes = list.map(() => ({ value: 0 }));
    const candidates = list.map((w, i) => {
      // One untimed pass to size the sample: about `targetNs` of work each.
      const s = w.setup();
      const t0 = process.hrtime.bigint();
      w.pass(s);
      const ns = Number(process.hrtime.bigint() - t0);
      return candidate(w, Math.max(1, Math.min(200, Math.ceil(targetNs / Math.max(ns, 1)))), outBytes[i]!);
    });
    ctx.log(`  ${rec.label}: ${frames.length} frames, ${list.length} workloads`);
    const results = compare(candidates, { warmup, repeats });
    results.forEach((r, i) => {
      const w = list[i]!;
      const inBytes = w.frames.reduce((a, f) => a + f.bytes.length, 0);
      const outPerFrame =
        w.encodeOnly === true || w.name.includes("protobuf") || w.name.includes("normalizer")
          ? outBytes[i]!.value
          : NaN;
      rows.push({
        group: rec.label,
        label: w.name,
        metrics: [
          { name: "frames", value: r.rate.median, unit: "/s", spread: r.rate.spread },
          { name: "per frame", value: r.nsPerUnit / 1000, unit: "µs" },
          {
            name: "input",
            value: w.encodeOnly === true ? "" : (r.rate.median * inBytes) / w.frames.length / 2 ** 20,
            unit: "MiB/s",
          },
          { name: "frames in pass", value: w.frames.length },
          {
            name: "protobuf out per frame",
            value: Number.isNaN(outPerFrame) ? "" : outPerFrame / w.frames.length,
            unit: "B",
          },
        ],
      });
    });
    const full = list.findIndex((w) => w.name.startsWith("all frames") && !w.name.includes("windows"));
    const books = outBytes[full]!.value;
    checks.push({
      name: `${rec.label}: the normalizer path produced output`,
      pass: books > 0,
      message: `${books} protobuf bytes per pass over ${frames.length} frames`,
    });
    data[rec.label] = { frames: frames.length, results };
    await new Promise((r) => setImmediate(r));
  }
  return {
    rows,
    checks,
    data,
    notes: [
      `Input: each frame's inner \`data\` JSON as a Buffer, the bytes MD_RAW holds. "JSON.parse only" is ` +
        `\`JSON.parse(buf.toString())\`; the parse functions of @l2flow/binance add the checks that make bad ` +
        `input a counted error (types, non-negative decimals on every price and size). The protobuf rows ` +
        `add what the normalizer does per frame: dedupe, \`BookSync\` (continuity checks, the exact book), ` +
        `\`topBids/topAsks(${BOOK_DEPTH})\`, \`encodeBookSnapshot\` / \`encodeTrade\`, subject and message id. The ` +
        `"all frames" rows run the normalizer's per-message dispatch over every trade, diff and snapshot in ` +
        `recorded order (subject split included), with and without a 1 s \`WindowAggregator\`; they leave out ` +
        `NATS (consume, publish, ack), metrics and the receive-time header. The "encode alone" rows encode the ` +
        `same messages prebuilt (their "frames" are messages): the share of protobuf encoding in the rows above.`,
      `Median of ${repeats} samples after ${warmup} warm-up rounds, workloads taking turns in a rotating order; ` +
        `each sample holds enough passes for ~${targetNs / 1e6} ms of work, each pass on fresh state built ` +
        `before a forced GC and a pause for V8's sweeper threads. "protobuf out per frame" is the encoded output bytes divided by input frames.`,
    ],
  };
}

import type { BinanceRestClient, DedupeFilter } from "@l2flow/binance";

/** The two trade streams whose ids are consecutive per symbol, so a hole is visible. */
export type TradeKind = "trade" | "aggtrade";

/** What `TradeBackfill` needs from ingest. */
export interface TradeBackfillOptions {
  readonly rest: Pick<BinanceRestClient, "getHistoricalTrades" | "getAggTrades">;
  /** The same filter the live frames pass, so a backfilled id is never stored twice locally. */
  readonly dedupe: DedupeFilter;
  /** Wait this long after a hole appears before fetching (the other connection may still fill it). */
  readonly delayMs: number;
  /** Ids fetched per hole at most; the rest is reported as unrecoverable. */
  readonly maxIdsPerGap: number;
  /** Multiplies REST times (ms) to the stream's unit: 1, or 1000 with microsecond timestamps. */
  readonly timeScale: number;
  /**
   * Stores one recovered trade, as a stream-format JSON event; `liveHigh` is the highest id of its
   * kind seen live by then (at least `id`).
   */
  readonly publish: (
    kind: TradeKind,
    symbol: string,
    id: number,
    json: string,
    receiveTimeNs: bigint,
    liveHigh: number,
  ) => void;
  /** Ids that neither the streams nor REST could give. */
  readonly onUnrecoverable: (
    kind: TradeKind,
    symbol: string,
    fromId: number,
    toId: number,
    reason: string,
  ) => void;
  /**
   * Holes waiting at most (default 10 000); a hole beyond is reported as unrecoverable at once. Holes
   * are fetched one at a time through the REST queue, which a 418 can pause for minutes or days while
   * reconnects keep opening holes for every symbol.
   */
  readonly maxHoles?: number;
  readonly onRecovered?: (kind: TradeKind, symbol: string, count: number) => void;
  readonly onError?: (err: unknown, kind: TradeKind, symbol: string) => void;
}

interface Hole {
  readonly kind: TradeKind;
  readonly symbol: string;
  readonly lo: number;
  readonly hi: number;
  /** Ids inside [lo, hi] that arrived live after the hole was seen. */
  readonly filled: Set<number>;
  readonly dueAt: number;
  /**
   * Ids that arrived live but were never stored (dropped from the outage buffer): fetched again
   * although the dedupe filter has seen them.
   */
  readonly refetch?: boolean;
}

const PAGE = 1000;
const DEFAULT_MAX_HOLES = 10_000;
const ATTEMPTS = 3;

/**
 * Recovers the trades every connection missed. Binance numbers trades (and aggregate trades)
 * consecutively per symbol, so a live id above the highest seen + 1 proves a hole: after a disconnect,
 * a stall, a rotation's cut-over or a dropped frame. After `delayMs` (a slower redundant connection
 * may still deliver them) the ids still missing are fetched by id over REST — through the same
 * weight-aware queue as snapshots, at normal priority — converted to the stream's event format and
 * stored with the same message ids as live frames, so `MD_RAW` holds each trade once whichever path
 * delivered it. Ids REST cannot give are reported once.
 */
export class TradeBackfill {
  readonly #o: TradeBackfillOptions;
  /** The highest live id per kind and symbol (keyed by the caller's strings: no key built per trade). */
  readonly #highest: Readonly<Record<TradeKind, Map<string, number>>> = {
    trade: new Map(),
    aggtrade: new Map(),
  };
  readonly #holes: Hole[] = [];
  /** Ids dropped before they were stored, per kind and symbol, as ranges: fetched on `release`. */
  readonly #lost = new Map<string, { kind: TradeKind; symbol: string; ranges: [number, number][] }>();
  #timer: NodeJS.Timeout | undefined;
  #running: Promise<void> | undefined;
  readonly #abort = new AbortController();
  #closed = false;

  constructor(options: TradeBackfillOptions) {
    this.#o = options;
  }

  /** Holes waiting or being fetched. */
  get pending(): number {
    return this.#holes.length;
  }

  /**
   * The highest id already stored for a symbol (read from MD_RAW at start): the first live trade above
   * it + 1 then opens a hole, so trades made while no ingest was running are fetched back too.
   */
  seed(kind: TradeKind, symbol: string, id: number): void {
    const bySymbol = this.#highest[kind];
    const highest = bySymbol.get(symbol);
    if (highest === undefined || id > highest) bySymbol.set(symbol, id);
  }

  /** Every live trade id that passed the dedupe filter, in arrival order. */
  observe(kind: TradeKind, symbol: string, id: number): void {
    const bySymbol = this.#highest[kind];
    const highest = bySymbol.get(symbol);
    if (highest === undefined || id > highest) bySymbol.set(symbol, id);
    if (highest === undefined) return;
    if (id > highest + 1) {
      this.#open(kind, symbol, highest + 1, id - 1);
    } else if (id < highest) {
      for (const h of this.#holes)
        if (h.kind === kind && h.symbol === symbol && id >= h.lo && id <= h.hi) h.filled.add(id);
    }
  }

  /**
   * A trade that arrived live but was never stored (the outage buffer dropped it while NATS was
   * away): fetched again over REST once `release` says NATS is back, instead of staying a gap.
   */
  lost(kind: TradeKind, symbol: string, id: number): void {
    if (this.#closed) return;
    const key = `${kind} ${symbol}`;
    let entry = this.#lost.get(key);
    if (entry === undefined) this.#lost.set(key, (entry = { kind, symbol, ranges: [] }));
    const last = entry.ranges[entry.ranges.length - 1];
    // Dropped oldest first, so a symbol's ids mostly come consecutively: one range per outage.
    if (last !== undefined && id === last[1] + 1) last[1] = id;
    else if (last === undefined || id > last[1] || id < last[0]) entry.ranges.push([id, id]);
  }

  /** NATS is back: the trades `lost` recorded are fetched again (after `delayMs`). */
  release(): void {
    for (const { kind, symbol, ranges } of this.#lost.values())
      for (const [lo, hi] of ranges) this.#open(kind, symbol, lo, hi, true);
    this.#lost.clear();
  }

  /** Forgets a symbol (removed from collection); its open holes are dropped. */
  forget(symbol: string): void {
    for (const bySymbol of Object.values(this.#highest)) bySymbol.delete(symbol);
    for (let i = this.#holes.length - 1; i >= 0; i--)
      if (this.#holes[i]!.symbol === symbol) this.#holes.splice(i, 1);
    for (const kind of ["trade", "aggtrade"] as const) this.#lost.delete(`${kind} ${symbol}`);
  }

  /** Resolves when no hole is waiting (or at `timeoutMs`). */
  async settled(timeoutMs = 30_000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while ((this.#holes.length > 0 || this.#running !== undefined) && Date.now() < deadline)
      await new Promise((r) => setTimeout(r, 20));
  }

  /** Stops fetching; holes still open are reported as unrecoverable. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    if (this.#timer !== undefined) clearTimeout(this.#timer);
    this.#abort.abort();
    await this.#running?.catch(() => undefined);
    for (const h of this.#holes.splice(0))
      this.#reportMissing(h, h.lo, h.hi, "ingest stopped before the backfill ran");
  }

  #open(kind: TradeKind, symbol: string, lo: number, hi: number, refetch = false): void {
    if (this.#closed) return;
    let from = lo;
    if (hi - lo + 1 > this.#o.maxIdsPerGap) {
      from = hi - this.#o.maxIdsPerGap + 1;
      this.#o.onUnrecoverable(
        kind,
        symbol,
        lo,
        from - 1,
        `hole of ${hi - lo + 1} ids exceeds the backfill limit`,
      );
    }
    const hole: Hole = {
      kind,
      symbol,
      lo: from,
      hi,
      filled: new Set(),
      dueAt: Date.now() + this.#o.delayMs,
      refetch,
    };
    if (this.#holes.length >= (this.#o.maxHoles ?? DEFAULT_MAX_HOLES)) {
      this.#reportMissing(hole, from, hi, "too many holes already wait for the backfill (REST paused?)");
      return;
    }
    this.#holes.push(hole);
    this.#schedule();
  }

  #schedule(): void {
    if (this.#timer !== undefined || this.#running !== undefined || this.#closed) return;
    const next = this.#holes[0];
    if (next === undefined) return;
    this.#timer = setTimeout(
      () => {
        this.#timer = undefined;
        this.#running = this.#drain().finally(() => {
          this.#running = undefined;
          this.#schedule();
        });
      },
      Math.max(0, next.dueAt - Date.now()),
    );
  }

  async #drain(): Promise<void> {
    while (!this.#closed) {
      const h = this.#holes[0];
      if (h === undefined || h.dueAt > Date.now()) return;
      try {
        await this.#fill(h);
      } catch (err) {
        if (this.#closed) return;
        this.#o.onError?.(err, h.kind, h.symbol);
      }
      const i = this.#holes.indexOf(h);
      if (i >= 0) this.#holes.splice(i, 1);
    }
  }

  async #fill(h: Hole): Promise<void> {
    let cursor = h.lo;
    let recovered = 0;
    try {
      for (;;) {
        while (cursor <= h.hi && h.filled.has(cursor)) cursor++;
        if (cursor > h.hi || this.#closed) return;
        const page = await this.#page(h, cursor, Math.min(PAGE, h.hi - cursor + 1));
        if (page.length === 0) {
          this.#reportMissing(h, cursor, h.hi, "REST returned no trades from this id");
          return;
        }
        if (page[0]!.id > cursor)
          this.#reportMissing(h, cursor, Math.min(h.hi, page[0]!.id - 1), "REST has no trade with these ids");
        for (const t of page) {
          if (t.id > h.hi) break;
          if (t.id < cursor || h.filled.has(t.id)) continue;
          h.filled.add(t.id);
          // A refetched trade was seen live, and lost: stored now (JetStream drops it if another
          // replica stored it meanwhile).
          if (this.#o.dedupe.seen(h.kind, h.symbol, t.id) && h.refetch !== true) continue;
          const liveHigh = Math.max(t.id, this.#highest[h.kind].get(h.symbol) ?? 0);
          this.#o.publish(h.kind, h.symbol, t.id, t.json, BigInt(Date.now()) * 1_000_000n, liveHigh);
          recovered++;
        }
        cursor = Math.max(cursor, page[page.length - 1]!.id + 1);
      }
    } catch (err) {
      if (!this.#closed)
        this.#reportMissing(
          h,
          cursor,
          h.hi,
          `REST backfill failed: ${err instanceof Error ? err.message : String(err)}`,
        );
      throw err;
    } finally {
      if (recovered > 0) this.#o.onRecovered?.(h.kind, h.symbol, recovered);
    }
  }

  /** One page of trades from `fromId`, as stream-format events, retried a few times. */
  async #page(h: Hole, fromId: number, limit: number): Promise<{ id: number; json: string }[]> {
    const options = { priority: "normal" as const, signal: this.#abort.signal };
    const scale = this.#o.timeScale;
    for (let attempt = 1; ; attempt++) {
      try {
        if (h.kind === "trade") {
          const res = await this.#o.rest.getHistoricalTrades(h.symbol, fromId, limit, options);
          return res.data.map((t) => ({
            id: t.id,
            json: JSON.stringify({
              e: "trade",
              E: t.time * scale,
              s: h.symbol,
              t: t.id,
              p: t.price,
              q: t.qty,
              T: t.time * scale,
              m: t.isBuyerMaker,
              M: t.isBestMatch,
            }),
          }));
        }
        const res = await this.#o.rest.getAggTrades(h.symbol, fromId, limit, options);
        return res.data.map((a) => ({
          id: a.a,
          json: JSON.stringify({
            e: "aggTrade",
            E: a.T * scale,
            s: h.symbol,
            a: a.a,
            p: a.p,
            q: a.q,
            f: a.f,
            l: a.l,
            T: a.T * scale,
            m: a.m,
            M: a.M,
          }),
        }));
      } catch (err) {
        if (attempt >= ATTEMPTS || this.#closed) throw err;
        await new Promise((r) => setTimeout(r, 500 * attempt));
      }
    }
  }

  #reportMissing(h: Hole, from: number, to: number, reason: string): void {
    // Report only the ids that really never arrived, as contiguous ranges.
    let start = -1;
    for (let id = from; id <= to + 1; id++) {
      const missing = id <= to && !h.filled.has(id);
      if (missing && start < 0) start = id;
      if (!missing && start >= 0) {
        this.#o.onUnrecoverable(h.kind, h.symbol, start, id - 1, reason);
        start = -1;
      }
    }
  }
}

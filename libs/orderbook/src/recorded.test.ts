import { describe, expect, it } from "vitest";
import { OrderBook, type RawLevel } from "@l2flow/orderbook";
import { readRecording } from "@l2flow/recording";
import { fixtures } from "@l2flow/testkit";

interface Ticker {
  b: string;
  B: string;
  a: string;
  A: string;
}

/** The full side, best first, from a map of price string → quantity string. */
function sorted(m: Map<string, string>, bids: boolean): [string, string][] {
  return [...m].sort((x, y) => (bids ? Number(y[0]) - Number(x[0]) : Number(x[0]) - Number(y[0])));
}

function apply(m: Map<string, string>, levels: readonly RawLevel[]): void {
  for (const [p, q] of levels) {
    if (Number(q) === 0) m.delete(p);
    else m.set(p, q);
  }
}

describe.each([
  ["BTCUSDT", fixtures.btcusdt],
  ["10 symbols", fixtures.tenSymbols],
])("OrderBook on the recorded diffs of %s", (_label, path) => {
  it("matches every bookTicker with the same update id exactly and a plain reference book throughout", () => {
    const events = readRecording(path).events;
    const books = new Map<
      string,
      { book: OrderBook; bids: Map<string, string>; asks: Map<string, string> }
    >();
    const tickers = new Map<string, Ticker>();
    for (const e of events)
      if (e.type === "frame" && e.kind === "bookTicker") {
        const t = JSON.parse(e.data) as Ticker & { u: number };
        tickers.set(`${e.symbol}:${t.u}`, t);
      }
    const pending = new Map<string, { U: number; u: number; b: RawLevel[]; a: RawLevel[] }[]>();
    const bridged = new Set<string>();
    let tickerChecks = 0;
    let fullChecks = 0;
    let applied = 0;
    const check = (symbol: string, u: number, full: boolean) => {
      const s = books.get(symbol)!;
      expect(s.book.isCrossed()).toBe(false);
      const t = tickers.get(`${symbol}:${u}`);
      if (t !== undefined) {
        tickerChecks++;
        expect([s.book.bestBid(), s.book.bestAsk()]).toEqual([
          { price: t.b, quantity: t.B },
          { price: t.a, quantity: t.A },
        ]);
      }
      if (full) {
        fullChecks++;
        expect(s.book.toSnapshot()).toEqual({
          bids: sorted(s.bids, true),
          asks: sorted(s.asks, false),
          lastUpdateId: u,
        });
      }
    };
    for (const e of events) {
      if (e.type === "snapshot") {
        if (books.has(e.symbol)) continue;
        const snap = JSON.parse(e.body) as { lastUpdateId: number; bids: RawLevel[]; asks: RawLevel[] };
        const s = { book: new OrderBook(), bids: new Map<string, string>(), asks: new Map<string, string>() };
        s.book.applySnapshot(snap.bids, snap.asks, snap.lastUpdateId);
        apply(s.bids, snap.bids);
        apply(s.asks, snap.asks);
        books.set(e.symbol, s);
        for (const d of pending.get(e.symbol) ?? []) {
          if (d.u <= s.book.lastUpdateId) continue;
          if (bridged.has(e.symbol)) expect(d.U).toBe(s.book.lastUpdateId + 1);
          else expect(d.U).toBeLessThanOrEqual(s.book.lastUpdateId + 1);
          bridged.add(e.symbol);
          s.book.applyDiff(d.b, d.a, d.u);
          apply(s.bids, d.b);
          apply(s.asks, d.a);
          applied++;
        }
        check(e.symbol, s.book.lastUpdateId, true);
        continue;
      }
      if (!e.kind.startsWith("depth")) continue;
      const d = JSON.parse(e.data) as { U: number; u: number; b: RawLevel[]; a: RawLevel[] };
      const s = books.get(e.symbol);
      if (s === undefined) {
        pending.set(e.symbol, [...(pending.get(e.symbol) ?? []), d]);
        continue;
      }
      // Diffs older than the snapshot are dropped; the first newer one bridges it, then U follows u.
      if (d.u <= s.book.lastUpdateId) continue;
      if (bridged.has(e.symbol)) expect(d.U).toBe(s.book.lastUpdateId + 1);
      else expect(d.U).toBeLessThanOrEqual(s.book.lastUpdateId + 1);
      bridged.add(e.symbol);
      s.book.applyDiff(d.b, d.a, d.u);
      apply(s.bids, d.b);
      apply(s.asks, d.a);
      applied++;
      check(e.symbol, d.u, applied % 50 === 0);
    }
    for (const [symbol, s] of books) check(symbol, s.book.lastUpdateId, true);
    expect(applied).toBeGreaterThan(3000);
    expect(tickerChecks).toBeGreaterThan(500);
    expect(fullChecks).toBeGreaterThan(60);
  });
});

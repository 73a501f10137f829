import { describe, expect, it } from "vitest";
import { formatDecimal, isZeroQuantity, OrderBook, parseDecimal } from "@l2flow/orderbook";

/** The same pseudo-random sequence in [0, 1) for a seed on every run (a linear congruential generator). */
function seededRandom(seed: number): () => number {
  return () => (seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31;
}

/** A new book restored from `book.pack()` after a trip through JSON, as a checkpoint goes. */
function repacked(book: OrderBook): OrderBook {
  const r = new OrderBook();
  r.applyPacked(JSON.parse(JSON.stringify(book.pack())) as ReturnType<OrderBook["pack"]>);
  return r;
}

describe("OrderBook", () => {
  const book = () => {
    const b = new OrderBook();
    b.applySnapshot(
      [
        ["100.00", "1.0"],
        ["99.50", "2.0"],
        ["99.00", "3.0"],
      ],
      [
        ["100.50", "1.5"],
        ["101.00", "2.5"],
        ["102.00", "4.0"],
      ],
      10,
    );
    return b;
  };

  it("keeps both sides sorted best first and returns the exchange's strings", () => {
    const b = book();
    expect(b.topBids(2)).toEqual([
      { price: "100.00", quantity: "1.0" },
      { price: "99.50", quantity: "2.0" },
    ]);
    expect(b.topAsks(5).map((l) => l.price)).toEqual(["100.50", "101.00", "102.00"]);
    expect(b.lastUpdateId).toBe(10);
  });

  it("applies diffs: insert, update, and quantity zero removes", () => {
    const b = book();
    b.applyDiff(
      [
        ["100.25", "0.7"],
        ["99.50", "0.00000000"],
      ],
      [
        ["100.50", "0.5"],
        ["101.00", "0"],
      ],
      11,
    );
    expect(b.topBids(3).map((l) => [l.price, l.quantity])).toEqual([
      ["100.25", "0.7"],
      ["100.00", "1.0"],
      ["99.00", "3.0"],
    ]);
    expect(b.topAsks(3).map((l) => [l.price, l.quantity])).toEqual([
      ["100.50", "0.5"],
      ["102.00", "4.0"],
    ]);
    b.applyDiff([["98.00", "0"]], [], 12);
    expect(b.bidCount).toBe(3);
    expect(b.lastUpdateId).toBe(12);
  });

  it("computes mid, spread, microprice, imbalance and depth near mid", () => {
    const b = book();
    expect(b.mid()).toBeCloseTo(100.25, 10);
    expect(b.spread()).toBeCloseTo(0.5, 10);
    expect(b.microprice()).toBeCloseTo((100 * 1.5 + 100.5 * 1.0) / 2.5, 10);
    expect(b.imbalance(1)).toBeCloseTo((1 - 1.5) / 2.5, 10);
    expect(b.imbalance(3)).toBeCloseTo((6 - 8) / 14, 10);
    // 50 bps of 100.25 ≈ 0.501: bids >= 99.749, asks <= 100.751.
    expect(b.depthWithinBps(50)).toEqual({ bidQuantity: 1.0, askQuantity: 1.5 });
  });

  it("counts a level exactly on a depth boundary on both sides alike", () => {
    const b = new OrderBook();
    b.applySnapshot(
      [
        ["9999.99", "1"],
        ["9995", "2"],
        ["9990", "4"],
        ["9975", "8"],
      ],
      [
        ["10000.01", "1"],
        ["10005", "2"],
        ["10010", "4"],
        ["10025", "8"],
      ],
      1,
    );
    // mid 10000: 10 bps is 9990 and 10010 exactly (in doubles 10000 * 1.001 is 10009.999999999998).
    expect(b.depthWithinBps(10)).toEqual({ bidQuantity: 7, askQuantity: 7 });
    expect(b.depthWithinBpsAll([25, 10, 5])).toEqual([
      { bps: 25, bidQuantity: 15, askQuantity: 15 },
      { bps: 10, bidQuantity: 7, askQuantity: 7 },
      { bps: 5, bidQuantity: 3, askQuantity: 3 },
    ]);
  });

  it("detects a crossed book", () => {
    const b = book();
    expect(b.isCrossed()).toBe(false);
    b.setLevel("bid", "100.50", "1");
    expect(b.isCrossed()).toBe(true);
  });

  it("is empty-safe", () => {
    const b = new OrderBook();
    expect(b.bestBid()).toBeUndefined();
    expect(Number.isNaN(b.mid())).toBe(true);
    expect(b.imbalance(5)).toBe(0);
    expect(b.depthWithinBps(10)).toEqual({ bidQuantity: 0, askQuantity: 0 });
  });

  it("recognises zero quantities in any notation", () => {
    expect(isZeroQuantity("0")).toBe(true);
    expect(isZeroQuantity("0.00000000")).toBe(true);
    expect(isZeroQuantity("0.00000001")).toBe(false);
  });
});

describe("parseDecimal", () => {
  it("gives the same double as Number() for exchange decimals and falls back for anything else", () => {
    const samples = [
      "0",
      "0.00000000",
      "61685.99000000",
      "0.02100830",
      "0.1",
      "0.3",
      "123456789.12345678",
      "99999999999999.99",
      "9007199254740993",
      "1.",
      ".5",
      "",
      "1e3",
      "-1.5",
      "1.2.3",
      "abc",
      "00012.500",
      "0.0000000000000000000000001",
    ];
    const rnd = seededRandom(7);
    for (let i = 0; i < 20_000; i++) {
      const decimals = Math.floor(rnd() * 9);
      samples.push((rnd() * 10 ** Math.floor(rnd() * 7)).toFixed(decimals));
    }
    for (const s of samples) expect(Object.is(parseDecimal(s), Number(s)), s).toBe(true);
  });
});

describe("OrderBook against a plain reference", () => {
  /** The obvious book: a map from price string to quantity string, sorted on every read. */
  class Reference {
    readonly bids = new Map<string, string>();
    readonly asks = new Map<string, string>();
    set(side: "bid" | "ask", price: string, qty: string): void {
      const m = side === "bid" ? this.bids : this.asks;
      // The same price may arrive written differently ("100.5" vs "100.50"): key by value.
      for (const k of m.keys()) if (Number(k) === Number(price)) m.delete(k);
      if (!isZeroQuantity(qty)) m.set(price, qty);
    }
    top(side: "bid" | "ask", n: number): { price: string; quantity: string }[] {
      const m = side === "bid" ? this.bids : this.asks;
      const sign = side === "bid" ? -1 : 1;
      return [...m]
        .sort((a, b) => sign * (Number(a[0]) - Number(b[0])))
        .slice(0, n)
        .map(([price, quantity]) => ({ price, quantity }));
    }
  }

  it("agrees after every one of thousands of random inserts, updates and deletes", () => {
    const rnd = seededRandom(42);
    const book = new OrderBook();
    const ref = new Reference();
    for (let step = 0; step < 6_000; step++) {
      const side = rnd() < 0.5 ? "bid" : "ask";
      // Bids on 1.00–3.99, asks on 4.00–6.99, clustered so blocks fill, split, empty and merge.
      const tick = Math.floor(rnd() ** (step % 1000 < 500 ? 1 : 3) * 300);
      const price = (side === "bid" ? 3.99 - tick / 100 : 4 + tick / 100).toFixed(2);
      const qty = rnd() < 0.45 ? (rnd() < 0.5 ? "0" : "0.00000000") : (rnd() * 10).toFixed(3);
      book.setLevel(side, price, qty);
      ref.set(side, price, qty);
      expect(book.topBids(5)).toEqual(ref.top("bid", 5));
      expect(book.topAsks(5)).toEqual(ref.top("ask", 5));
      if (step % 97 === 0) {
        expect(book.topBids(10_000)).toEqual(ref.top("bid", 10_000));
        expect(book.topAsks(10_000)).toEqual(ref.top("ask", 10_000));
        expect(book.bidCount).toBe(ref.bids.size);
        expect(book.askCount).toBe(ref.asks.size);
        const sum = (l: { quantity: string }[]) => l.reduce((a, x) => a + Number(x.quantity), 0);
        const b = sum(ref.top("bid", 7));
        const a = sum(ref.top("ask", 7));
        expect(book.imbalance(7)).toBeCloseTo(a + b === 0 ? 0 : (b - a) / (a + b), 12);
        const mid = book.mid();
        if (Number.isFinite(mid)) {
          const lo = mid * (1 - 500 / 10_000);
          const hi = mid * (1 + 500 / 10_000);
          const d = book.depthWithinBps(500);
          expect(d.bidQuantity).toBeCloseTo(sum(ref.top("bid", 1e6).filter((l) => Number(l.price) >= lo)), 9);
          expect(d.askQuantity).toBeCloseTo(sum(ref.top("ask", 1e6).filter((l) => Number(l.price) <= hi)), 9);
          // All distances in one walk: the same sums bit for bit, in the order asked.
          const distances = [500, 1, 50, 0, 20_000, 50];
          expect(book.depthWithinBpsAll(distances)).toEqual(
            distances.map((bps) => ({ bps, ...book.depthWithinBps(bps) })),
          );
        }
      }
    }
  });

  it("gives back every level's exact strings, however the exchange wrote them, deep in the book too", () => {
    // Most levels are stored as numbers and formatted when read; these strings must come back as they
    // were sent: other numbers of decimals, leading zeros, integers, exponents, more digits than 2^52.
    const rnd = seededRandom(11);
    const odd = (value: number): string => {
      const forms = [
        value.toFixed(1),
        value.toFixed(5),
        `0${value.toFixed(4)}`,
        value.toExponential(6),
        `0${value.toFixed(8)}`,
        `${value.toFixed(4)}0000000000000`,
      ];
      return forms[Math.floor(rnd() * forms.length)]!;
    };
    const book = new OrderBook();
    const ref = new Reference();
    const check = () => {
      const snapshot = book.toSnapshot();
      const pairs = (l: { price: string; quantity: string }[]) => l.map((x) => [x.price, x.quantity]);
      expect(snapshot.bids).toEqual(pairs(ref.top("bid", 1e6)));
      expect(snapshot.asks).toEqual(pairs(ref.top("ask", 1e6)));
      expect(book.topBids(40)).toEqual(ref.top("bid", 40));
      expect(book.topAsks(40)).toEqual(ref.top("ask", 40));
      expect(repacked(book).toSnapshot()).toEqual(snapshot);
    };
    for (let step = 0; step < 8_000; step++) {
      const side = rnd() < 0.5 ? "bid" : "ask";
      // A wide, drifting range, so levels written near the top end up deep when the price moves.
      const centre = 50_000 + 400 * Math.sin(step / 700);
      const value =
        (side === "bid" ? centre - 1 : centre + 1) +
        ((side === "bid" ? -1 : 1) * Math.floor(rnd() * 600)) / 100;
      const price = rnd() < 0.05 ? odd(value) : value.toFixed(8);
      const qty =
        rnd() < 0.3
          ? "0.00000000"
          : rnd() < 0.05
            ? odd(rnd() * 3)
            : (Math.floor(rnd() * 3e8) / 1e8).toFixed(8);
      book.setLevel(side, price, qty);
      ref.set(side, price, qty);
      if (step % 500 === 0) check();
    }
    check();
    // Canonical strings past the 2^52 units up to which formatting is exact: toFixed(6) of the double
    // of "9000000000.012345" is "9000000000.012344". Deep in the book, below 200 better bids.
    const big = new OrderBook();
    const bigRef = new Reference();
    const set = (price: string) => {
      big.setLevel("bid", price, "1.00000000");
      bigRef.set("bid", price, "1.00000000");
    };
    for (let i = 0; i < 200; i++) set((9_100_000_000 + i).toFixed(6));
    set("4503599627.370495");
    for (const price of ["9000000000.012345", "9000000000.044021", "9000000000.051940"]) set(price);
    expect(big.toSnapshot().bids).toEqual(bigRef.top("bid", 1e6).map((l) => [l.price, l.quantity]));
    expect(big.topBids(1e6)).toEqual(bigRef.top("bid", 1e6));
    expect(repacked(big).toSnapshot()).toEqual(big.toSnapshot());
    // Past 2^50 units a level is packed as strings; below, as integers.
    const packed = big.pack().bids;
    expect(packed.s).toContainEqual(["9000000000.012345", "1.00000000"]);
    expect(packed.m).not.toContain(9000000000012345);
  });

  it("packs a book for a checkpoint as integers where it can, and restores every level and string", () => {
    const b = new OrderBook();
    const bids: [string, string][] = [];
    for (let i = 0; i < 300; i++)
      bids.push([(61_000 - i * 0.01).toFixed(8), ((i % 7) * 0.125 + 0.001).toFixed(8)]);
    bids.push(["60000.5", "2"]); // not canonical with the side's 8 decimals: kept as strings
    b.applySnapshot(bids, [["61001.00000000", "0.50000000"]], 42);
    const p = b.pack();
    expect(p.lastUpdateId).toBe(42);
    expect(p.bids.pd).toBe(8);
    expect(p.bids.qd).toBe(8);
    // The deep levels as integers (the top blocks keep their strings, so they stay strings).
    expect(p.bids.m.length / 2).toBeGreaterThan(200);
    // The deepest, "60997.01000000" "0.62600000": 6099701 (a 0.01 tick: 6 zeros off), 626 (5 zeros off).
    expect([p.bids.pz, p.bids.qz]).toEqual([6, 5]);
    expect(p.bids.m.slice(0, 4)).toEqual([6099701, 626, 1, 501]);
    expect(p.bids.s).toContainEqual(["60000.5", "2"]);
    expect(p.bids.s).toContainEqual(["61000.00000000", "0.00100000"]);
    expect(p.bids.m.length / 2 + p.bids.s.length).toBe(301);
    const r = repacked(b);
    expect(r.toSnapshot()).toEqual(b.toSnapshot());
    expect(r.lastUpdateId).toBe(42);
    // The same book afterwards: the same diffs give the same levels.
    for (const x of [b, r])
      x.applyDiff(
        [
          ["60998.00000000", "0"],
          ["60000.5", "3"],
          ["61000.00500000", "1.0"],
        ],
        [],
        43,
      );
    expect(r.toSnapshot()).toEqual(b.toSnapshot());
    expect(r.topBids(5)).toEqual(b.topBids(5));
    // An empty book and a side without canonical levels.
    const e = new OrderBook();
    e.applySnapshot([["1.5", "2"]], [], 1);
    expect(e.pack().bids).toEqual({ pd: -1, qd: -1, pz: 0, qz: 0, m: [], s: [["1.5", "2"]] });
    expect(repacked(new OrderBook()).toSnapshot()).toEqual({ bids: [], asks: [], lastUpdateId: 0 });
  });

  it("formats a canonical decimal back to the same string (what storing numbers relies on)", () => {
    const rnd = seededRandom(5);
    for (let i = 0; i < 50_000; i++) {
      const decimals = 1 + Math.floor(rnd() * 12);
      // Integers of units up to 2^52, spread over every magnitude.
      const units = Math.floor(rnd() * 2 ** Math.floor(rnd() * 52));
      const digits = String(units).padStart(decimals + 1, "0");
      const s = `${digits.slice(0, -decimals)}.${digits.slice(-decimals)}`;
      expect(parseDecimal(s).toFixed(decimals), s).toBe(s);
      expect(formatDecimal(parseDecimal(s), decimals), s).toBe(s);
    }
  });

  it("formatDecimal is toFixed for any number, not only parsed decimals", () => {
    const rnd = seededRandom(9);
    const values = [
      0,
      -0,
      1.005,
      1.255,
      0.5,
      2.5,
      -1.5,
      1e21,
      1e-7,
      NaN,
      Infinity,
      2 ** 50 / 1e3,
      2 ** 53 / 1e2,
    ];
    for (let i = 0; i < 20_000; i++) values.push((rnd() - 0.1) * 10 ** Math.floor(rnd() * 16 - 6));
    for (const x of values)
      for (const decimals of [0, 1, 2, 5, 8, 12])
        expect(formatDecimal(x, decimals), `${x} ${decimals}`).toBe(x.toFixed(decimals));
  });

  it("loads a snapshot in any order: later duplicates win, zero quantities are no level", () => {
    const b = new OrderBook();
    b.applySnapshot(
      [
        ["99.00", "3"],
        ["100.00", "1"],
        ["99.50", "2"],
        ["100.00", "4"],
        ["98.00", "0.000"],
      ],
      [["101.00", "1"]],
      5,
    );
    expect(b.toSnapshot()).toEqual({
      bids: [
        ["100.00", "4"],
        ["99.50", "2"],
        ["99.00", "3"],
      ],
      asks: [["101.00", "1"]],
      lastUpdateId: 5,
    });
    expect(b.bestBidQuantity()).toBe(4);
    // A large snapshot (several blocks) round-trips, and later diffs land in the right blocks.
    const bids: [string, string][] = [];
    for (let i = 0; i < 1000; i++) bids.push([(5000 - i * 0.5).toFixed(2), `${i + 1}`]);
    b.applySnapshot(bids, [["6000.00", "1"]], 9);
    expect(b.toSnapshot().bids).toEqual(bids);
    b.applyDiff(
      [
        ["4999.75", "7"],
        ["4500.50", "0"],
        ["1.00", "1"],
      ],
      [],
      10,
    );
    const after = b.topBids(2000);
    expect(after).toHaveLength(1001);
    expect(after[1]).toEqual({ price: "4999.75", quantity: "7" });
    expect(after.at(-1)).toEqual({ price: "1.00", quantity: "1" });
    expect(after.some((l) => l.price === "4500.50")).toBe(false);
  });

  it("returns new arrays from topBids/topAsks, so a caller's array is never changed by later updates", () => {
    const b = new OrderBook();
    b.applySnapshot([["1.0", "1"]], [["2.0", "1"]], 1);
    const before = b.topBids(5);
    b.applyDiff([["1.5", "3"]], [], 2);
    expect(before).toEqual([{ price: "1.0", quantity: "1" }]);
    expect(b.topBids(5)).toEqual([
      { price: "1.5", quantity: "3" },
      { price: "1.0", quantity: "1" },
    ]);
  });
  /** A book of random levels on both sides (several blocks each), and the same in the reference. */
  function randomBook(seed: number): { book: OrderBook; ref: Reference; rnd: () => number } {
    const rnd = seededRandom(seed);
    const book = new OrderBook();
    const ref = new Reference();
    for (let i = 0; i < 800; i++) {
      const side = rnd() < 0.5 ? "bid" : "ask";
      const tick = Math.floor(rnd() * 400);
      const price = (side === "bid" ? 3.99 - tick / 100 : 4 + tick / 100).toFixed(2);
      const qty = (rnd() * 10 + 0.001).toFixed(3);
      book.setLevel(side, price, qty);
      ref.set(side, price, qty);
    }
    return { book, ref, rnd };
  }

  it("trimTo drops the levels furthest from the top, whole blocks and part of one", () => {
    for (const max of [0, 1, 7, 24, 33, 100, 250, 10_000]) {
      const { book, ref } = randomBook(max + 1);
      const bids = ref.top("bid", 1e6);
      const asks = ref.top("ask", 1e6);
      const dropped = book.trimTo(max);
      expect(dropped).toBe(Math.max(0, bids.length - max) + Math.max(0, asks.length - max));
      expect(book.topBids(1e6)).toEqual(bids.slice(0, max));
      expect(book.topAsks(1e6)).toEqual(asks.slice(0, max));
      expect(book.bidCount).toBe(Math.min(max, bids.length));
      // Still a working book: inserts below and above the cut land in order.
      book.setLevel("bid", "0.01", "1");
      book.setLevel("bid", "3.995", "2");
      expect(book.topBids(1)).toEqual([{ price: "3.995", quantity: "2" }]);
      expect(book.topBids(1e6).at(-1)).toEqual({ price: "0.01", quantity: "1" });
    }
  });

  it("keeps every level's strings through splits, merges, trims and sweeps, with odd strings mixed in", () => {
    // Levels without strings and levels that must keep them (non-canonical) share blocks; moving them
    // between blocks (split, merge, trim) must move the strings with them and leave no stale ones.
    const rnd = seededRandom(17);
    const book = new OrderBook();
    let ref = new Reference();
    for (let step = 0; step < 12_000; step++) {
      const side = rnd() < 0.5 ? "bid" : "ask";
      const tick = Math.floor(rnd() ** 2 * 400);
      const value = side === "bid" ? 399.99 - tick / 100 : 400 + tick / 100;
      const price = rnd() < 0.1 ? `0${value.toFixed(3)}` : value.toFixed(2);
      const qty = rnd() < 0.4 ? "0.000" : rnd() < 0.1 ? `${(rnd() * 9).toFixed(5)}` : (rnd() * 9).toFixed(3);
      book.setLevel(side, price, qty);
      ref.set(side, price, qty);
      if (step % 1_000 === 999) {
        // Trim both to the same depth; the reference keeps its best `max` levels.
        const max = 20 + Math.floor(rnd() * 150);
        book.trimTo(max);
        const trimmed = new Reference();
        for (const s of ["bid", "ask"] as const)
          for (const l of ref.top(s, max)) trimmed.set(s, l.price, l.quantity);
        ref = trimmed;
      }
      if (step % 250 === 0 || step % 1_000 === 999) {
        const snapshot = book.toSnapshot();
        expect(snapshot.bids).toEqual(ref.top("bid", 1e6).map((l) => [l.price, l.quantity]));
        expect(snapshot.asks).toEqual(ref.top("ask", 1e6).map((l) => [l.price, l.quantity]));
        expect(book.topBids(30)).toEqual(ref.top("bid", 30));
        expect(book.bestAskQuantity()).toBe(Number(ref.top("ask", 1)[0]?.quantity ?? 0));
      }
    }
  });

  it("applyRefresh replaces the levels within the snapshot's range and keeps those beyond it", () => {
    for (const seed of [3, 5, 8]) {
      const { book, ref, rnd } = randomBook(seed);
      // The snapshot: the 30 best prices of each side with new quantities, some of them gone, and one
      // level the book never had.
      const snapSide = (side: "bid" | "ask") =>
        ref
          .top(side, 30)
          .filter(() => rnd() < 0.8)
          .map((l): [string, string] => [l.price, (rnd() * 5 + 0.5).toFixed(3)]);
      const bids = snapSide("bid");
      const asks = snapSide("ask");
      bids.push(["3.995", "9.000"]);
      const expected = new Reference();
      for (const [side, snap] of [
        ["bid", bids],
        ["ask", asks],
      ] as const) {
        const worst =
          side === "bid" ? Math.min(...snap.map((l) => +l[0])) : Math.max(...snap.map((l) => +l[0]));
        for (const l of ref.top(side, 1e6))
          if (side === "bid" ? +l.price < worst : +l.price > worst) expected.set(side, l.price, l.quantity);
        for (const [p, q] of snap) expected.set(side, p, q);
      }
      book.applyRefresh(bids, asks, 77);
      expect(book.lastUpdateId).toBe(77);
      expect(book.topBids(1e6)).toEqual(expected.top("bid", 1e6));
      expect(book.topAsks(1e6)).toEqual(expected.top("ask", 1e6));
      book.applyRefresh([], asks, 78);
      expect(book.bidCount).toBe(0);
    }
  });
});

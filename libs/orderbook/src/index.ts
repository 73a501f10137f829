/**
 * An exact L2 order book built from the exchange's price and quantity strings. Pure: no I/O.
 *
 * Each side is a list of small sorted blocks (see `Side`), best price last, so an insert or delete
 * moves at most one block's worth of entries wherever it lands and reading the top N walks the tail.
 * A price is parsed once per update into a double: the same decimal string always gives the same
 * double, and the distinct prices an exchange quotes (≤ 15 significant digits) give distinct doubles,
 * so comparing doubles orders levels exactly.
 *
 * A level is its price key and its quantity, unboxed in a block's two packed arrays of doubles, and
 * below the top nothing else: a busy book holds thousands of levels that nobody reads, and their strings
 * and objects were most of its memory (a BTCUSDT book of 3405 levels: 416 KB with strings, 215 KB
 * with boxed quantities instead, ~20 % less again with unboxed ones). Nothing is rounded on the way
 * out: a level goes without its strings only when both are canonical decimals (see `parseDecimal`)
 * with the side's numbers of decimals, and for those `toFixed(decimals)` of the double gives back the
 * very string the exchange sent. Other levels keep their strings. Levels near the top, read after every
 * update, keep `Level` objects, so reading the top N mostly allocates only the array that holds them;
 * their quantity is parsed only when a sum needs it.
 */

/** One level as the exchange wrote it. Level objects are immutable and may be shared between reads. */
export interface Level {
  readonly price: string;
  readonly quantity: string;
}

/** A `[price, quantity]` pair as Binance sends it. */
export type RawLevel = readonly [string, string];

/** True when a decimal string is zero ("0", "0.00000000"). */
export function isZeroQuantity(q: string): boolean {
  for (let i = 0; i < q.length; i++) {
    const c = q.charCodeAt(i);
    if (c !== 48 /* 0 */ && c !== 46 /* . */) return false;
  }
  return true;
}

const POW10 = [
  1, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15, 1e16, 1e17, 1e18, 1e19,
  1e20, 1e21, 1e22,
];

/** 2^52: below it, m / 10^k is within half a unit of its last decimal (see `parseDecimal`). */
const EXACT_UNITS = 4503599627370496;

/**
 * Set by every `parseDecimal` call: the string's number of decimals k when it is canonical — digits,
 * a point, k ≥ 1 digits, no leading zero before the point except a lone `0`, and its digits as an
 * integer m < 2^52 — and -1 otherwise. For a canonical string, `toFixed(k)` of the parsed double is
 * the string itself: the double x is m / 10^k correctly rounded, its spacing is below x / 2^52 <
 * 10^-k, so m is the unique integer nearest x·10^k, and toFixed prints exactly that, with the
 * integer part in the same canonical form.
 */
let parsedDecimals = -1;

/**
 * `Number(s)` for a plain decimal string, faster than the generic conversion and bit-identical to it:
 * when the digits form an integer m < 2^53 and there are k ≤ 22 decimals, m and 10^k are exact doubles
 * and IEEE division rounds m / 10^k correctly, as `Number()` does. Anything else (signs, exponents,
 * more digits, junk) falls back to `Number()`.
 */
export function parseDecimal(s: string): number {
  let m = 0;
  let frac = -1;
  const n = s.length;
  parsedDecimals = -1;
  for (let i = 0; i < n; i++) {
    const d = s.charCodeAt(i) - 48;
    if (d >= 0 && d <= 9) {
      m = m * 10 + d;
      if (frac >= 0) frac++;
    } else if (d === -2 /* . */ && frac < 0 && i > 0) {
      frac = 0;
    } else {
      return Number(s);
    }
  }
  if (n === 0 || frac === 0 || m > 9007199254740991 || frac > 22) return Number(s);
  if (frac > 0) {
    // A leading zero is canonical only as the whole integer part ("0.5", not "00.5" or "05.5").
    if (m < EXACT_UNITS && (s.charCodeAt(0) !== 48 || n - frac === 2)) parsedDecimals = frac;
    return m / POW10[frac]!;
  }
  return m;
}

/** 2^50: below it, `Math.round(x * 10^k)` recovers the m of x = m / 10^k exactly (see `formatDecimal`). */
const ROUND_EXACT = 1125899906842624;

/**
 * `x.toFixed(decimals)`, the same string for every x, faster for the values `parseDecimal` returns for
 * canonical decimals (a checkpoint formats every level of a book). When x is m / 10^k correctly
 * rounded with m < 2^50, x·10^k computed in doubles is within m·2^-52 < 0.25 of m, so rounding it
 * gives m back, checked by dividing again; toFixed's exact rounding of x also gives m (see
 * `parsedDecimals`), and prints m's digits with a point before the last k. Anything else goes to
 * `toFixed`.
 */
export function formatDecimal(x: number, decimals: number): string {
  if (decimals < 1 || decimals > 22) return x.toFixed(decimals);
  const m = exactUnits(x, POW10[decimals]!);
  return m < 0 ? x.toFixed(decimals) : withPoint(m, decimals);
}

/** The integer m < 2^50 with x = m / scale exactly (see `formatDecimal`), or -1 when there is none. */
function exactUnits(x: number, scale: number): number {
  const m = Math.round(x * scale);
  return m >= 0 && m < ROUND_EXACT && m / scale === x ? m : -1;
}

/** The canonical decimal string of m / 10^decimals for an integer m >= 0 and decimals >= 1. */
function withPoint(m: number, decimals: number): string {
  const digits = String(m);
  const point = digits.length - decimals;
  return point > 0 ? `${digits.slice(0, point)}.${digits.slice(point)}` : `0.${"0".repeat(-point)}${digits}`;
}

/**
 * One side of a book as a checkpoint holds it: most levels as two small integers each, which JSON
 * writes and reads without a string per price or quantity; the levels that keep their strings as the
 * exchange's `[price, quantity]`.
 *
 * A level's price as an integer is its decimal string without the point (`"61685.99000000"`, 8
 * decimals: 6168599000000), without the trailing zeros every price of the side has (`pz` of them:
 * 6168599 for a 0.01 tick), and written as the difference from the level before it in `m`, so a
 * side of consecutive ticks is mostly 1s. Quantities likewise lose the `qz` zeros they all end in.
 */
export interface PackedSide {
  /** Decimals of every price and quantity in `m` (-1: `m` is empty). */
  readonly pd: number;
  readonly qd: number;
  /** Trailing zeros taken off every price and every quantity in `m`. */
  readonly pz: number;
  readonly qz: number;
  /** Price step, quantity, price step, quantity... (the first step is from 0). */
  readonly m: readonly number[];
  /** The other levels, as the exchange wrote them. */
  readonly s: readonly RawLevel[];
}

/** A whole book as a checkpoint holds it (`OrderBook.pack`). */
export interface PackedBook {
  readonly bids: PackedSide;
  readonly asks: PackedSide;
  readonly lastUpdateId: number;
}

/**
 * The `[price, quantity]` strings of every level of a packed side, the integer ones first: a side
 * takes its numbers of decimals from the first canonical level it loads, and those are theirs.
 */
export function unpackSide(p: PackedSide): RawLevel[] {
  const out: RawLevel[] = [];
  const m = p.m;
  const ps = POW10[p.pz]!;
  const qs = POW10[p.qz]!;
  let price = 0;
  for (let i = 0; i + 1 < m.length; i += 2) {
    price += m[i]!;
    out.push([withPoint(price * ps, p.pd), withPoint(m[i + 1]! * qs, p.qd)]);
  }
  for (const l of p.s) out.push(l);
  return out;
}

/** Most levels a block holds; a full block splits in two. */
const BLOCK = 32;
/** Levels per block after a bulk load (room for inserts before the first split). */
const LOAD_FILL = 24;
/** A block this small merges with a neighbour when the two fit in `MERGE_INTO`. */
const MERGE_BELOW = 8;
const MERGE_INTO = 24;
/** Writes to the last this many blocks of a side keep the level's strings (they are read soon). */
const NEAR_TOP_BLOCKS = 2;
/** Every this many writes, one block below the top ones drops the strings it can format again. */
const SWEEP_EVERY = 256;

/** In a block's `strings`, a slot whose level has no strings kept (its key and quantity give them back). */
const NO_LEVEL: Level = Object.freeze({ price: "", quantity: "" });

/** A packed array of `BLOCK` doubles (V8 stores them unboxed, inline in the array). */
function doubles(): number[] {
  const a: number[] = [];
  for (let i = 0; i < BLOCK; i++) a.push(0.5);
  return a;
}

/** `BLOCK` slots of `NO_LEVEL` (pushed, so the array is packed like every other one). */
function noStrings(): Level[] {
  const a: Level[] = [];
  for (let i = 0; i < BLOCK; i++) a.push(NO_LEVEL);
  return a;
}

/**
 * A run of up to `BLOCK` consecutive levels of one side, keys ascending. A level is its key and its
 * quantity, unboxed in two packed arrays of doubles (16 bytes a level), plus its strings in `strings`
 * where they are kept; a block that keeps none has no `strings` array at all. Unused slots of
 * `strings` hold `NO_LEVEL`. A quantity is NaN while only its kept string has it (written near the top:
 * parsed when a sum needs it, stored when a sweep drops the strings).
 */
class Block {
  readonly keys: number[] = doubles();
  readonly quantities: number[] = doubles();
  strings: Level[] | undefined = undefined;
  n = 0;
}

/** Slot `j`'s quantity as a number (NaN in `quantities` means "parse the kept string"). */
function quantityAt(block: Block, j: number): number {
  const q = block.quantities[j]!;
  return q === q ? q : parseDecimal(block.strings![j]!.quantity);
}

/** `block.strings`, created when the block had none. */
function stringsOf(block: Block): Level[] {
  return block.strings ?? (block.strings = noStrings());
}

/** Slot `j`'s strings become `level` (`NO_LEVEL`: none); a block gets a `strings` array only for real ones. */
function putStrings(block: Block, j: number, level: Level): void {
  if (level !== NO_LEVEL) stringsOf(block)[j] = level;
  else if (block.strings !== undefined) block.strings[j] = NO_LEVEL;
}

/** Moves slot `from` of `src` to slot `to` of `dst` (keys, quantities and any strings). */
function moveSlot(src: Block, from: number, dst: Block, to: number): void {
  dst.keys[to] = src.keys[from]!;
  dst.quantities[to] = src.quantities[from]!;
  putStrings(dst, to, src.strings === undefined ? NO_LEVEL : src.strings[from]!);
}

/**
 * One side of the book: blocks of consecutive levels, keys (`price * sign`) ascending within and
 * across blocks, so the best level (highest bid, lowest ask) is the last slot of the last block for
 * both sides. An insert or delete moves at most `BLOCK` entries wherever it lands in the book; most
 * land in the last block, which is checked first.
 */
class Side {
  blocks: Block[] = [];
  /**
   * `blocks[b].keys[0]` for every block, in one array so the block search touches nothing else.
   * (Only its role as a separator matters: keys of block b-1 < firsts[b] <= keys of block b.)
   */
  firsts: number[] = [];
  length = 0;
  /**
   * Decimals of this side's canonical prices and quantities, from its first canonical level (-1 until
   * then). Fixed for the side's life: levels without strings are formatted with them.
   */
  #priceDecimals = -1;
  #quantityDecimals = -1;
  /** Writes since the last sweep, and the block the next sweep looks at. */
  #writes = 0;
  #sweepAt = 0;
  /** +1 for bids, -1 for asks. */
  constructor(readonly sign: 1 | -1) {}

  /** True when a level parsed with these decimals can go without its strings. */
  #compact(priceDecimals: number, quantityDecimals: number): boolean {
    if (priceDecimals < 0 || quantityDecimals < 0) return false;
    if (this.#priceDecimals < 0) {
      this.#priceDecimals = priceDecimals;
      this.#quantityDecimals = quantityDecimals;
      return true;
    }
    return priceDecimals === this.#priceDecimals && quantityDecimals === this.#quantityDecimals;
  }

  /** Slot `j` of `block` as strings: the kept ones, or formatted (and then kept when `keep`). */
  #level(block: Block, j: number, keep: boolean): Level {
    const s = block.strings;
    if (s !== undefined) {
      const l = s[j]!;
      if (l !== NO_LEVEL) return l;
    }
    const level: Level = {
      price: formatDecimal(block.keys[j]! * this.sign, this.#priceDecimals),
      quantity: formatDecimal(block.quantities[j]!, this.#quantityDecimals),
    };
    if (keep) stringsOf(block)[j] = level;
    return level;
  }

  /**
   * Strings kept near the top (written there, or formatted for a read) stay with their level when the
   * price moves away. One block per sweep, round the side from the worst, drops those it can format
   * again (and the block's `strings` when none is left), so a book that trends keeps strings only near
   * its top.
   */
  #sweep(): void {
    this.#writes = 0;
    const blocks = this.blocks;
    if (this.#sweepAt >= blocks.length - NEAR_TOP_BLOCKS) {
      this.#sweepAt = 0;
      return;
    }
    const block = blocks[this.#sweepAt++]!;
    const s = block.strings;
    if (s === undefined) return;
    let kept = 0;
    for (let j = 0; j < block.n; j++) {
      const l = s[j]!;
      if (l === NO_LEVEL) continue;
      parseDecimal(l.price);
      const priceDecimals = parsedDecimals;
      const quantity = parseDecimal(l.quantity);
      block.quantities[j] = quantity;
      if (this.#compact(priceDecimals, parsedDecimals)) s[j] = NO_LEVEL;
      else kept++;
    }
    if (kept === 0) block.strings = undefined;
  }

  clear(): void {
    this.blocks = [];
    this.firsts = [];
    this.length = 0;
  }

  /** Index of the block that holds `key` or where it would go: the last block whose first key <= key (0 if none). */
  #blockFor(key: number): number {
    const firsts = this.firsts;
    let hi = firsts.length - 1;
    if (firsts[hi]! <= key) return hi;
    let lo = 0;
    hi--;
    while (lo < hi) {
      const mid = (lo + hi + 1) >>> 1;
      if (firsts[mid]! <= key) lo = mid;
      else hi = mid - 1;
    }
    return lo;
  }

  set(priceText: string, qtyText: string): void {
    const key = parseDecimal(priceText) * this.sign;
    const priceDecimals = parsedDecimals;
    if (isZeroQuantity(qtyText)) {
      if (this.blocks.length === 0) return;
      const b = this.#blockFor(key);
      const block = this.blocks[b]!;
      const i = this.#slotFor(block, key);
      if (i < block.n && block.keys[i] === key) this.#remove(b, block, i);
      return;
    }
    if (this.blocks.length === 0) {
      this.#insertFirst(key, { price: priceText, quantity: qtyText });
      return;
    }
    if (++this.#writes === SWEEP_EVERY) this.#sweep();
    const b = this.#blockFor(key);
    const block = this.blocks[b]!;
    const i = this.#slotFor(block, key);
    // Near the top the strings are kept (they are read soon) and the quantity is parsed only when a
    // sum needs it; deeper, the quantity is parsed and the strings kept only when the numbers could not
    // give them back.
    let quantity = NaN;
    let level = NO_LEVEL;
    if (b >= this.blocks.length - NEAR_TOP_BLOCKS) level = { price: priceText, quantity: qtyText };
    else {
      quantity = parseDecimal(qtyText);
      if (!this.#compact(priceDecimals, parsedDecimals)) level = { price: priceText, quantity: qtyText };
    }
    if (i < block.n && block.keys[i] === key) {
      block.quantities[i] = quantity;
      putStrings(block, i, level);
    } else this.#insert(b, block, i, key, quantity, level);
  }

  /** The slot of `key` in `block`, or where it would go. */
  #slotFor(block: Block, key: number): number {
    const keys = block.keys;
    let i = 0;
    let hi = block.n;
    while (i < hi) {
      const mid = (i + hi) >>> 1;
      if (keys[mid]! < key) i = mid + 1;
      else hi = mid;
    }
    return i;
  }

  #insertFirst(key: number, level: Level): void {
    const block = new Block();
    block.keys[0] = key;
    block.quantities[0] = NaN;
    stringsOf(block)[0] = level;
    block.n = 1;
    this.blocks.push(block);
    this.firsts.push(key);
    this.length = 1;
  }

  #insert(b: number, block: Block, i: number, key: number, quantity: number, level: Level): void {
    let target = block;
    let at = i;
    if (block.n === BLOCK) {
      // Split: the upper half moves to a new block right after this one.
      const upper = new Block();
      const half = BLOCK >>> 1;
      for (let j = half; j < BLOCK; j++) moveSlot(block, j, upper, j - half);
      if (block.strings !== undefined) for (let j = half; j < BLOCK; j++) block.strings[j] = NO_LEVEL;
      upper.n = BLOCK - half;
      block.n = half;
      this.blocks.splice(b + 1, 0, upper);
      this.firsts.splice(b + 1, 0, upper.keys[0]!);
      if (i > half) {
        target = upper;
        at = i - half;
        b++;
      }
    }
    const keys = target.keys;
    const quantities = target.quantities;
    if (level !== NO_LEVEL) stringsOf(target);
    const strings = target.strings;
    for (let j = target.n; j > at; j--) {
      keys[j] = keys[j - 1]!;
      quantities[j] = quantities[j - 1]!;
    }
    keys[at] = key;
    quantities[at] = quantity;
    if (strings !== undefined) {
      for (let j = target.n; j > at; j--) strings[j] = strings[j - 1]!;
      strings[at] = level;
    }
    if (at === 0) this.firsts[b] = key;
    target.n++;
    this.length++;
  }

  #remove(b: number, block: Block, i: number): void {
    const keys = block.keys;
    const quantities = block.quantities;
    const n = block.n - 1;
    for (let j = i; j < n; j++) {
      keys[j] = keys[j + 1]!;
      quantities[j] = quantities[j + 1]!;
    }
    const strings = block.strings;
    if (strings !== undefined) {
      for (let j = i; j < n; j++) strings[j] = strings[j + 1]!;
      strings[n] = NO_LEVEL;
    }
    block.n = n;
    this.length--;
    if (n === 0) {
      this.blocks.splice(b, 1);
      this.firsts.splice(b, 1);
      return;
    }
    if (i === 0) this.firsts[b] = keys[0]!;
    if (n < MERGE_BELOW) this.#mergeAround(b);
  }

  /** Merges block `b` with a neighbour when both fit comfortably in one. */
  #mergeAround(b: number): void {
    const blocks = this.blocks;
    const below = blocks[b - 1];
    const block = blocks[b]!;
    if (below !== undefined && below.n + block.n <= MERGE_INTO) this.#merge(b - 1);
    else {
      const above = blocks[b + 1];
      if (above !== undefined && above.n + block.n <= MERGE_INTO) this.#merge(b);
    }
  }

  /** Appends block `b + 1` to block `b` and drops it. */
  #merge(b: number): void {
    const low = this.blocks[b]!;
    const high = this.blocks[b + 1]!;
    for (let j = 0; j < high.n; j++) moveSlot(high, j, low, low.n + j);
    low.n += high.n;
    this.blocks.splice(b + 1, 1);
    this.firsts.splice(b + 1, 1);
  }

  /** Replaces the side with these levels in one sort (later duplicates win, zero quantities dropped). */
  load(raw: readonly RawLevel[]): void {
    type Parsed = {
      key: number;
      order: number;
      quantity: number;
      zero: boolean;
      compact: boolean;
      raw: RawLevel;
    };
    const parsed: Parsed[] = [];
    for (let i = 0; i < raw.length; i++) {
      const l = raw[i]!;
      const key = parseDecimal(l[0]) * this.sign;
      const priceDecimals = parsedDecimals;
      // A zero quantity is no level, but still a later entry that removes an earlier one at its price.
      const zero = isZeroQuantity(l[1]);
      const quantity = zero ? 0 : parseDecimal(l[1]);
      const compact = !zero && this.#compact(priceDecimals, parsedDecimals);
      parsed.push({ key, order: i, quantity, zero, compact, raw: l });
    }
    parsed.sort((a, b) => a.key - b.key || a.order - b.order);
    const kept: Parsed[] = [];
    for (let i = 0; i < parsed.length; i++) {
      const p = parsed[i]!;
      const next = parsed[i + 1];
      if (next !== undefined && next.key === p.key) continue; // a later entry for the same price wins
      if (!p.zero) kept.push(p);
    }
    const blocks: Block[] = [];
    let block: Block | undefined;
    // The last blocks, read first, keep their strings (as writes near the top do).
    const nearTop = kept.length - NEAR_TOP_BLOCKS * LOAD_FILL;
    for (let i = 0; i < kept.length; i++) {
      const p = kept[i]!;
      if (block === undefined || block.n === LOAD_FILL) blocks.push((block = new Block()));
      block.keys[block.n] = p.key;
      block.quantities[block.n] = p.quantity;
      if (!p.compact || i >= nearTop) stringsOf(block)[block.n] = { price: p.raw[0], quantity: p.raw[1] };
      block.n++;
    }
    this.blocks = blocks;
    this.firsts = blocks.map((x) => x.keys[0]!);
    this.length = kept.length;
  }

  /**
   * Replaces the levels a snapshot of this side covers — every level from its best to its worst price
   * — with the snapshot's, and keeps the levels beyond its worst price, about which it says nothing. An
   * empty snapshot side empties the side.
   */
  refresh(raw: readonly RawLevel[]): void {
    if (raw.length === 0) {
      this.clear();
      return;
    }
    let worst = Infinity;
    for (let i = 0; i < raw.length; i++) worst = Math.min(worst, parseDecimal(raw[i]![0]) * this.sign);
    const kept: RawLevel[] = [];
    for (const block of this.blocks)
      for (let j = 0; j < block.n && block.keys[j]! < worst; j++) {
        const level = this.#level(block, j, false);
        kept.push([level.price, level.quantity]);
      }
    this.load(kept.length === 0 ? raw : kept.concat(raw));
  }

  /** Drops the worst levels until at most `max` are left; returns how many went. */
  trimWorst(max: number): number {
    let excess = this.length - max;
    if (excess <= 0) return 0;
    const dropped = excess;
    let whole = 0;
    while (whole < this.blocks.length && this.blocks[whole]!.n <= excess) excess -= this.blocks[whole++]!.n;
    if (whole > 0) {
      this.blocks.splice(0, whole);
      this.firsts.splice(0, whole);
    }
    const first = this.blocks[0];
    if (excess > 0 && first !== undefined) {
      const n = first.n - excess;
      for (let j = 0; j < n; j++) moveSlot(first, j + excess, first, j);
      if (first.strings !== undefined) for (let j = n; j < first.n; j++) first.strings[j] = NO_LEVEL;
      first.n = n;
      this.firsts[0] = first.keys[0]!;
    }
    this.length -= dropped;
    return dropped;
  }

  /** The best level, undefined when empty. */
  best(): Level | undefined {
    const block = this.blocks[this.blocks.length - 1];
    return block === undefined ? undefined : this.#level(block, block.n - 1, true);
  }

  /** The best price as a number, NaN when empty. */
  bestPrice(): number {
    const block = this.blocks[this.blocks.length - 1];
    return block === undefined ? NaN : block.keys[block.n - 1]! * this.sign;
  }

  /** The quantity at the best price as a number, 0 when empty. */
  bestQuantity(): number {
    const block = this.blocks[this.blocks.length - 1];
    return block === undefined ? 0 : quantityAt(block, block.n - 1);
  }

  /**
   * The best `count` levels, best first, in a new array (the levels themselves are shared). `keep`
   * (the default) keeps the strings of the levels it had to format, for the next read.
   */
  top(count: number, keep = true): Level[] {
    const k = Math.max(0, Math.min(count, this.length));
    const out = new Array<Level>(k);
    const blocks = this.blocks;
    let o = 0;
    for (let b = blocks.length - 1; o < k; b--) {
      const block = blocks[b]!;
      const strings = block.strings;
      for (let j = block.n - 1; j >= 0 && o < k; j--) {
        const l = strings === undefined ? NO_LEVEL : strings[j]!;
        out[o++] = l !== NO_LEVEL ? l : this.#level(block, j, keep);
      }
    }
    return out;
  }

  /**
   * Every level for a checkpoint: the ones without strings as their integer mantissas (checked to give
   * back the same double, else as strings), the ones with strings as those. No string is made for a
   * level without one: formatting every level of a book was most of a checkpoint's cost.
   */
  pack(): PackedSide {
    const pd = this.#priceDecimals;
    const qd = this.#quantityDecimals;
    const ps = pd >= 1 ? POW10[pd]! : 0;
    const qs = qd >= 1 ? POW10[qd]! : 0;
    const m: number[] = [];
    const strings: RawLevel[] = [];
    for (const block of this.blocks) {
      const kept = block.strings;
      for (let j = 0; j < block.n; j++) {
        const l = kept === undefined ? NO_LEVEL : kept[j]!;
        if (l !== NO_LEVEL) {
          strings.push([l.price, l.quantity]);
          continue;
        }
        const price = block.keys[j]! * this.sign;
        const quantity = block.quantities[j]!;
        const pm = ps > 0 ? exactUnits(price, ps) : -1;
        const qm = qs > 0 ? exactUnits(quantity, qs) : -1;
        if (pm >= 0 && qm >= 0) m.push(pm, qm);
        else strings.push([formatDecimal(price, pd), formatDecimal(quantity, qd)]);
      }
    }
    if (m.length === 0) return { pd: -1, qd: -1, pz: 0, qz: 0, m, s: strings };
    let pz = 15;
    let qz = 15;
    for (let i = 0; i < m.length && (pz > 0 || qz > 0); i += 2) {
      while (pz > 0 && m[i]! % POW10[pz]! !== 0) pz--;
      while (qz > 0 && m[i + 1]! % POW10[qz]! !== 0) qz--;
    }
    const pdiv = POW10[pz]!;
    const qdiv = POW10[qz]!;
    let last = 0;
    for (let i = 0; i < m.length; i += 2) {
      const price = m[i]! / pdiv;
      m[i] = price - last;
      last = price;
      m[i + 1] = m[i + 1]! / qdiv;
    }
    return { pd, qd, pz, qz, m, s: strings };
  }

  /**
   * For each key bound of `limits` (non-increasing: the tightest first), the sum of the quantities of
   * the best levels with key >= that bound: one walk from the best level for all of them, adding in
   * the same order as `sumQuantity` (so each sum is bit-identical to it).
   */
  sumQuantityWithin(limits: readonly number[]): number[] {
    const out = new Array<number>(limits.length);
    let k = 0;
    let sum = 0;
    const blocks = this.blocks;
    for (let b = blocks.length - 1; b >= 0 && k < limits.length; b--) {
      const block = blocks[b]!;
      for (let j = block.n - 1; j >= 0; j--) {
        const key = block.keys[j]!;
        while (k < limits.length && key < limits[k]!) out[k++] = sum;
        if (k === limits.length) break;
        sum += quantityAt(block, j);
      }
    }
    while (k < limits.length) out[k++] = sum;
    return out;
  }

  /**
   * Sum of the quantities of the best levels: at most `count` of them, and only while the price is
   * within `limit` (a key bound: levels with key < limit are not counted).
   */
  sumQuantity(count: number, limit = -Infinity): number {
    let sum = 0;
    let seen = 0;
    const blocks = this.blocks;
    for (let b = blocks.length - 1; b >= 0; b--) {
      const block = blocks[b]!;
      for (let j = block.n - 1; j >= 0; j--) {
        if (seen++ >= count || block.keys[j]! < limit) return sum;
        sum += quantityAt(block, j);
      }
    }
    return sum;
  }
}

/** An exact order book for one symbol. */
export class OrderBook {
  readonly #bids = new Side(1);
  readonly #asks = new Side(-1);
  /** Update id of the last change applied (the snapshot's `lastUpdateId` or a diff's `u`). */
  lastUpdateId = 0;

  /** Replaces the whole book with a snapshot (levels in any order; quantity 0 is no level). */
  applySnapshot(bids: readonly RawLevel[], asks: readonly RawLevel[], lastUpdateId: number): void {
    this.#bids.load(bids);
    this.#asks.load(asks);
    this.lastUpdateId = lastUpdateId;
  }

  /** Applies a diff's levels in order (quantity 0 removes a level) and records its final update id. */
  applyDiff(bids: readonly RawLevel[], asks: readonly RawLevel[], finalUpdateId: number): void {
    const b = this.#bids;
    for (let i = 0; i < bids.length; i++) {
      const l = bids[i]!;
      b.set(l[0], l[1]);
    }
    const a = this.#asks;
    for (let i = 0; i < asks.length; i++) {
      const l = asks[i]!;
      a.set(l[0], l[1]);
    }
    this.lastUpdateId = finalUpdateId;
  }

  /**
   * Corrects the book from a newer snapshot while keeping what it cannot know: on each side, the levels
   * from the snapshot's best to its worst price become the snapshot's, the levels beyond its worst price
   * stay. Levels the first snapshot was too shallow to hold, and that no diff has touched since, are
   * otherwise wrong for good (Binance's diffs only carry changes).
   */
  applyRefresh(bids: readonly RawLevel[], asks: readonly RawLevel[], lastUpdateId: number): void {
    this.#bids.refresh(bids);
    this.#asks.refresh(asks);
    this.lastUpdateId = lastUpdateId;
  }

  /**
   * Keeps at most `max` levels per side, dropping the ones furthest from the top (they bound memory;
   * Binance's own snapshots stop at 5000). Returns how many levels went.
   */
  trimTo(max: number): number {
    return this.#bids.trimWorst(max) + this.#asks.trimWorst(max);
  }

  /** Sets one level; quantity 0 removes it. */
  setLevel(side: "bid" | "ask", price: string, quantity: string): void {
    (side === "bid" ? this.#bids : this.#asks).set(price, quantity);
  }

  /** Empties the book. */
  clear(): void {
    this.#bids.clear();
    this.#asks.clear();
    this.lastUpdateId = 0;
  }

  /** Number of bid levels. */
  get bidCount(): number {
    return this.#bids.length;
  }
  /** Number of ask levels. */
  get askCount(): number {
    return this.#asks.length;
  }

  /** Best bid price as a number, NaN when empty. */
  bestBidPrice(): number {
    return this.#bids.bestPrice();
  }
  /** Best ask price as a number, NaN when empty. */
  bestAskPrice(): number {
    return this.#asks.bestPrice();
  }
  /** Quantity at the best bid, 0 when empty. */
  bestBidQuantity(): number {
    return this.#bids.bestQuantity();
  }
  /** Quantity at the best ask, 0 when empty. */
  bestAskQuantity(): number {
    return this.#asks.bestQuantity();
  }
  /** Best bid as exchange strings, undefined when empty. */
  bestBid(): Level | undefined {
    return this.#bids.best();
  }
  /** Best ask as exchange strings, undefined when empty. */
  bestAsk(): Level | undefined {
    return this.#asks.best();
  }

  /** The best `n` bids, best first, in a new array. */
  topBids(n: number): Level[] {
    return this.#bids.top(n);
  }
  /** The best `n` asks, best first, in a new array. */
  topAsks(n: number): Level[] {
    return this.#asks.top(n);
  }

  /** True when best bid >= best ask (a fault: a correct Binance book is never crossed). */
  isCrossed(): boolean {
    return this.#bids.length > 0 && this.#asks.length > 0 && this.bestBidPrice() >= this.bestAskPrice();
  }

  /** (best bid + best ask) / 2, NaN when a side is empty. */
  mid(): number {
    return (this.bestBidPrice() + this.bestAskPrice()) / 2;
  }

  /** best ask - best bid, NaN when a side is empty. */
  spread(): number {
    return this.bestAskPrice() - this.bestBidPrice();
  }

  /** Size-weighted mid: (bid * askQty + ask * bidQty) / (bidQty + askQty); NaN when a side is empty. */
  microprice(): number {
    const bq = this.bestBidQuantity();
    const aq = this.bestAskQuantity();
    if (bq + aq === 0) return NaN;
    return (this.bestBidPrice() * aq + this.bestAskPrice() * bq) / (bq + aq);
  }

  /** (bid qty - ask qty) / (bid qty + ask qty) over the top `levels` levels, in [-1, 1]; 0 when empty. */
  imbalance(levels: number): number {
    const b = this.#bids.sumQuantity(levels);
    const a = this.#asks.sumQuantity(levels);
    return a + b === 0 ? 0 : (b - a) / (b + a);
  }

  /**
   * `depthWithinBps` for several distances at once (in the order given), walking each side once:
   * the same numbers, a fraction of the work when the distances are wide.
   */
  depthWithinBpsAll(bps: readonly number[]): { bps: number; bidQuantity: number; askQuantity: number }[] {
    const mid = this.mid();
    if (!Number.isFinite(mid)) return bps.map((b) => ({ bps: b, bidQuantity: 0, askQuantity: 0 }));
    const order = bps.map((_, i) => i).sort((x, y) => bps[x]! - bps[y]!);
    // Tightest first: bids' bound `lo` falls and asks' key bound `-hi` falls as the distance grows.
    const bids = this.#bids.sumQuantityWithin(order.map((i) => bpsBounds(mid, bps[i]!).lo));
    const asks = this.#asks.sumQuantityWithin(order.map((i) => -bpsBounds(mid, bps[i]!).hi));
    const out = new Array<{ bps: number; bidQuantity: number; askQuantity: number }>(bps.length);
    order.forEach((i, k) => (out[i] = { bps: bps[i]!, bidQuantity: bids[k]!, askQuantity: asks[k]! }));
    return out;
  }

  /** Quantity resting within `bps` basis points of the mid, per side. */
  depthWithinBps(bps: number): { bidQuantity: number; askQuantity: number } {
    const mid = this.mid();
    if (!Number.isFinite(mid)) return { bidQuantity: 0, askQuantity: 0 };
    const { lo, hi } = bpsBounds(mid, bps);
    // Keys are price * sign: bids at or above `lo`, asks at or below `hi` (key >= -hi).
    return {
      bidQuantity: this.#bids.sumQuantity(Infinity, lo),
      askQuantity: this.#asks.sumQuantity(Infinity, -hi),
    };
  }

  /** Every level in the compact form checkpoints hold; `applyPacked` restores it exactly. */
  pack(): PackedBook {
    return { bids: this.#bids.pack(), asks: this.#asks.pack(), lastUpdateId: this.lastUpdateId };
  }

  /** Replaces the whole book with one `pack()` gave (the same levels, strings and update id). */
  applyPacked(p: PackedBook): void {
    this.applySnapshot(unpackSide(p.bids), unpackSide(p.asks), p.lastUpdateId);
  }

  /** Every level, best first, as `[price, quantity]` strings. */
  toSnapshot(): { bids: [string, string][]; asks: [string, string][]; lastUpdateId: number } {
    // Without keeping the strings it formats: a checkpoint must not undo the compact storage.
    const dump = (s: Side) => s.top(s.length, false).map((l): [string, string] => [l.price, l.quantity]);
    return { bids: dump(this.#bids), asks: dump(this.#asks), lastUpdateId: this.lastUpdateId };
  }
}

/**
 * The prices `bps` basis points either side of `mid`, widened by a relative 1e-12 (far below any
 * tick) so that a level exactly on the boundary counts on both sides alike: in doubles
 * 10000 * (1 + 0.001) is 10009.999999999998 while 10000 * (1 - 0.001) is exactly 9990.
 */
function bpsBounds(mid: number, bps: number): { lo: number; hi: number } {
  return { lo: mid * (1 - bps / 10_000) * (1 - 1e-12), hi: mid * (1 + bps / 10_000) * (1 + 1e-12) };
}

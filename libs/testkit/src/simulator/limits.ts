/** The limits Binance enforces, as small clocks-in-arguments state machines (easy to test). */

/**
 * Counts events in a sliding window and remembers the highest count ever seen. At most `capacity`
 * timestamps are kept, so a count saturates at `capacity` (memory stays bounded under a flood).
 */
export class SlidingWindowCounter {
  readonly #windowMs: number;
  readonly #capacity: number;
  readonly #times: number[] = [];
  #head = 0;
  #max = 0;
  #total = 0;

  constructor(windowMs: number, capacity: number) {
    this.#windowMs = windowMs;
    this.#capacity = Math.max(1, capacity);
  }

  /** Records an event at `nowMs`; returns how many events fall in the window ending now. */
  record(nowMs: number): number {
    this.#total++;
    this.#evict(nowMs);
    if (this.#times.length - this.#head >= this.#capacity) this.#head++;
    this.#times.push(nowMs);
    const count = this.#times.length - this.#head;
    if (count > this.#max) this.#max = count;
    return count;
  }

  /** Events in the window ending at `nowMs`. */
  count(nowMs: number): number {
    this.#evict(nowMs);
    return this.#times.length - this.#head;
  }

  /** Highest count observed in any window. */
  get max(): number {
    return this.#max;
  }

  /** Events ever recorded. */
  get total(): number {
    return this.#total;
  }

  #evict(nowMs: number): void {
    const from = nowMs - this.#windowMs;
    while (this.#head < this.#times.length && this.#times[this.#head]! <= from) this.#head++;
    // Compact now and then so the array does not grow with the history.
    if (this.#head > 1024 && this.#head * 2 > this.#times.length) {
      this.#times.splice(0, this.#head);
      this.#head = 0;
    }
  }
}

/** Options of `WeightLimiter`. */
export interface WeightLimiterOptions {
  /** Weight allowed per window. */
  readonly limit: number;
  /** Window length; windows are aligned to multiples of it since the epoch, like Binance's minutes. */
  readonly windowMs: number;
  /** First ban's length; each further ban doubles it, up to `maxBanMs`. */
  readonly banMs: number;
  /** Longest ban. */
  readonly maxBanMs: number;
}

/** What the limiter decided for one request. */
export type WeightDecision =
  | { readonly status: 200; readonly usedWeight: number }
  | {
      readonly status: 429 | 418;
      readonly usedWeight: number;
      /** Whole seconds, for the `Retry-After` header (at least 1). */
      readonly retryAfterSec: number;
      /** Epoch ms when the back-off or ban ends. */
      readonly untilMs: number;
    };

/**
 * Binance's per-IP request weight: a fixed window (default one minute); going over answers 429 with
 * `Retry-After` = seconds to the window's end; a request sent before that back-off has passed earns
 * an IP ban (418) whose length doubles for repeat offenders; requests during a ban get 418 too.
 */
export class WeightLimiter {
  readonly #o: WeightLimiterOptions;
  #windowStart = 0;
  #used = 0;
  #backoffUntil = 0;
  #bannedUntil = 0;
  #bans = 0;

  constructor(options: WeightLimiterOptions) {
    this.#o = options;
  }

  /** Weight used in the current window. */
  used(nowMs: number): number {
    this.#roll(nowMs);
    return this.#used;
  }

  /** Bans imposed so far. */
  get bans(): number {
    return this.#bans;
  }

  /** Charges `weight` unless the IP is banned or backing off, and decides the answer. */
  admit(weight: number, nowMs: number): WeightDecision {
    this.#roll(nowMs);
    if (nowMs < this.#bannedUntil) return this.#banned(nowMs);
    if (nowMs < this.#backoffUntil) {
      this.#bans++;
      const banMs = Math.min(this.#o.banMs * 2 ** Math.min(this.#bans - 1, 40), this.#o.maxBanMs);
      this.#bannedUntil = nowMs + banMs;
      this.#backoffUntil = 0;
      return this.#banned(nowMs);
    }
    this.#used += weight;
    if (this.#used > this.#o.limit) {
      const untilMs = this.#windowStart + this.#o.windowMs;
      this.#backoffUntil = untilMs;
      return {
        status: 429,
        usedWeight: this.#used,
        retryAfterSec: Math.max(1, Math.ceil((untilMs - nowMs) / 1000)),
        untilMs,
      };
    }
    return { status: 200, usedWeight: this.#used };
  }

  #banned(nowMs: number): WeightDecision {
    return {
      status: 418,
      usedWeight: this.#used,
      retryAfterSec: Math.max(1, Math.ceil((this.#bannedUntil - nowMs) / 1000)),
      untilMs: this.#bannedUntil,
    };
  }

  #roll(nowMs: number): void {
    const start = nowMs - (nowMs % this.#o.windowMs);
    if (start !== this.#windowStart) {
      this.#windowStart = start;
      this.#used = 0;
    }
  }
}

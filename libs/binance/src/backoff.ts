/**
 * Pacing primitives shared by the stream connections and the REST queue: exponential backoff with
 * full jitter, and a sliding-window limiter ("at most N events in any window of W ms").
 */
import { L2flowError } from "@l2flow/runtime";

/** Options for `fullJitterDelayMs` and `Backoff`. */
export interface BackoffOptions {
  /** Delay scale of the first attempt. Default 500 ms. */
  readonly baseMs?: number;
  /** Largest delay ever returned. Default 30 000 ms. */
  readonly capMs?: number;
  /** Uniform random source in [0, 1). Default `Math.random`. */
  readonly random?: () => number;
}

/** Default backoff base: 500 ms. */
export const DEFAULT_BACKOFF_BASE_MS = 500;
/** Default backoff cap: 30 s. */
export const DEFAULT_BACKOFF_CAP_MS = 30_000;

/** Upper bound of the delay for attempt `attempt` (0-based): `min(capMs, baseMs * 2^attempt)`. */
export function backoffCeilingMs(attempt: number, options: BackoffOptions = {}): number {
  const base = options.baseMs ?? DEFAULT_BACKOFF_BASE_MS;
  const cap = options.capMs ?? DEFAULT_BACKOFF_CAP_MS;
  // 2^40 already exceeds any sane cap; clamping the exponent keeps the product finite.
  return Math.min(cap, base * 2 ** Math.min(Math.max(0, attempt), 40));
}

/**
 * Full-jitter delay for attempt `attempt` (0-based): uniform in `[0, min(capMs, baseMs * 2^attempt)]`
 * (defaults base 500 ms, cap 30 s). Spreads reconnects of many clients so they never storm.
 */
export function fullJitterDelayMs(attempt: number, options: BackoffOptions = {}): number {
  const random = options.random ?? Math.random;
  const r = Math.min(1, Math.max(0, random()));
  return Math.floor(r * backoffCeilingMs(attempt, options));
}

/** A backoff sequence: `next()` returns the next full-jitter delay; `reset()` starts over (defaults as `BackoffOptions`). */
export class Backoff {
  readonly #options: BackoffOptions;
  #attempt = 0;
  constructor(options: BackoffOptions = {}) {
    this.#options = options;
  }
  /** Attempts made since the last reset. */
  get attempt(): number {
    return this.#attempt;
  }
  /** The delay before the next attempt, and counts the attempt. */
  next(): number {
    const delay = fullJitterDelayMs(this.#attempt, this.#options);
    this.#attempt++;
    return delay;
  }
  /** Starts over at attempt 0 (after a connection proved healthy). */
  reset(): void {
    this.#attempt = 0;
  }
}

/** Why a limiter refused or failed a wait. */
export class LimiterError extends L2flowError {
  constructor(code: "LIMITER_QUEUE_FULL" | "LIMITER_CLOSED" | "LIMITER_ABORTED", message: string) {
    super(code, message, { retryable: code === "LIMITER_QUEUE_FULL" });
  }
}

/** Options for `SlidingWindowLimiter`. */
export interface SlidingWindowLimiterOptions {
  /** Events allowed in any window. Required, >= 1. */
  readonly limit: number;
  /** Window length. Required, > 0. */
  readonly windowMs: number;
  /** Most callers waiting in `acquire` at once; more are rejected. Default 10 000. */
  readonly maxWaiters?: number;
  /** Monotonic clock in ms. Default `performance.now`. */
  readonly now?: () => number;
}

interface Waiter {
  resolve: () => void;
  reject: (err: Error) => void;
  signal: AbortSignal | undefined;
  onAbort: (() => void) | undefined;
}

/**
 * At most `limit` events in any rolling `windowMs`: `tryAcquire()` takes a slot if one is free,
 * `acquire()` waits (FIFO) for one, `record()` counts an event that could not be refused (a pong).
 * Memory is bounded by the events of one window plus `maxWaiters` (default 10 000).
 */
export class SlidingWindowLimiter {
  readonly limit: number;
  readonly windowMs: number;
  readonly #maxWaiters: number;
  readonly #now: () => number;
  /** Event times, oldest first; `#head` skips the expired prefix without shifting every time. */
  #times: number[] = [];
  #head = 0;
  readonly #waiters: Waiter[] = [];
  #timer: NodeJS.Timeout | undefined;
  #closed = false;

  constructor(options: SlidingWindowLimiterOptions) {
    if (!Number.isInteger(options.limit) || options.limit < 1)
      throw new RangeError(`limit must be an integer >= 1, got ${options.limit}`);
    if (!(options.windowMs > 0)) throw new RangeError(`windowMs must be > 0, got ${options.windowMs}`);
    this.limit = options.limit;
    this.windowMs = options.windowMs;
    this.#maxWaiters = options.maxWaiters ?? 10_000;
    this.#now = options.now ?? (() => performance.now());
  }

  #prune(now: number): void {
    const cutoff = now - this.windowMs;
    const times = this.#times;
    while (this.#head < times.length && (times[this.#head] as number) <= cutoff) this.#head++;
    if (this.#head > 64 && this.#head * 2 > times.length) {
      this.#times = times.slice(this.#head);
      this.#head = 0;
    }
  }

  /** Events in the current window. */
  count(now = this.#now()): number {
    this.#prune(now);
    return this.#times.length - this.#head;
  }

  /** Milliseconds until a slot is free (0 when one is free now). */
  delayMs(now = this.#now()): number {
    const n = this.count(now);
    if (n < this.limit) return 0;
    // The window must lose (n - limit + 1) events: wait for the expiry of that many oldest ones.
    const t = this.#times[this.#head + n - this.limit] as number;
    return Math.max(0, t + this.windowMs - now);
  }

  /** Milliseconds until the oldest event in the window leaves it (0 when the window is empty). */
  nextExpiryMs(now = this.#now()): number {
    if (this.count(now) === 0) return 0;
    return Math.max(0, (this.#times[this.#head] as number) + this.windowMs - now);
  }

  /** Takes a slot if one is free now; true when taken. Never jumps ahead of `acquire` waiters. */
  tryAcquire(now = this.#now()): boolean {
    if (this.#waiters.length > 0 || this.delayMs(now) > 0) return false;
    this.#times.push(now);
    return true;
  }

  /** Counts an event that happened regardless of the limit (it may push the window over it). */
  record(now = this.#now()): void {
    this.#prune(now);
    this.#times.push(now);
  }

  /** Waits for a slot (FIFO) and takes it. Rejects with `LimiterError` when full, closed or aborted. */
  acquire(signal?: AbortSignal): Promise<void> {
    if (this.#closed) return Promise.reject(new LimiterError("LIMITER_CLOSED", "limiter is closed"));
    if (signal?.aborted) return Promise.reject(new LimiterError("LIMITER_ABORTED", "aborted"));
    if (this.tryAcquire()) return Promise.resolve();
    if (this.#waiters.length >= this.#maxWaiters)
      return Promise.reject(
        new LimiterError("LIMITER_QUEUE_FULL", `more than ${this.#maxWaiters} callers waiting`),
      );
    return new Promise<void>((resolve, reject) => {
      const waiter: Waiter = { resolve, reject, signal, onAbort: undefined };
      if (signal !== undefined) {
        waiter.onAbort = () => {
          const i = this.#waiters.indexOf(waiter);
          if (i >= 0) this.#waiters.splice(i, 1);
          reject(new LimiterError("LIMITER_ABORTED", "aborted"));
          this.#schedule();
        };
        signal.addEventListener("abort", waiter.onAbort, { once: true });
      }
      this.#waiters.push(waiter);
      this.#schedule();
    });
  }

  #schedule(): void {
    if (this.#timer !== undefined) {
      clearTimeout(this.#timer);
      this.#timer = undefined;
    }
    if (this.#closed || this.#waiters.length === 0) return;
    const wait = this.delayMs();
    this.#timer = setTimeout(
      () => {
        this.#timer = undefined;
        this.#pump();
      },
      Math.max(1, Math.ceil(wait)),
    );
  }

  #pump(): void {
    while (this.#waiters.length > 0) {
      const now = this.#now();
      if (this.delayMs(now) > 0) break;
      const waiter = this.#waiters.shift() as Waiter;
      if (waiter.onAbort !== undefined) waiter.signal?.removeEventListener("abort", waiter.onAbort);
      this.#times.push(now);
      waiter.resolve();
    }
    this.#schedule();
  }

  /** Rejects every waiter and clears the timer. Idempotent. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    if (this.#timer !== undefined) clearTimeout(this.#timer);
    this.#timer = undefined;
    for (const w of this.#waiters.splice(0)) {
      if (w.onAbort !== undefined) w.signal?.removeEventListener("abort", w.onAbort);
      w.reject(new LimiterError("LIMITER_CLOSED", "limiter is closed"));
    }
  }
}

/** Resolves after `ms`, or rejects with the signal's reason when aborted; the timer is always cleared. */
export function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    if (signal?.aborted) {
      reject(new LimiterError("LIMITER_ABORTED", "aborted"));
      return;
    }
    const onAbort = () => {
      clearTimeout(timer);
      reject(new LimiterError("LIMITER_ABORTED", "aborted"));
    };
    const timer = setTimeout(() => {
      signal?.removeEventListener("abort", onAbort);
      resolve();
    }, ms);
    signal?.addEventListener("abort", onAbort, { once: true });
  });
}

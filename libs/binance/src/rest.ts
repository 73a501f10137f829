/**
 * Binance's REST market-data endpoints behind ONE weight-aware queue per process: requests wait until
 * the minute's request weight allows them, the estimate is resynchronised from `X-MBX-USED-WEIGHT-1M`
 * on every response, a 429 pauses the queue for `Retry-After` and retries, a 418 (IP ban) stops every
 * request until `Retry-After` has passed.
 */
import { L2flowError } from "@l2flow/runtime";
import { parseDepthSnapshot, type DepthSnapshot } from "./parse.js";
import { epochNowNs } from "./ws.js";

/** Binance's production REST base URL. */
export const BINANCE_REST_BASE_URL = "https://api.binance.com";
/** Market-data-only REST base URL. */
export const BINANCE_DATA_REST_BASE_URL = "https://data-api.binance.vision";
/** Binance.US REST base URL. */
export const BINANCE_US_REST_BASE_URL = "https://api.binance.us";

/** Stable codes of `BinanceRestError`. */
export type BinanceRestErrorCode =
  | "REST_RATE_LIMITED"
  | "REST_BANNED"
  | "REST_BAD_REQUEST"
  | "REST_SERVER"
  | "REST_BAD_RESPONSE"
  | "REST_TIMEOUT"
  | "REST_NETWORK"
  | "REST_ABORTED"
  | "REST_QUEUE_FULL"
  | "REST_CLOSED";

const RETRYABLE_REST: ReadonlySet<BinanceRestErrorCode> = new Set([
  "REST_RATE_LIMITED",
  "REST_BANNED",
  "REST_SERVER",
  "REST_TIMEOUT",
  "REST_NETWORK",
  "REST_QUEUE_FULL",
]);

/**
 * A REST failure. `status` is the HTTP status (when there was a response); `binanceCode`/`binanceMsg`
 * are Binance's `{code, msg}`; `retryAfterMs` is set for 429 and 418.
 */
export class BinanceRestError extends L2flowError {
  declare readonly code: BinanceRestErrorCode;
  readonly status: number | undefined;
  readonly binanceCode: number | undefined;
  readonly binanceMsg: string | undefined;
  readonly retryAfterMs: number | undefined;
  constructor(
    code: BinanceRestErrorCode,
    message: string,
    options: {
      cause?: unknown;
      status?: number;
      binanceCode?: number;
      binanceMsg?: string;
      retryAfterMs?: number;
    } = {},
  ) {
    super(code, message, {
      retryable: RETRYABLE_REST.has(code),
      ...(options.cause === undefined ? {} : { cause: options.cause }),
    });
    this.status = options.status;
    this.binanceCode = options.binanceCode;
    this.binanceMsg = options.binanceMsg;
    this.retryAfterMs = options.retryAfterMs;
  }
}

/** Request weight of `GET /api/v3/depth` for `limit` (1–100: 5, 101–500: 25, 501–1000: 50, 1001–5000: 250). */
export function depthWeight(limit: number): number {
  if (limit <= 100) return 5;
  if (limit <= 500) return 25;
  if (limit <= 1000) return 50;
  return 250;
}

/** Request weights of the endpoints this client calls (Binance spot, rest-api.md). */
export const REST_WEIGHTS = {
  historicalTrades: 25,
  aggTrades: 4,
  exchangeInfo: 20,
} as const;

/** Queue lane: "high" requests (e.g. depth snapshots) go before "normal" ones (e.g. trade backfill). */
export type RestPriority = "high" | "normal";

/** Per-call options. */
export interface RestCallOptions {
  /** Cancels the call, queued or in flight (rejects with REST_ABORTED). */
  readonly signal?: AbortSignal;
  /** Default "normal". */
  readonly priority?: RestPriority;
  /**
   * Told `true` each time the request goes out to Binance, and `false` when a 429 puts it back in the
   * queue: until it is sent, whatever it answers is still to be taken (ingest lets later asks for the
   * same snapshot share it then).
   */
  readonly onSent?: (sent: boolean) => void;
}

/** What every successful call returns: the body verbatim plus response facts. */
export interface RestResponse<T> {
  /** The response body as received (ingest publishes it verbatim). */
  readonly body: string;
  /** The parsed body. */
  readonly data: T;
  readonly status: number;
  /** `X-MBX-USED-WEIGHT-1M` of the response, when present. */
  readonly usedWeight: number | undefined;
  /** Epoch nanoseconds when the body was fully read. */
  readonly receiveTimeNs: bigint;
  /** From sending the request to the end of the body. */
  readonly latencyMs: number;
}

/** One trade of `/api/v3/historicalTrades`. */
export interface HistoricalTrade {
  readonly id: number;
  readonly price: string;
  readonly qty: string;
  readonly quoteQty: string;
  readonly time: number;
  readonly isBuyerMaker: boolean;
  readonly isBestMatch: boolean;
}

/** One aggregate trade of `/api/v3/aggTrades`. */
export interface RestAggTrade {
  readonly a: number;
  readonly p: string;
  readonly q: string;
  readonly f: number;
  readonly l: number;
  readonly T: number;
  readonly m: boolean;
  readonly M: boolean;
}

/** A symbol of `/api/v3/exchangeInfo` (the fields l2flow reads). */
export interface ExchangeSymbol {
  readonly symbol: string;
  readonly status: string;
}

/** What `onResponse` reports for every HTTP response (successful or not). */
export interface RestResponseInfo {
  readonly endpoint: string;
  readonly weight: number;
  readonly status: number;
  readonly latencyMs: number;
  readonly usedWeight: number | undefined;
  /** The client's estimate of the minute's used weight after this response. */
  readonly estimatedWeight: number;
}

/** Options of `BinanceRestClient`; everything has a default. */
export interface BinanceRestClientOptions {
  /** Default `https://api.binance.com`. */
  readonly baseUrl?: string;
  /** Weight the queue lets through per window (Binance allows 6000 per minute per IP). Default 5000. */
  readonly weightBudgetPerMinute?: number;
  /** Length of Binance's weight window. Default 60 000 ms (tests shorten it). */
  readonly weightWindowMs?: number;
  /** After the local window rolls over, wait this much longer in case our clock runs ahead of Binance's. Default 1000 ms. */
  readonly clockSkewMarginMs?: number;
  /** Requests waiting (not in flight); more are rejected with REST_QUEUE_FULL. Default 1000. */
  readonly maxQueueLength?: number;
  /** Requests in flight at once. Default 4. */
  readonly maxConcurrent?: number;
  /** Whole-request deadline (headers and body). Default 10 000 ms. */
  readonly timeoutMs?: number;
  /** How often one request is retried after a 429 before failing with REST_RATE_LIMITED. Default 3. */
  readonly maxRateLimitRetries?: number;
  /** Pause after a 429 without `Retry-After`. Default 60 000 ms. */
  readonly defaultRetryAfterMs?: number;
  /** Pause after a 418 without `Retry-After` (Binance bans last 2 min to 3 days). Default 120 000 ms. */
  readonly defaultBanMs?: number;
  /** Sent as `X-MBX-APIKEY` when set (never logged). Default: none. */
  readonly apiKey?: string;
  /** Default the global `fetch`. */
  readonly fetch?: typeof fetch;
  /** Every HTTP response: status, latency, weights. */
  readonly onResponse?: (info: RestResponseInfo) => void;
  /** A 429 or 418 paused the queue for `retryAfterMs`. */
  readonly onRateLimited?: (info: { status: 429 | 418; endpoint: string; retryAfterMs: number }) => void;
}

/** Counters and gauges of a `BinanceRestClient`. */
export interface RestStats {
  readonly requests: number;
  readonly failures: number;
  readonly rateLimited429: number;
  readonly banned418: number;
  readonly queued: number;
  readonly inFlight: number;
  /** The estimate of the current window's used weight. */
  readonly usedWeight: number;
  /** Epoch ms until which the queue is paused (0 when not paused). */
  readonly pausedUntil: number;
}

interface Job {
  readonly endpoint: string;
  readonly url: string;
  readonly weight: number;
  readonly priority: RestPriority;
  readonly signal: AbortSignal | undefined;
  readonly onSent: ((sent: boolean) => void) | undefined;
  readonly resolve: (r: RestResponse<string>) => void;
  readonly reject: (err: Error) => void;
  onAbort: (() => void) | undefined;
  retries: number;
}

/**
 * One per process: every REST call is a job in a weight-paced queue (two lanes, bounded), so depth
 * snapshots and trade backfill never exceed `weightBudgetPerMinute` (default 5000 of Binance's 6000).
 */
export class BinanceRestClient {
  readonly #base: string;
  readonly #budget: number;
  readonly #windowMs: number;
  readonly #skewMs: number;
  readonly #maxQueue: number;
  readonly #maxConcurrent: number;
  readonly #timeoutMs: number;
  readonly #maxRetries: number;
  readonly #default429Ms: number;
  readonly #default418Ms: number;
  readonly #fetch: typeof fetch;
  readonly #headers: Record<string, string>;
  readonly #o: BinanceRestClientOptions;
  readonly #high: Job[] = [];
  readonly #normal: Job[] = [];
  readonly #inFlight = new Set<AbortController>();
  #inFlightWeight = 0;
  #window = -1;
  #used = 0;
  #pausedUntil = 0;
  #timer: NodeJS.Timeout | undefined;
  #timerAt = 0;
  #closed = false;
  #requests = 0;
  #failures = 0;
  #r429 = 0;
  #r418 = 0;

  constructor(options: BinanceRestClientOptions = {}) {
    this.#o = options;
    this.#base = (options.baseUrl ?? BINANCE_REST_BASE_URL).replace(/\/+$/, "");
    this.#budget = options.weightBudgetPerMinute ?? 5000;
    this.#windowMs = options.weightWindowMs ?? 60_000;
    this.#skewMs = options.clockSkewMarginMs ?? 1000;
    this.#maxQueue = options.maxQueueLength ?? 1000;
    this.#maxConcurrent = options.maxConcurrent ?? 4;
    this.#timeoutMs = options.timeoutMs ?? 10_000;
    this.#maxRetries = options.maxRateLimitRetries ?? 3;
    this.#default429Ms = options.defaultRetryAfterMs ?? 60_000;
    this.#default418Ms = options.defaultBanMs ?? 120_000;
    this.#fetch = options.fetch ?? fetch;
    this.#headers = options.apiKey === undefined ? {} : { "X-MBX-APIKEY": options.apiKey };
    if (!(this.#budget > 0)) throw new RangeError(`weightBudgetPerMinute must be > 0, got ${this.#budget}`);
    if (!(this.#windowMs > 0)) throw new RangeError(`weightWindowMs must be > 0, got ${this.#windowMs}`);
  }

  /** `GET /api/v3/depth` (weight by limit, see `depthWeight`); `data` is the checked snapshot. */
  async getDepth(
    symbol: string,
    limit: number,
    options: RestCallOptions = {},
  ): Promise<RestResponse<DepthSnapshot>> {
    if (!Number.isInteger(limit) || limit < 1 || limit > 5000)
      throw new BinanceRestError(
        "REST_BAD_REQUEST",
        `depth limit must be an integer from 1 to 5000, got ${limit}`,
      );
    const r = await this.request("/api/v3/depth", { symbol, limit }, depthWeight(limit), options);
    return this.#parsed(r, parseDepthSnapshot);
  }

  /** `GET /api/v3/historicalTrades?fromId=` (weight 25; `limit` up to 1000, default 1000). */
  async getHistoricalTrades(
    symbol: string,
    fromId: number,
    limit = 1000,
    options: RestCallOptions = {},
  ): Promise<RestResponse<readonly HistoricalTrade[]>> {
    const r = await this.request(
      "/api/v3/historicalTrades",
      { symbol, fromId, limit },
      REST_WEIGHTS.historicalTrades,
      options,
    );
    return this.#parsed(r, (body) => parseIdList<HistoricalTrade>(body, "id"));
  }

  /** `GET /api/v3/aggTrades?fromId=` (weight 4; `limit` up to 1000, default 1000). */
  async getAggTrades(
    symbol: string,
    fromId: number,
    limit = 1000,
    options: RestCallOptions = {},
  ): Promise<RestResponse<readonly RestAggTrade[]>> {
    const r = await this.request(
      "/api/v3/aggTrades",
      { symbol, fromId, limit },
      REST_WEIGHTS.aggTrades,
      options,
    );
    return this.#parsed(r, (body) => parseIdList<RestAggTrade>(body, "a"));
  }

  /** `GET /api/v3/exchangeInfo` (weight 20); `data` lists the symbols and their status. */
  async getExchangeInfo(options: RestCallOptions = {}): Promise<RestResponse<readonly ExchangeSymbol[]>> {
    const r = await this.request("/api/v3/exchangeInfo", {}, REST_WEIGHTS.exchangeInfo, options);
    return this.#parsed(r, parseExchangeSymbols);
  }

  #parsed<T>(r: RestResponse<string>, parse: (body: string) => T): RestResponse<T> {
    let data: T;
    try {
      data = parse(r.body);
    } catch (err) {
      throw new BinanceRestError("REST_BAD_RESPONSE", "response body is not what the endpoint returns", {
        cause: err,
        status: r.status,
      });
    }
    return { ...r, data };
  }

  /**
   * Any GET through the queue, counted as `weight`; resolves with the body text on 2xx and rejects
   * with `BinanceRestError` otherwise.
   */
  request(
    path: string,
    params: Readonly<Record<string, string | number>>,
    weight: number,
    options: RestCallOptions = {},
  ): Promise<RestResponse<string>> {
    if (this.#closed) return Promise.reject(new BinanceRestError("REST_CLOSED", "REST client is closed"));
    if (options.signal?.aborted) return Promise.reject(new BinanceRestError("REST_ABORTED", "aborted"));
    if (this.#high.length + this.#normal.length >= this.#maxQueue)
      return Promise.reject(
        new BinanceRestError("REST_QUEUE_FULL", `${this.#maxQueue} REST requests already waiting`),
      );
    const query = new URLSearchParams();
    for (const [k, v] of Object.entries(params)) query.set(k, String(v));
    const qs = query.toString();
    const url = `${this.#base}${path}${qs === "" ? "" : `?${qs}`}`;
    return new Promise<RestResponse<string>>((resolve, reject) => {
      const job: Job = {
        endpoint: path,
        url,
        weight,
        priority: options.priority ?? "normal",
        signal: options.signal,
        onSent: options.onSent,
        resolve,
        reject,
        onAbort: undefined,
        retries: 0,
      };
      if (options.signal !== undefined) {
        job.onAbort = () => {
          if (this.#dequeue(job)) {
            reject(new BinanceRestError("REST_ABORTED", "aborted while queued"));
            this.#pump();
          }
        };
        options.signal.addEventListener("abort", job.onAbort, { once: true });
      }
      (job.priority === "high" ? this.#high : this.#normal).push(job);
      this.#pump();
    });
  }

  /** Counters since creation; gauges now. */
  get stats(): RestStats {
    return {
      requests: this.#requests,
      failures: this.#failures,
      rateLimited429: this.#r429,
      banned418: this.#r418,
      queued: this.#high.length + this.#normal.length,
      inFlight: this.#inFlight.size,
      usedWeight: this.usedWeight,
      pausedUntil: this.#pausedUntil > Date.now() ? this.#pausedUntil : 0,
    };
  }

  /** The estimate of weight used in the current window (0 after the window rolled over). */
  get usedWeight(): number {
    this.#roll(Date.now());
    return this.#used;
  }

  #dequeue(job: Job): boolean {
    for (const lane of [this.#high, this.#normal]) {
      const i = lane.indexOf(job);
      if (i >= 0) {
        lane.splice(i, 1);
        return true;
      }
    }
    return false;
  }

  /** Moves to a new window once the local one ended plus the skew margin. */
  #roll(now: number): void {
    const w = Math.floor((now - this.#skewMs) / this.#windowMs);
    if (w > this.#window) {
      this.#window = w;
      this.#used = 0;
    }
  }

  #pump(): void {
    if (this.#closed) return;
    const now = Date.now();
    if (now < this.#pausedUntil) {
      this.#wakeAt(this.#pausedUntil);
      return;
    }
    this.#roll(now);
    while (this.#inFlight.size < this.#maxConcurrent) {
      const lane = this.#high.length > 0 ? this.#high : this.#normal;
      const job = lane[0];
      if (job === undefined) return;
      // A request heavier than the whole budget still goes, alone, in a fresh window.
      if (this.#used + job.weight > this.#budget && this.#used > 0) {
        this.#wakeAt((this.#window + 1) * this.#windowMs + this.#skewMs);
        return;
      }
      lane.shift();
      this.#used += job.weight;
      void this.#run(job);
    }
  }

  #wakeAt(at: number): void {
    if (this.#timer !== undefined) {
      if (this.#timerAt <= at) return;
      clearTimeout(this.#timer);
    }
    this.#timerAt = at;
    this.#timer = setTimeout(
      () => {
        this.#timer = undefined;
        this.#pump();
      },
      Math.max(1, at - Date.now()),
    );
  }

  async #run(job: Job): Promise<void> {
    const controller = new AbortController();
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      controller.abort();
    }, this.#timeoutMs);
    const onCallerAbort = () => controller.abort();
    job.signal?.addEventListener("abort", onCallerAbort, { once: true });
    this.#inFlight.add(controller);
    this.#inFlightWeight += job.weight;
    this.#requests++;
    const t0 = performance.now();
    let status = 0;
    let body = "";
    let usedWeight: number | undefined;
    let retryAfterHeader: string | null = null;
    let failure: BinanceRestError | undefined;
    try {
      job.onSent?.(true);
      const res = await this.#fetch(job.url, { signal: controller.signal, headers: this.#headers });
      status = res.status;
      usedWeight = parseWeight(res.headers.get("x-mbx-used-weight-1m"));
      retryAfterHeader = res.headers.get("retry-after");
      body = await res.text();
    } catch (err) {
      failure = this.#closed
        ? new BinanceRestError("REST_CLOSED", "REST client closed", { cause: err })
        : timedOut
          ? new BinanceRestError("REST_TIMEOUT", `${job.endpoint} took longer than ${this.#timeoutMs} ms`, {
              cause: err,
            })
          : job.signal?.aborted === true
            ? new BinanceRestError("REST_ABORTED", "aborted", { cause: err })
            : new BinanceRestError("REST_NETWORK", `${job.endpoint}: ${errorMessage(err)}`, { cause: err });
    } finally {
      clearTimeout(timer);
      job.signal?.removeEventListener("abort", onCallerAbort);
      this.#inFlight.delete(controller);
      this.#inFlightWeight -= job.weight;
    }
    const latencyMs = performance.now() - t0;
    const receiveTimeNs = epochNowNs();

    if (failure === undefined) {
      if (usedWeight !== undefined) this.#resync(usedWeight);
      try {
        this.#o.onResponse?.({
          endpoint: job.endpoint,
          weight: job.weight,
          status,
          latencyMs,
          usedWeight,
          estimatedWeight: this.#used,
        });
      } catch {
        // An observer's bug must not break the queue.
      }
      if (status === 429 || status === 418) {
        const retryAfterMs =
          parseRetryAfter(retryAfterHeader) ?? (status === 429 ? this.#default429Ms : this.#default418Ms);
        this.#pausedUntil = Math.max(this.#pausedUntil, Date.now() + retryAfterMs);
        try {
          this.#o.onRateLimited?.({ status, endpoint: job.endpoint, retryAfterMs });
        } catch {
          // As above.
        }
        if (status === 429) {
          this.#r429++;
          if (job.retries < this.#maxRetries && !this.#closed && job.signal?.aborted !== true) {
            job.retries++;
            // Back to the head of its lane: it goes first once the pause ends.
            (job.priority === "high" ? this.#high : this.#normal).unshift(job);
            try {
              job.onSent?.(false);
            } catch {
              // As above.
            }
            this.#pump();
            return;
          }
          failure = new BinanceRestError(
            "REST_RATE_LIMITED",
            `${job.endpoint}: 429 after ${job.retries} retries`,
            {
              status,
              retryAfterMs,
              ...binanceError(body),
            },
          );
        } else {
          this.#r418++;
          failure = new BinanceRestError(
            "REST_BANNED",
            `${job.endpoint}: IP banned for ${retryAfterMs} ms (418)`,
            {
              status,
              retryAfterMs,
              ...binanceError(body),
            },
          );
        }
      } else if (status < 200 || status >= 300) {
        const e = binanceError(body);
        failure = new BinanceRestError(
          status >= 500 ? "REST_SERVER" : "REST_BAD_REQUEST",
          `${job.endpoint}: HTTP ${status}${e.binanceMsg === undefined ? "" : ` ${e.binanceMsg}`}`,
          { status, ...e },
        );
      }
    }
    if (job.onAbort !== undefined) job.signal?.removeEventListener("abort", job.onAbort);
    if (failure !== undefined) {
      this.#failures++;
      job.reject(failure);
    } else {
      job.resolve({ body, data: body, status, usedWeight, receiveTimeNs, latencyMs });
    }
    this.#pump();
  }

  /** Binance's figure is the truth for its window; requests still in flight may not be in it yet. */
  #resync(serverUsed: number): void {
    this.#roll(Date.now());
    this.#used = serverUsed + this.#inFlightWeight;
  }

  /** Rejects queued calls with REST_CLOSED, aborts those in flight, clears the timer. Idempotent. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    if (this.#timer !== undefined) clearTimeout(this.#timer);
    this.#timer = undefined;
    for (const job of [...this.#high.splice(0), ...this.#normal.splice(0)]) {
      if (job.onAbort !== undefined) job.signal?.removeEventListener("abort", job.onAbort);
      job.reject(new BinanceRestError("REST_CLOSED", "REST client closed"));
    }
    for (const c of this.#inFlight) c.abort();
  }
}

function parseWeight(v: string | null): number | undefined {
  if (v === null) return undefined;
  const n = Number(v);
  return Number.isFinite(n) && n >= 0 ? n : undefined;
}

/** `Retry-After` as seconds or an HTTP date, in ms; undefined when absent or unreadable. */
function parseRetryAfter(v: string | null): number | undefined {
  if (v === null || v.trim() === "") return undefined;
  const seconds = Number(v);
  if (Number.isFinite(seconds) && seconds >= 0) return Math.ceil(seconds * 1000);
  const at = Date.parse(v);
  return Number.isNaN(at) ? undefined : Math.max(0, at - Date.now());
}

function binanceError(body: string): { binanceCode?: number; binanceMsg?: string } {
  try {
    const o = JSON.parse(body) as unknown;
    if (typeof o === "object" && o !== null) {
      const { code, msg } = o as { code?: unknown; msg?: unknown };
      return {
        ...(typeof code === "number" ? { binanceCode: code } : {}),
        ...(typeof msg === "string" ? { binanceMsg: msg } : {}),
      };
    }
  } catch {
    // Not JSON (a proxy's HTML page): no Binance code to report.
  }
  return {};
}

function errorMessage(err: unknown): string {
  const cause = (err as { cause?: unknown }).cause;
  if (cause instanceof Error) return cause.message;
  return err instanceof Error ? err.message : String(err);
}

function parseIdList<T>(body: string, idField: string): readonly T[] {
  const v = JSON.parse(body) as unknown;
  if (!Array.isArray(v)) throw new TypeError("expected a JSON array");
  for (const item of v as unknown[]) {
    if (
      typeof item !== "object" ||
      item === null ||
      !Number.isSafeInteger((item as Record<string, unknown>)[idField])
    )
      throw new TypeError(`every element needs an integer ${idField}`);
  }
  return v as T[];
}

function parseExchangeSymbols(body: string): readonly ExchangeSymbol[] {
  const v = JSON.parse(body) as { symbols?: unknown };
  if (typeof v !== "object" || v === null || !Array.isArray(v.symbols))
    throw new TypeError("no symbols list");
  return (v.symbols as unknown[]).map((s) => {
    const o = s as Record<string, unknown>;
    if (typeof o.symbol !== "string" || typeof o.status !== "string")
      throw new TypeError("a symbol without symbol/status");
    return { symbol: o.symbol, status: o.status };
  });
}

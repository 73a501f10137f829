/**
 * Binance spot's public REST market-data endpoints over the replay's current state, behind Binance's
 * per-IP request-weight rules (`X-MBX-USED-WEIGHT-1M` on every answer, 429 then 418 with
 * `Retry-After`).
 */
import type { IncomingMessage, ServerResponse } from "node:http";
import type { Recording } from "@l2flow/recording";
import { multiplyDecimals, writtenDecimals } from "./decimal.js";
import { rateLimits, symbolInfo } from "./exchange-info.js";
import { WeightLimiter } from "./limits.js";
import {
  inferPrecision,
  lowerBound,
  type AggTradeRecord,
  type SymbolMarket,
  type SymbolPrecision,
} from "./market.js";
import type {
  LimitResponseRecord,
  ResolvedSimulatorOptions,
  RestRequestRecord,
  SimulatorStats,
} from "./options.js";

/** Request weight of `GET /api/v3/depth` for `limit` (Binance spot: 5 / 25 / 50 / 250). */
export function depthRequestWeight(limit: number): number {
  if (limit <= 100) return 5;
  if (limit <= 500) return 25;
  if (limit <= 1000) return 50;
  return 250;
}

class ApiError extends Error {
  constructor(
    readonly status: number,
    readonly binanceCode: number,
    message: string,
  ) {
    super(message);
  }
}

const mandatory = (name: string) =>
  new ApiError(400, -1102, `Mandatory parameter '${name}' was not sent, was empty/null, or malformed.`);
const illegal = (name: string) =>
  new ApiError(
    400,
    -1100,
    `Illegal characters found in parameter '${name}'; legal range is '^[0-9]{1,20}$'.`,
  );
const invalid = (name: string) => new ApiError(400, -1130, `Data sent for parameter '${name}' is not valid.`);
const badSymbol = () => new ApiError(400, -1121, "Invalid symbol.");

interface Route {
  /** Weight charged before the request is validated (Binance charges bad requests too). */
  weight(query: URLSearchParams): number;
  handle(query: URLSearchParams, microseconds: boolean): unknown;
}

function intParam(query: URLSearchParams, name: string): number | undefined {
  const text = query.get(name);
  if (text === null) return undefined;
  if (text === "") throw mandatory(name);
  if (!/^[0-9]{1,20}$/.test(text)) throw illegal(name);
  const value = Number(text);
  if (!Number.isSafeInteger(value)) throw invalid(name);
  return value;
}

/** `limit` with Binance's default, at least 1, and capped at `max` (larger values are clamped, not refused). */
function limitParam(query: URLSearchParams, fallback: number, max: number): number {
  const limit = intParam(query, "limit") ?? fallback;
  if (limit < 1) throw invalid("limit");
  return Math.min(limit, max);
}

/** Best-effort depth limit for the weight, before validation. */
function depthLimitForWeight(query: URLSearchParams): number {
  const n = Number(query.get("limit") ?? "100");
  return Number.isFinite(n) && n >= 1 ? Math.min(n, 5000) : 100;
}

/** The REST side of the simulator. */
export class RestApi {
  readonly #o: ResolvedSimulatorOptions;
  readonly #markets: ReadonlyMap<string, SymbolMarket>;
  readonly #recording: Recording;
  readonly #limiter: WeightLimiter;
  readonly #routes: ReadonlyMap<string, Route>;
  #precision: Map<string, SymbolPrecision> | undefined;

  readonly #requests: RestRequestRecord[] = [];
  readonly #limitResponses: LimitResponseRecord[] = [];
  #totalRequests = 0;
  #totalWeight = 0;
  #maxUsedWeight = 0;
  #rateLimited429 = 0;
  #banned418 = 0;

  constructor(
    options: ResolvedSimulatorOptions,
    recording: Recording,
    markets: ReadonlyMap<string, SymbolMarket>,
  ) {
    this.#o = options;
    this.#recording = recording;
    this.#markets = markets;
    this.#limiter = new WeightLimiter({
      limit: options.weightLimitPerMinute,
      windowMs: options.weightWindowMs,
      banMs: options.banMs,
      maxBanMs: options.maxBanMs,
    });
    this.#routes = new Map<string, Route>([
      ["/api/v3/ping", { weight: () => 1, handle: () => ({}) }],
      ["/api/v3/time", { weight: () => 1, handle: (_q, us) => ({ serverTime: this.#time(Date.now(), us) }) }],
      ["/api/v3/exchangeInfo", { weight: () => 20, handle: (q) => this.#exchangeInfo(q) }],
      [
        "/api/v3/depth",
        { weight: (q) => depthRequestWeight(depthLimitForWeight(q)), handle: (q) => this.#depth(q) },
      ],
      ["/api/v3/trades", { weight: () => 25, handle: (q, us) => this.#trades(q, us, false) }],
      ["/api/v3/historicalTrades", { weight: () => 25, handle: (q, us) => this.#trades(q, us, true) }],
      ["/api/v3/aggTrades", { weight: () => 4, handle: (q, us) => this.#aggTrades(q, us) }],
    ]);
  }

  /** Answers one HTTP request. */
  handle(req: IncomingMessage, res: ServerResponse): void {
    const nowMs = Date.now();
    const url = new URL(req.url ?? "/", "http://simulator");
    const method = req.method ?? "GET";
    const route = this.#routes.get(url.pathname);
    const path = `${url.pathname}${url.search}`;
    if (!route || (method !== "GET" && method !== "HEAD")) {
      // Unknown endpoints cost nothing and are not rate limited, like a 404 at Binance's edge.
      this.#send(res, method, path, 0, nowMs, 404, { code: -1000, msg: "Unknown endpoint." }, {});
      return;
    }
    const query = url.searchParams;
    const weight = route.weight(query);
    const decision = this.#limiter.admit(weight, nowMs);
    if (decision.status !== 200) {
      const msg =
        decision.status === 429
          ? `Too much request weight used; current limit is ${this.#o.weightLimitPerMinute} request weight per 1 MINUTE. Please use WebSocket Streams for live updates to avoid polling the API.`
          : `Way too much request weight used; IP banned until ${decision.untilMs}. Please use WebSocket Streams for live updates to avoid bans.`;
      if (decision.status === 429) this.#rateLimited429++;
      else this.#banned418++;
      this.#push(this.#limitResponses, {
        atMs: nowMs,
        status: decision.status,
        path,
        retryAfterSec: decision.retryAfterSec,
      });
      this.#send(
        res,
        method,
        path,
        decision.status === 429 ? weight : 0,
        nowMs,
        decision.status,
        { code: -1003, msg },
        {
          "Retry-After": String(decision.retryAfterSec),
        },
      );
      return;
    }
    const microseconds = /^microsecond$/i.test(String(req.headers["x-mbx-time-unit"] ?? ""));
    let status = 200;
    let body: unknown;
    try {
      body = route.handle(query, microseconds);
    } catch (err) {
      if (!(err instanceof ApiError)) throw err;
      status = err.status;
      body = { code: err.binanceCode, msg: err.message };
    }
    this.#send(res, method, path, weight, nowMs, status, body, {});
  }

  /** The REST part of `stats()`. */
  stats(): SimulatorStats["rest"] {
    return {
      requests: [...this.#requests],
      totalRequests: this.#totalRequests,
      totalWeight: this.#totalWeight,
      maxUsedWeight: this.#maxUsedWeight,
      rateLimited429: this.#rateLimited429,
      banned418: this.#banned418,
      requestsWhileBanned: this.#banned418,
      bans: this.#limiter.bans,
      limitResponses: [...this.#limitResponses],
    };
  }

  #send(
    res: ServerResponse,
    method: string,
    path: string,
    weight: number,
    nowMs: number,
    status: number,
    body: unknown,
    headers: Record<string, string>,
  ): void {
    const usedWeight = this.#limiter.used(nowMs);
    this.#totalRequests++;
    this.#totalWeight += weight;
    if (usedWeight > this.#maxUsedWeight) this.#maxUsedWeight = usedWeight;
    this.#push(this.#requests, { atMs: nowMs, method, path, weight, status, usedWeight });
    const text = JSON.stringify(body);
    res.writeHead(status, {
      "Content-Type": "application/json;charset=UTF-8",
      "Content-Length": Buffer.byteLength(text),
      "X-MBX-USED-WEIGHT-1M": String(usedWeight),
      ...headers,
    });
    res.end(method === "HEAD" ? undefined : text);
  }

  #push<T>(list: T[], item: T): void {
    list.push(item);
    if (list.length > this.#o.maxRecords) list.splice(0, list.length - this.#o.maxRecords);
  }

  #time(ms: number, microseconds: boolean): number {
    return microseconds ? ms * 1000 : ms;
  }

  #market(query: URLSearchParams): SymbolMarket {
    const symbol = query.get("symbol");
    if (symbol === null || symbol === "") throw mandatory("symbol");
    const market = this.#markets.get(symbol.toUpperCase());
    if (!market) throw badSymbol();
    return market;
  }

  #depth(query: URLSearchParams): unknown {
    const market = this.#market(query);
    const snapshot = market.book.snapshot(limitParam(query, 100, 5000));
    return { lastUpdateId: snapshot.lastUpdateId, bids: snapshot.bids, asks: snapshot.asks };
  }

  #trades(query: URLSearchParams, microseconds: boolean, historical: boolean): unknown {
    const market = this.#market(query);
    const limit = limitParam(query, 500, 1000);
    const fromId = historical ? intParam(query, "fromId") : undefined;
    const trades = market.trades;
    const start =
      fromId === undefined ? Math.max(0, trades.length - limit) : lowerBound(trades, fromId, (t) => t.id);
    return trades.slice(start, start + limit).map((t) => ({
      id: t.id,
      price: t.price,
      qty: t.qty,
      quoteQty: multiplyDecimals(t.price, t.qty, writtenDecimals(t.price)),
      time: this.#time(t.time, microseconds),
      isBuyerMaker: t.isBuyerMaker,
      isBestMatch: t.isBestMatch,
    }));
  }

  #aggTrades(query: URLSearchParams, microseconds: boolean): unknown {
    const market = this.#market(query);
    const limit = limitParam(query, 500, 1000);
    const fromId = intParam(query, "fromId");
    const startTime = intParam(query, "startTime");
    const endTime = intParam(query, "endTime");
    if (fromId !== undefined && (startTime !== undefined || endTime !== undefined))
      throw new ApiError(400, -1128, "Combination of optional parameters invalid.");
    const items = market.aggTrades;
    let out: AggTradeRecord[];
    if (fromId !== undefined) {
      const start = lowerBound(items, fromId, (t) => t.a);
      out = items.slice(start, start + limit);
    } else if (startTime !== undefined || endTime !== undefined) {
      const lo = startTime === undefined ? 0 : lowerBound(items, startTime, (t) => t.T);
      const hi = endTime === undefined ? items.length : lowerBound(items, endTime + 1, (t) => t.T);
      out =
        startTime !== undefined
          ? items.slice(lo, Math.min(hi, lo + limit))
          : items.slice(Math.max(lo, hi - limit), hi);
    } else {
      out = items.slice(Math.max(0, items.length - limit));
    }
    return microseconds ? out.map((t) => ({ ...t, T: t.T * 1000 })) : out;
  }

  #exchangeInfo(query: URLSearchParams): unknown {
    let symbols = [...this.#markets.keys()];
    const one = query.get("symbol");
    const many = query.get("symbols");
    if (one !== null && many !== null)
      throw new ApiError(400, -1128, "Combination of optional parameters invalid.");
    if (one !== null) {
      if (!this.#markets.has(one.toUpperCase())) throw badSymbol();
      symbols = [one.toUpperCase()];
    } else if (many !== null) {
      let list: unknown;
      try {
        list = JSON.parse(many);
      } catch {
        throw invalid("symbols");
      }
      if (!Array.isArray(list) || list.length === 0 || list.some((s) => typeof s !== "string"))
        throw invalid("symbols");
      symbols = (list as string[]).map((s) => s.toUpperCase());
      if (symbols.some((s) => !this.#markets.has(s))) throw badSymbol();
    }
    this.#precision ??= inferPrecision(this.#recording);
    const precision = this.#precision;
    return {
      timezone: "UTC",
      serverTime: Date.now(),
      rateLimits: rateLimits(this.#o.weightLimitPerMinute),
      exchangeFilters: [],
      symbols: symbols.map((s) => symbolInfo(s, precision.get(s))),
    };
  }
}

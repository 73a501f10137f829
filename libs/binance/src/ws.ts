/**
 * One Binance combined-stream WebSocket: frames handed over zero-copy with their receive time, the
 * 5-messages-per-second rule paced on our side (pongs included), a silence watchdog, live
 * SUBSCRIBE/UNSUBSCRIBE/LIST_SUBSCRIPTIONS with request ids, `serverShutdown` detection and the
 * 24 h lifetime.
 */
import WebSocket from "ws";
import { L2flowError, LogLimiter, type Logger } from "@l2flow/runtime";
import { SlidingWindowLimiter } from "./backoff.js";

/** Binance's production stream endpoint (port 9443; `wss://stream.binance.com:443` also works). */
export const BINANCE_WS_BASE_URL = "wss://stream.binance.com:9443";
/** Market-data-only endpoint. */
export const BINANCE_DATA_WS_BASE_URL = "wss://data-stream.binance.vision";
/** Binance.US stream endpoint. */
export const BINANCE_US_WS_BASE_URL = "wss://stream.binance.us:9443";
/** Binance's hard limit of streams on one connection. */
export const MAX_STREAMS_PER_CONNECTION = 1024;
/** Binance's limit of incoming messages (pings, pongs, JSON requests) per second per connection. */
export const BINANCE_MAX_MESSAGES_PER_SECOND = 5;

/** Stable codes of `BinanceWsError`. */
export type BinanceWsErrorCode =
  | "WS_BAD_OPTIONS"
  | "WS_TOO_MANY_STREAMS"
  | "WS_QUEUE_FULL"
  | "WS_REQUEST_TIMEOUT"
  | "WS_REQUEST_REJECTED"
  | "WS_CLOSED"
  | "WS_CONNECT_FAILED"
  | "WS_ABORTED";

const RETRYABLE_WS: ReadonlySet<BinanceWsErrorCode> = new Set([
  "WS_QUEUE_FULL",
  "WS_REQUEST_TIMEOUT",
  "WS_CLOSED",
  "WS_CONNECT_FAILED",
]);

/** A WebSocket-side failure. `binanceCode`/`binanceMsg` carry an error reply's `{code, msg}`. */
export class BinanceWsError extends L2flowError {
  declare readonly code: BinanceWsErrorCode;
  readonly binanceCode: number | undefined;
  readonly binanceMsg: string | undefined;
  constructor(
    code: BinanceWsErrorCode,
    message: string,
    options: { cause?: unknown; binanceCode?: number; binanceMsg?: string } = {},
  ) {
    super(code, message, {
      retryable: RETRYABLE_WS.has(code),
      ...(options.cause === undefined ? {} : { cause: options.cause }),
    });
    this.binanceCode = options.binanceCode;
    this.binanceMsg = options.binanceMsg;
  }
}

/** How a connection ended: closed by the server, failed, killed by the silence watchdog, or closed by us. */
export type CloseKind = "closed" | "error" | "silence" | "local";

/** What `onClose` reports. `error` is the socket error, when there was one. */
export interface CloseInfo {
  readonly code: number;
  readonly reason: string;
  readonly kind: CloseKind;
  readonly error?: Error;
}

/** Where a connection is in its life. */
export type ConnectionState = "idle" | "connecting" | "open" | "closed";

/** Options of `BinanceStreamConnection` (every field but `streams` and `onFrame` has a default). */
export interface StreamConnectionOptions {
  /** Base URL without path. Default `wss://stream.binance.com:9443`. */
  readonly wsBaseUrl?: string;
  /** Stream names (`btcusdt@trade`, …) to open with; at most 1024. */
  readonly streams: readonly string[];
  /** Connection id used in logs, stats and `MD_RAW` headers. Default `ws-<n>`. */
  readonly id?: string;
  /** Adds `timeUnit=MICROSECOND` to the URL when set to "MICROSECOND". Default milliseconds (no parameter). */
  readonly timeUnit?: "MILLISECOND" | "MICROSECOND";
  /**
   * Our messages (JSON requests and pongs) per rolling second. Default 4; never above 5 (even at 5 a
   * request waits while no pong came in the last second, so the next pong still fits Binance's 5).
   */
  readonly maxMessagesPerSecond?: number;
  /** JSON requests waiting for their turn; more are rejected with WS_QUEUE_FULL. Default 64. */
  readonly maxQueuedMessages?: number;
  /**
   * No frame and no ping for this long kills the socket (kind "silence"). Default 30 000 ms: Binance
   * pings every 20 s, so this is one ping interval plus 10 s of slack.
   */
  readonly silenceTimeoutMs?: number;
  /**
   * No market frame for this long while pings still come calls `onDataSilence` (once, until a frame
   * comes again): Binance has been seen to stop a connection's data and keep pinging it. 0 (the
   * default): not watched.
   */
  readonly dataSilenceTimeoutMs?: number;
  /** Binance ends a connection after this long. Default 24 h. */
  readonly maxLifetimeMs?: number;
  /** `onLifetimeNearEnd` fires this long before `maxLifetimeMs`. Default 10 min (clamped to the lifetime). */
  readonly rotateBeforeMs?: number;
  /** A request without reply after this long (from when it is sent) fails. Default 10 000 ms. */
  readonly requestTimeoutMs?: number;
  /** Opening handshake deadline. Default 10 000 ms. */
  readonly handshakeTimeoutMs?: number;
  /** Streams that would make the URL longer than this are subscribed after open. Default 8000 chars. */
  readonly maxUrlLength?: number;
  /** Streams per SUBSCRIBE/UNSUBSCRIBE message. Default 200. */
  readonly maxStreamsPerRequest?: number;
  /** Largest frame accepted; a larger one closes the socket (1009). Default 16 MiB. */
  readonly maxPayloadBytes?: number;
  /** Warnings (rate-limited) go here. Default: none. */
  readonly logger?: Logger;
  /**
   * Every market frame, synchronously, zero-copy: `bytes` is the buffer `ws` delivered (often a view
   * of a whole socket read: neither ws nor Node reuses it, but keeping it pins that read — copy what
   * you keep); `receiveTimeNs` is epoch nanoseconds. Replies and `serverShutdown`
   * are not passed here.
   */
  readonly onFrame: (bytes: Buffer, receiveTimeNs: bigint, conn: BinanceStreamConnection) => void;
  /** Once per connection, when the socket has closed (or failed to open). */
  readonly onClose?: (info: CloseInfo, conn: BinanceStreamConnection) => void;
  /** A `serverShutdown` event arrived (raw or combined); `eventTimeMs` is its `E` (0 if absent). */
  readonly onServerShutdown?: (eventTimeMs: number, conn: BinanceStreamConnection) => void;
  /** Fires once, `rotateBeforeMs` before `maxLifetimeMs` after open. */
  readonly onLifetimeNearEnd?: (conn: BinanceStreamConnection) => void;
  /** No market frame for `dataSilenceTimeoutMs` while the connection is otherwise alive. */
  readonly onDataSilence?: (conn: BinanceStreamConnection) => void;
}

/** Counters of one connection. */
export interface ConnectionStats {
  readonly frames: number;
  readonly bytes: number;
  readonly pings: number;
  readonly requestsSent: number;
  readonly replies: number;
  readonly callbackErrors: number;
}

let anchorHr = 0n;
let anchorOffsetNs = 0n;
/** Checking the wall clock every this long... */
const REANCHOR_EVERY_NS = 60_000_000_000n;
/** ...the offset follows it once it is this far off (a step of the clock), not for less. */
const REANCHOR_STEP_NS = 2_000_000n;

/**
 * Wall-clock time in integer nanoseconds since the Unix epoch, from the monotonic clock anchored to
 * the wall clock: at the first call precisely (the process's time origin), then checked against
 * `Date.now()` every 60 s and moved when the wall clock stepped more than 2 ms away (NTP setting the
 * clock after the process started, a VM resumed). Smaller differences are `Date.now()`'s own
 * millisecond, so between steps the time never jumps back or forth.
 */
export function epochNowNs(hr: bigint = process.hrtime.bigint()): bigint {
  if (anchorHr === 0n) {
    anchorHr = process.hrtime.bigint();
    const wallNs = BigInt(Math.round((performance.timeOrigin + performance.now()) * 1000)) * 1000n;
    anchorOffsetNs = wallNs - anchorHr;
  } else if (hr - anchorHr > REANCHOR_EVERY_NS) {
    anchorHr = process.hrtime.bigint();
    const offset = BigInt(Date.now()) * 1_000_000n + 500_000n - anchorHr; // mid-millisecond
    const drift = offset - anchorOffsetNs;
    if (drift > REANCHOR_STEP_NS || drift < -REANCHOR_STEP_NS) anchorOffsetNs = offset;
  }
  return hr + anchorOffsetNs;
}

const STREAM_NAME = /^[A-Za-z0-9!@_.-]{1,100}$/;

function checkStreams(streams: readonly string[]): void {
  for (const s of streams) {
    if (!STREAM_NAME.test(s))
      throw new BinanceWsError("WS_BAD_OPTIONS", `invalid stream name ${JSON.stringify(s).slice(0, 120)}`);
  }
}

/** Builds `<base>/stream?streams=a/b/c[&timeUnit=MICROSECOND]`. */
export function combinedStreamUrl(
  wsBaseUrl: string,
  streams: readonly string[],
  timeUnit?: "MILLISECOND" | "MICROSECOND",
): string {
  const base = wsBaseUrl.replace(/\/+$/, "");
  const unit = timeUnit === "MICROSECOND" ? "&timeUnit=MICROSECOND" : "";
  return `${base}/stream?streams=${streams.join("/")}${unit}`;
}

interface Pending {
  readonly method: string;
  readonly resolve: (result: unknown) => void;
  readonly reject: (err: Error) => void;
  timer: NodeJS.Timeout | undefined;
}

interface Outgoing {
  readonly id: number;
  readonly text: string;
}

// `{"stream":"` as bytes, and the offset of the first character of the stream name.
const STREAM_PREFIX = Buffer.from('{"stream":"');
const BANG = 0x21;
// Replies and events bigger than this are certainly market data; never parse them here.
const MAX_CONTROL_BYTES = 64 * 1024;

let nextConnectionNumber = 1;

type Callbacks = "logger" | "onClose" | "onServerShutdown" | "onLifetimeNearEnd" | "onDataSilence";
type Resolved = Required<Omit<StreamConnectionOptions, Callbacks | "timeUnit">> & {
  readonly [K in Callbacks]: StreamConnectionOptions[K] | undefined;
};

/** Longest delay `setTimeout` accepts. */
const MAX_TIMER_MS = 2_147_483_647;

/**
 * One WebSocket on Binance's combined-stream endpoint. Create, then `open()`. Every JSON request goes
 * through a paced queue that also counts the pongs `ws` sends automatically, so the connection never
 * exceeds `maxMessagesPerSecond` (default 4, Binance allows 5). `close()` is idempotent and clears every
 * timer; `onClose` fires exactly once.
 */
export class BinanceStreamConnection {
  readonly id: string;
  readonly url: string;
  readonly #o: Resolved;
  readonly #streams = new Set<string>();
  /** Streams that did not fit the URL; subscribed right after open. */
  readonly #overflow: string[];
  /** Everything we send that Binance counts: requests and pongs. */
  readonly #sent: SlidingWindowLimiter;
  /** Pongs alone, to keep a slot for the next one. */
  readonly #pongs: SlidingWindowLimiter;
  readonly #logLimiter = new LogLimiter();
  #ws: WebSocket | undefined;
  #state: ConnectionState = "idle";
  #openedAt: number | undefined;
  #lastRxHr = 0n;
  /** When the last market frame came (`dataSilenceTimeoutMs`). */
  #lastFrameHr = 0n;
  #dataSilent = false;
  #closeKind: CloseKind | undefined;
  #socketError: Error | undefined;
  #closeReported = false;
  #nextRequestId = 1;
  readonly #pending = new Map<number, Pending>();
  readonly #queue: Outgoing[] = [];
  #pumpTimer: NodeJS.Timeout | undefined;
  #watchdog: NodeJS.Timeout | undefined;
  #lifetimeTimer: NodeJS.Timeout | undefined;
  #terminateTimer: NodeJS.Timeout | undefined;
  #closedResolve: (() => void) | undefined;
  /** Resolves once the socket has closed (or never opened and was closed). */
  readonly closed: Promise<void>;
  #frames = 0;
  #bytes = 0;
  #pings = 0;
  #requestsSent = 0;
  #replies = 0;
  #callbackErrors = 0;

  constructor(options: StreamConnectionOptions) {
    const maxPerSecond = options.maxMessagesPerSecond ?? 4;
    if (!Number.isInteger(maxPerSecond) || maxPerSecond < 1 || maxPerSecond > BINANCE_MAX_MESSAGES_PER_SECOND)
      throw new BinanceWsError(
        "WS_BAD_OPTIONS",
        `maxMessagesPerSecond must be an integer from 1 to ${BINANCE_MAX_MESSAGES_PER_SECOND}, got ${maxPerSecond}`,
      );
    const maxLifetimeMs = options.maxLifetimeMs ?? 24 * 3_600_000;
    if (!(maxLifetimeMs > 0 && maxLifetimeMs <= MAX_TIMER_MS))
      throw new BinanceWsError(
        "WS_BAD_OPTIONS",
        `maxLifetimeMs must be in (0, ${MAX_TIMER_MS}], got ${maxLifetimeMs}`,
      );
    this.#o = {
      wsBaseUrl: options.wsBaseUrl ?? BINANCE_WS_BASE_URL,
      streams: options.streams,
      id: options.id ?? `ws-${nextConnectionNumber++}`,
      maxMessagesPerSecond: maxPerSecond,
      maxQueuedMessages: options.maxQueuedMessages ?? 64,
      silenceTimeoutMs: options.silenceTimeoutMs ?? 30_000,
      dataSilenceTimeoutMs: options.dataSilenceTimeoutMs ?? 0,
      maxLifetimeMs,
      rotateBeforeMs: Math.min(options.rotateBeforeMs ?? 600_000, maxLifetimeMs),
      requestTimeoutMs: options.requestTimeoutMs ?? 10_000,
      handshakeTimeoutMs: options.handshakeTimeoutMs ?? 10_000,
      maxUrlLength: options.maxUrlLength ?? 8000,
      maxStreamsPerRequest: options.maxStreamsPerRequest ?? 200,
      maxPayloadBytes: options.maxPayloadBytes ?? 16 * 1024 * 1024,
      logger: options.logger,
      onFrame: options.onFrame,
      onClose: options.onClose,
      onServerShutdown: options.onServerShutdown,
      onLifetimeNearEnd: options.onLifetimeNearEnd,
      onDataSilence: options.onDataSilence,
    };
    this.id = this.#o.id;
    const unique = [...new Set(options.streams)];
    if (unique.length > MAX_STREAMS_PER_CONNECTION)
      throw new BinanceWsError(
        "WS_TOO_MANY_STREAMS",
        `${unique.length} streams on one connection; Binance allows ${MAX_STREAMS_PER_CONNECTION}`,
      );
    checkStreams(unique);
    // Keep as many streams in the URL as fit; the rest are subscribed once the socket is open.
    let inUrl = unique.length;
    while (
      inUrl > 1 &&
      combinedStreamUrl(this.#o.wsBaseUrl, unique.slice(0, inUrl), options.timeUnit).length >
        this.#o.maxUrlLength
    )
      inUrl = Math.floor(inUrl * 0.9);
    this.url = combinedStreamUrl(this.#o.wsBaseUrl, unique.slice(0, inUrl), options.timeUnit);
    for (const s of unique.slice(0, inUrl)) this.#streams.add(s);
    this.#overflow = unique.slice(inUrl);
    this.#sent = new SlidingWindowLimiter({ limit: maxPerSecond, windowMs: 1000 });
    this.#pongs = new SlidingWindowLimiter({ limit: BINANCE_MAX_MESSAGES_PER_SECOND, windowMs: 1000 });
    this.closed = new Promise<void>((resolve) => {
      this.#closedResolve = resolve;
    });
  }

  /** Where the connection is in its life. */
  get state(): ConnectionState {
    return this.#state;
  }
  /** Epoch ms when the socket opened; undefined before. */
  get openedAt(): number | undefined {
    return this.#openedAt;
  }
  /** Streams this connection is subscribed to (URL streams plus confirmed SUBSCRIBEs). */
  get streams(): ReadonlySet<string> {
    return this.#streams;
  }
  /** Counters since creation. */
  get stats(): ConnectionStats {
    return {
      frames: this.#frames,
      bytes: this.#bytes,
      pings: this.#pings,
      requestsSent: this.#requestsSent,
      replies: this.#replies,
      callbackErrors: this.#callbackErrors,
    };
  }

  /**
   * Opens the socket and subscribes the streams that did not fit the URL. Resolves when all are live;
   * rejects with `BinanceWsError` (WS_CONNECT_FAILED, WS_CLOSED, WS_ABORTED), after which the
   * connection is closed and `onClose` has fired or will fire.
   */
  async open(signal?: AbortSignal): Promise<void> {
    if (this.#state !== "idle") throw new BinanceWsError("WS_BAD_OPTIONS", "open() may be called once");
    if (signal?.aborted) {
      this.close();
      throw new BinanceWsError("WS_ABORTED", "open aborted");
    }
    this.#state = "connecting";
    const ws = new WebSocket(this.url, {
      perMessageDeflate: false,
      handshakeTimeout: this.#o.handshakeTimeoutMs,
      maxPayload: this.#o.maxPayloadBytes,
      skipUTF8Validation: true,
    });
    ws.binaryType = "nodebuffer";
    this.#ws = ws;
    const onAbort = () => this.close(1000, "open aborted");
    signal?.addEventListener("abort", onAbort, { once: true });
    try {
      await new Promise<void>((resolve, reject) => {
        ws.once("open", resolve);
        ws.once("close", () =>
          reject(
            new BinanceWsError(
              signal?.aborted === true
                ? "WS_ABORTED"
                : this.#closeKind === "local"
                  ? "WS_CLOSED"
                  : "WS_CONNECT_FAILED",
              `connection ${this.id} failed to open${this.#socketError ? `: ${this.#socketError.message}` : ""}`,
              this.#socketError ? { cause: this.#socketError } : {},
            ),
          ),
        );
        ws.on("error", (err) => {
          this.#socketError ??= err;
        });
        ws.on("close", (code, reason) => this.#onSocketClose(code, reason));
        ws.on("message", (data, isBinary) => this.#onMessage(data, isBinary));
        ws.on("ping", () => this.#onPing());
        ws.on("pong", () => {
          this.#lastRxHr = process.hrtime.bigint();
        });
      });
      this.#state = "open";
      this.#openedAt = Date.now();
      this.#lastRxHr = process.hrtime.bigint();
      this.#startTimers();
      for (let i = 0; i < this.#overflow.length; i += this.#o.maxStreamsPerRequest)
        await this.subscribe(this.#overflow.slice(i, i + this.#o.maxStreamsPerRequest));
    } catch (err) {
      this.close(1000, "open failed");
      if (err instanceof BinanceWsError) throw err;
      throw new BinanceWsError("WS_CONNECT_FAILED", `connection ${this.id} failed to open`, { cause: err });
    } finally {
      signal?.removeEventListener("abort", onAbort);
    }
  }

  #startTimers(): void {
    const silence = this.#o.silenceTimeoutMs;
    const dataSilence = this.#o.dataSilenceTimeoutMs;
    const shortest = dataSilence > 0 ? Math.min(silence, dataSilence) : silence;
    const every = Math.max(20, Math.min(1000, Math.floor(shortest / 4)));
    this.#lastFrameHr = process.hrtime.bigint();
    this.#watchdog = setInterval(() => {
      const now = process.hrtime.bigint();
      const idleMs = Number(now - this.#lastRxHr) / 1e6;
      if (idleMs >= silence) {
        this.#warn("silence", { idleMs: Math.round(idleMs) }, "no frame and no ping: terminating");
        this.#terminate("silence");
        return;
      }
      const dataIdleMs = Number(now - this.#lastFrameHr) / 1e6;
      if (dataSilence > 0 && !this.#dataSilent && dataIdleMs >= dataSilence) {
        this.#dataSilent = true;
        this.#warn(
          "data-silence",
          { idleMs: Math.round(dataIdleMs) },
          "pings but no market data: replacing the connection",
        );
        this.#callback(() => this.#o.onDataSilence?.(this));
      }
    }, every);
    const nearEndMs = Math.max(0, this.#o.maxLifetimeMs - this.#o.rotateBeforeMs);
    this.#lifetimeTimer = setTimeout(() => {
      this.#lifetimeTimer = undefined;
      this.#callback(() => this.#o.onLifetimeNearEnd?.(this));
    }, nearEndMs);
  }

  #onPing(): void {
    // `ws` has already queued the pong with the same payload; it counts toward Binance's 5/s.
    this.#lastRxHr = process.hrtime.bigint();
    this.#pings++;
    const now = performance.now();
    this.#sent.record(now);
    this.#pongs.record(now);
  }

  #onMessage(data: WebSocket.RawData, _isBinary: boolean): void {
    const hr = process.hrtime.bigint();
    this.#lastRxHr = hr;
    const bytes = Buffer.isBuffer(data)
      ? data
      : Array.isArray(data)
        ? Buffer.concat(data)
        : Buffer.from(data);
    this.#bytes += bytes.length;
    if (this.#isMarketFrame(bytes)) {
      this.#frames++;
      this.#lastFrameHr = hr;
      this.#dataSilent = false;
      const receiveNs = epochNowNs(hr);
      try {
        this.#o.onFrame(bytes, receiveNs, this);
      } catch (err) {
        this.#callbackErrors++;
        this.#warn("onFrame", { err }, "onFrame threw; frame skipped");
      }
    }
  }

  /** True for market data; handles replies and `serverShutdown` itself and returns false for them. */
  #isMarketFrame(bytes: Buffer): boolean {
    const combined = bytes.length > STREAM_PREFIX.length && bytes.compare(STREAM_PREFIX, 0, 11, 0, 11) === 0;
    // Combined market frames never need a parse; only `!`-streams (e.g. `!serverShutdown`) and
    // non-combined frames (replies, raw events) are looked at.
    if (combined && bytes[11] !== BANG) return true;
    if (bytes.length > MAX_CONTROL_BYTES) return true;
    let o: unknown;
    try {
      o = JSON.parse(bytes.toString("utf8"));
    } catch {
      return true; // Not ours to judge: ingest counts bad frames.
    }
    if (typeof o !== "object" || o === null || Array.isArray(o)) return true;
    const obj = o as Record<string, unknown>;
    const event = combined ? (obj.data as Record<string, unknown> | null | undefined) : obj;
    if (typeof event === "object" && event !== null && event.e === "serverShutdown") {
      const e = typeof event.E === "number" ? event.E : 0;
      this.#warn("shutdown", { eventTime: e }, "serverShutdown received");
      this.#callback(() => this.#o.onServerShutdown?.(e, this));
      return false;
    }
    if (!combined && "id" in obj && ("result" in obj || "error" in obj)) {
      this.#onReply(obj);
      return false;
    }
    return true;
  }

  #onReply(obj: Record<string, unknown>): void {
    this.#replies++;
    const id = typeof obj.id === "number" ? obj.id : Number(obj.id);
    const pending = this.#pending.get(id);
    if (pending === undefined) {
      this.#warn("reply", { id: obj.id }, "reply to an unknown request id");
      return;
    }
    this.#pending.delete(id);
    if (pending.timer !== undefined) clearTimeout(pending.timer);
    if ("error" in obj && obj.error !== null && obj.error !== undefined) {
      const e = obj.error as { code?: unknown; msg?: unknown };
      const code = typeof e.code === "number" ? e.code : undefined;
      const msg = typeof e.msg === "string" ? e.msg : JSON.stringify(obj.error);
      pending.reject(
        new BinanceWsError("WS_REQUEST_REJECTED", `${pending.method} rejected by Binance: ${msg}`, {
          ...(code === undefined ? {} : { binanceCode: code }),
          binanceMsg: msg,
        }),
      );
      return;
    }
    pending.resolve(obj.result);
  }

  /** Subscribes more streams (SUBSCRIBE, paced); resolves when Binance confirms. */
  async subscribe(streams: readonly string[]): Promise<void> {
    checkStreams(streams);
    const fresh = [...new Set(streams)].filter((s) => !this.#streams.has(s));
    if (fresh.length === 0) return;
    if (this.#streams.size + fresh.length > MAX_STREAMS_PER_CONNECTION)
      throw new BinanceWsError(
        "WS_TOO_MANY_STREAMS",
        `subscribing ${fresh.length} more streams would exceed ${MAX_STREAMS_PER_CONNECTION} on ${this.id}`,
      );
    for (let i = 0; i < fresh.length; i += this.#o.maxStreamsPerRequest) {
      const chunk = fresh.slice(i, i + this.#o.maxStreamsPerRequest);
      await this.#request("SUBSCRIBE", chunk);
      for (const s of chunk) this.#streams.add(s);
    }
  }

  /** Unsubscribes streams (UNSUBSCRIBE, paced); resolves when Binance confirms. */
  async unsubscribe(streams: readonly string[]): Promise<void> {
    const present = [...new Set(streams)].filter((s) => this.#streams.has(s));
    for (let i = 0; i < present.length; i += this.#o.maxStreamsPerRequest) {
      const chunk = present.slice(i, i + this.#o.maxStreamsPerRequest);
      await this.#request("UNSUBSCRIBE", chunk);
      for (const s of chunk) this.#streams.delete(s);
    }
  }

  /** Asks Binance which streams this connection carries (LIST_SUBSCRIPTIONS). */
  async listSubscriptions(): Promise<string[]> {
    const result = await this.#request("LIST_SUBSCRIPTIONS", undefined);
    if (!Array.isArray(result) || result.some((s) => typeof s !== "string"))
      throw new BinanceWsError("WS_REQUEST_REJECTED", "LIST_SUBSCRIPTIONS reply is not a list of names");
    return result as string[];
  }

  #request(method: string, params: readonly string[] | undefined): Promise<unknown> {
    if (this.#state !== "open") return Promise.reject(this.#closedError(method));
    if (this.#queue.length >= this.#o.maxQueuedMessages)
      return Promise.reject(
        new BinanceWsError(
          "WS_QUEUE_FULL",
          `${this.#queue.length} requests already waiting on ${this.id} (max ${this.#o.maxQueuedMessages})`,
        ),
      );
    const id = this.#nextRequestId++;
    const text = JSON.stringify(params === undefined ? { method, id } : { method, params, id });
    return new Promise<unknown>((resolve, reject) => {
      this.#pending.set(id, { method, resolve, reject, timer: undefined });
      this.#queue.push({ id, text });
      this.#pump();
    });
  }

  #pump(): void {
    if (this.#pumpTimer !== undefined) return;
    while (this.#queue.length > 0 && this.#state === "open") {
      const wait = this.#sendDelayMs(performance.now());
      if (wait > 0) {
        this.#pumpTimer = setTimeout(() => {
          this.#pumpTimer = undefined;
          this.#pump();
        }, Math.ceil(wait));
        return;
      }
      const out = this.#queue.shift() as Outgoing;
      const pending = this.#pending.get(out.id);
      if (pending === undefined) continue;
      this.#sent.record();
      this.#requestsSent++;
      this.#ws?.send(out.text);
      pending.timer = setTimeout(() => {
        if (this.#pending.delete(out.id))
          pending.reject(
            new BinanceWsError(
              "WS_REQUEST_TIMEOUT",
              `${pending.method} (id ${out.id}) got no reply within ${this.#o.requestTimeoutMs} ms on ${this.id}`,
            ),
          );
      }, this.#o.requestTimeoutMs);
    }
  }

  /**
   * 0 when a request may go now: fewer than `maxMessagesPerSecond` messages (pongs included) in the
   * last second, and one slot of Binance's 5 still free for a pong if no ping came in that second
   * (Binance pings every 20 s, so at most one pong can fall into any second).
   */
  #sendDelayMs(now: number): number {
    const all = this.#sent.count(now);
    const pongs = this.#pongs.count(now);
    const requests = all - pongs;
    if (all < this.#o.maxMessagesPerSecond && requests + Math.max(pongs, 1) < BINANCE_MAX_MESSAGES_PER_SECOND)
      return 0;
    return Math.max(1, this.#sent.nextExpiryMs(now));
  }

  #closedError(method: string): BinanceWsError {
    return new BinanceWsError("WS_CLOSED", `${method}: connection ${this.id} is ${this.#state}`);
  }

  #terminate(kind: CloseKind): void {
    this.#closeKind ??= kind;
    this.#clearTimers();
    this.#rejectAll();
    this.#ws?.terminate();
  }

  /**
   * Closes the connection (close frame 1000, then terminate if the server does not answer within 2 s).
   * Idempotent; clears every timer; pending requests fail with WS_CLOSED; `onClose` reports "local".
   */
  close(code = 1000, reason = "client closing"): void {
    if (this.#state === "closed") return;
    this.#closeKind ??= "local";
    this.#clearTimers();
    const wasIdle = this.#state === "idle";
    this.#state = "closed";
    this.#rejectAll();
    const ws = this.#ws;
    if (wasIdle || ws === undefined) {
      this.#reportClose(1000, reason);
      return;
    }
    if (ws.readyState === WebSocket.CONNECTING) {
      ws.terminate();
      return;
    }
    try {
      ws.close(code, reason);
    } catch {
      ws.terminate();
      return;
    }
    this.#terminateTimer = setTimeout(() => ws.terminate(), 2000);
  }

  #clearTimers(): void {
    if (this.#watchdog !== undefined) clearInterval(this.#watchdog);
    if (this.#lifetimeTimer !== undefined) clearTimeout(this.#lifetimeTimer);
    if (this.#pumpTimer !== undefined) clearTimeout(this.#pumpTimer);
    this.#watchdog = undefined;
    this.#lifetimeTimer = undefined;
    this.#pumpTimer = undefined;
  }

  #rejectAll(): void {
    this.#queue.length = 0;
    for (const [id, p] of this.#pending) {
      if (p.timer !== undefined) clearTimeout(p.timer);
      this.#pending.delete(id);
      p.reject(this.#closedError(p.method));
    }
  }

  #onSocketClose(code: number, reason: Buffer): void {
    this.#state = "closed";
    this.#clearTimers();
    if (this.#terminateTimer !== undefined) clearTimeout(this.#terminateTimer);
    this.#terminateTimer = undefined;
    this.#rejectAll();
    this.#reportClose(code, reason.toString("utf8"));
  }

  #reportClose(code: number, reason: string): void {
    if (this.#closeReported) return;
    this.#closeReported = true;
    this.#state = "closed";
    const kind = this.#closeKind ?? (this.#socketError !== undefined ? "error" : "closed");
    const info: CloseInfo =
      this.#socketError === undefined
        ? { code, reason, kind }
        : { code, reason, kind, error: this.#socketError };
    this.#callback(() => this.#o.onClose?.(info, this));
    this.#closedResolve?.();
  }

  #callback(fn: () => void): void {
    try {
      fn();
    } catch (err) {
      this.#callbackErrors++;
      this.#warn("callback", { err }, "a connection callback threw");
    }
  }

  #warn(key: string, fields: Record<string, unknown>, msg: string): void {
    const logger = this.#o.logger;
    if (logger === undefined) return;
    const suppressed = this.#logLimiter.take(key);
    if (suppressed >= 0) logger.warn({ conn: this.id, suppressed, ...fields }, msg);
  }
}

/** Creates a `BinanceStreamConnection` and opens it (see `open`). */
export async function connectBinanceStream(
  options: StreamConnectionOptions,
  signal?: AbortSignal,
): Promise<BinanceStreamConnection> {
  const conn = new BinanceStreamConnection(options);
  await conn.open(signal);
  return conn;
}

/**
 * One client WebSocket connection as Binance's stream server treats it: subscriptions and live
 * control requests, pings with a payload to echo and a pong deadline, the 5-messages-per-second
 * rule, a maximum lifetime, and the faults the simulator can inject.
 */
import type { Duplex } from "node:stream";
import type { RawData, WebSocket } from "ws";
import type { CloseReason, ConnectionStats, ResolvedSimulatorOptions } from "./options.js";
import { SlidingWindowCounter } from "./limits.js";
import { canonicalStream } from "./streams.js";

/** What a connection needs from the simulator. */
export interface ConnectionHost {
  readonly options: ResolvedSimulatorOptions;
  subscribe(connection: SimConnection, stream: string): void;
  unsubscribe(connection: SimConnection, stream: string): void;
  closed(connection: SimConnection): void;
}

/** How the client asked to connect. */
export interface ConnectionRequest {
  readonly id: number;
  readonly path: string;
  readonly combined: boolean;
  readonly microseconds: boolean;
  /** Canonical stream names from the URL. */
  readonly streams: readonly string[];
}

const TEXT = { binary: false } as const;
/** Frames held by `cork()` go out once they reach this many bytes (and at the end of the batch). */
const CORK_FLUSH_BYTES = 64 * 1024;
// setTimeout's longest delay; a longer lifetime is capped to it (~24.8 days).
const MAX_TIMER_MS = 2_147_483_647;
// Payloads remembered for echo matching; the pong deadline uses the oldest unanswered ping's time.
const MAX_OUTSTANDING_PINGS = 64;
const METHODS = "`SUBSCRIBE`, `UNSUBSCRIBE`, `LIST_SUBSCRIPTIONS`, `SET_PROPERTY`, `GET_PROPERTY`";

type RequestId = number | string | null;

class RequestError extends Error {
  constructor(
    readonly errorCode: number,
    message: string,
  ) {
    super(message);
  }
}

function validId(id: unknown): id is RequestId {
  if (id === null) return true;
  if (typeof id === "number") return Number.isInteger(id);
  return typeof id === "string" && /^[A-Za-z0-9_-]{1,36}$/.test(id);
}

/** A connection the simulator accepted. */
export class SimConnection {
  readonly id: number;
  readonly path: string;
  readonly microseconds: boolean;
  readonly openedAt = Date.now();
  /** Subscribed canonical stream names. */
  readonly streams = new Set<string>();
  combined: boolean;

  readonly #host: ConnectionHost;
  readonly #ws: WebSocket;
  /** The TCP socket under `#ws`: the one the HTTP upgrade came on (ws has no public call for it). */
  readonly #socket: Duplex;
  readonly #incoming: SlidingWindowCounter;
  #closedAt: number | undefined;
  #closeReason: CloseReason | undefined;
  #closeCode: number | undefined;
  #ended = false;
  #stalledUntil = 0;
  #dataStalledUntil = 0;
  /** Between `cork()` and `uncork()`: what is sent waits in the socket, not for a slow client. */
  #corked = false;
  #corkedBytes = 0;
  #shutdownAnnounced = false;

  #pingSeq = 0;
  readonly #outstanding: { readonly payload: string; readonly sentAtMs: number }[] = [];
  #awaitingSinceMs: number | undefined;

  #pingTimer: NodeJS.Timeout | undefined;
  #pongTimer: NodeJS.Timeout | undefined;
  #lifetimeTimer: NodeJS.Timeout | undefined;
  #shutdownTimer: NodeJS.Timeout | undefined;
  #killTimer: NodeJS.Timeout | undefined;

  #requests = 0;
  #requestErrors = 0;
  #pingsSent = 0;
  #pongsReceived = 0;
  #pongsEchoed = 0;
  #framesSent = 0;
  #bytesSent = 0;
  #lost = 0;
  #malformed = 0;
  #maxBuffered = 0;

  constructor(host: ConnectionHost, ws: WebSocket, socket: Duplex, request: ConnectionRequest) {
    this.#host = host;
    this.#ws = ws;
    this.#socket = socket;
    this.id = request.id;
    this.path = request.path;
    this.combined = request.combined;
    this.microseconds = request.microseconds;
    const o = host.options;
    this.#incoming = new SlidingWindowCounter(1000, Math.max(64, o.maxIncomingMessagesPerSecond * 4));
    for (const s of request.streams) this.#add(s);

    ws.on("message", (data, isBinary) => this.#onMessage(data, isBinary));
    ws.on("ping", () => this.#countIncoming());
    ws.on("pong", (data) => this.#onPong(data));
    ws.on("close", (code) => this.#onClose(code));
    // An 'error' is always followed by 'close'; listening keeps it from becoming an uncaught exception.
    ws.on("error", () => {});

    this.#pingTimer = setInterval(() => this.#ping(), o.pingIntervalMs);
    this.#lifetimeTimer = setTimeout(
      () => this.close("lifetime", 1000, "connection lifetime exceeded"),
      Math.min(o.maxConnectionLifetimeMs, MAX_TIMER_MS),
    );
  }

  /** Whether market data and replies would be dropped right now. */
  get stalled(): boolean {
    return performance.now() < this.#stalledUntil;
  }

  /** Whether the connection is open (not closing, not ended). */
  get open(): boolean {
    return this.#closeReason === undefined && !this.#ended;
  }

  /** Bytes queued for this client, not yet written to the socket. */
  get bufferedAmount(): number {
    return this.#ws.bufferedAmount;
  }

  /**
   * Holds this connection's writes until `uncork()` (or `CORK_FLUSH_BYTES` of frames), so that a
   * replay batch's frames leave in a few socket writes, as a busy exchange's TCP stream coalesces
   * them (one write per frame cost the simulator more CPU than anything else it does when it replays
   * hundreds of symbols). ws has no call for it: the socket under it is corked.
   */
  cork(): void {
    if (this.#corked) return;
    this.#corked = true;
    if (!this.#socket.destroyed) this.#socket.cork();
  }

  /** Ends `cork()`: what it held goes out, and only then counts as queued for a slow client. */
  uncork(): void {
    if (!this.#corked) return;
    this.#corked = false;
    this.#corkedBytes = 0;
    if (!this.#socket.destroyed) this.#socket.uncork();
    this.#checkBuffer();
  }

  /** Sends one market-data frame (text). */
  sendFrame(frame: Buffer): void {
    if (!this.open) return;
    if (this.stalled || performance.now() < this.#dataStalledUntil) {
      this.#lost++;
      return;
    }
    this.#ws.send(frame, TEXT);
    this.#framesSent++;
    this.#bytesSent += frame.length;
    if (this.#corked) {
      this.#corkedBytes += frame.length;
      // A batch goes out in writes of this size: a single write of a whole batch can be larger
      // than the socket takes at once, and would count as queued for a slow client.
      if (this.#corkedBytes >= CORK_FLUSH_BYTES) {
        this.uncork();
        this.cork();
      }
    } else this.#checkBuffer();
  }

  /** Sends a text frame that is deliberately malformed. */
  sendMalformed(text: string): void {
    if (!this.open) return;
    if (this.stalled) {
      this.#lost++;
      return;
    }
    this.#ws.send(text);
    this.#malformed++;
    this.#checkBuffer();
  }

  /** Sends `serverShutdown` now and closes after `graceMs`. */
  announceShutdown(graceMs: number): void {
    if (!this.open || this.#shutdownAnnounced) return;
    this.#shutdownAnnounced = true;
    const event = `{"e":"serverShutdown","E":${this.microseconds ? Date.now() * 1000 : Date.now()}}`;
    this.#sendText(this.combined ? `{"stream":"!serverShutdown","data":${event}}` : event);
    this.#shutdownTimer = setTimeout(() => this.close("server-shutdown", 1001, "server shutdown"), graceMs);
  }

  /** Sends nothing to this client for `ms` (everything meanwhile is lost for it). */
  stall(ms: number): void {
    this.#stalledUntil = Math.max(this.#stalledUntil, performance.now() + ms);
  }

  /** Sends no market data to this client for `ms` (lost for it), pings and replies still going. */
  stallData(ms: number): void {
    this.#dataStalledUntil = Math.max(this.#dataStalledUntil, performance.now() + ms);
  }

  /** Starts a close handshake; a client that does not finish it within `closeTimeoutMs` is reset. */
  close(reason: CloseReason, code: number, text: string): void {
    if (!this.open) return;
    this.#closeReason = reason;
    this.#closeCode = code;
    this.#clearTimers();
    this.#ws.close(code, text);
    this.#killTimer = setTimeout(() => this.#ws.terminate(), this.#host.options.closeTimeoutMs);
  }

  /** Ends TCP at once, without a close frame. */
  drop(reason: CloseReason): void {
    if (this.#ended) return;
    this.#closeReason ??= reason;
    this.#closeCode ??= 1006;
    this.#ws.terminate();
  }

  /** A copy of this connection's record. */
  stats(): ConnectionStats {
    return {
      id: this.id,
      path: this.path,
      combined: this.combined,
      streams: [...this.streams],
      openedAt: this.openedAt,
      closedAt: this.#closedAt,
      closeReason: this.#closeReason,
      closeCode: this.#closeCode,
      messagesReceived: this.#incoming.total,
      maxMessagesInAnySecond: this.#incoming.max,
      requests: this.#requests,
      requestErrors: this.#requestErrors,
      pingsSent: this.#pingsSent,
      pongsReceived: this.#pongsReceived,
      pongsEchoedCorrectly: this.#pongsEchoed,
      framesSent: this.#framesSent,
      bytesSent: this.#bytesSent,
      framesLostWhileStalled: this.#lost,
      malformedFramesSent: this.#malformed,
      shutdownAnnounced: this.#shutdownAnnounced,
      maxBufferedBytes: this.#maxBuffered,
    };
  }

  #checkBuffer(): void {
    if (this.#corked) return;
    const buffered = this.#ws.bufferedAmount;
    if (buffered > this.#maxBuffered) this.#maxBuffered = buffered;
    if (buffered > this.#host.options.maxBufferedBytes) this.drop("slow-consumer");
  }

  #sendText(text: string): void {
    if (!this.open) return;
    if (this.stalled) {
      this.#lost++;
      return;
    }
    this.#ws.send(text);
    this.#checkBuffer();
  }

  /** Counts one incoming message; false (and the connection closing) when it breaks the rate rule. */
  #countIncoming(): boolean {
    const inLastSecond = this.#incoming.record(Date.now());
    if (!this.open) return false;
    if (inLastSecond > this.#host.options.maxIncomingMessagesPerSecond) {
      this.close("rate-limit", 1008, "Too many messages");
      return false;
    }
    return true;
  }

  #ping(): void {
    if (!this.open || this.stalled) return;
    const payload = `${this.id}-${++this.#pingSeq}`;
    const now = Date.now();
    this.#outstanding.push({ payload, sentAtMs: now });
    if (this.#outstanding.length > MAX_OUTSTANDING_PINGS) this.#outstanding.shift();
    this.#awaitingSinceMs ??= now;
    this.#ws.ping(payload);
    this.#pingsSent++;
    this.#armPongTimer();
  }

  #onPong(data: Buffer): void {
    this.#pongsReceived++;
    const payload = data.toString("latin1");
    const i = this.#outstanding.findIndex((p) => p.payload === payload);
    if (i >= 0) {
      // Unsolicited or wrong pongs do not count as liveness (Binance: "will not prevent disconnection").
      this.#pongsEchoed++;
      this.#outstanding.splice(0, i + 1);
      this.#awaitingSinceMs = this.#outstanding[0]?.sentAtMs;
    }
    this.#countIncoming();
  }

  #armPongTimer(): void {
    if (this.#pongTimer !== undefined || this.#awaitingSinceMs === undefined) return;
    const dueInMs = this.#awaitingSinceMs + this.#host.options.pongTimeoutMs - Date.now();
    this.#pongTimer = setTimeout(
      () => {
        this.#pongTimer = undefined;
        if (this.#awaitingSinceMs === undefined) return;
        if (Date.now() - this.#awaitingSinceMs >= this.#host.options.pongTimeoutMs)
          this.close("pong-timeout", 1008, "Pong timeout");
        else this.#armPongTimer();
      },
      Math.max(0, dueInMs),
    );
  }

  #onMessage(data: RawData, isBinary: boolean): void {
    if (!this.#countIncoming()) return;
    this.#requests++;
    let id: RequestId = null;
    try {
      if (isBinary) throw new RequestError(3, "Invalid JSON: expected value at line 1 column 1");
      const text = Buffer.isBuffer(data)
        ? data.toString()
        : Array.isArray(data)
          ? Buffer.concat(data).toString()
          : Buffer.from(data).toString();
      let request: unknown;
      try {
        request = JSON.parse(text);
      } catch (err) {
        throw new RequestError(3, `Invalid JSON: ${err instanceof Error ? err.message : "syntax error"}`);
      }
      if (typeof request !== "object" || request === null || Array.isArray(request))
        throw new RequestError(2, "Invalid request: expected a JSON object");
      const r = request as { method?: unknown; params?: unknown; id?: unknown };
      if (!("id" in r) || !validId(r.id))
        throw new RequestError(2, "Invalid request: request ID must be an unsigned integer");
      id = r.id;
      const result = this.#handle(r.method, r.params);
      this.#sendText(`{"result":${JSON.stringify(result)},"id":${JSON.stringify(id)}}`);
    } catch (err) {
      if (!(err instanceof RequestError)) throw err;
      this.#requestErrors++;
      const error = JSON.stringify({ code: err.errorCode, msg: err.message });
      this.#sendText(`{"error":${error},"id":${JSON.stringify(id)}}`);
    }
  }

  #handle(method: unknown, params: unknown): unknown {
    if (method === undefined) throw new RequestError(2, "Invalid request: missing field `method`");
    switch (method) {
      case "SUBSCRIBE":
      case "UNSUBSCRIBE": {
        const names = this.#streamParams(params);
        if (method === "SUBSCRIBE") {
          const fresh = names.filter((n) => !this.streams.has(n));
          if (this.streams.size + new Set(fresh).size > this.#host.options.maxStreamsPerConnection)
            throw new RequestError(
              2,
              `Invalid request: too many streams (at most ${this.#host.options.maxStreamsPerConnection} per connection)`,
            );
          for (const n of names) this.#add(n);
        } else {
          for (const n of names) this.#remove(n);
        }
        return null;
      }
      case "LIST_SUBSCRIPTIONS":
        if (Array.isArray(params) && params.length > 0)
          throw new RequestError(2, "Invalid request: too many parameters");
        return [...this.streams];
      case "SET_PROPERTY":
      case "GET_PROPERTY": {
        if (!Array.isArray(params) || typeof params[0] !== "string")
          throw new RequestError(2, "Invalid request: property name must be a string");
        if (params[0] !== "combined") throw new RequestError(0, "Unknown property");
        if (method === "GET_PROPERTY") {
          if (params.length > 1) throw new RequestError(2, "Invalid request: too many parameters");
          return this.combined;
        }
        if (params.length > 2) throw new RequestError(2, "Invalid request: too many parameters");
        if (typeof params[1] !== "boolean") throw new RequestError(1, "Invalid value type: expected Boolean");
        this.combined = params[1];
        return null;
      }
      default:
        throw new RequestError(
          2,
          `Invalid request: unknown variant ${JSON.stringify(method)}, expected one of ${METHODS}`,
        );
    }
  }

  #streamParams(params: unknown): string[] {
    if (!Array.isArray(params) || params.length === 0)
      throw new RequestError(2, "Invalid request: params must be a non-empty array of stream names");
    const names: string[] = [];
    for (const p of params as unknown[]) {
      const name = typeof p === "string" ? canonicalStream(p) : undefined;
      if (name === undefined) throw new RequestError(2, "Invalid request: invalid stream");
      names.push(name);
    }
    return names;
  }

  #add(stream: string): void {
    if (this.streams.has(stream)) return;
    this.streams.add(stream);
    this.#host.subscribe(this, stream);
  }

  #remove(stream: string): void {
    if (!this.streams.delete(stream)) return;
    this.#host.unsubscribe(this, stream);
  }

  #clearTimers(): void {
    clearInterval(this.#pingTimer);
    clearTimeout(this.#pongTimer);
    clearTimeout(this.#lifetimeTimer);
    clearTimeout(this.#shutdownTimer);
    this.#pingTimer = this.#pongTimer = this.#lifetimeTimer = this.#shutdownTimer = undefined;
  }

  #onClose(code: number): void {
    if (this.#ended) return;
    this.#ended = true;
    this.#closedAt = Date.now();
    this.#closeReason ??= "client";
    this.#closeCode ??= code;
    this.#clearTimers();
    clearTimeout(this.#killTimer);
    this.#killTimer = undefined;
    for (const s of this.streams) this.#host.unsubscribe(this, s);
    this.#host.closed(this);
  }
}

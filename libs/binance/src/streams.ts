/**
 * The supervisor ingest runs: shards the stream list over connections, reconnects with full-jitter
 * backoff under a per-process connection-attempt budget, rotates connections make-before-break before
 * their 24 h end and on `serverShutdown`, and adds or removes symbols at run time without touching
 * other connections.
 */
import { normalizeSymbol } from "@l2flow/contracts";
import { LogLimiter, type Logger } from "@l2flow/runtime";
import { Backoff, SlidingWindowLimiter, backoffCeilingMs, sleep, type BackoffOptions } from "./backoff.js";
import {
  BINANCE_WS_BASE_URL,
  BinanceStreamConnection,
  BinanceWsError,
  MAX_STREAMS_PER_CONNECTION,
  type CloseInfo,
  type StreamConnectionOptions,
} from "./ws.js";

/** Stream kinds l2flow subscribes per symbol (Binance's own spelling after the `@`). */
export type StreamKind =
  | "trade"
  | "aggTrade"
  | "depth"
  | "depth@100ms"
  | "bookTicker"
  | `depth${5 | 10 | 20}`
  | `depth${5 | 10 | 20}@100ms`;

/** Default kinds: trades, aggregate trades and 100 ms depth diffs. */
export const DEFAULT_STREAM_KINDS: readonly StreamKind[] = ["trade", "aggTrade", "depth@100ms"];

/** `btcusdt@trade` for ("BTCUSDT", "trade"); the symbol is checked and lower-cased. */
export function streamName(symbol: string, kind: StreamKind): string {
  return `${normalizeSymbol(symbol).toLowerCase()}@${kind}`;
}

/** Splits `btcusdt@depth@100ms` into `{ symbol: "BTCUSDT", kind: "depth@100ms" }`; undefined if not `<symbol>@<kind>`. */
export function parseStreamName(name: string): { symbol: string; kind: string } | undefined {
  const at = name.indexOf("@");
  if (at <= 0 || at === name.length - 1) return undefined;
  return { symbol: name.slice(0, at).toUpperCase(), kind: name.slice(at + 1) };
}

/** Per-connection tuning the supervisor passes to every `BinanceStreamConnection` (defaults there). */
export type ConnectionTuning = Pick<
  StreamConnectionOptions,
  | "timeUnit"
  | "maxMessagesPerSecond"
  | "maxQueuedMessages"
  | "silenceTimeoutMs"
  | "dataSilenceTimeoutMs"
  | "maxLifetimeMs"
  | "rotateBeforeMs"
  | "requestTimeoutMs"
  | "handshakeTimeoutMs"
  | "maxUrlLength"
  | "maxStreamsPerRequest"
  | "maxPayloadBytes"
>;

/** Why a connection was replaced ("dataSilence": pings but no market data for a while). */
export type RotationCause = "lifetime" | "serverShutdown" | "dataSilence";

/** What `onReconnectScheduled` reports: the shard, the attempt (0-based), the drawn delay and its ceiling. */
export interface ReconnectInfo {
  readonly shard: number;
  readonly attempt: number;
  readonly delayMs: number;
  readonly ceilingMs: number;
  readonly purpose: "reconnect" | "rotation";
}

/** Options of `BinanceStreams`; only `symbols` and `onFrame` are required. */
export interface BinanceStreamsOptions {
  /** Symbols to stream (any case; checked with `normalizeSymbol`). */
  readonly symbols: readonly string[];
  /** Kinds per symbol. Default `["trade", "aggTrade", "depth@100ms"]`. */
  readonly kinds?: readonly StreamKind[];
  /** Default `wss://stream.binance.com:9443`. */
  readonly wsBaseUrl?: string;
  /** Streams per connection; a symbol's streams always share one. Default 200, at most 1024. */
  readonly streamsPerConnection?: number;
  /** Passed to every connection (silence, lifetime, pacing…). */
  readonly connection?: ConnectionTuning;
  /** Reconnect backoff: full jitter, default base 500 ms, cap 30 s. */
  readonly backoff?: BackoffOptions;
  /** A connection up this long resets its shard's backoff. Default 60 000 ms. */
  readonly healthyAfterMs?: number;
  /** Connection attempts allowed in any rolling 5 minutes (Binance: 300 per IP). Default 250. */
  readonly maxConnectionAttemptsPer5Min?: number;
  /** A limiter shared with other supervisors in the process; overrides `maxConnectionAttemptsPer5Min`. */
  readonly attemptLimiter?: SlidingWindowLimiter;
  /** Both connections run this long after the new one's first frame before the old one closes. Default 2000 ms. */
  readonly overlapMs?: number;
  /** A replacement with no frame after this long counts as ready anyway (quiet streams). Default 10 000 ms. */
  readonly firstFrameTimeoutMs?: number;
  /** Connection ids are `<idPrefix><shard>.<generation>`. Default "ws". */
  readonly idPrefix?: string;
  /** Rate-limited warnings. Default: none. */
  readonly logger?: Logger;
  /** Every market frame of every connection, synchronously and zero-copy (see `StreamConnectionOptions.onFrame`). */
  readonly onFrame: (bytes: Buffer, receiveTimeNs: bigint, connId: string) => void;
  /** A connection is open with these streams subscribed. */
  readonly onConnectionUp?: (connId: string, streams: readonly string[]) => void;
  /**
   * A connection that is up subscribed to more streams (symbols added at run time, or while it was
   * opening): they are carried from now on, as `onConnectionUp`'s are.
   */
  readonly onStreamsAdded?: (connId: string, streams: readonly string[]) => void;
  /**
   * A connection that was up ended unexpectedly (server close, error, silence): frames of `streams`
   * may be missing until the shard's next `onConnectionUp`. Not called for rotations, removals or `close()`.
   */
  readonly onConnectionDown?: (connId: string, streams: readonly string[], reason: CloseInfo) => void;
  /** `newId` took over from `oldId` after the overlap; `oldId` is being closed. */
  readonly onRotation?: (oldId: string, newId: string, cause: RotationCause) => void;
  /** A reconnect or rotation retry is waiting `delayMs` first. */
  readonly onReconnectScheduled?: (info: ReconnectInfo) => void;
}

/** Counters and gauges of a `BinanceStreams`. */
export interface StreamsStats {
  readonly shards: number;
  readonly connectionsOpen: number;
  readonly connectAttempts: number;
  readonly reconnects: number;
  readonly rotations: number;
  readonly serverShutdowns: number;
  readonly silenceTimeouts: number;
  /** Connections that kept pinging without data for `dataSilenceTimeoutMs` (each replaced). */
  readonly dataSilences: number;
  readonly framesByConnection: Readonly<Record<string, number>>;
}

interface Conn {
  readonly conn: BinanceStreamConnection;
  readonly shard: Shard;
  up: boolean;
  upAt: number;
  /** Closed on purpose (rotation, removal, shutdown): its close is not a loss. */
  retired: boolean;
  gotFrame: boolean;
  readonly firstFrame: Promise<void>;
  resolveFirstFrame: () => void;
  chain: Promise<void>;
}

interface Shard {
  readonly index: number;
  readonly desired: Set<string>;
  active: Conn | undefined;
  replacement: Conn | undefined;
  connecting: boolean;
  rotating: boolean;
  removed: boolean;
  generation: number;
  readonly backoff: Backoff;
  healthyTimer: NodeJS.Timeout | undefined;
  readonly abort: AbortController;
}

const FIVE_MINUTES_MS = 300_000;

/**
 * Keeps every stream of `symbols × kinds` flowing over as few Binance connections as the
 * per-connection limit allows. `start()`, then `ready()`; `close()` stops everything (idempotent).
 */
export class BinanceStreams {
  readonly #o: BinanceStreamsOptions;
  readonly #kinds: readonly StreamKind[];
  readonly #perConnection: number;
  readonly #overlapMs: number;
  readonly #firstFrameTimeoutMs: number;
  readonly #healthyAfterMs: number;
  readonly #idPrefix: string;
  readonly #attempts: SlidingWindowLimiter;
  readonly #ownsAttempts: boolean;
  readonly #shards: Shard[] = [];
  readonly #symbolShard = new Map<string, Shard>();
  readonly #logLimiter = new LogLimiter();
  readonly #abort = new AbortController();
  readonly #readyWaiters = new Set<() => void>();
  #nextShard = 0;
  #started = false;
  #closed = false;
  #connectAttempts = 0;
  #reconnects = 0;
  #rotations = 0;
  #serverShutdowns = 0;
  #dataSilences = 0;
  #silenceTimeouts = 0;

  constructor(options: BinanceStreamsOptions) {
    this.#o = options;
    this.#kinds = [...new Set(options.kinds ?? DEFAULT_STREAM_KINDS)];
    this.#perConnection = options.streamsPerConnection ?? 200;
    if (
      !Number.isInteger(this.#perConnection) ||
      this.#perConnection < 1 ||
      this.#perConnection > MAX_STREAMS_PER_CONNECTION
    )
      throw new BinanceWsError(
        "WS_BAD_OPTIONS",
        `streamsPerConnection must be an integer from 1 to ${MAX_STREAMS_PER_CONNECTION}, got ${this.#perConnection}`,
      );
    if (this.#kinds.length === 0 || this.#kinds.length > this.#perConnection)
      throw new BinanceWsError(
        "WS_BAD_OPTIONS",
        `kinds must list 1 to streamsPerConnection (${this.#perConnection}) stream kinds`,
      );
    const maxAttempts = options.maxConnectionAttemptsPer5Min ?? 250;
    if (!Number.isInteger(maxAttempts) || maxAttempts < 1 || maxAttempts > 300)
      throw new BinanceWsError(
        "WS_BAD_OPTIONS",
        `maxConnectionAttemptsPer5Min must be an integer from 1 to 300, got ${maxAttempts}`,
      );
    this.#overlapMs = options.overlapMs ?? 2000;
    this.#firstFrameTimeoutMs = options.firstFrameTimeoutMs ?? 10_000;
    this.#healthyAfterMs = options.healthyAfterMs ?? 60_000;
    this.#idPrefix = options.idPrefix ?? "ws";
    this.#ownsAttempts = options.attemptLimiter === undefined;
    this.#attempts =
      options.attemptLimiter ?? new SlidingWindowLimiter({ limit: maxAttempts, windowMs: FIVE_MINUTES_MS });
    this.#place(options.symbols.map((s) => normalizeSymbol(s)));
  }

  /** Symbols currently streamed (upper case). */
  get symbols(): readonly string[] {
    return [...this.#symbolShard.keys()];
  }

  /** Counters since creation; gauges now. */
  get stats(): StreamsStats {
    const frames: Record<string, number> = {};
    let open = 0;
    for (const shard of this.#shards) {
      for (const c of [shard.active, shard.replacement]) {
        if (c === undefined) continue;
        frames[c.conn.id] = c.conn.stats.frames;
        if (c.up && c.conn.state === "open") open++;
      }
    }
    return {
      shards: this.#shards.length,
      connectionsOpen: open,
      connectAttempts: this.#connectAttempts,
      reconnects: this.#reconnects,
      rotations: this.#rotations,
      serverShutdowns: this.#serverShutdowns,
      dataSilences: this.#dataSilences,
      silenceTimeouts: this.#silenceTimeouts,
      framesByConnection: frames,
    };
  }

  /** The live connections: id and streams of each (the active one and a rotation's replacement). */
  connections(): { id: string; shard: number; streams: readonly string[]; up: boolean }[] {
    const out: { id: string; shard: number; streams: readonly string[]; up: boolean }[] = [];
    for (const shard of this.#shards)
      for (const c of [shard.active, shard.replacement])
        if (c !== undefined)
          out.push({ id: c.conn.id, shard: shard.index, streams: [...c.conn.streams], up: c.up });
    return out;
  }

  /** Starts connecting every shard. Returns at once; see `ready()`. */
  start(): void {
    if (this.#started || this.#closed) return;
    this.#started = true;
    for (const shard of this.#shards) this.#ensureConnected(shard, false);
  }

  /** Resolves when every shard has an open connection; rejects with WS_ABORTED on `signal` or WS_CLOSED on close. */
  ready(signal?: AbortSignal): Promise<void> {
    if (this.#closed) return Promise.reject(new BinanceWsError("WS_CLOSED", "streams are closed"));
    if (this.#allUp()) return Promise.resolve();
    return new Promise<void>((resolve, reject) => {
      const done = () => {
        signal?.removeEventListener("abort", onAbort);
        this.#readyWaiters.delete(check);
        if (this.#closed) reject(new BinanceWsError("WS_CLOSED", "streams are closed"));
        else resolve();
      };
      const check = () => {
        if (this.#closed || this.#allUp()) done();
      };
      const onAbort = () => {
        this.#readyWaiters.delete(check);
        reject(new BinanceWsError("WS_ABORTED", "ready() aborted"));
      };
      signal?.addEventListener("abort", onAbort, { once: true });
      this.#readyWaiters.add(check);
    });
  }

  #allUp(): boolean {
    return this.#shards.every((s) => s.active?.up === true && s.active.conn.state === "open");
  }

  #notifyReady(): void {
    for (const check of [...this.#readyWaiters]) check();
  }

  /**
   * Adds symbols at run time: each goes to a connection with room for all its streams (SUBSCRIBE on
   * that connection only) or to a new connection. Resolves when the live connections confirmed.
   */
  async addSymbols(symbols: readonly string[]): Promise<void> {
    if (this.#closed) throw new BinanceWsError("WS_CLOSED", "streams are closed");
    const fresh = symbols.map((s) => normalizeSymbol(s)).filter((s) => !this.#symbolShard.has(s));
    const touched = this.#place([...new Set(fresh)]);
    const work: Promise<void>[] = [];
    for (const shard of touched) {
      if (shard.active === undefined && !shard.connecting) {
        if (this.#started) this.#ensureConnected(shard, false);
        continue;
      }
      work.push(...this.#reconcileShard(shard));
    }
    await Promise.all(work);
  }

  /**
   * Removes symbols at run time with UNSUBSCRIBE on the connections that carry them; a connection left
   * with no stream is closed. Other connections are not touched.
   */
  async removeSymbols(symbols: readonly string[]): Promise<void> {
    const touched = new Set<Shard>();
    for (const raw of symbols) {
      const symbol = normalizeSymbol(raw);
      const shard = this.#symbolShard.get(symbol);
      if (shard === undefined) continue;
      this.#symbolShard.delete(symbol);
      for (const kind of this.#kinds) shard.desired.delete(streamName(symbol, kind));
      touched.add(shard);
    }
    const work: Promise<void>[] = [];
    for (const shard of touched) {
      if (shard.desired.size === 0) this.#removeShard(shard);
      else work.push(...this.#reconcileShard(shard));
    }
    await Promise.all(work);
  }

  /** Puts symbols into shards (first fit, whole symbols), creating shards as needed; returns the shards touched. */
  #place(symbols: readonly string[]): Set<Shard> {
    const touched = new Set<Shard>();
    for (const symbol of symbols) {
      if (this.#symbolShard.has(symbol)) continue;
      const streams = this.#kinds.map((k) => streamName(symbol, k));
      let shard = this.#shards.find(
        (s) => !s.removed && s.desired.size + streams.length <= this.#perConnection,
      );
      if (shard === undefined) {
        shard = {
          index: this.#nextShard++,
          desired: new Set(),
          active: undefined,
          replacement: undefined,
          connecting: false,
          rotating: false,
          removed: false,
          generation: 0,
          backoff: new Backoff(this.#o.backoff ?? {}),
          healthyTimer: undefined,
          abort: new AbortController(),
        };
        this.#shards.push(shard);
      }
      for (const s of streams) shard.desired.add(s);
      this.#symbolShard.set(symbol, shard);
      touched.add(shard);
    }
    return touched;
  }

  #removeShard(shard: Shard): void {
    shard.removed = true;
    shard.abort.abort();
    if (shard.healthyTimer !== undefined) clearTimeout(shard.healthyTimer);
    for (const c of [shard.active, shard.replacement])
      if (c !== undefined) this.#retire(c, "no streams left");
    shard.active = undefined;
    shard.replacement = undefined;
    const i = this.#shards.indexOf(shard);
    if (i >= 0) this.#shards.splice(i, 1);
    this.#notifyReady();
  }

  #retire(c: Conn, reason: string): void {
    c.retired = true;
    c.conn.close(1000, reason);
  }

  /** Applies the shard's desired streams to its open connections, one request chain per connection. */
  #reconcileShard(shard: Shard): Promise<void>[] {
    const out: Promise<void>[] = [];
    for (const c of [shard.active, shard.replacement]) if (c?.up === true) out.push(this.#reconcile(c));
    return out;
  }

  #reconcile(c: Conn): Promise<void> {
    const run = async () => {
      if (c.conn.state !== "open" || c.retired) return;
      const desired = c.shard.desired;
      const current = c.conn.streams;
      const remove = [...current].filter((s) => !desired.has(s));
      const add = [...desired].filter((s) => !current.has(s));
      try {
        if (remove.length > 0) await c.conn.unsubscribe(remove);
        if (add.length > 0) {
          await c.conn.subscribe(add);
          if (c.conn.state === "open" && !c.retired)
            this.#callback(() => this.#o.onStreamsAdded?.(c.conn.id, add));
        }
      } catch (err) {
        // A connection that closes meanwhile is fine: the next one opens with the desired streams.
        if (err instanceof BinanceWsError && err.code === "WS_CLOSED") return;
        throw err;
      }
    };
    const next = c.chain.then(run, run);
    c.chain = next.catch(() => undefined);
    return next;
  }

  #newConn(shard: Shard): Conn {
    const id = `${this.#idPrefix}${shard.index}.${++shard.generation}`;
    let resolveFirstFrame = () => {};
    const firstFrame = new Promise<void>((r) => {
      resolveFirstFrame = r;
    });
    const onFrame = this.#o.onFrame;
    const c: Conn = {
      shard,
      up: false,
      upAt: 0,
      retired: false,
      gotFrame: false,
      firstFrame,
      resolveFirstFrame,
      chain: Promise.resolve(),
      conn: new BinanceStreamConnection({
        ...this.#o.connection,
        wsBaseUrl: this.#o.wsBaseUrl ?? BINANCE_WS_BASE_URL,
        streams: [...shard.desired],
        id,
        ...(this.#o.logger === undefined ? {} : { logger: this.#o.logger }),
        onFrame: (bytes, receiveTimeNs) => {
          if (!c.gotFrame) {
            c.gotFrame = true;
            c.resolveFirstFrame();
          }
          onFrame(bytes, receiveTimeNs, id);
        },
        onClose: (info) => this.#onClose(c, info),
        onServerShutdown: () => {
          this.#serverShutdowns++;
          this.#rotate(c, "serverShutdown");
        },
        onLifetimeNearEnd: () => this.#rotate(c, "lifetime"),
        onDataSilence: () => {
          this.#dataSilences++;
          this.#rotate(c, "dataSilence");
        },
      }),
    };
    return c;
  }

  async #open(c: Conn): Promise<boolean> {
    this.#connectAttempts++;
    try {
      await c.conn.open(c.shard.abort.signal);
    } catch (err) {
      this.#warn("open", { conn: c.conn.id, err }, "connection failed to open");
      return false;
    }
    if (c.retired || c.shard.removed || this.#closed) return false;
    c.up = true;
    c.upAt = Date.now();
    this.#callback(() => this.#o.onConnectionUp?.(c.conn.id, [...c.conn.streams]));
    // Symbols added or removed while the socket was opening.
    this.#reconcile(c).catch((err: unknown) =>
      this.#warn("reconcile", { conn: c.conn.id, err }, "subscription update failed"),
    );
    return true;
  }

  /** Starts the shard's connect loop unless one runs: backoff (unless `first`), attempt budget, open. */
  #ensureConnected(shard: Shard, afterLoss: boolean): void {
    if (shard.connecting || shard.removed || this.#closed) return;
    shard.connecting = true;
    void this.#connectLoop(shard, afterLoss).finally(() => {
      shard.connecting = false;
    });
  }

  async #connectLoop(shard: Shard, afterLoss: boolean): Promise<void> {
    let delay = afterLoss;
    const signal = shard.abort.signal;
    try {
      while (!shard.removed && !this.#closed && shard.active === undefined) {
        if (delay) {
          const attempt = shard.backoff.attempt;
          const delayMs = shard.backoff.next();
          this.#callback(() =>
            this.#o.onReconnectScheduled?.({
              shard: shard.index,
              attempt,
              delayMs,
              ceilingMs: backoffCeilingMs(attempt, this.#o.backoff ?? {}),
              purpose: "reconnect",
            }),
          );
          await sleep(delayMs, signal);
        }
        delay = true;
        await this.#attempts.acquire(signal);
        if (shard.removed || this.#closed || shard.active !== undefined) return;
        const c = this.#newConn(shard);
        shard.active = c;
        if (await this.#open(c)) {
          this.#startHealthyTimer(shard, c);
          this.#notifyReady();
          return;
        }
        if (shard.active === c) shard.active = undefined;
      }
    } catch (err) {
      // Only aborts (close/removal) and a full attempt limiter end up here.
      if (!signal.aborted) {
        this.#warn("connect", { shard: shard.index, err }, "connect loop stopped; retrying");
        if (!this.#closed && !shard.removed)
          setImmediate(() => {
            if (shard.active === undefined) this.#ensureConnected(shard, true);
          });
      }
    }
  }

  #startHealthyTimer(shard: Shard, c: Conn): void {
    if (shard.healthyTimer !== undefined) clearTimeout(shard.healthyTimer);
    shard.healthyTimer = setTimeout(() => {
      shard.healthyTimer = undefined;
      if (c.conn.state === "open" && !c.retired) shard.backoff.reset();
    }, this.#healthyAfterMs);
  }

  #onClose(c: Conn, info: CloseInfo): void {
    const shard = c.shard;
    if (info.kind === "silence") this.#silenceTimeouts++;
    if (c.retired || this.#closed) return;
    const wasUp = c.up;
    c.up = false;
    if (wasUp) this.#callback(() => this.#o.onConnectionDown?.(c.conn.id, [...c.conn.streams], info));
    if (shard.replacement === c) {
      // A failed rotation target: the active connection still carries the data.
      shard.replacement = undefined;
      return;
    }
    if (shard.active !== c) return;
    if (shard.healthyTimer !== undefined) clearTimeout(shard.healthyTimer);
    shard.healthyTimer = undefined;
    shard.active = undefined;
    const repl = shard.replacement;
    if (repl?.up === true && repl.conn.state === "open") {
      // The rotation's new connection already runs: it simply takes over.
      shard.active = repl;
      shard.replacement = undefined;
      this.#startHealthyTimer(shard, repl);
      return;
    }
    if (repl !== undefined) {
      this.#retire(repl, "superseded by reconnect");
      shard.replacement = undefined;
    }
    if (wasUp) this.#reconnects++;
    this.#ensureConnected(shard, true);
  }

  /** Make-before-break: open a replacement, wait for its first frame plus the overlap, close the old one. */
  #rotate(c: Conn, cause: RotationCause): void {
    const shard = c.shard;
    if (shard.active !== c || !c.up || shard.rotating || shard.removed || this.#closed) return;
    shard.rotating = true;
    void this.#rotationLoop(shard, c, cause).finally(() => {
      shard.rotating = false;
    });
  }

  async #rotationLoop(shard: Shard, old: Conn, cause: RotationCause): Promise<void> {
    const signal = shard.abort.signal;
    let retry = false;
    try {
      while (shard.active === old && old.conn.state === "open" && !shard.removed && !this.#closed) {
        if (retry) {
          const attempt = shard.backoff.attempt;
          const delayMs = shard.backoff.next();
          this.#callback(() =>
            this.#o.onReconnectScheduled?.({
              shard: shard.index,
              attempt,
              delayMs,
              ceilingMs: backoffCeilingMs(attempt, this.#o.backoff ?? {}),
              purpose: "rotation",
            }),
          );
          await sleep(delayMs, signal);
          if (shard.active !== old || old.conn.state !== "open") return;
        }
        retry = true;
        await this.#attempts.acquire(signal);
        if (shard.active !== old || old.conn.state !== "open" || shard.removed || this.#closed) return;
        const repl = this.#newConn(shard);
        shard.replacement = repl;
        if (!(await this.#open(repl))) {
          if (shard.replacement === repl) shard.replacement = undefined;
          continue;
        }
        await waitFor(repl.firstFrame, this.#firstFrameTimeoutMs, repl.conn.closed, signal);
        await waitFor(undefined, this.#overlapMs, repl.conn.closed, signal);
        if (repl.conn.state !== "open" || repl.retired) {
          if (shard.replacement === repl) shard.replacement = undefined;
          continue;
        }
        if (shard.active === repl) return; // the old one died meanwhile; the new one already took over
        if (shard.active !== old) return;
        shard.active = repl;
        shard.replacement = undefined;
        this.#startHealthyTimer(shard, repl);
        this.#retire(old, `rotated (${cause})`);
        this.#rotations++;
        this.#callback(() => this.#o.onRotation?.(old.conn.id, repl.conn.id, cause));
        this.#notifyReady();
        return;
      }
    } catch (err) {
      if (!signal.aborted) this.#warn("rotation", { shard: shard.index, err }, "rotation stopped");
    }
  }

  /** Stops every connection and timer; resolves when the sockets have closed. Idempotent. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    this.#abort.abort();
    const closing: Promise<void>[] = [];
    for (const shard of this.#shards) {
      shard.abort.abort();
      if (shard.healthyTimer !== undefined) clearTimeout(shard.healthyTimer);
      shard.healthyTimer = undefined;
      for (const c of [shard.active, shard.replacement]) {
        if (c === undefined) continue;
        this.#retire(c, "shutting down");
        closing.push(c.conn.closed);
      }
    }
    if (this.#ownsAttempts) this.#attempts.close();
    this.#notifyReady();
    await Promise.all(closing);
  }

  #callback(fn: () => void): void {
    try {
      fn();
    } catch (err) {
      this.#warn("callback", { err }, "a BinanceStreams callback threw");
    }
  }

  #warn(key: string, fields: Record<string, unknown>, msg: string): void {
    const logger = this.#o.logger;
    if (logger === undefined) return;
    const suppressed = this.#logLimiter.take(key);
    if (suppressed >= 0) logger.warn({ suppressed, ...fields }, msg);
  }
}

/**
 * Creates a `BinanceStreams`, starts it and resolves once every shard is connected; on abort (or a
 * failure) it is closed and the error rethrown.
 */
export async function startBinanceStreams(
  options: BinanceStreamsOptions,
  signal?: AbortSignal,
): Promise<BinanceStreams> {
  const streams = new BinanceStreams(options);
  streams.start();
  try {
    await streams.ready(signal);
  } catch (err) {
    await streams.close();
    throw err;
  }
  return streams;
}

/** Waits for `promise` (if any) or `until` (a close), at most `ms`; the timer is always cleared. */
async function waitFor(
  promise: Promise<void> | undefined,
  ms: number,
  until: Promise<void>,
  signal: AbortSignal,
): Promise<void> {
  const controller = new AbortController();
  const onAbort = () => controller.abort();
  signal.addEventListener("abort", onAbort, { once: true });
  try {
    const racers: Promise<void>[] = [sleep(ms, controller.signal), until];
    if (promise !== undefined) racers.push(promise);
    await Promise.race(racers);
  } finally {
    signal.removeEventListener("abort", onAbort);
    controller.abort();
  }
}

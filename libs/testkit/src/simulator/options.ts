/** The simulator's options, its observable records, and its handle's interface. */
import type { Recording } from "@l2flow/recording";
import { SimulatorError } from "./errors.js";

/** Options of `startSimulator`. Every field but `recording` has a Binance-like default. */
export interface SimulatorOptions {
  /** The recording to replay: a parsed `Recording` (from `readRecording`) or a file path. Required. */
  readonly recording: Recording | string;
  /** Interface to listen on. Default `"127.0.0.1"`. */
  readonly host?: string;
  /** TCP port for WebSocket and REST together. Default 0 (a free port). */
  readonly port?: number;
  /**
   * Replay speed against the recording's receive times: 1 = real time, 10 = ten times faster; 0 or
   * `Infinity` = as fast as the clients take it (the replay waits for clients' send buffers to drain).
   * Default 1.
   */
  readonly speed?: number;
  /** At the end, start over from the first event (books and trade history reset). Default false. */
  readonly loop?: boolean;
  /** Start replaying at once; when false, nothing is replayed until `start()`. Default true. */
  readonly autoStart?: boolean;
  /** The server pings every connection this often, with a payload to echo. Default 20 000 ms (Binance). */
  readonly pingIntervalMs?: number;
  /** A connection whose oldest unanswered ping is this old is closed. Default 60 000 ms (Binance). */
  readonly pongTimeoutMs?: number;
  /** Connections are closed when they reach this age. Default 86 400 000 ms (24 h, Binance). */
  readonly maxConnectionLifetimeMs?: number;
  /** A connection sending more messages (text, ping, pong) in any second is disconnected. Default 5. */
  readonly maxIncomingMessagesPerSecond?: number;
  /** Streams one connection may hold (URL plus SUBSCRIBE). Default 1024. */
  readonly maxStreamsPerConnection?: number;
  /** Connection attempts allowed per 5 minutes (all clients: one IP); more are refused with 429. Default 300. */
  readonly maxConnectionAttemptsPer5Min?: number;
  /** Time between a `serverShutdown` event and the close. Default 5 000 ms. */
  readonly shutdownGraceMs?: number;
  /** REST request weight allowed per window. Default 6000. */
  readonly weightLimitPerMinute?: number;
  /** Length of the request-weight window (shorten it in tests). Default 60 000 ms. */
  readonly weightWindowMs?: number;
  /** First IP ban's length (418); repeat bans double it. Default 120 000 ms (Binance's 2 minutes). */
  readonly banMs?: number;
  /** Longest IP ban. Default 259 200 000 ms (3 days). */
  readonly maxBanMs?: number;
  /** A client with more than this queued for it is disconnected as a slow consumer. Default 16 MiB. */
  readonly maxBufferedBytes?: number;
  /** At full speed, the replay waits while any client has more than this queued. Default 1 MiB. */
  readonly backpressureBytes?: number;
  /** At full speed, a client holding the replay up for this long is disconnected. Default 10 000 ms. */
  readonly slowConsumerTimeoutMs?: number;
  /** A close handshake not finished after this long becomes a TCP reset. Default 1 000 ms. */
  readonly closeTimeoutMs?: number;
  /** Events replayed before yielding to the event loop. Default 1 000. */
  readonly batchMaxEvents?: number;
  /**
   * At a finite speed, the most the replay runs behind its timeline when the simulator itself is
   * short of CPU: further behind, the timeline moves back to it (the replay slows down) instead of the
   * backlog going out in a burst to catch up, as an exchange whose own clock ran late would send.
   * Default Infinity: every event at its time on the timeline, however late.
   */
  readonly maxLagMs?: number;
  /** Bound of each record list in `stats()` (connections, requests, limit answers). Default 10 000. */
  readonly maxRecords?: number;
}

/** Options with every default applied. */
export type ResolvedSimulatorOptions = Required<Omit<SimulatorOptions, "recording">>;

function check(name: string, value: number, min: number, allowInfinity = false): number {
  if (Number.isNaN(value) || value < min || (!allowInfinity && !Number.isFinite(value)))
    throw new SimulatorError("SIMULATOR_BAD_OPTIONS", `${name} must be a number >= ${min}, got ${value}`);
  return value;
}

/** Applies defaults and validates. Throws `SimulatorError` (SIMULATOR_BAD_OPTIONS). */
export function resolveOptions(o: SimulatorOptions): ResolvedSimulatorOptions {
  const speed = check("speed", o.speed ?? 1, 0, true);
  return {
    host: o.host ?? "127.0.0.1",
    port: check("port", o.port ?? 0, 0),
    speed: speed === 0 ? Infinity : speed,
    loop: o.loop ?? false,
    autoStart: o.autoStart ?? true,
    pingIntervalMs: check("pingIntervalMs", o.pingIntervalMs ?? 20_000, 1),
    pongTimeoutMs: check("pongTimeoutMs", o.pongTimeoutMs ?? 60_000, 1),
    maxConnectionLifetimeMs: check("maxConnectionLifetimeMs", o.maxConnectionLifetimeMs ?? 86_400_000, 1),
    maxIncomingMessagesPerSecond: check(
      "maxIncomingMessagesPerSecond",
      o.maxIncomingMessagesPerSecond ?? 5,
      1,
    ),
    maxStreamsPerConnection: check("maxStreamsPerConnection", o.maxStreamsPerConnection ?? 1024, 1),
    maxConnectionAttemptsPer5Min: check(
      "maxConnectionAttemptsPer5Min",
      o.maxConnectionAttemptsPer5Min ?? 300,
      1,
    ),
    shutdownGraceMs: check("shutdownGraceMs", o.shutdownGraceMs ?? 5_000, 0),
    weightLimitPerMinute: check("weightLimitPerMinute", o.weightLimitPerMinute ?? 6000, 1),
    weightWindowMs: check("weightWindowMs", o.weightWindowMs ?? 60_000, 1),
    banMs: check("banMs", o.banMs ?? 120_000, 1),
    maxBanMs: check("maxBanMs", o.maxBanMs ?? 259_200_000, 1),
    maxBufferedBytes: check("maxBufferedBytes", o.maxBufferedBytes ?? 16 * 1024 * 1024, 1),
    backpressureBytes: check("backpressureBytes", o.backpressureBytes ?? 1024 * 1024, 1),
    slowConsumerTimeoutMs: check("slowConsumerTimeoutMs", o.slowConsumerTimeoutMs ?? 10_000, 1),
    closeTimeoutMs: check("closeTimeoutMs", o.closeTimeoutMs ?? 1_000, 0),
    batchMaxEvents: check("batchMaxEvents", o.batchMaxEvents ?? 1_000, 1),
    maxLagMs: check("maxLagMs", o.maxLagMs ?? Infinity, 0, true),
    maxRecords: check("maxRecords", o.maxRecords ?? 10_000, 1),
  };
}

/** Why the simulator's side ended a connection (`client`: the client closed or went away). */
export type CloseReason =
  | "client"
  | "rate-limit"
  | "pong-timeout"
  | "lifetime"
  | "server-shutdown"
  | "dropped"
  | "slow-consumer"
  | "simulator-closed";

/** One WebSocket connection as the server saw it. */
export interface ConnectionStats {
  /** 1, 2, 3… in order of acceptance; also sent as the `X-Simulator-Connection-Id` upgrade header. */
  readonly id: number;
  /** Request path with query, e.g. `/stream?streams=btcusdt@trade`. */
  readonly path: string;
  /** Combined-stream framing (`/stream`, or `SET_PROPERTY combined true`). */
  readonly combined: boolean;
  /** Subscribed streams now (or at close). */
  readonly streams: readonly string[];
  /** Epoch ms when accepted. */
  readonly openedAt: number;
  /** Epoch ms when closed; undefined while open. */
  readonly closedAt: number | undefined;
  readonly closeReason: CloseReason | undefined;
  /** WebSocket close code sent or received; 1006 for an abrupt end. */
  readonly closeCode: number | undefined;
  /** Messages received from the client: text/binary frames, pings and pongs. */
  readonly messagesReceived: number;
  /** Highest number of those in any 1 s sliding window. */
  readonly maxMessagesInAnySecond: number;
  /** Control requests (SUBSCRIBE, …) received, and how many were answered with an error. */
  readonly requests: number;
  readonly requestErrors: number;
  readonly pingsSent: number;
  readonly pongsReceived: number;
  /** Pongs whose payload equalled an outstanding ping's payload. */
  readonly pongsEchoedCorrectly: number;
  /** Market-data frames sent, and their bytes. */
  readonly framesSent: number;
  readonly bytesSent: number;
  /** Frames (data and replies) not sent because the connection was stalled. */
  readonly framesLostWhileStalled: number;
  readonly malformedFramesSent: number;
  /** Whether a `serverShutdown` event was sent. */
  readonly shutdownAnnounced: boolean;
  /** Highest `bufferedAmount` seen after a send. */
  readonly maxBufferedBytes: number;
}

/** One REST request. */
export interface RestRequestRecord {
  /** Epoch ms. */
  readonly atMs: number;
  readonly method: string;
  /** Path with query. */
  readonly path: string;
  /** Weight charged (0 for a request refused with 418). */
  readonly weight: number;
  readonly status: number;
  /** `X-MBX-USED-WEIGHT-1M` sent. */
  readonly usedWeight: number;
}

/** A 429 or 418 the simulator answered. */
export interface LimitResponseRecord {
  readonly atMs: number;
  readonly status: 429 | 418;
  readonly path: string;
  readonly retryAfterSec: number;
}

/** Where the replay is. */
export interface ReplayProgress {
  /** Events replayed in the current pass. */
  readonly replayed: number;
  /** Events in the recording (frames and snapshots). */
  readonly total: number;
  /** Completed passes (loop). */
  readonly loops: number;
  readonly started: boolean;
  readonly paused: boolean;
  readonly finished: boolean;
  readonly speed: number;
  /** Receive time (µs) of the last replayed event, undefined before the first. */
  readonly recordingTimeUs: number | undefined;
}

/** Everything the simulator observed; a copy, safe to keep. */
export interface SimulatorStats {
  /** Open and closed connections, oldest first (at most `maxRecords`, oldest closed dropped first). */
  readonly connections: readonly ConnectionStats[];
  /** WebSocket upgrade requests, accepted or not. */
  readonly connectionAttempts: number;
  /** Epoch ms of the most recent attempts (at most `maxRecords`). */
  readonly connectionAttemptTimesMs: readonly number[];
  /** Highest number of attempts in any 5-minute sliding window. */
  readonly maxConnectionAttemptsIn5Min: number;
  /** Upgrades refused: too many attempts, bad path, bad stream names, too many streams. */
  readonly connectionsRefused: number;
  readonly rest: {
    /** Most recent requests (at most `maxRecords`). */
    readonly requests: readonly RestRequestRecord[];
    readonly totalRequests: number;
    readonly totalWeight: number;
    /** Highest `X-MBX-USED-WEIGHT-1M` ever sent. */
    readonly maxUsedWeight: number;
    readonly rateLimited429: number;
    readonly banned418: number;
    /** Requests sent during a 429 back-off or a ban (each got a 418). */
    readonly requestsWhileBanned: number;
    /** IP bans imposed. */
    readonly bans: number;
    readonly limitResponses: readonly LimitResponseRecord[];
  };
  /** Per symbol: depth diffs withheld by `skipDiffs`. */
  readonly diffsSkipped: Readonly<Record<string, number>>;
  readonly replay: ReplayProgress;
}

/** Which connections a fault applies to: all (undefined), ids, or a predicate. */
export type ConnectionFilter = number | readonly number[] | ((connection: ConnectionStats) => boolean);

/** A running simulator. */
export interface Simulator {
  /** `ws://host:port` — append `/stream?streams=…` or `/ws/<stream>`. */
  readonly wsUrl: string;
  /** `http://host:port` — append `/api/v3/…`. */
  readonly restUrl: string;
  readonly port: number;
  /** The recording being replayed. */
  readonly recording: Recording;
  /**
   * Resolves when the replay has replayed the last event (the first pass when looping), or when the
   * simulator is closed; never rejects.
   */
  readonly done: Promise<void>;
  /** Starts the replay (with `autoStart: false`). Idempotent. */
  start(): void;
  /** Holds the replay where it is (clients stay connected, pings go on). */
  pause(): void;
  /** Continues after `pause()`; also starts a replay that has not started yet. */
  resume(): void;
  /** Changes the speed from now on (0 or Infinity = as fast as possible). */
  setSpeed(speed: number): void;
  progress(): ReplayProgress;
  stats(): SimulatorStats;
  /** Ids (`t`) of the `@trade` events of `symbol` replayed so far in this pass. */
  replayedTradeIds(symbol: string): number[];
  /** The true book's `lastUpdateId` for `symbol` now (undefined for an unknown symbol). */
  bookUpdateId(symbol: string): number | undefined;
  /** Ends TCP abruptly (no close frame). Returns how many connections. */
  dropConnections(filter?: ConnectionFilter): number;
  /**
   * Sends nothing (data, replies, pings) to these connections for `ms`; what would have been sent
   * meanwhile is lost for them, as on a dead link. Returns how many connections.
   */
  stallConnections(filter: ConnectionFilter | undefined, ms: number): number;
  /**
   * Sends no market data to these connections for `ms` while pings and replies go on, as Binance has
   * been seen to do to one connection (the data lost for them). Returns how many connections.
   */
  stallData(filter: ConnectionFilter | undefined, ms: number): number;
  /**
   * Sends malformed text frames: `count` varied ones (truncated JSON, non-JSON, wrong types), or the
   * given text once. Returns how many connections.
   */
  injectMalformed(what: number | string, filter?: ConnectionFilter): number;
  /** The next `n` depth diffs of `symbol` are withheld from every client but still move the true book. */
  skipDiffs(symbol: string, n: number): void;
  /**
   * Sends `serverShutdown` and closes those connections after `graceMs` (default the option
   * `shutdownGraceMs`). Returns how many connections.
   */
  announceShutdown(filter?: ConnectionFilter, graceMs?: number): number;
  /** Closes every connection and the server; clears every timer. Idempotent. */
  close(): Promise<void>;
}

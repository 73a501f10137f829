/**
 * A Binance spot exchange on loopback that replays a recording: WebSocket streams (raw and combined,
 * live SUBSCRIBE) and the public REST market-data endpoints on one port, Binance's connection and
 * weight limits, and faults on demand. See `SimulatorOptions` and `Simulator` for the contract.
 *
 * The true book: every symbol's book is seeded at start from the recording's first snapshot of that
 * symbol, and each replayed depth diff with `u` above the book's update id moves it. So a depth
 * request made before the replay has passed the snapshot's `lastUpdateId` gets a snapshot "from the
 * future" of the stream — exactly what Binance does when the REST snapshot is newer than the first
 * buffered diff; a client must drop buffered diffs with `u <= lastUpdateId` and wait for the diff
 * that spans `lastUpdateId + 1`. A symbol without any snapshot starts from an empty book.
 */
import { createServer, STATUS_CODES, type IncomingMessage, type Server } from "node:http";
import type { Duplex } from "node:stream";
import { readRecording, type RecordedEvent, type RecordedFrame, type Recording } from "@l2flow/recording";
import { WebSocketServer, type WebSocket } from "ws";
import { parseDepthDiff } from "./book.js";
import { SimConnection, type ConnectionHost, type ConnectionRequest } from "./connection.js";
import { SimulatorError } from "./errors.js";
import { SlidingWindowCounter } from "./limits.js";
import { buildMarkets, parseAggTrade, parseTrade, type SymbolMarket } from "./market.js";
import {
  resolveOptions,
  type ConnectionFilter,
  type ReplayProgress,
  type ResolvedSimulatorOptions,
  type Simulator,
  type SimulatorOptions,
  type SimulatorStats,
} from "./options.js";
import { ReplayClock, type ReplaySink } from "./replay.js";
import { RestApi } from "./rest.js";
import { canonicalStream, deliveryStreams, toMicroseconds } from "./streams.js";

const FIVE_MINUTES_MS = 300_000;
// Client frames bigger than this are refused by `ws` (control requests are tiny).
const MAX_CLIENT_PAYLOAD_BYTES = 64 * 1024;

/**
 * Starts a simulator listening on `host:port` (default 127.0.0.1 and a free port). With
 * `autoStart` (the default) the replay starts at once, so clients that connect later miss the
 * beginning, as on a real exchange; pass `autoStart: false` and call `start()` once clients are in.
 */
export async function startSimulator(options: SimulatorOptions): Promise<Simulator> {
  const resolved = resolveOptions(options);
  const recording =
    typeof options.recording === "string" ? readRecording(options.recording) : options.recording;
  const simulator = new BinanceSimulator(resolved, recording);
  await simulator.listen();
  if (resolved.autoStart) simulator.start();
  return simulator;
}

function hostForUrl(host: string): string {
  if (host === "0.0.0.0" || host === "::" || host === "") return "127.0.0.1";
  return host.includes(":") ? `[${host}]` : host;
}

function malformedSamples(streamSymbol: string): string[] {
  return [
    `{"stream":"${streamSymbol}@trade","data":{"e":"trade","E":17231612`,
    "this is not JSON",
    `{"stream":"${streamSymbol}@depth@100ms","data":{"e":"depthUpdate","E":"soon","U":null,"u":"x","b":"oops","a":[[1]]}}`,
    "[1,2,",
    `{"stream":"${streamSymbol}@trade","data":{"e":"trade","t":-1,"p":"NaN","q":"-5"}}`,
    "",
    '{"data":{"e":"depthUpdate"}}',
    '{"stream":"',
  ];
}

class BinanceSimulator implements Simulator, ConnectionHost, ReplaySink {
  readonly options: ResolvedSimulatorOptions;
  readonly recording: Recording;
  readonly done: Promise<void>;
  wsUrl = "";
  restUrl = "";
  port = 0;

  readonly #markets: Map<string, SymbolMarket>;
  readonly #rest: RestApi;
  readonly #replay: ReplayClock;
  readonly #http: Server;
  readonly #wss: WebSocketServer;
  readonly #resolveDone: () => void;

  readonly #open = new Map<number, SimConnection>();
  readonly #all: SimConnection[] = [];
  readonly #subscribers = new Map<string, Set<SimConnection>>();
  readonly #routes = new Map<string, readonly string[]>();
  /** Connections corked by the replay batch under way (`deliver`), uncorked by `flush`. */
  readonly #corked = new Set<SimConnection>();
  readonly #overSinceMs = new Map<SimConnection, number>();
  readonly #upgradeIds = new WeakMap<IncomingMessage, number>();
  readonly #attempts: SlidingWindowCounter;
  readonly #attemptTimes: number[] = [];
  #refused = 0;
  #nextId = 1;
  #closing: Promise<void> | undefined;
  #allClosed: (() => void) | undefined;

  constructor(options: ResolvedSimulatorOptions, recording: Recording) {
    this.options = options;
    this.recording = recording;
    let resolveDone!: () => void;
    this.done = new Promise<void>((resolve) => (resolveDone = resolve));
    this.#resolveDone = resolveDone;
    this.#markets = buildMarkets(recording);
    this.#rest = new RestApi(options, recording, this.#markets);
    this.#replay = new ReplayClock(recording.events, this, {
      speed: options.speed,
      loop: options.loop,
      batchMaxEvents: options.batchMaxEvents,
      maxLagMs: options.maxLagMs,
    });
    this.#attempts = new SlidingWindowCounter(
      FIVE_MINUTES_MS,
      Math.max(options.maxConnectionAttemptsPer5Min * 4, 1024),
    );
    this.#http = createServer((req, res) => this.#rest.handle(req, res));
    this.#http.on("clientError", (_err, socket) => socket.destroy());
    this.#http.on("upgrade", (req: IncomingMessage, socket: Duplex, head: Buffer) =>
      this.#onUpgrade(req, socket, head),
    );
    this.#wss = new WebSocketServer({
      noServer: true,
      maxPayload: MAX_CLIENT_PAYLOAD_BYTES,
      perMessageDeflate: false,
    });
    this.#wss.on("headers", (headers, req) => {
      const id = this.#upgradeIds.get(req);
      if (id !== undefined) headers.push(`X-Simulator-Connection-Id: ${id}`);
    });
  }

  async listen(): Promise<void> {
    const { host, port } = this.options;
    await new Promise<void>((resolve, reject) => {
      const onError = (err: Error) =>
        reject(
          new SimulatorError("SIMULATOR_LISTEN", `cannot listen on ${host}:${port}: ${err.message}`, {
            cause: err,
          }),
        );
      this.#http.once("error", onError);
      this.#http.listen(port, host, () => {
        this.#http.off("error", onError);
        resolve();
      });
    });
    // After listening, server errors are per-connection matters; keep them from crashing the process.
    this.#http.on("error", () => {});
    const address = this.#http.address();
    this.port = typeof address === "object" && address !== null ? address.port : port;
    const h = hostForUrl(host);
    this.wsUrl = `ws://${h}:${this.port}`;
    this.restUrl = `http://${h}:${this.port}`;
  }

  // ---- Simulator -------------------------------------------------------------------------------

  start(): void {
    if (this.#closing) return;
    this.#replay.start();
  }

  pause(): void {
    this.#replay.pause();
  }

  resume(): void {
    if (this.#closing) return;
    this.#replay.resume();
    this.#replay.start();
  }

  setSpeed(speed: number): void {
    if (Number.isNaN(speed) || speed < 0)
      throw new SimulatorError(
        "SIMULATOR_BAD_OPTIONS",
        `speed must be >= 0 (0 = as fast as possible), got ${speed}`,
      );
    this.#replay.setSpeed(speed);
  }

  progress(): ReplayProgress {
    return this.#replay.progress();
  }

  replayedTradeIds(symbol: string): number[] {
    return (this.#markets.get(symbol.toUpperCase())?.trades ?? []).map((t) => t.id);
  }

  bookUpdateId(symbol: string): number | undefined {
    return this.#markets.get(symbol.toUpperCase())?.book.lastUpdateId;
  }

  dropConnections(filter?: ConnectionFilter): number {
    const selected = this.#select(filter);
    for (const c of selected) c.drop("dropped");
    return selected.length;
  }

  stallConnections(filter: ConnectionFilter | undefined, ms: number): number {
    const selected = this.#select(filter);
    for (const c of selected) c.stall(ms);
    return selected.length;
  }

  stallData(filter: ConnectionFilter | undefined, ms: number): number {
    const selected = this.#select(filter);
    for (const c of selected) c.stallData(ms);
    return selected.length;
  }

  injectMalformed(what: number | string, filter?: ConnectionFilter): number {
    const samples = malformedSamples(this.recording.symbols[0]?.toLowerCase() ?? "btcusdt");
    const texts =
      typeof what === "string"
        ? [what]
        : Array.from({ length: Math.max(0, what) }, (_, i) => samples[i % samples.length]!);
    const selected = this.#select(filter);
    for (const c of selected) for (const t of texts) c.sendMalformed(t);
    return selected.length;
  }

  skipDiffs(symbol: string, n: number): void {
    const market = this.#markets.get(symbol.toUpperCase());
    if (!market)
      throw new SimulatorError("SIMULATOR_BAD_OPTIONS", `symbol ${symbol} is not in the recording`);
    market.skipDiffs += Math.max(0, Math.floor(n));
  }

  announceShutdown(filter?: ConnectionFilter, graceMs?: number): number {
    const selected = this.#select(filter);
    for (const c of selected) c.announceShutdown(graceMs ?? this.options.shutdownGraceMs);
    return selected.length;
  }

  stats(): SimulatorStats {
    const diffsSkipped: Record<string, number> = {};
    for (const [symbol, m] of this.#markets) diffsSkipped[symbol] = m.diffsSkipped;
    return {
      connections: this.#all.map((c) => c.stats()),
      connectionAttempts: this.#attempts.total,
      connectionAttemptTimesMs: [...this.#attemptTimes],
      maxConnectionAttemptsIn5Min: this.#attempts.max,
      connectionsRefused: this.#refused,
      rest: this.#rest.stats(),
      diffsSkipped,
      replay: this.#replay.progress(),
    };
  }

  close(): Promise<void> {
    this.#closing ??= this.#shutdown();
    return this.#closing;
  }

  async #shutdown(): Promise<void> {
    this.#replay.close();
    if (this.#open.size > 0) {
      const allClosed = new Promise<void>((resolve) => (this.#allClosed = resolve));
      for (const c of this.#open.values()) c.close("simulator-closed", 1001, "simulator closed");
      // Each close handshake turns into a reset after closeTimeoutMs; this is only a safety net.
      let safety: NodeJS.Timeout | undefined;
      await Promise.race([
        allClosed,
        new Promise<void>((resolve) => (safety = setTimeout(resolve, this.options.closeTimeoutMs + 1000))),
      ]);
      clearTimeout(safety);
      for (const c of this.#open.values()) c.drop("simulator-closed");
    }
    await new Promise<void>((resolve) => this.#wss.close(() => resolve()));
    this.#http.closeAllConnections();
    await new Promise<void>((resolve) => this.#http.close(() => resolve()));
    this.#resolveDone();
  }

  // ---- ConnectionHost --------------------------------------------------------------------------

  subscribe(connection: SimConnection, stream: string): void {
    let set = this.#subscribers.get(stream);
    if (!set) this.#subscribers.set(stream, (set = new Set()));
    set.add(connection);
  }

  unsubscribe(connection: SimConnection, stream: string): void {
    const set = this.#subscribers.get(stream);
    if (!set) return;
    set.delete(connection);
    if (set.size === 0) this.#subscribers.delete(stream);
  }

  closed(connection: SimConnection): void {
    this.#open.delete(connection.id);
    this.#overSinceMs.delete(connection);
    if (this.#open.size === 0) this.#allClosed?.();
  }

  // ---- ReplaySink ------------------------------------------------------------------------------

  deliver(event: RecordedEvent): void {
    // Snapshots only seed the true books (at start); clients never see them.
    if (event.type !== "frame") return;
    const market = this.#markets.get(event.symbol);
    if (!market) return;
    const kind = event.kind;
    if (kind === "depth@100ms" || kind === "depth" || kind === "depth@1000ms") {
      // A malformed recorded diff cannot move the book; it is still served verbatim.
      const diff = diffs.of(event);
      const applied = diff !== undefined && market.book.apply(diff);
      if (applied) market.diffsApplied++;
      else market.diffsAlreadyInBook++;
      if (market.skipDiffs > 0) {
        market.skipDiffs--;
        market.diffsSkipped++;
        return;
      }
    } else if (kind === "trade") {
      const trade = trades.of(event);
      if (trade) market.trades.push(trade);
    } else if (kind === "aggTrade") {
      const agg = aggTrades.of(event);
      if (agg) market.aggTrades.push(agg);
    }
    let routes = this.#routes.get(event.stream);
    if (!routes) this.#routes.set(event.stream, (routes = deliveryStreams(market.streamSymbol, kind)));
    for (const name of routes) {
      const subscribers = this.#subscribers.get(name);
      if (!subscribers) continue;
      let raw: Buffer | undefined;
      let rawUs: Buffer | undefined;
      let combined: Buffer | undefined;
      let combinedUs: Buffer | undefined;
      for (const c of subscribers) {
        c.cork(); // once per batch: a corked connection ignores it
        this.#corked.add(c);
        let frame: Buffer;
        if (c.combined) {
          frame = c.microseconds
            ? (combinedUs ??= Buffer.from(`{"stream":"${name}","data":${toMicroseconds(event.data)}}`))
            : (combined ??= Buffer.from(`{"stream":"${name}","data":${event.data}}`));
        } else {
          frame = c.microseconds
            ? (rawUs ??= Buffer.from(toMicroseconds(event.data)))
            : (raw ??= Buffer.from(event.data));
        }
        c.sendFrame(frame);
      }
    }
  }

  flush(): void {
    for (const c of this.#corked) c.uncork();
    this.#corked.clear();
  }

  ready(): boolean {
    const now = performance.now();
    let ready = true;
    for (const c of this.#open.values()) {
      if (!c.open || c.bufferedAmount <= this.options.backpressureBytes) {
        this.#overSinceMs.delete(c);
        continue;
      }
      const since = this.#overSinceMs.get(c);
      if (since === undefined) this.#overSinceMs.set(c, now);
      else if (now - since > this.options.slowConsumerTimeoutMs) {
        c.drop("slow-consumer");
        continue;
      }
      ready = false;
    }
    return ready;
  }

  ended(): void {
    this.#resolveDone();
  }

  rewound(): void {
    for (const m of this.#markets.values()) m.reset();
  }

  // ---- connections -----------------------------------------------------------------------------

  #select(filter: ConnectionFilter | undefined): SimConnection[] {
    const open = [...this.#open.values()].filter((c) => c.open);
    if (filter === undefined) return open;
    if (typeof filter === "number") return open.filter((c) => c.id === filter);
    if (typeof filter === "function") return open.filter((c) => filter(c.stats()));
    const ids = new Set(filter);
    return open.filter((c) => ids.has(c.id));
  }

  #refuse(socket: Duplex, status: number, code: number, msg: string): void {
    this.#refused++;
    const body = JSON.stringify({ code, msg });
    socket.end(
      `HTTP/1.1 ${status} ${STATUS_CODES[status] ?? ""}\r\nConnection: close\r\n` +
        `Content-Type: application/json\r\nContent-Length: ${Buffer.byteLength(body)}\r\n\r\n${body}`,
    );
  }

  #onUpgrade(req: IncomingMessage, socket: Duplex, head: Buffer): void {
    socket.on("error", () => socket.destroy());
    const nowMs = Date.now();
    const inWindow = this.#attempts.record(nowMs);
    this.#attemptTimes.push(nowMs);
    if (this.#attemptTimes.length > this.options.maxRecords) this.#attemptTimes.shift();
    if (this.#closing) return this.#refuse(socket, 503, -1001, "Simulator closing.");
    if (inWindow > this.options.maxConnectionAttemptsPer5Min)
      return this.#refuse(socket, 429, -1003, "Too many connection attempts.");
    const url = new URL(req.url ?? "/", "http://simulator");
    let names: string[];
    let combined: boolean;
    if (url.pathname === "/stream" || url.pathname === "/stream/") {
      combined = true;
      names = (url.searchParams.get("streams") ?? "").split("/").filter((s) => s !== "");
    } else if (url.pathname === "/ws" || url.pathname.startsWith("/ws/")) {
      combined = false;
      names = url.pathname
        .slice(3)
        .split("/")
        .filter((s) => s !== "")
        .map((s) => decodeURIComponent(s));
    } else {
      return this.#refuse(socket, 404, -1000, "Unknown path; use /ws/<stream> or /stream?streams=a/b.");
    }
    const streams: string[] = [];
    for (const n of names) {
      const c = canonicalStream(n);
      if (c === undefined) return this.#refuse(socket, 400, 2, `Invalid stream name ${JSON.stringify(n)}.`);
      if (!streams.includes(c)) streams.push(c);
    }
    if (streams.length > this.options.maxStreamsPerConnection)
      return this.#refuse(
        socket,
        400,
        2,
        `Too many streams (at most ${this.options.maxStreamsPerConnection}).`,
      );
    const timeUnit = url.searchParams.get("timeUnit");
    if (timeUnit !== null && !/^(?:MICROSECOND|MILLISECOND)$/i.test(timeUnit))
      return this.#refuse(socket, 400, -1100, "Invalid timeUnit.");
    const request: ConnectionRequest = {
      id: this.#nextId++,
      path: `${url.pathname}${url.search}`,
      combined,
      microseconds: timeUnit !== null && /^MICROSECOND$/i.test(timeUnit),
      streams,
    };
    this.#upgradeIds.set(req, request.id);
    this.#wss.handleUpgrade(req, socket, head, (ws) => this.#accept(ws, socket, request));
  }

  #accept(ws: WebSocket, socket: Duplex, request: ConnectionRequest): void {
    if (this.#closing) {
      ws.terminate();
      return;
    }
    const connection = new SimConnection(this, ws, socket, request);
    this.#open.set(connection.id, connection);
    this.#all.push(connection);
    if (this.#all.length > this.options.maxRecords) {
      const i = this.#all.findIndex((c) => !this.#open.has(c.id));
      this.#all.splice(i >= 0 ? i : 0, 1);
    }
  }
}

function safe<T>(parse: () => T): T | undefined {
  try {
    return parse();
  } catch {
    return undefined;
  }
}

/**
 * A parser of recorded frames' data that parses all the copies of one recorded frame (`copyOf`: their
 * data differs only in the symbol, which none of these parsers keep) once: a many-symbol replay
 * otherwise parsed every diff once per copy. Results are shared, so their users never change them.
 */
class OncePerOriginal<T> {
  readonly #parsed = new WeakMap<RecordedFrame, T>();
  constructor(readonly parse: (data: string) => T) {}

  of(frame: RecordedFrame): T {
    const original = frame.copyOf;
    if (original === undefined) return this.parse(frame.data);
    if (this.#parsed.has(original)) return this.#parsed.get(original)!;
    const parsed = this.parse(original.data);
    this.#parsed.set(original, parsed);
    return parsed;
  }
}

const diffs = new OncePerOriginal((data) => safe(() => parseDepthDiff(data)));
const trades = new OncePerOriginal((data) => safe(() => parseTrade(data)));
const aggTrades = new OncePerOriginal((data) => safe(() => parseAggTrade(data)));

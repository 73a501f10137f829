/**
 * A tiny Binance combined-stream server for the connection tests (real sockets on 127.0.0.1): records
 * every message and pong with its arrival time, answers SUBSCRIBE/UNSUBSCRIBE/LIST_SUBSCRIPTIONS, and
 * lets a test push frames, pings and `serverShutdown` events.
 */
import type { AddressInfo } from "node:net";
import { WebSocketServer, type WebSocket } from "ws";

/** One accepted client connection, as the server sees it. */
export interface FakeConn {
  readonly n: number;
  readonly ws: WebSocket;
  readonly url: string;
  readonly urlStreams: readonly string[];
  readonly streams: Set<string>;
  readonly openedAt: number;
  /** Every JSON message and pong, in arrival order (performance.now() times). */
  readonly inbound: { at: number; type: "message" | "pong"; text: string }[];
  closedAt: number | undefined;
  closeCode: number | undefined;
}

/** Options of `FakeBinanceWs`. */
export interface FakeOptions {
  /** Return an error `{code, msg}` for a request instead of success; undefined = success. */
  readonly errorFor?: (
    method: string,
    params: readonly string[],
  ) => { code: number; msg: string } | undefined;
  /** Requests with these methods get no reply at all. */
  readonly ignoreMethods?: readonly string[];
}

/** The fake server. `start()`, use, `close()`. */
export class FakeBinanceWs {
  readonly conns: FakeConn[] = [];
  readonly #wss: WebSocketServer;
  readonly #options: FakeOptions;
  readonly #tickers = new Set<NodeJS.Timeout>();
  readonly url: string;

  private constructor(wss: WebSocketServer, options: FakeOptions) {
    this.#wss = wss;
    this.#options = options;
    const port = (wss.address() as AddressInfo).port;
    this.url = `ws://127.0.0.1:${port}`;
    wss.on("connection", (ws, req) => this.#accept(ws, req.url ?? "/"));
  }

  /** Starts a server on a free port of 127.0.0.1. */
  static async start(options: FakeOptions = {}): Promise<FakeBinanceWs> {
    const wss = await new Promise<WebSocketServer>((resolve, reject) => {
      const s = new WebSocketServer({ host: "127.0.0.1", port: 0, perMessageDeflate: false });
      s.once("listening", () => resolve(s));
      s.once("error", reject);
    });
    return new FakeBinanceWs(wss, options);
  }

  #accept(ws: WebSocket, url: string): void {
    const u = new URL(url, "http://x");
    const urlStreams = (u.searchParams.get("streams") ?? "").split("/").filter((s) => s.length > 0);
    const conn: FakeConn = {
      n: this.conns.length,
      ws,
      url,
      urlStreams,
      streams: new Set(urlStreams),
      openedAt: performance.now(),
      inbound: [],
      closedAt: undefined,
      closeCode: undefined,
    };
    this.conns.push(conn);
    ws.on("pong", (payload) =>
      conn.inbound.push({ at: performance.now(), type: "pong", text: payload.toString() }),
    );
    ws.on("close", (code) => {
      conn.closedAt = performance.now();
      conn.closeCode = code;
    });
    ws.on("message", (data) => {
      const text = (data as Buffer).toString();
      conn.inbound.push({ at: performance.now(), type: "message", text });
      const req = JSON.parse(text) as { method: string; params?: string[]; id: number };
      if (this.#options.ignoreMethods?.includes(req.method) === true) return;
      const params = req.params ?? [];
      const error = this.#options.errorFor?.(req.method, params);
      if (error !== undefined) {
        ws.send(JSON.stringify({ error, id: req.id }));
        return;
      }
      if (req.method === "SUBSCRIBE") for (const s of params) conn.streams.add(s);
      if (req.method === "UNSUBSCRIBE") for (const s of params) conn.streams.delete(s);
      const result = req.method === "LIST_SUBSCRIPTIONS" ? [...conn.streams] : null;
      ws.send(JSON.stringify({ result, id: req.id }));
    });
  }

  /** Connections still open. */
  open(): FakeConn[] {
    return this.conns.filter((c) => c.closedAt === undefined && c.ws.readyState === c.ws.OPEN);
  }

  /** Sends `{"stream":…,"data":…}` to every open connection subscribed to `stream`. */
  broadcast(stream: string, data: unknown): void {
    const text = JSON.stringify({ stream, data });
    for (const c of this.open()) if (c.streams.has(stream)) c.ws.send(text);
  }

  /** Every `intervalMs`, broadcasts the next trade id (from `firstId`) on `<symbol>@trade`. Returns a stopper. */
  tradeTicker(symbol: string, intervalMs: number, firstId = 1): { stop: () => void; lastId: () => number } {
    let id = firstId - 1;
    const stream = `${symbol.toLowerCase()}@trade`;
    const timer = setInterval(() => {
      id++;
      this.broadcast(stream, {
        e: "trade",
        E: Date.now(),
        s: symbol,
        t: id,
        p: "1.00",
        q: "1.00",
        T: Date.now(),
        m: false,
        M: true,
      });
    }, intervalMs);
    this.#tickers.add(timer);
    return {
      stop: () => {
        clearInterval(timer);
        this.#tickers.delete(timer);
      },
      lastId: () => id,
    };
  }

  /** Resolves when `predicate` holds (checked every 10 ms), rejects after `timeoutMs`. */
  async waitFor(predicate: () => boolean, timeoutMs = 5000, what = "condition"): Promise<void> {
    const deadline = performance.now() + timeoutMs;
    while (!predicate()) {
      if (performance.now() > deadline) throw new Error(`timed out waiting for ${what}`);
      await new Promise((r) => setTimeout(r, 10));
    }
  }

  /** Stops tickers, terminates every client and the server. */
  async close(): Promise<void> {
    for (const t of this.#tickers) clearInterval(t);
    this.#tickers.clear();
    for (const c of this.conns) c.ws.terminate();
    await new Promise<void>((resolve) => this.#wss.close(() => resolve()));
  }
}

/** Most events of `times` inside any window of `windowMs` (times sorted or not). */
export function maxInWindow(times: readonly number[], windowMs: number): number {
  const t = [...times].sort((a, b) => a - b);
  let best = 0;
  let lo = 0;
  for (let hi = 0; hi < t.length; hi++) {
    while ((t[hi] as number) - (t[lo] as number) >= windowMs) lo++;
    best = Math.max(best, hi - lo + 1);
  }
  return best;
}

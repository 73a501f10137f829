/** Test clients for the simulator: a plain `ws` client that records everything, and a REST getter. */
import type { Socket } from "node:net";
import type { RecordedFrame, Recording } from "@l2flow/recording";
import WebSocket, { type ClientOptions } from "ws";

/** A connected client that keeps every text frame it receives. */
export interface TestClient {
  readonly ws: WebSocket;
  /** The TCP socket under `ws` (from the upgrade response; a test pauses it to stop reading). */
  readonly socket: Socket;
  /** The simulator's connection id (from the upgrade response header). */
  readonly id: number;
  readonly messages: string[];
  /** Resolves with the close code when the socket closes. */
  readonly closed: Promise<{ code: number; reason: string }>;
  /** Resolves once `predicate` holds for the messages so far (checked on every message). */
  waitFor(predicate: (messages: readonly string[]) => boolean, timeoutMs?: number): Promise<void>;
  /** Sends a JSON request and resolves with the reply carrying the same id. */
  request(body: { method: string; params?: unknown; id: number | string }): Promise<Record<string, unknown>>;
}

/** Opens a client; rejects if the upgrade is refused. */
export async function connect(url: string, options: ClientOptions = {}): Promise<TestClient> {
  const ws = new WebSocket(url, options);
  const messages: string[] = [];
  const waiters = new Set<() => void>();
  let id = 0;
  let socket: Socket | undefined;
  ws.on("upgrade", (res) => {
    id = Number(res.headers["x-simulator-connection-id"]);
    socket = res.socket;
  });
  ws.on("message", (data) => {
    // The simulator sends text frames only; `ws` hands them over as one Buffer.
    messages.push((data as Buffer).toString());
    for (const w of [...waiters]) w();
  });
  const closed = new Promise<{ code: number; reason: string }>((resolve) =>
    ws.on("close", (code, reason) => {
      resolve({ code, reason: String(reason) });
      for (const w of [...waiters]) w();
    }),
  );
  await new Promise<void>((resolve, reject) => {
    ws.once("open", () => resolve());
    ws.once("error", reject);
  });
  ws.on("error", () => {});
  const waitFor = (predicate: (m: readonly string[]) => boolean, timeoutMs = 10_000) =>
    new Promise<void>((resolve, reject) => {
      const check = () => {
        if (!predicate(messages)) return;
        clearTimeout(timer);
        waiters.delete(check);
        resolve();
      };
      const timer = setTimeout(() => {
        waiters.delete(check);
        reject(new Error(`waitFor timed out after ${timeoutMs} ms with ${messages.length} messages`));
      }, timeoutMs);
      waiters.add(check);
      check();
    });
  const request = async (body: { method: string; params?: unknown; id: number | string }) => {
    const from = messages.length;
    ws.send(JSON.stringify(body));
    let reply: Record<string, unknown> | undefined;
    await waitFor((m) => {
      for (let i = from; i < m.length; i++) {
        const parsed = JSON.parse(m[i]!) as Record<string, unknown>;
        if ("id" in parsed && parsed.id === body.id) {
          reply = parsed;
          return true;
        }
      }
      return false;
    }, 5_000);
    return reply!;
  };
  return { ws, socket: socket!, id, messages, closed, waitFor, request };
}

/** What a refused upgrade answered: the HTTP status. */
export async function refusedStatus(url: string): Promise<number> {
  const ws = new WebSocket(url);
  return new Promise<number>((resolve, reject) => {
    ws.on("unexpected-response", (_req, res) => {
      resolve(res.statusCode ?? 0);
      ws.terminate();
    });
    ws.on("open", () => {
      ws.terminate();
      reject(new Error("upgrade was accepted"));
    });
    ws.on("error", () => {});
  });
}

/** A REST answer. */
export interface RestAnswer<T = unknown> {
  readonly status: number;
  readonly headers: Headers;
  readonly body: T;
  readonly usedWeight: number;
}

/** GET and parse JSON. */
export async function getJson<T = unknown>(url: string, init: RequestInit = {}): Promise<RestAnswer<T>> {
  const res = await fetch(url, init);
  const body = (await res.json()) as T;
  return {
    status: res.status,
    headers: res.headers,
    body,
    usedWeight: Number(res.headers.get("x-mbx-used-weight-1m")),
  };
}

/** The recording's frames of the given streams, in order. */
export function framesOf(recording: Recording, streams: readonly string[]): RecordedFrame[] {
  const wanted = new Set(streams);
  return recording.events.filter((e): e is RecordedFrame => e.type === "frame" && wanted.has(e.stream));
}

/** The combined-stream text of a recorded frame, as Binance sent it. */
export function combinedText(frame: RecordedFrame, stream = frame.stream): string {
  return `{"stream":"${stream}","data":${frame.data}}`;
}

/** A book rebuilt by the test itself: price → quantity per side. */
export interface RebuiltBook {
  readonly lastUpdateId: number;
  readonly bids: Map<string, string>;
  readonly asks: Map<string, string>;
}

/**
 * Rebuilds `symbol`'s book from the recording, independently of the simulator: the first snapshot,
 * then every diff with `snapshot id < u <= uptoU` in recorded order.
 */
export function rebuildBook(recording: Recording, symbol: string, uptoU: number): RebuiltBook {
  const snapshot = recording.events.find((e) => e.type === "snapshot" && e.symbol === symbol);
  if (!snapshot || snapshot.type !== "snapshot") throw new Error(`no snapshot for ${symbol}`);
  const s = JSON.parse(snapshot.body) as {
    lastUpdateId: number;
    bids: [string, string][];
    asks: [string, string][];
  };
  const bids = new Map(s.bids);
  const asks = new Map(s.asks);
  let last = s.lastUpdateId;
  for (const e of recording.events) {
    if (e.type !== "frame" || e.symbol !== symbol || !e.kind.startsWith("depth")) continue;
    const d = JSON.parse(e.data) as { u: number; b: [string, string][]; a: [string, string][] };
    if (d.u <= last) continue;
    if (d.u > uptoU) break;
    for (const [p, q] of d.b)
      if (Number(q) === 0) bids.delete(p);
      else bids.set(p, q);
    for (const [p, q] of d.a)
      if (Number(q) === 0) asks.delete(p);
      else asks.set(p, q);
    last = d.u;
  }
  return { lastUpdateId: last, bids, asks };
}

/** A side of a rebuilt book sorted best first, cut to `limit`. */
export function topLevels(side: Map<string, string>, descending: boolean, limit: number): [string, string][] {
  return [...side.entries()]
    .sort((x, y) => (descending ? Number(y[0]) - Number(x[0]) : Number(x[0]) - Number(y[0])))
    .slice(0, limit);
}

/** Parses a depth diff frame (raw or combined). */
export function diffOf(text: string): { U: number; u: number } {
  const parsed = JSON.parse(text) as { data?: { U: number; u: number }; U?: number; u?: number };
  const d = parsed.data ?? (parsed as { U: number; u: number });
  return { U: d.U, u: d.u };
}

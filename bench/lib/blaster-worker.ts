/**
 * The blaster's server, on its own thread (see blaster.ts): the exchange is another machine in
 * production, so its sending must not take the measured process's JavaScript thread.
 */
import { createServer } from "node:http";
import type { AddressInfo } from "node:net";
import type { Duplex } from "node:stream";
import { parentPort } from "node:worker_threads";
import { WebSocketServer, type WebSocket } from "ws";
import type { ToWorker, FromWorker } from "./blaster.js";

const port = parentPort!;
const post = (m: FromWorker, transfer: ArrayBuffer[] = []) => port.postMessage(m, transfer);

const server = createServer((_req, res) => res.writeHead(404).end());
const wss = new WebSocketServer({ noServer: true });
const byStream = new Map<string, WebSocket>();
/** The TCP socket under each WebSocket: the one its HTTP upgrade came on (ws has no public call for it). */
const socketOf = new Map<WebSocket, Duplex>();
server.on("upgrade", (req, socket, head) => {
  const url = new URL(req.url ?? "/", "http://x");
  const streams = (url.searchParams.get("streams") ?? "").split("/").filter((s) => s.length > 0);
  wss.handleUpgrade(req, socket, head, (ws) => {
    for (const s of streams) byStream.set(s, ws);
    socketOf.set(ws, socket);
    ws.on("close", () => {
      socketOf.delete(ws);
      for (const s of streams) if (byStream.get(s) === ws) byStream.delete(s);
    });
  });
});

let frames: { stream: string; bytes: Uint8Array }[] = [];

const drained = (ws: WebSocket) =>
  new Promise<void>((resolve) => {
    const check = () => (ws.bufferedAmount < 1 << 20 ? resolve() : setTimeout(check, 1));
    check();
  });

/**
 * Sends every frame in order, recording each one's send time. As fast as possible, frames go out in
 * corked batches (one write per batch and socket, as a busy exchange's TCP stream coalesces them); at a
 * fixed rate each frame is written when due.
 */
async function send(ratePerSecond: number): Promise<{ start: bigint; sentAt: BigInt64Array }> {
  const sentAt = new BigInt64Array(frames.length);
  const start = process.hrtime.bigint();
  const BATCH = 128;
  for (let i = 0; i < frames.length;) {
    if (ratePerSecond > 0) {
      const due = start + BigInt(Math.round((i * 1e9) / ratePerSecond));
      const now = process.hrtime.bigint();
      if (now < due) {
        const waitMs = Number(due - now) / 1e6;
        if (waitMs >= 1) await new Promise((r) => setTimeout(r, waitMs));
      }
      const f = frames[i]!;
      const ws = byStream.get(f.stream);
      if (ws === undefined) throw new Error(`no connection subscribed to ${f.stream}`);
      sentAt[i] = process.hrtime.bigint();
      ws.send(f.bytes);
      i++;
      continue;
    }
    const end = Math.min(frames.length, i + BATCH);
    const corked = new Set<WebSocket>();
    for (; i < end; i++) {
      const f = frames[i]!;
      const ws = byStream.get(f.stream);
      if (ws === undefined) throw new Error(`no connection subscribed to ${f.stream}`);
      if (!corked.has(ws)) {
        if (ws.bufferedAmount >= 1 << 20) await drained(ws);
        socketOf.get(ws)?.cork();
        corked.add(ws);
      }
      sentAt[i] = process.hrtime.bigint();
      ws.send(f.bytes);
    }
    for (const ws of corked) socketOf.get(ws)?.uncork();
    if ((i & 4095) === 0) await new Promise((r) => setImmediate(r));
  }
  return { start, sentAt };
}

port.on("message", (m: ToWorker) => {
  switch (m.type) {
    case "load":
      frames = m.frames;
      post({ type: "loaded" });
      break;
    case "streams":
      post({ type: "streams", streams: [...byStream.keys()] });
      break;
    case "send":
      send(m.ratePerSecond).then(
        ({ start, sentAt }) => post({ type: "sent", start, sentAt }, [sentAt.buffer as ArrayBuffer]),
        (err: unknown) => post({ type: "error", message: err instanceof Error ? err.message : String(err) }),
      );
      break;
    case "close":
      for (const ws of wss.clients) ws.terminate();
      wss.close();
      server.close(() => post({ type: "closed" }));
      break;
  }
});

server.listen(0, "127.0.0.1", () =>
  post({ type: "listening", port: (server.address() as AddressInfo).port }),
);

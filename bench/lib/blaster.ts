/**
 * A minimal Binance combined-stream server for load: it accepts `/stream?streams=…` upgrades,
 * answers nothing else, and sends prebuilt frames to the connection subscribed to each frame's
 * stream — as fast as the socket drains, or at a fixed rate — recording when each frame was handed
 * to the socket. The simulator replays recordings with Binance's full behaviour; this only exists to
 * push a known load through ingest with send times the benchmark can read.
 */
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { WebSocketServer, type WebSocket } from "ws";

/** One frame to send: the stream it belongs to, its combined-frame bytes, its key (e.g. a msg id). */
export interface BlastFrame {
  readonly stream: string;
  readonly bytes: Buffer;
  readonly key: string;
}

/** A running blaster. */
export interface Blaster {
  /** ws://127.0.0.1:port */
  readonly wsUrl: string;
  /** Resolves when `n` connections covering every stream in `frames` are open. */
  waitForClients(frames: readonly BlastFrame[], timeoutMs?: number): Promise<void>;
  /**
   * Sends every frame in order (`ratePerSecond` 0 = as fast as the sockets drain), recording each
   * frame's send time (`process.hrtime.bigint()`) under its key. Resolves when all are written.
   */
  send(
    frames: readonly BlastFrame[],
    ratePerSecond: number,
    sentAt: Map<string, bigint>,
    signal?: AbortSignal,
  ): Promise<void>;
  close(): Promise<void>;
}

/** Starts a blaster on a free loopback port. */
export async function startBlaster(): Promise<Blaster> {
  const server: Server = createServer((_req, res) => {
    res.writeHead(404).end();
  });
  const wss = new WebSocketServer({ noServer: true });
  const byStream = new Map<string, WebSocket>();
  server.on("upgrade", (req, socket, head) => {
    const url = new URL(req.url ?? "/", "http://x");
    const streams = (url.searchParams.get("streams") ?? "").split("/").filter((s) => s.length > 0);
    wss.handleUpgrade(req, socket, head, (ws) => {
      for (const s of streams) byStream.set(s, ws);
      ws.on("close", () => {
        for (const s of streams) if (byStream.get(s) === ws) byStream.delete(s);
      });
    });
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  const port = (server.address() as AddressInfo).port;

  const drained = (ws: WebSocket) =>
    new Promise<void>((resolve) => {
      const check = () => (ws.bufferedAmount < 1 << 20 ? resolve() : setTimeout(check, 1));
      check();
    });

  return {
    wsUrl: `ws://127.0.0.1:${port}`,
    async waitForClients(frames, timeoutMs = 15_000) {
      const streams = new Set(frames.map((f) => f.stream));
      const deadline = Date.now() + timeoutMs;
      while ([...streams].some((s) => !byStream.has(s))) {
        if (Date.now() > deadline) throw new Error("ingest did not subscribe to every stream in time");
        await new Promise((r) => setTimeout(r, 20));
      }
    },
    async send(frames, ratePerSecond, sentAt, signal) {
      const start = process.hrtime.bigint();
      for (let i = 0; i < frames.length; i++) {
        if (signal?.aborted === true) return;
        const f = frames[i]!;
        const ws = byStream.get(f.stream);
        if (ws === undefined) throw new Error(`no connection subscribed to ${f.stream}`);
        if (ratePerSecond > 0) {
          const due = start + BigInt(Math.round((i * 1e9) / ratePerSecond));
          if (process.hrtime.bigint() < due) {
            const waitMs = Number(due - process.hrtime.bigint()) / 1e6;
            if (waitMs >= 1) await new Promise((r) => setTimeout(r, waitMs));
          }
        } else if ((i & 255) === 0 && ws.bufferedAmount >= 1 << 20) {
          await drained(ws);
        }
        sentAt.set(f.key, process.hrtime.bigint());
        ws.send(f.bytes);
      }
    },
    async close() {
      for (const ws of wss.clients) ws.terminate();
      wss.close();
      await new Promise<void>((r) => server.close(() => r()));
    },
  };
}

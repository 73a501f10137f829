/**
 * A minimal Binance combined-stream server for load: it accepts `/stream?streams=…` upgrades,
 * answers nothing else, and sends prebuilt frames to the connection subscribed to each frame's
 * stream — as fast as the sockets drain, or at a fixed rate — recording when each frame was handed
 * to the socket. It runs on a worker thread (blaster-worker.ts), so sending costs the measured
 * process's JavaScript thread nothing, as when the exchange is another machine. The simulator replays
 * recordings with Binance's full behaviour; this only exists to push a known load through ingest
 * with send times the benchmark can read.
 */
import { Worker } from "node:worker_threads";

/** One frame to send: the stream it belongs to and its combined-frame bytes. */
export interface BlastFrame {
  readonly stream: string;
  readonly bytes: Uint8Array;
}

/** Messages to the worker. */
export type ToWorker =
  | { type: "load"; frames: BlastFrame[] }
  | { type: "streams" }
  | { type: "send"; ratePerSecond: number }
  | { type: "close" };

/** Messages from the worker. */
export type FromWorker =
  | { type: "listening"; port: number }
  | { type: "loaded" }
  | { type: "streams"; streams: string[] }
  | { type: "sent"; start: bigint; sentAt: BigInt64Array }
  | { type: "error"; message: string }
  | { type: "closed" };

/** A running blaster. */
export interface Blaster {
  /** ws://127.0.0.1:port */
  readonly wsUrl: string;
  /** Hands the frames to the worker (untimed). */
  load(frames: readonly BlastFrame[]): Promise<void>;
  /** Resolves when connections cover every stream of the loaded frames. */
  waitForClients(timeoutMs?: number): Promise<void>;
  /**
   * Sends every loaded frame in order (`ratePerSecond` 0 = as fast as the sockets drain). Resolves
   * with the `process.hrtime.bigint()` when sending began and each frame's send time (same clock on
   * every thread), by frame index.
   */
  send(ratePerSecond: number): Promise<{ start: bigint; sentAt: BigInt64Array }>;
  close(): Promise<void>;
}

/** Starts a blaster on a free loopback port, on its own thread. */
export async function startBlaster(): Promise<Blaster> {
  // The worker is TypeScript: register tsx's loader in it first (workers do not inherit the parent's).
  const entry = new URL("./blaster-worker.ts", import.meta.url).href;
  const worker = new Worker(
    `import("tsx/esm/api").then(({ register }) => { register(); return import(${JSON.stringify(entry)}); });`,
    { eval: true },
  );
  const next = <T extends FromWorker["type"]>(type: T) =>
    new Promise<Extract<FromWorker, { type: T }>>((resolve, reject) => {
      const onMessage = (m: FromWorker) => {
        if (m.type === "error") {
          worker.off("message", onMessage);
          reject(new Error(`blaster: ${m.message}`));
        } else if (m.type === type) {
          worker.off("message", onMessage);
          resolve(m as Extract<FromWorker, { type: T }>);
        }
      };
      worker.on("message", onMessage);
    });
  const ask = (m: ToWorker) => worker.postMessage(m);
  const { port } = await Promise.race([
    next("listening"),
    new Promise<never>((_r, reject) => worker.once("error", reject)),
  ]);
  let streams = new Set<string>();
  return {
    wsUrl: `ws://127.0.0.1:${port}`,
    async load(frames) {
      streams = new Set(frames.map((f) => f.stream));
      const done = next("loaded");
      ask({ type: "load", frames: [...frames] });
      await done;
    },
    async waitForClients(timeoutMs = 15_000) {
      const deadline = Date.now() + timeoutMs;
      for (;;) {
        const reply = next("streams");
        ask({ type: "streams" });
        const open = new Set((await reply).streams);
        if ([...streams].every((s) => open.has(s))) return;
        if (Date.now() > deadline) throw new Error("ingest did not subscribe to every stream in time");
        await new Promise((r) => setTimeout(r, 20));
      }
    },
    async send(ratePerSecond) {
      const done = next("sent");
      ask({ type: "send", ratePerSecond });
      const { start, sentAt } = await done;
      return { start, sentAt };
    },
    async close() {
      const done = next("closed");
      ask({ type: "close" });
      await done;
      await worker.terminate();
    },
  };
}

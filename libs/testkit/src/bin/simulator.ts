#!/usr/bin/env node
/**
 * Runs the Binance simulator standalone:
 *
 *   npm run simulator -- --recording btcusdt [--port 18443] [--speed 1] [--loop] [--ping-interval-ms 20000]
 *
 * `--recording` takes `btcusdt`, `ten` (the shipped fixtures) or a path. Stops on SIGINT/SIGTERM.
 */
import { parseArgs } from "node:util";
import { readRecording } from "@l2flow/recording";
import { resolveRecordingPath, startSimulator, type Simulator } from "../simulator/index.js";

const USAGE = `usage: simulator --recording <btcusdt|ten|path> [--host 127.0.0.1] [--port 18443]
                 [--speed 1|10|max] [--loop] [--ping-interval-ms 20000]`;

function fail(message: string): never {
  console.error(`simulator: ${message}\n${USAGE}`);
  process.exit(2);
}

function parseNumber(name: string, text: string, allowMax = false): number {
  if (allowMax && /^(?:max|inf|infinity)$/i.test(text)) return Infinity;
  const n = Number(text);
  if (text.trim() === "" || Number.isNaN(n) || n < 0)
    fail(`--${name} must be a number >= 0, got ${JSON.stringify(text)}`);
  return n;
}

async function main(): Promise<void> {
  let values;
  try {
    ({ values } = parseArgs({
      options: {
        recording: { type: "string", default: "btcusdt" },
        host: { type: "string", default: "127.0.0.1" },
        port: { type: "string", default: "18443" },
        speed: { type: "string", default: "1" },
        loop: { type: "boolean", default: false },
        "ping-interval-ms": { type: "string", default: "20000" },
        help: { type: "boolean", short: "h", default: false },
      },
    }));
  } catch (err) {
    fail(err instanceof Error ? err.message : String(err));
  }
  if (values.help) {
    console.log(USAGE);
    return;
  }
  const path = resolveRecordingPath(values.recording);
  let simulator: Simulator;
  try {
    const recording = readRecording(path);
    simulator = await startSimulator({
      recording,
      host: values.host,
      port: parseNumber("port", values.port),
      speed: parseNumber("speed", values.speed, true),
      loop: values.loop,
      pingIntervalMs: parseNumber("ping-interval-ms", values["ping-interval-ms"]),
    });
  } catch (err) {
    console.error(`simulator: ${err instanceof Error ? err.message : String(err)}`);
    process.exit(1);
  }
  const { symbols, events } = simulator.recording;
  console.log(
    `simulator: replaying ${path} (${symbols.join(",")}, ${events.length} events) at speed ` +
      `${values.speed}${values.loop ? ", looping" : ""}\n` +
      `  WebSocket ${simulator.wsUrl}   e.g. ${simulator.wsUrl}/stream?streams=${symbols[0]?.toLowerCase() ?? "btcusdt"}@trade\n` +
      `  REST      ${simulator.restUrl}   e.g. ${simulator.restUrl}/api/v3/depth?symbol=${symbols[0] ?? "BTCUSDT"}&limit=5\n` +
      `Point l2flow at it:\n` +
      `  BINANCE_WS_URL=${simulator.wsUrl} BINANCE_REST_URL=${simulator.restUrl} SYMBOLS=${symbols.join(",")}`,
  );
  let stopping = false;
  const stop = (signal: string) => {
    if (stopping) return;
    stopping = true;
    console.log(`simulator: ${signal}, closing`);
    simulator.close().then(
      () => process.exit(0),
      (err: unknown) => {
        console.error(`simulator: close failed: ${String(err)}`);
        process.exit(1);
      },
    );
  };
  process.on("SIGINT", () => stop("SIGINT"));
  process.on("SIGTERM", () => stop("SIGTERM"));
  if (!values.loop) {
    await simulator.done;
    if (!stopping) console.log("simulator: end of recording (connections stay open; Ctrl-C to stop)");
  }
}

await main();

// Shared pieces of the CLI tests: an in-memory CliIo, a slice of a real recording, MD_RAW read back.
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { gunzipSync } from "node:zlib";
import type { Bus } from "@l2flow/bus";
import { STREAMS } from "@l2flow/contracts";
import { main, type CliIo } from "@l2flow/cli";
import { fixtures, readStream } from "@l2flow/testkit";

/** What a command printed, and its exit code. */
export interface Run {
  readonly code: number;
  readonly stdout: string;
  readonly stderr: string;
}

/** Runs `l2flow <argv>` in this process with captured output. */
export async function run(
  argv: readonly string[],
  options: { env?: Record<string, string>; signal?: AbortSignal; onStdout?: (chunk: string) => void } = {},
): Promise<Run> {
  let stdout = "";
  let stderr = "";
  const io: CliIo = {
    stdout: {
      write: (s) => {
        stdout += s;
        options.onStdout?.(s);
        return true;
      },
    },
    stderr: { write: (s) => ((stderr += s), true) },
    env: options.env ?? {},
    ...(options.signal !== undefined ? { signal: options.signal } : {}),
  };
  const code = await main(argv, io);
  return { code, stdout, stderr };
}

/** Writes the first `lines` lines of the BTCUSDT recording (hftbacktest text, with its snapshot) to `dir`. */
export function btcusdtSlice(dir: string, lines: number): string {
  const text = gunzipSync(readFileSync(fixtures.btcusdt)).toString("utf8");
  let end = 0;
  for (let i = 0; i < lines && end >= 0; i++) end = text.indexOf("\n", end + 1);
  const path = join(dir, "btcusdt-slice.txt");
  writeFileSync(path, text.slice(0, end < 0 ? text.length : end + 1));
  return path;
}

/** One stored MD_RAW message. */
export interface StoredRaw {
  readonly subject: string;
  readonly data: string;
  readonly msgId: string;
  readonly headers: Record<string, string>;
}

const decoder = new TextDecoder();

/** Every message of MD_RAW, in stream order. */
export async function readRaw(bus: Bus): Promise<StoredRaw[]> {
  return (await readStream(bus, STREAMS.raw, "md.raw.>")).map((m) => ({
    subject: m.subject,
    data: decoder.decode(m.data),
    msgId: m.msgId,
    headers: { ...m.headers },
  }));
}

/** Polls `check` until it holds or `timeoutMs` passes; returns its last value. */
export async function eventually<T>(
  read: () => Promise<T> | T,
  check: (v: T) => boolean,
  timeoutMs = 10_000,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await read();
    if (check(v) || Date.now() > deadline) return v;
    await new Promise((r) => setTimeout(r, 25));
  }
}

// Shared pieces of the CLI tests: an in-memory CliIo, a slice of a real recording, MD_RAW read back.
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { gunzipSync } from "node:zlib";
import type { Bus } from "@l2flow/bus";
import { HEADERS, STREAMS } from "@l2flow/contracts";
import { main, type CliIo } from "@l2flow/cli";
import { fixtures } from "@l2flow/testkit";

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

/** Every message of MD_RAW, in stream order. */
export async function readRaw(bus: Bus): Promise<StoredRaw[]> {
  const info = await bus.jsm.streams.info(STREAMS.raw);
  const total = info.state.messages;
  const out: StoredRaw[] = [];
  if (total === 0) return out;
  const consumer = await bus.js.consumers.get(STREAMS.raw, { filter_subjects: "md.raw.>" });
  const decoder = new TextDecoder();
  while (out.length < total) {
    const batch = await consumer.fetch({ max_messages: Math.min(1_000, total - out.length), expires: 2_000 });
    let got = 0;
    for await (const m of batch) {
      got++;
      const headers: Record<string, string> = {};
      for (const k of m.headers?.keys() ?? []) headers[k] = m.headers!.get(k);
      out.push({
        subject: m.subject,
        data: decoder.decode(m.data),
        msgId: headers[HEADERS.msgId] ?? "",
        headers,
      });
    }
    if (got === 0) break;
  }
  await consumer.delete().catch(() => undefined);
  return out;
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

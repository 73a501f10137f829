import { DedupeFilter } from "@l2flow/binance";
import { PublishQueue } from "@l2flow/bus";
import { normalizeSymbol } from "@l2flow/contracts";
import { readRecording, type Recording } from "@l2flow/recording";
import { L2flowError } from "@l2flow/runtime";
import { EXIT, sleep, UsageError } from "../io.js";
import { ProgressBar } from "../progress.js";
import { rawMessageOf } from "../raw.js";
import { ensureRawStream } from "../streams.js";
import { flag, stringOption, type CommandContext } from "./context.js";

/** Options of `l2flow replay`. */
export const replayOptions = {
  speed: { type: "string" },
  fast: { type: "boolean" },
  symbols: { type: "string" },
} as const;

/** Messages waiting for their ack before the replay waits. */
const MAX_PENDING = 8_192;

/**
 * `l2flow replay <recording>`: publishes a recording's frames and snapshots into MD_RAW exactly as
 * ingest stores them (subjects, payload bytes, message ids, headers), at the recorded pace × `--speed`
 * or as fast as JetStream acks (`--fast`). Ingest's rules apply: bookTicker and serverShutdown frames
 * are not stored, malformed frames are rejected, a frame seen twice is published once.
 */
export async function replay(ctx: CommandContext): Promise<number> {
  const [path, ...extra] = ctx.positionals;
  if (path === undefined)
    throw new UsageError("replay needs a recording file, e.g. l2flow replay btcusdt.gz");
  if (extra.length > 0) throw new UsageError(`replay takes one recording, got also: ${extra.join(" ")}`);
  const fast = flag(ctx, "fast");
  const speedText = stringOption(ctx, "speed");
  if (fast && speedText !== undefined) throw new UsageError("give --speed or --fast, not both");
  const speed = speedText === undefined ? 1 : Number(speedText);
  if (!Number.isFinite(speed) || speed <= 0)
    throw new UsageError(`--speed ${JSON.stringify(speedText)} is not a number > 0 (e.g. 1, 10, 0.5)`);
  const symbols = symbolSet(stringOption(ctx, "symbols"));
  const { io } = ctx;

  const recording = load(path);
  const events = recording.events.filter((e) => symbols === undefined || symbols.has(e.symbol));
  const bus = await ctx.connect();
  await ensureRawStream(bus);

  const counts = { pushed: 0, stored: 0, duplicates: 0, notStored: 0, rejected: 0, deduped: 0 };
  const queue = new PublishQueue(bus, {
    maxInFlight: 1_024,
    maxBytes: 512 * 1024 * 1024,
    onStored: (_item, duplicate) => (duplicate ? counts.duplicates++ : counts.stored++),
  });
  const dedupe = new DedupeFilter();
  const progress = new ProgressBar(io.stderr, events.length, "replay");
  const started = performance.now();
  const firstUs = events[0]?.receiveTimeUs ?? 0;
  const aborted = () => io.signal?.aborted === true;
  let done = 0;
  for (const event of events) {
    if (aborted()) break;
    if (!fast) {
      const waitMs = (event.receiveTimeUs - firstUs) / 1000 / speed - (performance.now() - started);
      if (waitMs > 1) await sleep(waitMs, io.signal);
      if (aborted()) break;
    }
    done++;
    progress.update(done);
    const raw = rawMessageOf(event);
    if ("skip" in raw) {
      if (raw.skip === "rejected") {
        counts.rejected++;
        if (counts.rejected <= 5) io.stderr.write(`rejected (as ingest would): ${raw.reason}\n`);
      } else counts.notStored++;
      continue;
    }
    if (raw.kind !== "snapshot" && dedupe.seen(raw.kind, raw.symbol, raw.id)) {
      counts.deduped++;
      continue;
    }
    while (queue.pending >= MAX_PENDING) await sleep(2);
    queue.push({ subject: raw.subject, data: raw.data, msgId: raw.msgId, headers: raw.headers });
    counts.pushed++;
  }
  await queue.close(60_000);
  progress.done();
  const failed = counts.pushed - counts.stored - counts.duplicates;
  const seconds = ((performance.now() - started) / 1000).toFixed(1);
  io.stderr.write(
    `replayed ${done} of ${events.length} events from ${path} in ${seconds} s: ${counts.stored} stored, ` +
      `${counts.duplicates} already in MD_RAW, ${counts.notStored} not stored by ingest (bookTicker), ` +
      `${counts.deduped} repeated, ${counts.rejected} rejected\n`,
  );
  if (failed > 0)
    throw new L2flowError(
      "REPLAY_INCOMPLETE",
      `${failed} messages were not acknowledged by JetStream (is NATS up? l2flow status shows MD_RAW)`,
      { retryable: true },
    );
  return aborted() ? EXIT.interrupted : EXIT.ok;
}

function load(path: string): Recording {
  try {
    return readRecording(path);
  } catch (err) {
    throw new L2flowError(
      "RECORDING_UNREADABLE",
      `cannot read the recording ${path}: ${err instanceof Error ? err.message : String(err)} ` +
        "(accepted: l2flow's own format as written by `l2flow record`, hftbacktest text/gzip, cryptofeed raw captures)",
      { cause: err },
    );
  }
}

/** `--symbols a,b` → upper-case set; undefined when not given. */
export function symbolSet(text: string | undefined): Set<string> | undefined {
  if (text === undefined) return undefined;
  const out = new Set<string>();
  for (const s of text
    .split(",")
    .map((x) => x.trim())
    .filter((x) => x.length > 0)) {
    try {
      out.add(normalizeSymbol(s));
    } catch (err) {
      throw new UsageError(`--symbols: ${(err as Error).message}`);
    }
  }
  if (out.size === 0) throw new UsageError("--symbols needs at least one symbol, e.g. BTCUSDT,ETHUSDT");
  return out;
}

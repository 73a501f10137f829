import { once } from "node:events";
import { createWriteStream } from "node:fs";
import type { Writable } from "node:stream";
import { finished } from "node:stream/promises";
import { createGzip } from "node:zlib";
import { EXCHANGE, rawSubjectParts, STREAMS } from "@l2flow/contracts";
import { formatRecordedEvent } from "@l2flow/recording";
import { L2flowError } from "@l2flow/runtime";
import { EXIT, parsePositiveInt, parseTime, UsageError } from "../io.js";
import { recordedEventOf } from "../raw.js";
import { readStream, type ReadStart } from "../reader.js";
import { flag, stringOption, type CommandContext } from "./context.js";
import { symbolSet } from "./replay.js";

/** Options of `l2flow record`. */
export const recordOptions = {
  since: { type: "string" },
  until: { type: "string" },
  follow: { type: "boolean" },
  symbols: { type: "string" },
  count: { type: "string" },
} as const;

/**
 * `l2flow record <file>`: writes MD_RAW to a recording in l2flow's format (gzip when the name ends in
 * .gz), which `l2flow replay`, `@l2flow/recording` and the simulator read. Live from now until Ctrl-C
 * (or `--until`, `--count`), or a stored range with `--since` [`--until`] (`--follow` goes on live).
 */
export async function record(ctx: CommandContext): Promise<number> {
  const [path, ...extra] = ctx.positionals;
  if (path === undefined) throw new UsageError("record needs an output file, e.g. l2flow record out.txt.gz");
  if (extra.length > 0) throw new UsageError(`record takes one output file, got also: ${extra.join(" ")}`);
  const sinceText = stringOption(ctx, "since");
  const untilText = stringOption(ctx, "until");
  const now = Date.now();
  const since = sinceText !== undefined ? parseTime(sinceText, "--since", now) : undefined;
  const until = untilText !== undefined ? parseTime(untilText, "--until", now) : undefined;
  if (since !== undefined && until !== undefined && until < since)
    throw new UsageError("--until is before --since");
  const follow = flag(ctx, "follow");
  if (follow && until !== undefined)
    throw new UsageError("--follow records until Ctrl-C; drop --until or --follow");
  if (follow && since === undefined)
    throw new UsageError("--follow goes with --since (without --since, record is live)");
  const symbols = symbolSet(stringOption(ctx, "symbols"));
  const count = parsePositiveInt(stringOption(ctx, "count"), "--count");
  const { io } = ctx;

  const bus = await ctx.connect();
  try {
    await bus.jsm.streams.info(STREAMS.raw);
  } catch (err) {
    throw new L2flowError("NO_RAW_STREAM", `this NATS has no ${STREAMS.raw} stream: nothing to record`, {
      cause: err,
    });
  }
  const only = symbols?.size === 1 ? [...symbols][0] : undefined;
  const filter = only !== undefined ? `md.raw.${EXCHANGE}.*.${only}` : `md.raw.${EXCHANGE}.>`;
  const live = since === undefined;
  const start: ReadStart = live ? { from: "now" } : { from: "time", timeMs: since };
  // A live recording with --until stops at that time even when nothing arrives.
  const signals = [
    io.signal,
    ...(until !== undefined && live ? [AbortSignal.timeout(Math.max(0, until - now))] : []),
  ];
  const signal = AbortSignal.any(signals.filter((s): s is AbortSignal => s !== undefined));

  const out = await openOutput(path);
  const counts = { frames: 0, snapshots: 0, skipped: 0 };
  try {
    for await (const m of readStream(bus, {
      stream: STREAMS.raw,
      filter,
      start,
      follow: live || follow,
      signal,
    })) {
      if (until !== undefined && m.time.getTime() > until) break;
      if (symbols !== undefined && !symbols.has(rawSubjectParts(m.subject)?.symbol ?? "")) continue;
      const event = recordedEventOf({
        subject: m.subject,
        data: m.data,
        header: (name) => m.headers?.get(name) || undefined,
        storedTimeMs: m.time.getTime(),
      });
      if (event === undefined) {
        counts.skipped++;
        continue;
      }
      if (!out.write(`${formatRecordedEvent(event)}\n`)) await once(out, "drain");
      if (event.type === "frame") counts.frames++;
      else counts.snapshots++;
      if (count !== undefined && counts.frames + counts.snapshots >= count) break;
    }
  } finally {
    out.end();
    await out.done;
  }
  io.stderr.write(
    `recorded ${counts.frames} frames and ${counts.snapshots} snapshots to ${path}` +
      (counts.skipped > 0 ? ` (${counts.skipped} status messages are not part of recordings)` : "") +
      "\n",
  );
  return EXIT.ok;
}

/** A file to write lines to (gzip-compressed for `.gz`); `done` resolves when it is flushed and closed. */
async function openOutput(path: string): Promise<Writable & { done: Promise<void> }> {
  const file = createWriteStream(path);
  try {
    await once(file, "open");
  } catch (err) {
    throw new L2flowError(
      "OUTPUT_UNWRITABLE",
      `cannot write ${path}: ${err instanceof Error ? err.message : String(err)}`,
      { cause: err },
    );
  }
  if (!path.endsWith(".gz")) return Object.assign(file, { done: finished(file) });
  const gzip = createGzip();
  gzip.pipe(file);
  return Object.assign(gzip, { done: finished(file) });
}

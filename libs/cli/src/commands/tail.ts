import type { JsMsg } from "@l2flow/bus";
import { payloadJson } from "../decode.js";
import { parsePositiveInt, parseTime, UsageError, writeLine, EXIT } from "../io.js";
import { headerRecord, readStream, type ReadStart } from "../reader.js";
import { streamsFor } from "../streams.js";
import { flag, stringOption, type CommandContext } from "./context.js";

/** Options of `l2flow tail`. */
export const tailOptions = {
  "from-start": { type: "boolean" },
  since: { type: "string" },
  count: { type: "string" },
} as const;

/** `l2flow tail <subject>`: prints messages as JSON lines, decoded by subject. */
export async function tail(ctx: CommandContext): Promise<number> {
  const [subject, ...extra] = ctx.positionals;
  if (subject === undefined) throw new UsageError("tail needs a subject, e.g. l2flow tail 'signal.>'");
  if (extra.length > 0) throw new UsageError(`tail takes one subject, got also: ${extra.join(" ")}`);
  checkSubject(subject);
  const fromStart = flag(ctx, "from-start");
  const sinceText = stringOption(ctx, "since");
  if (fromStart && sinceText !== undefined) throw new UsageError("give --from-start or --since, not both");
  const since = sinceText !== undefined ? parseTime(sinceText, "--since") : undefined;
  const count = parsePositiveInt(stringOption(ctx, "count"), "--count");
  const { io } = ctx;

  const bus = await ctx.connect();
  const { within, overlapping } = await streamsFor(bus, subject);
  // One stream holds every stored message of the subject (`md.raw.>` is wider than MD_RAW's
  // `md.raw.binance.>` but only MD_RAW overlaps it).
  const stream = within ?? (overlapping.length === 1 ? overlapping[0] : undefined);
  const history = fromStart || since !== undefined;
  if (history && stream === undefined) {
    throw new UsageError(
      overlapping.length > 1
        ? `${subject} spans the streams ${overlapping.join(", ")}; --from-start and --since read one stream at a time: ` +
            "tail a narrower subject (e.g. md.raw.>, md.window.>, signal.>)"
        : `no stream stores ${subject}, so it has no history: drop --from-start/--since to see live messages`,
    );
  }

  let printed = 0;
  if (stream !== undefined) {
    const start: ReadStart = fromStart
      ? { from: "start" }
      : since !== undefined
        ? { from: "time", timeMs: since }
        : { from: "now" };
    for await (const m of readStream(bus, {
      stream,
      filter: subject,
      start,
      follow: true,
      signal: io.signal,
    })) {
      await writeLine(io.stdout, storedLine(m, stream));
      if (count !== undefined && ++printed >= count) break;
    }
    return EXIT.ok;
  }
  // Stored by no stream (or spanning several): live messages from a plain subscription.
  const sub = bus.nc.subscribe(subject, count !== undefined ? { max: count } : {});
  const stop = () => sub.unsubscribe();
  io.signal?.addEventListener("abort", stop, { once: true });
  try {
    for await (const m of sub) {
      const meta = JSON.stringify({
        subject: m.subject,
        ...(m.headers ? { headers: headersOf(m.headers) } : {}),
      });
      await writeLine(io.stdout, withPayload(meta, payloadJson(m.subject, m.data)));
    }
  } finally {
    io.signal?.removeEventListener("abort", stop);
  }
  return EXIT.ok;
}

function storedLine(m: JsMsg, stream: string): string {
  const headers = headerRecord(m);
  const meta = JSON.stringify({
    subject: m.subject,
    stream,
    seq: m.seq,
    time: m.time.toISOString(),
    ...(headers !== undefined ? { headers } : {}),
  });
  return withPayload(meta, payloadJson(m.subject, m.data));
}

/** `{"a":1}` + payload JSON → `{"a":1,"payload":…}` without re-serialising the payload. */
function withPayload(meta: string, payload: string): string {
  return `${meta.slice(0, -1)},"payload":${payload}}`;
}

function headersOf(h: { keys(): string[]; get(k: string): string }): Record<string, string> {
  const out: Record<string, string> = {};
  for (const k of h.keys()) out[k] = h.get(k);
  return out;
}

function checkSubject(subject: string): void {
  const tokens = subject.split(".");
  const bad = tokens.some((t, i) => t === "" || /\s/.test(t) || (t === ">" && i !== tokens.length - 1));
  if (bad)
    throw new UsageError(
      `${JSON.stringify(subject)} is not a NATS subject: dot-separated tokens, * for one token, > only at the end (e.g. md.raw.binance.*.BTCUSDT)`,
    );
}

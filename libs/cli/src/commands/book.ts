import type { Bus } from "@l2flow/bus";
import {
  BookSnapshot,
  BUCKETS,
  bookKey,
  kvSubject,
  normalizeSymbol,
  STREAMS,
  subjects,
} from "@l2flow/contracts";
import { L2flowError } from "@l2flow/runtime";
import { EXIT, parsePositiveInt, UsageError, writeLine } from "../io.js";
import { flag, stringOption, type CommandContext } from "./context.js";

/** Options of `l2flow book`. */
export const bookOptions = {
  depth: { type: "string" },
  once: { type: "boolean" },
} as const;

/** How often the live view is redrawn at most. */
const REDRAW_MS = 100;

/** `l2flow book <SYMBOL>`: the top of the book, redrawn live (or printed once with --once). */
export async function book(ctx: CommandContext): Promise<number> {
  const [raw, ...extra] = ctx.positionals;
  if (raw === undefined) throw new UsageError("book needs a symbol, e.g. l2flow book BTCUSDT");
  if (extra.length > 0) throw new UsageError(`book takes one symbol, got also: ${extra.join(" ")}`);
  let symbol: string;
  try {
    symbol = normalizeSymbol(raw);
  } catch (err) {
    throw new UsageError((err as Error).message);
  }
  const depth = parsePositiveInt(stringOption(ctx, "depth"), "--depth") ?? 10;
  const { io } = ctx;
  const bus = await ctx.connect();
  const latest = await latestBook(bus, symbol);

  if (flag(ctx, "once")) {
    if (latest === undefined)
      throw new L2flowError(
        "BOOK_NOT_FOUND",
        `no book for ${symbol} yet: nothing on ${subjects.book(symbol)} (MD_NORM) nor in KV ${BUCKETS.book}. ` +
          "Is ingest collecting it and the normalizer running? (l2flow status shows the streams)",
      );
    await writeLine(io.stdout, renderBook(latest, depth));
    return EXIT.ok;
  }

  const tty = io.stdout.isTTY === true;
  const draw = async (b: BookSnapshot) => {
    const text = renderBook(b, depth);
    if (tty) io.stdout.write(`\x1b[H\x1b[2J${text}\n`);
    else await writeLine(io.stdout, `${text}\n`);
  };
  if (latest !== undefined) await draw(latest);
  else io.stderr.write(`waiting for the first book of ${symbol} on ${subjects.book(symbol)}…\n`);

  const sub = bus.nc.subscribe(subjects.book(symbol));
  const stop = () => sub.unsubscribe();
  io.signal?.addEventListener("abort", stop, { once: true });
  let pending: BookSnapshot | undefined;
  let drawing = Promise.resolve();
  const timer = setInterval(() => {
    if (pending === undefined) return;
    const b = pending;
    pending = undefined;
    drawing = drawing.then(() => draw(b));
  }, REDRAW_MS);
  try {
    for await (const m of sub) {
      try {
        pending = BookSnapshot.decode(m.data);
      } catch {
        io.stderr.write(`skipped an undecodable book on ${m.subject}\n`);
      }
    }
  } finally {
    clearInterval(timer);
    io.signal?.removeEventListener("abort", stop);
    await drawing;
  }
  return EXIT.ok;
}

/** The symbol's latest book: the last `md.book` message in MD_NORM, else KV `md_book`. */
export async function latestBook(bus: Bus, symbol: string): Promise<BookSnapshot | undefined> {
  const sources: [string, string][] = [
    [STREAMS.norm, subjects.book(symbol)],
    [`KV_${BUCKETS.book}`, kvSubject(BUCKETS.book, bookKey(symbol))],
  ];
  for (const [stream, subject] of sources) {
    const stored = await bus.jsm.streams.getMessage(stream, { last_by_subj: subject }).catch(() => null);
    if (stored === null || stored.data.length === 0) continue;
    try {
      return BookSnapshot.decode(stored.data);
    } catch {
      continue;
    }
  }
  return undefined;
}

/** Renders a book as a small table: header line, spread and mid, then `depth` levels a side. */
export function renderBook(b: BookSnapshot, depth: number): string {
  const eventTime = b.eventTimeUs > 0 ? new Date(Math.floor(b.eventTimeUs / 1000)).toISOString() : "-";
  const bestBid = b.bids[0];
  const bestAsk = b.asks[0];
  const lines = [
    `${b.symbol}  ${b.exchange}  update ${b.lastUpdateId}  epoch ${b.epoch}  event ${eventTime}`,
  ];
  if (bestBid !== undefined && bestAsk !== undefined) {
    const bid = Number(bestBid.price);
    const ask = Number(bestAsk.price);
    const decimals = Math.max(decimalsOf(bestBid.price), decimalsOf(bestAsk.price));
    lines.push(`spread ${(ask - bid).toFixed(decimals)}  mid ${((ask + bid) / 2).toFixed(decimals + 1)}`);
  }
  const rows = Math.min(depth, Math.max(b.bids.length, b.asks.length));
  const w = 16;
  lines.push(
    "",
    `${"BID QTY".padStart(w)} ${"BID".padStart(w)} | ${"ASK".padEnd(w)} ${"ASK QTY".padStart(w)}`,
  );
  for (let i = 0; i < rows; i++) {
    const bid = b.bids[i];
    const ask = b.asks[i];
    lines.push(
      `${(bid?.quantity ?? "").padStart(w)} ${(bid?.price ?? "").padStart(w)} | ${(ask?.price ?? "").padEnd(w)} ${(ask?.quantity ?? "").padStart(w)}`,
    );
  }
  return lines.join("\n");
}

function decimalsOf(price: string): number {
  const dot = price.indexOf(".");
  return dot < 0 ? 0 : price.length - dot - 1;
}

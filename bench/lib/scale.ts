/**
 * Many symbols from a few real ones: each copy of a recording gets its symbols renamed (`C07ZILUSDT`),
 * the `s` field of every frame rewritten to match, and its timeline compressed by `compress`; copies
 * are interleaved event by event, so the load is spread like a real many-symbol feed.
 */
import type { RecordedEvent, Recording } from "@l2flow/recording";

/** Options of `scaleRecording`. */
export interface ScaleOptions {
  /** Copies of the recording (symbols in total = copies × the recording's symbols). */
  readonly copies: number;
  /** Divide the timeline by this (2 = twice as fast). Default 1. */
  readonly compress?: number;
  /** Leave out these stream kinds (e.g. bookTicker, which ingest does not subscribe). */
  readonly dropKinds?: readonly string[];
}

/** A recording of `copies` renamed copies of `recording`. */
export function scaleRecording(recording: Recording, options: ScaleOptions): Recording {
  const compress = options.compress ?? 1;
  const drop = new Set(options.dropKinds ?? []);
  const t0 = recording.events.find((e) => e.type === "frame")?.receiveTimeUs ?? 0;
  const rename = (copy: number, symbol: string) => `C${String(copy).padStart(2, "0")}${symbol}`;
  const events: RecordedEvent[] = [];
  let lastTime = t0;
  for (const e of recording.events) {
    if (e.type === "frame") lastTime = e.receiveTimeUs;
    for (let c = 0; c < options.copies; c++) {
      const symbol = rename(c, e.symbol);
      if (e.type === "snapshot") {
        events.push({ ...e, symbol });
        continue;
      }
      if (drop.has(e.kind)) continue;
      const data = JSON.parse(e.data) as Record<string, unknown>;
      if (typeof data.s === "string") data.s = symbol;
      events.push({
        ...e,
        symbol,
        stream: `${symbol.toLowerCase()}@${e.kind}`,
        receiveTimeUs: t0 + Math.round((lastTime - t0) / compress),
        data: JSON.stringify(data),
      });
    }
  }
  const symbols: string[] = [];
  for (let c = 0; c < options.copies; c++) for (const s of recording.symbols) symbols.push(rename(c, s));
  return { format: recording.format, symbols, events };
}

/** Frames per second of a recording's market frames over its duration. */
export function frameRate(recording: Recording): number {
  const frames = recording.events.filter((e) => e.type === "frame");
  if (frames.length < 2) return 0;
  const span = (frames[frames.length - 1]!.receiveTimeUs - frames[0]!.receiveTimeUs) / 1e6;
  return frames.length / span;
}

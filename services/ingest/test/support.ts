// Shared pieces of ingest's tests: reading MD_RAW back, the recording's ids, metrics.
import { expect } from "vitest";
import type { Bus } from "@l2flow/bus";
import { STREAMS } from "@l2flow/contracts";
import type { Recording } from "@l2flow/recording";
import { createLogger } from "@l2flow/runtime";
import { readStream, scrapeMetric } from "@l2flow/testkit";

/** One stored MD_RAW message. */
export interface RawMessage {
  readonly subject: string;
  readonly json: Record<string, unknown>;
  readonly headers: Readonly<Record<string, string>>;
}

const decoder = new TextDecoder();

/** Every MD_RAW message under `filter`, from the start, until none is pending. */
export async function readRaw(bus: Bus, filter: string): Promise<RawMessage[]> {
  return (await readStream(bus, STREAMS.raw, filter)).map((m) => ({
    subject: m.subject,
    json: JSON.parse(decoder.decode(m.data)) as Record<string, unknown>,
    headers: m.headers,
  }));
}

/** Trade ids and diff final update ids of one symbol in a recording (each once). */
export function recordedIds(
  recording: Recording,
  symbol: string,
): { trades: number[]; aggTrades: number[]; diffs: number[] } {
  const trades = new Set<number>();
  const aggTrades = new Set<number>();
  const diffs = new Set<number>();
  for (const e of recording.events) {
    if (e.type !== "frame" || e.symbol !== symbol) continue;
    const o = JSON.parse(e.data) as { e?: string; t?: number; a?: number; u?: number };
    if (o.e === "trade") trades.add(o.t!);
    else if (o.e === "aggTrade") aggTrades.add(o.a!);
    else if (o.e === "depthUpdate") diffs.add(o.u!);
  }
  const sorted = (s: Set<number>) => [...s].sort((a, b) => a - b);
  return { trades: sorted(trades), aggTrades: sorted(aggTrades), diffs: sorted(diffs) };
}

/** Asserts `actual` holds every id of `expected` exactly once and nothing else. */
export function expectExactlyOnce(
  actual: readonly number[],
  expected: readonly number[],
  what: string,
): void {
  const counts = new Map<number, number>();
  for (const id of actual) counts.set(id, (counts.get(id) ?? 0) + 1);
  const twice = [...counts].filter(([, n]) => n > 1).map(([id]) => id);
  const want = new Set(expected);
  const missing = expected.filter((id) => !counts.has(id));
  const extra = [...counts.keys()].filter((id) => !want.has(id));
  expect({
    what,
    twice: twice.slice(0, 10),
    missing: missing.slice(0, 10),
    extra: extra.slice(0, 10),
  }).toEqual({
    what,
    twice: [],
    missing: [],
    extra: [],
  });
  expect(actual.length).toBe(expected.length);
}

/** Ids of the stored frames of one kind (`t`, `a` or `u`). */
export function idsOf(messages: readonly RawMessage[], field: "t" | "a" | "u"): number[] {
  return messages.map((m) => m.json[field] as number);
}

/** Sum of a metric's samples (all label sets, or those with `labels`) from a service's `/metrics`. */
export const metric = scrapeMetric;

/** A pino logger writing into an array. */
export function captureLogs() {
  const lines: string[] = [];
  return {
    lines,
    logger: createLogger({
      service: "ingest-test",
      level: "info",
      destination: { write: (s: string) => void lines.push(s) },
    }),
  };
}

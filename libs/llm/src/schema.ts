import { z } from "zod";
import { Pressure, Sentiment } from "@l2flow/contracts";

/** Longest rationale kept. */
export const MAX_RATIONALE_CHARS = 280;

/** The JSON an LLM must answer with. */
export const SignalAnswerSchema = z
  .object({
    sentiment: z.enum(["bearish", "neutral", "bullish"]),
    confidence: z.number().min(0).max(1),
    pressure: z.enum(["sell", "balanced", "buy"]),
    rationale: z.string().trim().min(1).max(MAX_RATIONALE_CHARS),
  })
  .strict();

/** A validated answer. */
export type SignalAnswer = z.infer<typeof SignalAnswerSchema>;

/** Parses model text as a `SignalAnswer`: JSON.parse and the schema only, never evaluated. */
export function parseAnswer(text: string): { ok: true; answer: SignalAnswer } | { ok: false; error: string } {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    return { ok: false, error: "the answer is not valid JSON" };
  }
  const r = SignalAnswerSchema.safeParse(value);
  if (r.success) return { ok: true, answer: r.data };
  return {
    ok: false,
    error: r.error.issues.map((i) => `${i.path.join(".") || "(root)"}: ${i.message}`).join("; "),
  };
}

/** Maps answer strings to the protobuf enums. */
export function toSentiment(s: SignalAnswer["sentiment"]): Sentiment {
  return s === "bullish"
    ? Sentiment.SENTIMENT_BULLISH
    : s === "bearish"
      ? Sentiment.SENTIMENT_BEARISH
      : Sentiment.SENTIMENT_NEUTRAL;
}

/** Maps answer strings to the protobuf enums. */
export function toPressure(p: SignalAnswer["pressure"]): Pressure {
  return p === "buy"
    ? Pressure.PRESSURE_BUY
    : p === "sell"
      ? Pressure.PRESSURE_SELL
      : Pressure.PRESSURE_BALANCED;
}

/** A batch answer: each requested symbol's answer, or why it was rejected. */
export type BatchAnswer = ReadonlyMap<
  string,
  { ok: true; answer: SignalAnswer } | { ok: false; error: string }
>;

/**
 * The parser for a batch: the answer must be a JSON object keyed by symbol (else the whole answer is
 * rejected and repaired once); each requested symbol is then checked on its own, so one bad or
 * missing entry costs that symbol alone a fallback.
 */
export function parseBatchAnswer(
  symbols: readonly string[],
): (text: string) => { ok: true; answer: BatchAnswer } | { ok: false; error: string } {
  return (text) => {
    let value: unknown;
    try {
      value = JSON.parse(text);
    } catch {
      return { ok: false, error: "the answer is not valid JSON" };
    }
    if (typeof value !== "object" || value === null || Array.isArray(value))
      return { ok: false, error: "expected a JSON object keyed by symbol" };
    const o = value as Record<string, unknown>;
    const out = new Map<string, { ok: true; answer: SignalAnswer } | { ok: false; error: string }>();
    for (const s of symbols) {
      if (!(s in o)) {
        out.set(s, { ok: false, error: `no answer for ${s}` });
        continue;
      }
      const r = SignalAnswerSchema.safeParse(o[s]);
      out.set(
        s,
        r.success
          ? { ok: true, answer: r.data }
          : {
              ok: false,
              error: r.error.issues.map((i) => `${i.path.join(".") || "(root)"}: ${i.message}`).join("; "),
            },
      );
    }
    return { ok: true, answer: out };
  };
}

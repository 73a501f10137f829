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

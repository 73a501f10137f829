/** USD per million tokens, input and output. */
export interface ModelPrice {
  readonly inputPerMillion: number;
  readonly outputPerMillion: number;
}

/** Prices per model (override per deployment): GPT-4.1, Claude Sonnet 4, Gemini 2.5 Flash, DeepSeek V3.2. */
export const DEFAULT_PRICES: Readonly<Record<string, ModelPrice>> = {
  "gpt-4.1": { inputPerMillion: 2.5, outputPerMillion: 8.0 },
  "claude-sonnet-4": { inputPerMillion: 3.0, outputPerMillion: 15.0 },
  "gemini-2.5-flash": { inputPerMillion: 0.35, outputPerMillion: 2.5 },
  "deepseek-v3.2": { inputPerMillion: 0.14, outputPerMillion: 0.42 },
};

/** Cost in USD of one call; unknown models cost 0 (and should be added to the table). */
export function costUsd(
  prices: Readonly<Record<string, ModelPrice>>,
  model: string,
  promptTokens: number,
  completionTokens: number,
): number {
  const p = prices[model];
  if (p === undefined) return 0;
  return (promptTokens * p.inputPerMillion + completionTokens * p.outputPerMillion) / 1_000_000;
}

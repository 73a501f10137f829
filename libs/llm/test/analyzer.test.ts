import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { DegradedReason, Sentiment, type Window } from "@l2flow/contracts";
import {
  HolySheepClient,
  retryAfterMs,
  ruleAnswer,
  SignalAnalyzer,
  type SignalAnalyzerOptions,
} from "@l2flow/llm";
import { defaultFakeSignal, startFakeLlm, type FakeLlm } from "@l2flow/testkit";

const KEY = "sk-test-very-secret-key-42";
const good = { sentiment: "bullish", confidence: 0.8, pressure: "buy", rationale: "bids stack up" };

function window(start = 60_000, over: Partial<Window> = {}): Window {
  return {
    exchange: "binance",
    symbol: "BTCUSDT",
    interval: "1s",
    startTimeMs: start,
    endTimeMs: start + 1000,
    open: 100,
    high: 101,
    low: 99,
    close: 100.5,
    volume: 3,
    quoteVolume: 301,
    vwap: 100.33,
    tradeCount: 7,
    takerBuyVolume: 2,
    takerSellVolume: 1,
    tradeFlowImbalance: 1 / 3,
    orderFlowImbalance: 1.5,
    spreadMean: 0.01,
    spreadMax: 0.02,
    spreadLast: 0.01,
    mid: 100.5,
    microprice: 100.51,
    bookImbalance: 0.4,
    bookLevels: 10,
    depth: [{ bps: 10, bidQuantity: 5, askQuantity: 3 }],
    realizedVolatility: 0.0001,
    bids: [],
    asks: [],
    lastUpdateId: 1,
    bookUpdateCount: 10,
    complete: true,
    lateEventCount: 0,
    closeReason: 1,
    epoch: 1,
    ...over,
  };
}

describe("SignalAnalyzer against the fake OpenAI server", () => {
  let fake: FakeLlm;
  const make = (o: Partial<SignalAnalyzerOptions> = {}, timeoutMs = 2_000) =>
    new SignalAnalyzer({
      llm: new HolySheepClient({ apiKey: KEY, baseURL: fake.url, timeoutMs }),
      retryBaseMs: 10,
      ...o,
    });
  const outputs: unknown[] = [];

  beforeAll(async () => {
    fake = await startFakeLlm();
  });
  beforeEach(() => {
    fake.setScript([]);
    fake.requests.length = 0;
  });
  afterAll(async () => {
    await fake.close();
    // The key never leaks into anything we produced.
    expect(JSON.stringify(outputs)).not.toContain(KEY);
  });

  it("records the model's fields, usage and cost", async () => {
    fake.setScript([{ kind: "json", body: good }]);
    const s = await make().analyze(window(), [window(59_000)]);
    outputs.push(s);
    expect(s).toMatchObject({
      provider: "holysheep",
      model: "deepseek-v3.2",
      degraded: false,
      sentiment: Sentiment.SENTIMENT_BULLISH,
      confidence: 0.8,
      rationale: "bids stack up",
    });
    expect(s.promptTokens).toBeGreaterThan(50);
    expect(s.completionTokens).toBeGreaterThan(5);
    expect(s.costUsd).toBeCloseTo((s.promptTokens * 0.14 + s.completionTokens * 0.42) / 1e6, 12);
    const req = fake.requests[0]!;
    expect(req.headers.authorization).toBe(`Bearer ${KEY}`);
    expect(req.body.response_format).toEqual({ type: "json_object" });
    expect(req.body.messages?.[1]?.content).toContain("Previous windows");
  });

  it("repairs an invalid answer once, then degrades to the rules", async () => {
    fake.setScript([
      { kind: "text", content: "I think up" },
      { kind: "json", body: good },
    ]);
    const repaired = await make().analyze(window(), []);
    expect(repaired.degraded).toBe(false);
    expect(fake.requests).toHaveLength(2);
    expect(fake.requests[1]!.body.messages?.at(-1)?.content).toMatch(/rejected/);

    fake.setScript([
      { kind: "text", content: "not json" },
      { kind: "json", body: { ...good, confidence: 3 } },
    ]);
    const s = await make().analyze(window(), []);
    outputs.push(s);
    expect(s).toMatchObject({
      degraded: true,
      degradedReason: DegradedReason.DEGRADED_REASON_INVALID_ANSWER,
      provider: "rules",
    });
    expect(s.degradedDetail).toMatch(/confidence/);
    expect(s.sentiment).toBe(
      Sentiment[`SENTIMENT_${ruleAnswer(window()).sentiment.toUpperCase()}` as keyof typeof Sentiment],
    );
    expect(fake.requests).toHaveLength(4);
  });

  it("honours Retry-After on 429", async () => {
    fake.setScript([
      { kind: "status", status: 429, retryAfterS: 1 },
      { kind: "json", body: good },
    ]);
    const s = await make().analyze(window(), []);
    expect(s.degraded).toBe(false);
    const [a, b] = fake.requests;
    expect(b!.atMs - a!.atMs).toBeGreaterThanOrEqual(950);
  });

  it("honours Retry-After as an HTTP date, and on a 503", async () => {
    fake.setScript([
      { kind: "status", status: 503, headers: { "retry-after": new Date(Date.now() + 2_000).toUTCString() } },
      { kind: "json", body: good },
    ]);
    const s = await make().analyze(window(), []);
    expect(s.degraded).toBe(false);
    const [a, b] = fake.requests;
    expect(b!.atMs - a!.atMs).toBeGreaterThanOrEqual(900); // the date has whole seconds
    expect(retryAfterMs(new Headers({ "retry-after": "" }))).toBeUndefined();
    expect(retryAfterMs(new Headers({ "retry-after": "3" }))).toBe(3_000);
    expect(retryAfterMs(new Headers({ "retry-after-ms": "250", "retry-after": "3" }))).toBe(250);
    expect(retryAfterMs(new Headers({ "retry-after": "soon" }))).toBeUndefined();
  });

  it("takes a completion without a message for an invalid answer, paid for, not a connection failure", async () => {
    const empty = {
      kind: "status",
      status: 200,
      body: {
        id: "x",
        object: "chat.completion",
        model: "deepseek-v3.2",
        choices: [{ index: 0, message: null, finish_reason: "content_filter" }],
        usage: { prompt_tokens: 40, completion_tokens: 0, total_tokens: 40 },
      },
    } as const;
    fake.setScript([empty, empty]);
    const s = await make().analyze(window(), []);
    expect(s).toMatchObject({
      degraded: true,
      degradedReason: DegradedReason.DEGRADED_REASON_INVALID_ANSWER,
    });
    expect(fake.requests).toHaveLength(2); // the answer and its repair, no retries
    expect(s.promptTokens).toBe(80);
  });

  it("counts the tokens of an answer whose repair call failed", async () => {
    fake.setScript([
      { kind: "text", content: "I think up" },
      { kind: "status", status: 500 },
      { kind: "json", body: good },
    ]);
    const calls: { outcome: string; promptTokens: number }[] = [];
    const s = await make({ onLlmCall: (e) => calls.push(e) }).analyze(window(), []);
    expect(s.degraded).toBe(false);
    expect(calls.map((c) => c.outcome)).toEqual(["SERVER_ERROR", "ok"]);
    expect(calls[0]!.promptTokens).toBeGreaterThan(50);
  });

  it("opens the breaker after repeated 500s, then closes it after the cool-down", async () => {
    fake.setDefault({ kind: "status", status: 500 });
    const states: string[] = [];
    const a = make({
      maxRetries: 0,
      breakerFailures: 3,
      breakerCooldownMs: 300,
      onBreakerChange: (st) => states.push(st),
    });
    for (let i = 0; i < 3; i++)
      expect((await a.analyze(window(), [])).degradedReason).toBe(DegradedReason.DEGRADED_REASON_LLM_ERROR);
    expect(a.breakerState).toBe("open");
    const before = fake.requests.length;
    const open = await a.analyze(window(), []);
    outputs.push(open);
    expect(open.degradedReason).toBe(DegradedReason.DEGRADED_REASON_CIRCUIT_OPEN);
    expect(fake.requests.length).toBe(before);
    fake.setDefault({ kind: "json", body: good });
    await new Promise((r) => setTimeout(r, 350));
    expect(a.breakerState).toBe("half-open");
    expect((await a.analyze(window(), [])).degraded).toBe(false);
    expect(a.breakerState).toBe("closed");
    expect(states).toEqual(["open", "closed"]);
  });

  it("degrades with TIMEOUT when the answer is too slow", async () => {
    fake.setScript([{ kind: "slow", delayMs: 2_000, then: { kind: "json", body: good } }]);
    const s = await make({ maxRetries: 0 }, 200).analyze(window(), []);
    expect(s).toMatchObject({ degraded: true, degradedReason: DegradedReason.DEGRADED_REASON_TIMEOUT });
  });

  it("degrades with BUDGET_EXHAUSTED once the budget is spent", async () => {
    const a = make({ budget: { requestsPerMinute: 2 } });
    expect((await a.analyze(window(), [])).degraded).toBe(false);
    expect((await a.analyze(window(), [])).degraded).toBe(false);
    const s = await a.analyze(window(), []);
    expect(s).toMatchObject({
      degraded: true,
      degradedReason: DegradedReason.DEGRADED_REASON_BUDGET_EXHAUSTED,
    });
    expect(fake.requests).toHaveLength(2);
  });

  it("checks the breaker again when a queued call gets its turn: one request when the first opens it", async () => {
    fake.setDefault({ kind: "slow", delayMs: 150, then: { kind: "status", status: 500 } });
    const a = make({ concurrency: 1, maxQueued: 4, breakerFailures: 1, maxRetries: 0 });
    const signals = await Promise.all(Array.from({ length: 5 }, (_, i) => a.analyze(window(i * 1_000), [])));
    expect(fake.requests).toHaveLength(1);
    expect(signals.map((s) => s.degradedReason)).toEqual([
      DegradedReason.DEGRADED_REASON_LLM_ERROR,
      ...Array.from({ length: 4 }, () => DegradedReason.DEGRADED_REASON_CIRCUIT_OPEN),
    ]);
    fake.setDefault(defaultFakeSignal);
  });

  it("keeps at most `concurrency` calls in flight", async () => {
    fake.setDefault({ kind: "slow", delayMs: 100, then: { kind: "json", body: good } });
    const a = make({ concurrency: 2 });
    const all = await Promise.all(Array.from({ length: 6 }, (_, i) => a.analyze(window(i * 1000), [])));
    expect(all.every((s) => !s.degraded)).toBe(true);
    expect(fake.maxInFlight).toBeLessThanOrEqual(2);
    fake.setDefault({ kind: "json", body: good });
  });

  it("analyses several symbols in one call, splits the usage, and re-asks only for a symbol left out", async () => {
    const items = ["AAAUSDT", "BBBUSDT", "CCCUSDT"].map((symbol) => ({
      window: window(60_000, { symbol }),
      history: [window(59_000, { symbol })],
    }));
    // The batch answer leaves CCCUSDT out and gets BBBUSDT's confidence wrong; each gets its own call.
    fake.setScript([
      { kind: "json", body: { AAAUSDT: good, BBBUSDT: { ...good, confidence: 7 } } },
      { kind: "json", body: { ...good, sentiment: "bearish" } },
      { kind: "json", body: { ...good, sentiment: "neutral" } },
    ]);
    const signals = await make().analyzeBatch(items);
    outputs.push(signals);
    expect(signals.map((x) => x.symbol)).toEqual(["AAAUSDT", "BBBUSDT", "CCCUSDT"]);
    expect(signals.every((x) => !x.degraded && x.provider === "holysheep")).toBe(true);
    expect(fake.requests).toHaveLength(3);
    const batchPrompt = fake.requests[0]!.body.messages?.[1]?.content ?? "";
    for (const symbol of ["AAAUSDT", "BBBUSDT", "CCCUSDT"]) expect(batchPrompt).toContain(symbol);
    expect(fake.requests[0]!.body.max_tokens).toBe(900);
    // AAAUSDT carries the whole batch call's usage (it was the only symbol answered by it).
    expect(signals[0]!.sentiment).toBe(Sentiment.SENTIMENT_BULLISH);
    expect(signals[0]!.promptTokens).toBeGreaterThan(signals[1]!.promptTokens);
    expect(new Set(signals.slice(1).map((x) => x.sentiment))).toEqual(
      new Set([Sentiment.SENTIMENT_BEARISH, Sentiment.SENTIMENT_NEUTRAL]),
    );
  });

  it("splits a batch call's tokens and cost evenly when every symbol is answered", async () => {
    const items = ["AAAUSDT", "BBBUSDT"].map((symbol) => ({
      window: window(60_000, { symbol }),
      history: [],
    }));
    fake.setScript([{ kind: "json", body: { AAAUSDT: good, BBBUSDT: good } }]);
    const [a, b] = await make().analyzeBatch(items);
    expect(fake.requests).toHaveLength(1);
    expect(Math.abs(a!.promptTokens - b!.promptTokens)).toBeLessThanOrEqual(1);
    expect(a!.costUsd).toBeCloseTo(b!.costUsd, 12);
    expect(a!.costUsd).toBeGreaterThan(0);
  });

  it("degrades every window of a batch whose answer is not JSON even after the repair", async () => {
    const items = ["AAAUSDT", "BBBUSDT"].map((symbol) => ({
      window: window(60_000, { symbol }),
      history: [],
    }));
    fake.setScript([
      { kind: "text", content: "up" },
      { kind: "text", content: "still up" },
    ]);
    const signals = await make().analyzeBatch(items);
    expect(signals.map((x) => x.degradedReason)).toEqual([
      DegradedReason.DEGRADED_REASON_INVALID_ANSWER,
      DegradedReason.DEGRADED_REASON_INVALID_ANSWER,
    ]);
    expect(fake.requests).toHaveLength(2);
  });

  it("runs on the rules, marked not configured, without a key", async () => {
    const s = await new SignalAnalyzer().analyze(window(), []);
    expect(s).toMatchObject({
      provider: "rules",
      degraded: true,
      degradedReason: DegradedReason.DEGRADED_REASON_NOT_CONFIGURED,
    });
  });

  it("the rule provider's confidence is a number in [0, 1] whatever the window holds", () => {
    for (const over of [
      { depth: [], orderFlowImbalance: Number.NaN },
      { depth: [], orderFlowImbalance: Number.POSITIVE_INFINITY },
      { bookImbalance: Number.NaN, tradeFlowImbalance: Number.NaN, vwap: Number.NaN, mid: Number.NaN },
    ]) {
      const { confidence } = ruleAnswer(window(0, over));
      expect(confidence).toBeGreaterThanOrEqual(0);
      expect(confidence).toBeLessThanOrEqual(1);
    }
  });

  it("builds a prompt for a window whose start is past the range of a date", async () => {
    fake.setScript([{ kind: "json", body: good }]);
    const s = await make().analyze(window(9e15), [window(8.9e15)]);
    expect(s.degraded).toBe(false);
    expect(fake.requests[0]!.body.messages?.[1]?.content).toContain("9000000000000000");
  });

  it("the rule provider is deterministic", () => {
    expect(ruleAnswer(window())).toEqual(ruleAnswer(window()));
    expect(ruleAnswer(window()).sentiment).toBe("bullish");
    expect(
      ruleAnswer(
        window(0, { bookImbalance: -0.6, tradeFlowImbalance: -0.7, orderFlowImbalance: -4, close: 99 }),
      ).sentiment,
    ).toBe("bearish");
  });
});

import type { Window } from "@l2flow/contracts";
import type { SignalAnswer } from "./schema.js";

/**
 * The deterministic rule provider: a weighted score of book imbalance, trade-flow imbalance,
 * order-flow imbalance (normalised by volume), VWAP drift against the close, widened by spread.
 * Same window in, same answer out.
 */
export function ruleAnswer(w: Window): SignalAnswer {
  const drivers: [string, number][] = [];
  const book = clamp(w.bookImbalance);
  const flow = clamp(w.tradeFlowImbalance);
  const depthScale =
    w.depth.length > 0
      ? w.depth[w.depth.length - 1]!.bidQuantity + w.depth[w.depth.length - 1]!.askQuantity
      : 0;
  const flowOfBook = Number.isFinite(w.orderFlowImbalance) ? w.orderFlowImbalance : 0;
  const ofi = depthScale > 0 ? clamp(flowOfBook / depthScale) : Math.sign(flowOfBook) * 0.2;
  const drift = w.vwap > 0 && w.close > 0 ? clamp(((w.close - w.vwap) / w.vwap) * 1_000) : 0;
  drivers.push(
    ["book imbalance", book * 0.35],
    ["trade flow", flow * 0.35],
    ["order flow", ofi * 0.2],
    ["VWAP drift", drift * 0.1],
  );
  const score = drivers.reduce((s, [, v]) => s + v, 0);
  const spreadBps = w.mid > 0 ? (w.spreadMean / w.mid) * 10_000 : 0;
  // Wide spreads and incomplete data make any reading less reliable.
  const penalty = (spreadBps > 10 ? 0.5 : 1) * (w.complete ? 1 : 0.6);
  const confidence = round(Math.min(0.95, Math.abs(score) * penalty + 0.05));
  const sentiment = score > 0.15 ? "bullish" : score < -0.15 ? "bearish" : "neutral";
  const pressureScore = flow * 0.6 + ofi * 0.4;
  const pressure = pressureScore > 0.1 ? "buy" : pressureScore < -0.1 ? "sell" : "balanced";
  const top = [...drivers].sort((a, b) => Math.abs(b[1]) - Math.abs(a[1])).slice(0, 2);
  const rationale = `rules: ${top.map(([n, v]) => `${n} ${v >= 0 ? "+" : ""}${round(v)}`).join(", ")}; score ${round(score)}${w.complete ? "" : "; incomplete window"}`;
  return { sentiment, confidence, pressure, rationale: rationale.slice(0, 280) };
}

function clamp(v: number): number {
  return Number.isFinite(v) ? Math.max(-1, Math.min(1, v)) : 0;
}

function round(v: number): number {
  return Math.round(v * 1000) / 1000;
}

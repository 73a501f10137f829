// The alerting rules: the compose file and the Kubernetes PrometheusRule hold the same ones, they use
// only metrics and labels the services define, docs/operations.md explains each, and each fires on
// the data it is about, evaluated by Prometheus's own rule engine (`promtool test rules`, Debian's
// `prometheus` package; CI installs it).
import { execFileSync, spawnSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { parse, parseAllDocuments, stringify } from "yaml";
import { checkExpr, definedMetrics, root } from "./metrics.js";

interface Rule {
  alert: string;
  expr: string;
  for?: string;
  labels: Record<string, string>;
  annotations: { summary: string; description: string };
}
interface Group {
  name: string;
  rules: Rule[];
}

const alertsFile = join(root, "deploy/prometheus/alerts.yml");
const groups = (parse(readFileSync(alertsFile, "utf8")) as { groups: Group[] }).groups;
const rules = groups.flatMap((g) => g.rules);
const byName = new Map(rules.map((r) => [r.alert, r]));

/** promtool's path, or undefined when it is not installed. */
function promtool(): string | undefined {
  const r = spawnSync("promtool", ["--version"], { encoding: "utf8" });
  return r.status === 0 ? "promtool" : undefined;
}

/** A series of samples one minute apart, in promtool's notation (`'0+1x10'`, `'1 1 0'`). */
interface Series {
  readonly series: string;
  readonly values: string;
}

/** One alert's case: input series, and at `at` the alerts expected (none: `firing` empty). */
interface AlertCase {
  readonly alert: string;
  readonly input: readonly Series[];
  /** Minutes from the first sample. */
  readonly at: number;
  /** Each firing alert's labels (besides `severity`, added from the rule) and its summary. */
  readonly firing: readonly { labels: Record<string, string>; summary: string }[];
  readonly name?: string;
}

const I = 'service="ingest",instance="i0"';
const N = 'service="normalizer",instance="n0"';
const A = 'service="analyzer",instance="a0"';
const ingest = { service: "ingest", instance: "i0" };
const normalizer = { service: "normalizer", instance: "n0" };
const analyzer = { service: "analyzer", instance: "a0" };
const lagBucket = (le: string, values: string) => ({
  series: `l2flow_ingest_event_lag_seconds_bucket{${I},le="${le}"}`,
  values,
});

const CASES: readonly AlertCase[] = [
  {
    alert: "L2flowServiceDown",
    input: [{ series: 'up{service="normalizer",instance="n0:9464",job="l2flow"}', values: "1 1 0 0 0 0 0" }],
    at: 5,
    firing: [
      {
        labels: { service: "normalizer", instance: "n0:9464", job: "l2flow" },
        summary: "normalizer n0:9464 cannot be scraped",
      },
    ],
  },
  {
    name: "down for less than 2 minutes",
    alert: "L2flowServiceDown",
    input: [{ series: 'up{service="normalizer",instance="n0:9464",job="l2flow"}', values: "1 1 0 0 0 0 0" }],
    at: 3,
    firing: [],
  },
  {
    alert: "L2flowIngestFramesDropped",
    input: [
      { series: `l2flow_ingest_frames_dropped_total{${I},reason="overflow"}`, values: "0 0 0 40 40 40" },
    ],
    at: 4,
    firing: [{ labels: { ...ingest, reason: "overflow" }, summary: "ingest i0 dropped frames (overflow)" }],
  },
  {
    alert: "L2flowIngestNoConnection",
    input: [{ series: `l2flow_ingest_connections_up{${I}}`, values: "4 4 0 0 0" }],
    at: 3,
    firing: [{ labels: ingest, summary: "ingest i0 has no Binance connection up" }],
  },
  {
    alert: "L2flowIngestBuffering",
    input: [
      { series: `l2flow_ingest_buffer_bytes{${I}}`, values: "0 0 2e7 2e7 2e7 2e7" },
      { series: `l2flow_ingest_buffer_limit_bytes{${I}}`, values: "67108864+0x5" },
    ],
    at: 4,
    firing: [{ labels: ingest, summary: "ingest i0 has frames waiting for NATS" }],
  },
  {
    name: "frames waiting, but not throughout 2 minutes",
    alert: "L2flowIngestBuffering",
    input: [
      { series: `l2flow_ingest_buffer_bytes{${I}}`, values: "0 0 2e7 2e7 0 2e7" },
      { series: `l2flow_ingest_buffer_limit_bytes{${I}}`, values: "67108864+0x5" },
    ],
    at: 5,
    firing: [],
  },
  {
    name: "a quarter of a larger buffer not reached",
    alert: "L2flowIngestBuffering",
    input: [
      { series: `l2flow_ingest_buffer_bytes{${I}}`, values: "0 0 2e7 2e7 2e7 2e7" },
      { series: `l2flow_ingest_buffer_limit_bytes{${I}}`, values: "268435456+0x5" },
    ],
    at: 4,
    firing: [],
  },
  {
    alert: "L2flowIngestReconnectsFrequent",
    input: [{ series: `l2flow_ingest_reconnects_total{${I}}`, values: "0+1x15" }],
    at: 15,
    firing: [{ labels: ingest, summary: "ingest i0 lost 15 connections in 15 minutes" }],
  },
  {
    alert: "L2flowIngestRestBanned",
    input: [
      { series: `l2flow_ingest_rest_rate_limited_total{${I},status="418"}`, values: "0 0 1 1" },
      { series: `l2flow_ingest_rest_rate_limited_total{${I},status="429"}`, values: "0 0 0 0" },
    ],
    at: 3,
    firing: [{ labels: ingest, summary: "ingest i0: Binance answered 418 (IP banned)" }],
  },
  {
    alert: "L2flowIngestRestRateLimited",
    input: [{ series: `l2flow_ingest_rest_rate_limited_total{${I},status="429"}`, values: "0 0 2 2" }],
    at: 3,
    firing: [{ labels: ingest, summary: "ingest i0: Binance answered 429 (request weight exceeded)" }],
  },
  {
    alert: "L2flowIngestTradesUnrecoverable",
    input: [{ series: `l2flow_ingest_trades_unrecoverable_total{${I},kind="trade"}`, values: "0 0 3 3" }],
    at: 3,
    firing: [{ labels: ingest, summary: "ingest i0: trades neither the streams nor REST could give" }],
  },
  {
    alert: "L2flowIngestEventLagHigh",
    // Every frame 1-2.5 s late.
    input: [
      lagBucket("0.5", "0+0x10"),
      lagBucket("1", "0+0x10"),
      lagBucket("2.5", "0+100x10"),
      lagBucket("+Inf", "0+100x10"),
    ],
    at: 7,
    firing: [{ labels: ingest, summary: "ingest i0: p99 of receive time minus event time above 1 s" }],
  },
  {
    name: "every frame under 0.5 s late",
    alert: "L2flowIngestEventLagHigh",
    input: [
      lagBucket("0.5", "0+100x10"),
      lagBucket("1", "0+100x10"),
      lagBucket("2.5", "0+100x10"),
      lagBucket("+Inf", "0+100x10"),
    ],
    at: 7,
    firing: [],
  },
  {
    alert: "L2flowNormalizerNotReading",
    input: [
      { series: `l2flow_ingest_stored_total{${I},kind="depth",duplicate="false"}`, values: "0+100x10" },
      { series: `l2flow_normalizer_raw_messages_total{${N},kind="depth"}`, values: "50+0x10" },
    ],
    at: 7,
    firing: [{ labels: {}, summary: "MD_RAW grows but no normalizer reads it" }],
  },
  {
    name: "a normalizer reading",
    alert: "L2flowNormalizerNotReading",
    input: [
      { series: `l2flow_ingest_stored_total{${I},kind="depth",duplicate="false"}`, values: "0+100x10" },
      { series: `l2flow_normalizer_raw_messages_total{${N},kind="depth"}`, values: "0+100x10" },
    ],
    at: 7,
    firing: [],
  },
  {
    alert: "L2flowNormalizerFallingBehind",
    input: [{ series: `l2flow_normalizer_raw_pending{${N}}`, values: "0 60000+1000x12" }],
    at: 12,
    firing: [
      { labels: normalizer, summary: "normalizer n0 has had over 50k raw messages unread for 10 minutes" },
    ],
  },
  {
    name: "a backlog caught up within 10 minutes",
    alert: "L2flowNormalizerFallingBehind",
    input: [
      {
        series: `l2flow_normalizer_raw_pending{${N}}`,
        values: "0 200000 150000 100000 60000 20000 0 0 0 0 0 0",
      },
    ],
    at: 11,
    firing: [],
  },
  {
    alert: "L2flowNormalizerCrossedBook",
    input: [{ series: `l2flow_normalizer_crossed_books_total{${N}}`, values: "0 0 1 1" }],
    at: 3,
    firing: [{ labels: normalizer, summary: "normalizer n0 saw a crossed book" }],
  },
  {
    alert: "L2flowNormalizerGapsFrequent",
    input: [{ series: `l2flow_normalizer_gaps_total{${N},reason="sequence"}`, values: "0+3x15" }],
    at: 15,
    firing: [{ labels: normalizer, summary: "normalizer n0: 45 gaps in 15 minutes" }],
  },
  {
    alert: "L2flowNormalizerResyncUnanswered",
    input: [
      {
        series: `l2flow_normalizer_resync_requests_total{${N},reason="gap",outcome="no-answer"}`,
        values: "0 0 1 1",
      },
      { series: `l2flow_normalizer_resync_requests_total{${N},reason="gap",outcome="ok"}`, values: "0+5x3" },
    ],
    at: 3,
    firing: [{ labels: normalizer, summary: "normalizer n0: snapshot requests not answered" }],
  },
  {
    alert: "L2flowNormalizerWindowsLagging",
    input: [
      { series: `l2flow_normalizer_window_lag_seconds{${N}}`, values: "5 5 300 300 300 300 300 300 300" },
    ],
    at: 8,
    firing: [{ labels: normalizer, summary: "normalizer n0: the last closed window ended 5m 0s ago" }],
  },
  {
    alert: "L2flowNormalizerBadMessages",
    input: [
      { series: `l2flow_normalizer_bad_messages_total{${N},code="FRAME_NOT_JSON"}`, values: "0 0 2 2" },
    ],
    at: 3,
    firing: [
      {
        labels: { ...normalizer, code: "FRAME_NOT_JSON" },
        summary: "normalizer n0: raw messages it could not use (FRAME_NOT_JSON)",
      },
    ],
  },
  {
    alert: "L2flowNormalizerDiffsDropped",
    input: [{ series: `l2flow_normalizer_buffered_diffs_dropped_total{${N}}`, values: "0 0 7 7" }],
    at: 3,
    firing: [{ labels: normalizer, summary: "normalizer n0: diffs dropped waiting for a snapshot" }],
  },
  {
    alert: "L2flowAnalyzerDegraded",
    input: [
      {
        series: `l2flow_analyzer_degraded_signals_total{${A},reason="DEGRADED_REASON_TIMEOUT"}`,
        values: "0+60x20",
      },
      {
        series: `l2flow_analyzer_signals_total{${A},provider="rules",degraded_reason="DEGRADED_REASON_TIMEOUT"}`,
        values: "0+60x20",
      },
      {
        series: `l2flow_analyzer_signals_total{${A},provider="holysheep",degraded_reason="none"}`,
        values: "0+10x20",
      },
    ],
    at: 13,
    firing: [{ labels: analyzer, summary: "analyzer a0: most signals come from the rules, not the LLM" }],
  },
  {
    name: "no LLM configured: rule signals by choice",
    alert: "L2flowAnalyzerDegraded",
    input: [
      {
        series: `l2flow_analyzer_degraded_signals_total{${A},reason="DEGRADED_REASON_NOT_CONFIGURED"}`,
        values: "0+60x20",
      },
      {
        series: `l2flow_analyzer_signals_total{${A},provider="rules",degraded_reason="DEGRADED_REASON_NOT_CONFIGURED"}`,
        values: "0+60x20",
      },
    ],
    at: 13,
    firing: [],
  },
  {
    alert: "L2flowAnalyzerBreakerOpen",
    input: [{ series: `l2flow_analyzer_breaker_open{${A}}`, values: "0 1 1 1 1 1 1 1" }],
    at: 7,
    firing: [
      { labels: analyzer, summary: "analyzer a0: the LLM circuit breaker has been open for 5 minutes" },
    ],
  },
  {
    alert: "L2flowAnalyzerPoisonWindows",
    input: [{ series: `l2flow_analyzer_windows_total{${A},outcome="poison"}`, values: "0 0 1 1" }],
    at: 3,
    firing: [{ labels: analyzer, summary: "analyzer a0: windows it could not decode" }],
  },
  {
    alert: "L2flowGatewayUndecodable",
    input: [
      {
        series: 'l2flow_gateway_undecodable_total{service="gateway",instance="g0",method="Signals"}',
        values: "0 0 1 1",
      },
    ],
    at: 3,
    firing: [
      {
        labels: { service: "gateway", instance: "g0" },
        summary: "gateway g0: stored payloads that did not decode",
      },
    ],
  },
];

describe("alerting rules (deploy/prometheus/alerts.yml)", () => {
  it("are the same in the Kubernetes PrometheusRule", () => {
    const text = readFileSync(join(root, "deploy/k8s/base/prometheus-rule.yaml"), "utf8");
    const docs = parseAllDocuments(text).map(
      (d) => d.toJSON() as { kind: string; spec: { groups: Group[] } },
    );
    expect(docs.map((d) => d.kind)).toEqual(["PrometheusRule"]);
    // After editing alerts.yml: `npm run deploy:rules` writes the PrometheusRule again.
    expect(docs[0]!.spec.groups, "run `npm run deploy:rules`").toEqual(groups);
  });

  it("use only metrics and labels the services define, each with a severity, a summary and a static description", () => {
    const defined = definedMetrics();
    const problems: string[] = [];
    for (const r of rules) {
      problems.push(...checkExpr(r.expr, defined).problems.map((p) => `${r.alert}: ${p}`));
      if (!["critical", "warning"].includes(r.labels?.severity ?? "")) problems.push(`${r.alert}: severity`);
      if (!r.annotations?.summary || !r.annotations?.description) problems.push(`${r.alert}: annotations`);
      // The cases below give the description as written: it must not be a template.
      if (r.annotations?.description.includes("{{")) problems.push(`${r.alert}: a templated description`);
    }
    expect(problems).toEqual([]);
    expect(new Set(rules.map((r) => r.alert)).size).toBe(rules.length);
  });

  it("are each explained in docs/operations.md, which names no other", () => {
    const doc = readFileSync(join(root, "docs/operations.md"), "utf8");
    const documented = new Set([...doc.matchAll(/`(L2flow[A-Za-z]+)`/g)].map((m) => m[1]!));
    expect([...documented].sort()).toEqual(rules.map((r) => r.alert).sort());
  });

  it("each fire on the data they are about, and stay quiet otherwise (promtool test rules)", () => {
    const tool = promtool();
    if (tool === undefined) {
      // CI installs it (.ci/run); elsewhere say how to get it rather than pass without checking.
      throw new Error(
        "promtool is not installed: `apt-get install --no-install-recommends prometheus` (Debian) or put " +
          "Prometheus's promtool on PATH; it evaluates the alerting rules",
      );
    }
    // Every alert has a firing case.
    const covered = new Set(CASES.filter((c) => c.firing.length > 0).map((c) => c.alert));
    expect([...covered].sort()).toEqual(rules.map((r) => r.alert).sort());
    const tests = CASES.map((c) => {
      const rule = byName.get(c.alert);
      if (rule === undefined) throw new Error(`no rule ${c.alert}`);
      return {
        name: `${c.alert}${c.name !== undefined ? `: ${c.name}` : ""}`,
        interval: "1m",
        input_series: c.input,
        alert_rule_test: [
          {
            eval_time: `${c.at}m`,
            alertname: c.alert,
            exp_alerts: c.firing.map((f) => ({
              exp_labels: { severity: rule.labels.severity, ...f.labels },
              exp_annotations: { summary: f.summary, description: rule.annotations.description },
            })),
          },
        ],
      };
    });
    const dir = mkdtempSync(join(tmpdir(), "l2flow-alerts-"));
    try {
      const file = join(dir, "alerts.test.yml");
      writeFileSync(file, stringify({ rule_files: [alertsFile], evaluation_interval: "1m", tests }));
      execFileSync(tool, ["check", "rules", alertsFile], { encoding: "utf8" });
      const r = spawnSync(tool, ["test", "rules", file], { encoding: "utf8" });
      expect(`${r.stdout}${r.stderr}`).toContain("SUCCESS");
      expect(r.status).toBe(0);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

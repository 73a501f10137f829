/** Renders a benchmark run as Markdown (for people and the README) and JSON (for tools and history). */
import type { MachineFacts } from "./machine.js";
import type { Metric, Row, SuiteResult } from "./types.js";

/** One suite's outcome in a run. */
export interface SuiteOutcome {
  readonly name: string;
  readonly title: string;
  readonly durationMs: number;
  /** Present when the suite finished. */
  readonly result?: SuiteResult;
  /** Present when the suite threw. */
  readonly error?: string;
}

/** Everything a run produced. */
export interface RunReport {
  readonly schema: 1;
  readonly machine: MachineFacts;
  readonly args: { readonly only: readonly string[] | null; readonly quick: boolean };
  /** 1, 5 and 15 minute load averages when the last suite ended. */
  readonly loadAverageAtEnd: readonly number[];
  readonly suites: readonly SuiteOutcome[];
}

const SI: readonly [number, string][] = [
  [1e9, "G"],
  [1e6, "M"],
  [1e3, "k"],
];

function sig3(v: number): string {
  if (v === 0) return "0";
  const a = Math.abs(v);
  if (a >= 100) return v.toFixed(0);
  if (a >= 10) return v.toFixed(1);
  if (a >= 1) return v.toFixed(2);
  return v.toPrecision(3);
}

function si(v: number): string {
  for (const [f, s] of SI) if (Math.abs(v) >= f) return `${sig3(v / f)}${s}`;
  return sig3(v);
}

function bytes(v: number): string {
  const units = ["B", "KiB", "MiB", "GiB"];
  let u = 0;
  let x = v;
  while (Math.abs(x) >= 1024 && u < units.length - 1) {
    x /= 1024;
    u++;
  }
  return `${sig3(x)} ${units[u]}`;
}

/** A metric's value as printed in a table cell (the unit goes in the column header). */
export function formatValue(m: Metric): string {
  if (typeof m.value === "string") return m.value;
  const v = m.value;
  if (!Number.isFinite(v)) return String(v);
  let text: string;
  switch (m.unit) {
    case "/s":
      text = si(v);
      break;
    case "B":
      text = bytes(v);
      break;
    case "x":
      text = `${sig3(v)}×`;
      break;
    case "%":
      text = `${sig3(v)} %`;
      break;
    case undefined:
    case "":
      text = Number.isInteger(v) ? v.toLocaleString("en-US") : sig3(v);
      break;
    default:
      text = sig3(v);
  }
  if (m.spread !== undefined && m.spread > 0) text += ` ±${sig3((m.spread / 2) * 100)} %`;
  return text;
}

/** Column header of a metric: its name, then its unit where one helps. */
export function metricHeader(m: Metric): string {
  if (m.unit === undefined || m.unit === "" || m.unit === "x" || m.unit === "%" || m.unit === "B")
    return m.name;
  if (m.unit === "/s") return `${m.name}/s`;
  return `${m.name} (${m.unit})`;
}

function cell(text: string): string {
  return text.replace(/\|/g, "\\|").replace(/\n/g, " ");
}

/** Markdown tables for a suite's rows: one table per group, columns in order of first appearance. */
export function renderRows(rows: readonly Row[]): string {
  const groups = new Map<string, Row[]>();
  for (const r of rows) {
    const g = r.group ?? "";
    const list = groups.get(g);
    if (list === undefined) groups.set(g, [r]);
    else list.push(r);
  }
  const out: string[] = [];
  for (const [group, list] of groups) {
    const columns: string[] = [];
    const headers = new Map<string, string>();
    for (const r of list)
      for (const m of r.metrics)
        if (!headers.has(m.name)) {
          columns.push(m.name);
          headers.set(m.name, metricHeader(m));
        }
    const withNotes = list.some((r) => r.notes !== undefined && r.notes !== "");
    if (group !== "") out.push(`### ${group}`, "");
    const head = ["", ...columns.map((c) => headers.get(c)!), ...(withNotes ? ["notes"] : [])];
    out.push(`| ${head.map(cell).join(" | ")} |`);
    out.push(`|${head.map((_, i) => (i === 0 ? "---" : "---:")).join("|")}|`);
    for (const r of list) {
      const byName = new Map(r.metrics.map((m) => [m.name, m]));
      const cells = [
        r.label,
        ...columns.map((c) => {
          const m = byName.get(c);
          return m === undefined ? "" : formatValue(m);
        }),
        ...(withNotes ? [r.notes ?? ""] : []),
      ];
      out.push(`| ${cells.map(cell).join(" | ")} |`);
    }
    out.push("");
  }
  return out.join("\n");
}

/** The Markdown of one suite: tables, checks, notes. */
export function renderSuite(s: SuiteOutcome): string {
  const out = [`## ${s.title}`, ""];
  if (s.error !== undefined) {
    out.push(`**The suite failed:** ${s.error}`, "");
    return out.join("\n");
  }
  const r = s.result!;
  out.push(renderRows(r.rows));
  if (r.checks.length > 0) {
    out.push("Checks:", "");
    for (const c of r.checks) out.push(`- ${c.pass ? "PASS" : "**FAIL**"} ${c.name}: ${c.message}`);
    out.push("");
  }
  for (const n of r.notes ?? []) out.push(n, "");
  out.push(`_Suite \`${s.name}\` took ${(s.durationMs / 1000).toFixed(1)} s._`, "");
  return out.join("\n");
}

function load(l: readonly number[]): string {
  return l.map((x) => x.toFixed(2)).join(" / ");
}

/** The heading and machine table (the end load average only once the run is over). */
export function renderHeader(
  m: MachineFacts,
  args: RunReport["args"],
  loadAverageAtEnd?: readonly number[],
): string {
  const gib = (m.totalMemBytes / 2 ** 30).toFixed(1);
  const flags = [
    args.quick ? "`--quick`" : null,
    args.only === null ? null : `\`--only ${args.only.join(",")}\``,
  ].filter((f) => f !== null);
  const loadText =
    `${load(m.loadAverage)} at start` +
    (loadAverageAtEnd === undefined ? "" : `, ${load(loadAverageAtEnd)} at end`);
  return [
    "# l2flow benchmarks",
    "",
    `Run ${m.date} on commit \`${m.commit}\`${m.dirty ? " with uncommitted changes" : ""}` +
      (flags.length > 0 ? ` (${flags.join(" ")})` : "") +
      ".",
    "",
    "| machine | |",
    "|---|---|",
    `| CPU | ${cell(m.cpuModel)} × ${m.cpuCount} |`,
    `| memory | ${gib} GiB |`,
    `| OS | ${m.platform} ${m.osRelease} ${m.arch} |`,
    `| Node | ${m.node} (V8 ${m.v8}) |`,
    `| nats-server | ${m.natsServer === null ? "not found" : cell(m.natsServer)} |`,
    `| load average (1/5/15 min) | ${loadText} |`,
    "",
  ].join("\n");
}

/** The whole run as Markdown: machine facts, then every suite. */
export function renderMarkdown(report: RunReport): string {
  const out = [renderHeader(report.machine, report.args, report.loadAverageAtEnd)];
  for (const s of report.suites) out.push(renderSuite(s));
  return `${out.join("\n").trimEnd()}\n`;
}

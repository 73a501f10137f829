/**
 * `npm run bench [-- --only a,b] [--quick] [--strict] [--save-latest]`: runs the suites in
 * bench/suites/, prints their Markdown tables on stdout and writes bench/results/<date>-<commit>.{md,json}
 * and bench/results/latest.{md,json}, the figures the README quotes. A partial or quick run writes
 * <date>-<commit>-….{md,json}.tmp instead (ignored by git) and replaces latest.* only with
 * --save-latest. Exit code 1 when a suite throws, or with --strict when a check fails.
 */
import { mkdirSync, readdirSync, writeFileSync } from "node:fs";
import { loadavg } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";
import { parseArgs } from "node:util";
import { ConfigError } from "@l2flow/runtime";
import * as prettier from "prettier";
import { machineFacts } from "./lib/machine.js";
import {
  renderHeader,
  renderMarkdown,
  renderSuite,
  type RunReport,
  type SuiteOutcome,
} from "./lib/report.js";
import type { SuiteContext, SuiteModule } from "./lib/types.js";

const benchDir = dirname(fileURLToPath(import.meta.url));
const repoRoot = resolve(benchDir, "..");
const suitesDir = join(benchDir, "suites");
const resultsDir = join(benchDir, "results");

interface Args {
  readonly only: string[] | null;
  readonly quick: boolean;
  readonly strict: boolean;
  readonly saveLatest: boolean;
}

function parseCli(argv: string[]): Args {
  let parsed;
  try {
    parsed = parseArgs({
      args: argv,
      options: {
        only: { type: "string" },
        quick: { type: "boolean", default: false },
        strict: { type: "boolean", default: false },
        "save-latest": { type: "boolean", default: false },
      },
      strict: true,
      allowPositionals: false,
    });
  } catch (err) {
    throw new ConfigError(
      `bad arguments: ${(err as Error).message}; accepted: --only <suite,...> --quick --strict --save-latest`,
      { cause: err },
    );
  }
  const only =
    parsed.values.only === undefined
      ? null
      : parsed.values.only
          .split(",")
          .map((s) => s.trim())
          .filter((s) => s !== "");
  return {
    only,
    quick: parsed.values.quick,
    strict: parsed.values.strict,
    saveLatest: parsed.values["save-latest"],
  };
}

function isSuiteModule(m: Record<string, unknown>): boolean {
  return typeof m.name === "string" && typeof m.title === "string" && typeof m.run === "function";
}

/** A suite file that could not be loaded: reported as a failed suite, the others still run. */
interface BrokenSuite {
  readonly name: string;
  readonly file: string;
  readonly error: string;
}

async function loadSuites(): Promise<{ suites: SuiteModule[]; broken: BrokenSuite[] }> {
  const files = readdirSync(suitesDir).filter(
    (f) => f.endsWith(".ts") && !f.endsWith(".test.ts") && !f.endsWith(".d.ts"),
  );
  const suites: SuiteModule[] = [];
  const broken: BrokenSuite[] = [];
  for (const f of files) {
    const stem = f.slice(0, -".ts".length);
    try {
      const mod = (await import(pathToFileURL(join(suitesDir, f)).href)) as Record<string, unknown>;
      if (!isSuiteModule(mod))
        throw new ConfigError(
          `bench/suites/${f} is not a suite: it must export name (string), title (string) and run(ctx)`,
        );
      suites.push(mod as unknown as SuiteModule);
    } catch (err) {
      broken.push({ name: stem, file: f, error: err instanceof Error ? err.message : String(err) });
    }
  }
  suites.sort((a, b) => (a.order ?? 100) - (b.order ?? 100) || a.name.localeCompare(b.name));
  return { suites, broken };
}

function selectSuites(
  all: SuiteModule[],
  broken: BrokenSuite[],
  only: string[] | null,
): { suites: SuiteModule[]; broken: BrokenSuite[] } {
  if (only === null) return { suites: all, broken };
  const names = new Set([...all.map((s) => s.name), ...broken.map((b) => b.name)]);
  const unknown = only.filter((n) => !names.has(n));
  if (unknown.length > 0)
    throw new ConfigError(
      `--only names unknown suites: ${unknown.join(", ")}; available: ${[...names].join(", ")}`,
    );
  return {
    suites: all.filter((s) => only.includes(s.name)),
    broken: broken.filter((b) => only.includes(b.name)),
  };
}

async function runSuite(suite: SuiteModule, ctx: SuiteContext): Promise<SuiteOutcome> {
  const t0 = performance.now();
  ctx.log(`▶ ${suite.name}: ${suite.title}`);
  try {
    const result = await suite.run(ctx);
    const durationMs = performance.now() - t0;
    const failed = result.checks.filter((c) => !c.pass).length;
    ctx.log(
      `✔ ${suite.name} in ${(durationMs / 1000).toFixed(1)} s` +
        (failed > 0 ? ` (${failed} check(s) failed)` : ""),
    );
    return { name: suite.name, title: suite.title, durationMs, result };
  } catch (err) {
    const durationMs = performance.now() - t0;
    const error = err instanceof Error ? (err.stack ?? err.message) : String(err);
    ctx.log(`✘ ${suite.name} failed: ${error}`);
    return { name: suite.name, title: suite.title, durationMs, error: error.split("\n")[0]! };
  }
}

function fileStem(report: RunReport): string {
  const day = report.machine.date.slice(0, 10);
  const parts = [day, report.machine.commit];
  if (report.args.quick) parts.push("quick");
  if (report.args.only !== null) parts.push(report.args.only.join("+"));
  return parts.join("-");
}

/** JSON as the repository's Prettier config prints it, so `npm run format:check` passes on results. */
async function formatJson(value: unknown, path: string): Promise<string> {
  const text = JSON.stringify(value, null, 2);
  const options = (await prettier.resolveConfig(path)) ?? {};
  return prettier.format(text, { ...options, parser: "json" });
}

/**
 * Writes the run. A full run: `<stem>.{md,json}` and `latest.{md,json}`. A partial or quick run:
 * `<stem>.{md,json}.tmp` (git ignores them), plus `latest.*` only when asked.
 */
async function save(report: RunReport, markdown: string, full: boolean, latest: boolean): Promise<string[]> {
  mkdirSync(resultsDir, { recursive: true });
  const json = await formatJson(report, join(resultsDir, "latest.json"));
  const targets = [
    { stem: fileStem(report), suffix: full ? "" : ".tmp" },
    ...(full || latest ? [{ stem: "latest", suffix: "" }] : []),
  ];
  const written: string[] = [];
  for (const { stem, suffix } of targets) {
    for (const [ext, text] of [
      ["md", markdown],
      ["json", json],
    ] as const) {
      const path = join(resultsDir, `${stem}.${ext}${suffix}`);
      writeFileSync(path, text);
      written.push(path);
    }
  }
  return written;
}

async function main(): Promise<number> {
  const args = parseCli(process.argv.slice(2));
  const log = (message: string) => process.stderr.write(`${message}\n`);
  const loaded = await loadSuites();
  const { suites, broken } = selectSuites(loaded.suites, loaded.broken, args.only);
  const machine = await machineFacts(repoRoot);
  const abort = new AbortController();
  const onSigint = () => {
    log("interrupted: suites are asked to stop; results so far are written");
    abort.abort();
  };
  process.once("SIGINT", onSigint);
  const ctx: SuiteContext = { quick: args.quick, repoRoot, log, signal: abort.signal };
  process.stdout.write(`${renderHeader(machine, { only: args.only, quick: args.quick })}\n`);
  const outcomes: SuiteOutcome[] = [];
  for (const b of broken) {
    log(`✘ bench/suites/${b.file} could not be loaded: ${b.error}`);
    const outcome = { name: b.name, title: `bench/suites/${b.file}`, durationMs: 0, error: b.error };
    outcomes.push(outcome);
    process.stdout.write(`${renderSuite(outcome)}\n`);
  }
  for (const suite of suites) {
    if (abort.signal.aborted) break;
    const outcome = await runSuite(suite, ctx);
    outcomes.push(outcome);
    process.stdout.write(`${renderSuite(outcome)}\n`);
  }
  process.off("SIGINT", onSigint);
  const report: RunReport = {
    schema: 1,
    machine,
    args: { only: args.only, quick: args.quick },
    loadAverageAtEnd: loadavg(),
    suites: outcomes,
  };
  const markdown = renderMarkdown(report);
  const full = args.only === null && !args.quick && !abort.signal.aborted;
  const written = await save(report, markdown, full, args.saveLatest);
  log(`wrote ${written.map((p) => p.slice(repoRoot.length + 1)).join(", ")}`);
  const errored = outcomes.some((o) => o.error !== undefined);
  const failedChecks = outcomes.some((o) => o.result?.checks.some((c) => !c.pass) === true);
  return errored || (args.strict && failedChecks) ? 1 : 0;
}

main().then(
  (code) => {
    process.exitCode = code;
    // A suite that leaves a handle open must not hang `npm run bench`.
    setTimeout(() => {
      process.stderr.write("a suite left a handle open; exiting anyway\n");
      process.exit(code);
    }, 5_000).unref();
  },
  (err: unknown) => {
    process.stderr.write(`${err instanceof Error ? err.message : String(err)}\n`);
    process.exitCode = 2;
  },
);

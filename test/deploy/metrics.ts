// What the deploy files' queries may use: the metrics the services define and their labels, read from
// the sources (prom-client definitions: `name: "l2flow_…"` with an optional `labelNames: [...]`).
import { readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";

export const root = fileURLToPath(new URL("../../", import.meta.url));

/** Labels Prometheus adds to every series (the scrape target's, and `le` of histogram buckets). */
export const TARGET_LABELS = new Set(["service", "instance", "job", "le", "namespace", "pod"]);

/** Every `l2flow_…` metric a service or library defines, with its label names. */
export function definedMetrics(): Map<string, Set<string>> {
  const metrics = new Map<string, Set<string>>();
  const walk = (dir: string) => {
    for (const e of readdirSync(dir, { withFileTypes: true })) {
      const path = join(dir, e.name);
      if (e.isDirectory()) walk(path);
      else if (e.name.endsWith(".ts") && !e.name.endsWith(".test.ts")) {
        const text = readFileSync(path, "utf8");
        for (const m of text.matchAll(/name: "(l2flow_[a-z0-9_]+)"([^}]*)/g)) {
          const labels = /labelNames: \[([^\]]*)\]/.exec(m[2]!)?.[1] ?? "";
          metrics.set(m[1]!, new Set([...labels.matchAll(/"([a-z_]+)"/g)].map((l) => l[1]!)));
        }
      }
    }
  };
  for (const top of ["services", "libs"])
    for (const pkg of readdirSync(join(root, top))) {
      try {
        walk(join(root, top, pkg, "src"));
      } catch {
        // a package without src/
      }
    }
  return metrics;
}

/**
 * What is wrong with a PromQL expression's use of l2flow's metrics: a metric no service defines, or a
 * label (in a matcher or a `by (…)`) that neither one of its l2flow metrics nor the scrape target
 * has. Histograms are queried by their series (`_bucket`, `_sum`, `_count`). Returns the metrics it
 * used and the problems.
 */
export function checkExpr(
  expr: string,
  defined: Map<string, Set<string>>,
): { used: string[]; problems: string[] } {
  const problems: string[] = [];
  const used: string[] = [];
  const labels = new Set<string>();
  for (const m of expr.matchAll(/\b(l2flow_[a-z0-9_]+)/g)) {
    const name = m[1]!.replace(/_(bucket|sum|count)$/, "");
    const own = defined.get(name);
    if (own === undefined) problems.push(`${m[1]} is not defined by any service`);
    else {
      used.push(name);
      for (const l of own) labels.add(l);
    }
  }
  const named: string[] = [];
  for (const m of expr.matchAll(/\bby \(([^)]*)\)/g)) named.push(...m[1]!.split(",").map((s) => s.trim()));
  for (const m of expr.matchAll(/\{([^}]*)\}/g))
    for (const matcher of m[1]!.matchAll(/([a-z_]+)\s*(?:=~|!~|!=|=)/g)) named.push(matcher[1]!);
  for (const l of named)
    if (l !== "" && used.length > 0 && !labels.has(l) && !TARGET_LABELS.has(l))
      problems.push(`label ${l} is on none of ${[...new Set(used)].join(", ")}`);
  return { used, problems };
}

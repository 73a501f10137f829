// The Grafana dashboard queries only metrics the services define: a renamed or removed metric would
// otherwise leave an empty panel that nobody notices.
import { readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";

const root = fileURLToPath(new URL("../../", import.meta.url));

/** Every `name: "l2flow_…"` a service or library defines (prom-client metric names). */
function definedMetrics(): Set<string> {
  const names = new Set<string>();
  const walk = (dir: string) => {
    for (const e of readdirSync(dir, { withFileTypes: true })) {
      const path = join(dir, e.name);
      if (e.isDirectory()) walk(path);
      else if (e.name.endsWith(".ts") && !e.name.endsWith(".test.ts"))
        for (const m of readFileSync(path, "utf8").matchAll(/name: "(l2flow_[a-z0-9_]+)"/g)) names.add(m[1]!);
    }
  };
  for (const top of ["services", "libs"])
    for (const pkg of readdirSync(join(root, top))) {
      const src = join(root, top, pkg, "src");
      try {
        walk(src);
      } catch {
        // a package without src/
      }
    }
  return names;
}

describe("deploy/grafana/dashboards/l2flow.json", () => {
  const dashboard = JSON.parse(readFileSync(join(root, "deploy/grafana/dashboards/l2flow.json"), "utf8")) as {
    panels: { title: string; targets?: { expr: string }[] }[];
  };

  it("queries only metrics that some service defines", () => {
    const defined = definedMetrics();
    expect(defined.size).toBeGreaterThan(40);
    const missing: string[] = [];
    let queried = 0;
    for (const panel of dashboard.panels)
      for (const t of panel.targets ?? [])
        for (const m of t.expr.matchAll(/\b(l2flow_[a-z0-9_]+)/g)) {
          queried++;
          // Histograms are queried by their series (_bucket, _sum, _count).
          const name = m[1]!.replace(/_(bucket|sum|count)$/, "");
          if (!defined.has(name)) missing.push(`${panel.title}: ${m[1]}`);
        }
    expect(queried).toBeGreaterThan(10);
    expect(missing).toEqual([]);
  });
});

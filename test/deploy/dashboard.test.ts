// The Grafana dashboard queries only metrics (and labels) the services define: a renamed or removed
// metric or label would otherwise leave an empty or collapsed panel that nobody notices.
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { checkExpr, definedMetrics, root } from "./metrics.js";

describe("deploy/grafana/dashboards/l2flow.json", () => {
  const dashboard = JSON.parse(readFileSync(join(root, "deploy/grafana/dashboards/l2flow.json"), "utf8")) as {
    panels: { title: string; targets?: { expr: string }[] }[];
  };

  it("queries only metrics and labels that some service defines", () => {
    const defined = definedMetrics();
    expect(defined.size).toBeGreaterThan(40);
    const problems: string[] = [];
    let queried = 0;
    for (const panel of dashboard.panels)
      for (const t of panel.targets ?? []) {
        const r = checkExpr(t.expr, defined);
        queried += r.used.length;
        problems.push(...r.problems.map((p) => `${panel.title}: ${p}`));
      }
    expect(queried).toBeGreaterThan(10);
    expect(problems).toEqual([]);
  });
});

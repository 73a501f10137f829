// docs/operations.md lists every metric the services define, with the labels they have, and no other.
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { definedMetrics, root } from "./metrics.js";

describe("docs/operations.md", () => {
  const doc = readFileSync(join(root, "docs/operations.md"), "utf8");

  it("has a row for every metric the services define, with its labels, and none for a metric they do not", () => {
    const defined = definedMetrics();
    const rows = new Map<string, string[]>();
    for (const m of doc.matchAll(/^\| `(l2flow_[a-z0-9_]+)` \| [a-z]+ \|([^|]*)\|/gm))
      rows.set(m[1]!, [...m[2]!.matchAll(/`([a-z_]+)`/g)].map((l) => l[1]!).sort());
    expect([...rows.keys()].sort()).toEqual([...defined.keys()].sort());
    for (const [name, labels] of rows) expect(labels, name).toEqual([...defined.get(name)!].sort());
  });
});

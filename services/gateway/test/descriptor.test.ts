// The reflection descriptors are generated from proto/: fail when they are stale.
import { execFileSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { expect, it } from "vitest";

it("src/gen/descriptor.ts matches proto/ (regenerate with `npm run generate`)", () => {
  const script = fileURLToPath(new URL("../scripts/generate-descriptor.mjs", import.meta.url));
  const committed = fileURLToPath(new URL("../src/gen/descriptor.ts", import.meta.url));
  const dir = mkdtempSync(join(tmpdir(), "l2flow-descriptor-test-"));
  try {
    const out = join(dir, "descriptor.ts");
    execFileSync(process.execPath, [script, "--out", out], { stdio: "pipe" });
    expect(readFileSync(out, "utf8")).toBe(readFileSync(committed, "utf8"));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

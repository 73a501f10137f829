// Regenerates the contracts from proto/ and fails when the committed output differs, so that
// generated code is never edited by hand and never goes stale.
import { execFileSync } from "node:child_process";

const run = (cmd, args) => execFileSync(cmd, args, { stdio: ["ignore", "pipe", "inherit"] }).toString();
execFileSync("npm", ["run", "--silent", "generate"], { stdio: "inherit" });
const changed = run("git", ["status", "--porcelain", "--", "libs/contracts/src/gen"]).trim();
if (changed) {
  console.error(`Generated contracts differ from proto/ (run \`npm run generate\` and commit):\n${changed}`);
  process.exit(1);
}
console.log("generated contracts are up to date");

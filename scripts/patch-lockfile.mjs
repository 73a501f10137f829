// The npm registry this project installs from lacks some platform builds of @bufbuild/buf (darwin,
// win32, linux-armv7). `npm install` then leaves them out of package-lock.json and `npm ci` refuses
// the lock. This adds them back as optional, platform-restricted entries (npm ci skips them on other
// platforms). Run it after any `npm install` that rewrites the lock: `node scripts/patch-lockfile.mjs`.
import { readFileSync, writeFileSync } from "node:fs";

const path = new URL("../package-lock.json", import.meta.url);
const lock = JSON.parse(readFileSync(path, "utf8"));
const parent = lock.packages["node_modules/@bufbuild/buf"];
let added = 0;
for (const [name, version] of Object.entries(parent?.optionalDependencies ?? {})) {
  const key = `node_modules/${name}`;
  if (lock.packages[key]) continue;
  const [, os, arch] = /buf-(darwin|linux|win32)-(.+)$/.exec(name) ?? [];
  const cpu = { aarch64: "arm64", armv7: "arm", x64: "x64", arm64: "arm64" }[arch] ?? arch;
  lock.packages[key] = {
    version,
    cpu: [cpu],
    dev: true,
    license: "Apache-2.0",
    optional: true,
    os: [os],
    engines: { node: ">=12" },
  };
  added++;
}
const sorted = Object.fromEntries(
  Object.entries(lock.packages).sort(([a], [b]) => (a === "" ? -1 : b === "" ? 1 : a.localeCompare(b))),
);
lock.packages = sorted;
writeFileSync(path, `${JSON.stringify(lock, null, 2)}\n`);
console.log(`package-lock.json: ${added} missing optional platform entries added`);

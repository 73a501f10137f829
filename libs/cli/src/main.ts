#!/usr/bin/env node
// The `l2flow` binary: runs `main` with the process's streams, environment and signals.
import { main } from "./cli.js";

const controller = new AbortController();
let interrupts = 0;
const interrupt = () => {
  // First Ctrl-C: stop cleanly (flush files, delete consumers). Second: leave at once.
  if (++interrupts > 1) process.exit(130);
  controller.abort();
};
process.on("SIGINT", interrupt);
process.on("SIGTERM", interrupt);
// `l2flow tail … | head` closes the pipe: stop quietly instead of failing on EPIPE.
process.stdout.on("error", (err: NodeJS.ErrnoException) => {
  if (err.code === "EPIPE") controller.abort();
});

process.exitCode = await main(process.argv.slice(2), {
  stdout: process.stdout,
  stderr: process.stderr,
  env: process.env,
  signal: controller.signal,
});
process.off("SIGINT", interrupt);
process.off("SIGTERM", interrupt);

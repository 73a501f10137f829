/** Facts about the machine and the code a benchmark ran on, recorded with every result. */
import { execFile } from "node:child_process";
import os from "node:os";
import { promisify } from "node:util";
import { findNatsServerBinary } from "@l2flow/testkit";

const run = promisify(execFile);

/** Where and on what a run happened. */
export interface MachineFacts {
  /** ISO 8601 time the run started. */
  readonly date: string;
  readonly cpuModel: string;
  readonly cpuCount: number;
  readonly totalMemBytes: number;
  readonly platform: string;
  readonly arch: string;
  readonly osRelease: string;
  readonly node: string;
  readonly v8: string;
  /** `nats-server --version` of the binary the test kit would start, or null when there is none. */
  readonly natsServer: string | null;
  /** Short commit hash, or "unknown" outside a git checkout. */
  readonly commit: string;
  /** True when the working tree had uncommitted changes (the figures are then for commit + changes). */
  readonly dirty: boolean;
  /** 1, 5 and 15 minute load averages when the run started: other load on the machine skews results. */
  readonly loadAverage: readonly number[];
}

async function tryRun(cmd: string, args: readonly string[], cwd: string): Promise<string | null> {
  try {
    const { stdout } = await run(cmd, args, { cwd, timeout: 10_000 });
    return stdout.trim();
  } catch {
    return null;
  }
}

/** Collects the facts (git and nats-server are asked in `repoRoot`; missing tools give null/"unknown"). */
export async function machineFacts(repoRoot: string, date = new Date()): Promise<MachineFacts> {
  const cpus = os.cpus();
  const natsBin = findNatsServerBinary();
  const [nats, commit, status] = await Promise.all([
    natsBin === undefined ? Promise.resolve(null) : tryRun(natsBin, ["--version"], repoRoot),
    tryRun("git", ["rev-parse", "--short", "HEAD"], repoRoot),
    tryRun("git", ["status", "--porcelain", "--untracked-files=no"], repoRoot),
  ]);
  return {
    date: date.toISOString(),
    cpuModel: cpus[0]?.model.trim() ?? "unknown",
    cpuCount: cpus.length,
    totalMemBytes: os.totalmem(),
    platform: os.platform(),
    arch: os.arch(),
    osRelease: os.release(),
    node: process.version,
    v8: process.versions.v8,
    natsServer: nats,
    commit: commit ?? "unknown",
    dirty: status !== null && status.length > 0,
    loadAverage: os.loadavg(),
  };
}

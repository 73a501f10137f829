import type { Bus } from "@l2flow/bus";
import type { CliIo } from "../io.js";

/** What every command gets. */
export interface CommandContext {
  readonly io: CliIo;
  /** Parsed options of the command (strings and booleans as `node:util` parseArgs gives them). */
  readonly values: Readonly<Record<string, string | boolean | undefined>>;
  readonly positionals: readonly string[];
  /** Connects to NATS (once; closed by `main` when the command returns). */
  connect(): Promise<Bus>;
}

/** A string option, or undefined. */
export function stringOption(ctx: CommandContext, name: string): string | undefined {
  const v = ctx.values[name];
  return typeof v === "string" ? v : undefined;
}

/** A boolean flag. */
export function flag(ctx: CommandContext, name: string): boolean {
  return ctx.values[name] === true;
}

import { parseArgs, type ParseArgsConfig } from "node:util";
import type { Bus } from "@l2flow/bus";
import { ConfigError } from "@l2flow/runtime";
import { book, bookOptions } from "./commands/book.js";
import type { CommandContext } from "./commands/context.js";
import { record, recordOptions } from "./commands/record.js";
import { replay, replayOptions } from "./commands/replay.js";
import { status, statusOptions } from "./commands/status.js";
import { tail, tailOptions } from "./commands/tail.js";
import { connectCli } from "./connect.js";
import { EXIT, UsageError, type CliIo } from "./io.js";

type Options = NonNullable<ParseArgsConfig["options"]>;

const globalOptions = {
  nats: { type: "string" },
  help: { type: "boolean", short: "h" },
} as const satisfies Options;

interface Command {
  readonly options: Options;
  readonly run: (ctx: CommandContext) => Promise<number>;
  readonly usage: string;
}

const commands: Readonly<Record<string, Command>> = {
  tail: {
    options: tailOptions,
    run: tail,
    usage: `l2flow tail <subject> [--from-start | --since <time>] [--count <n>]
  Prints the messages of a subject as JSON lines: {"subject","stream","seq","time","headers","payload"}.
  md.raw.* payloads are the exchange's JSON as stored; md.trade/book/gap/window and signal.* are
  decoded from protobuf. Without --from-start/--since it shows new messages only.
    --from-start      every stored message, then live
    --since <time>    messages stored at or after <time> (ISO 8601, epoch ms, or now), then live
    --count <n>       exit after n messages`,
  },
  book: {
    options: bookOptions,
    run: book,
    usage: `l2flow book <SYMBOL> [--depth <n>] [--once]
  Shows the symbol's live top of book (from md.book.binance.<SYMBOL>, KV md_book as a fallback).
    --depth <n>       levels per side (default 10)
    --once            print the latest book once and exit (1 when there is none)`,
  },
  replay: {
    options: replayOptions,
    run: replay,
    usage: `l2flow replay <recording> [--speed <x> | --fast] [--symbols A,B]
  Publishes a recording into MD_RAW exactly as ingest would (same subjects, bytes, message ids and
  headers), so the normalizer and everything downstream see it as live data. A progress bar is shown
  on a terminal. Reads l2flow's format (from \`l2flow record\`), hftbacktest and cryptofeed captures.
    --speed <x>       the recorded pace times x (default 1)
    --fast            as fast as JetStream acknowledges
    --symbols A,B     only these symbols`,
  },
  record: {
    options: recordOptions,
    run: record,
    usage: `l2flow record <file> [--since <time> [--until <time> | --follow]] [--until <time>] [--symbols A,B] [--count <n>]
  Writes MD_RAW to a recording (l2flow's format; gzip when <file> ends in .gz) that \`l2flow replay\`
  and the simulator read. Without --since it records live until Ctrl-C.
    --since <time>    from this stored time (ISO 8601, epoch ms, or now); stops at what is stored now
    --until <time>    stop at this stored time
    --follow          with --since: go on recording live after the stored range
    --symbols A,B     only these symbols
    --count <n>       stop after n events`,
  },
  status: {
    options: statusOptions,
    run: status,
    usage: `l2flow status [--health <url>,<url>...] [--json]
  Streams (messages, bytes, time span), consumers (pending, ack pending, redelivered) and the health
  of services given by their metrics URL (e.g. http://127.0.0.1:9464). Exit code 1 when NATS is
  unreachable or a service is not ready.
    --health <urls>   comma-separated service metrics URLs to probe on /readyz
    --json            one JSON object instead of tables`,
  },
};

const USAGE = `usage: l2flow <command> [options]   (l2flow <command> --help for details)

commands:
  tail <subject>       print a subject's messages as JSON lines
  book <SYMBOL>        live top of book in the terminal
  replay <recording>   publish a recording into MD_RAW as ingest would
  record <file>        write MD_RAW (live or a time range) to a recording
  status               streams, consumers, lag and services' health

global options:
  --nats <url>         NATS server(s), comma-separated (default: NATS_URL, else nats://127.0.0.1:4222)
  -h, --help           this help

environment: NATS_URL, NATS_USER + NATS_PASSWORD, NATS_TOKEN, NATS_CREDS, NATS_TLS_CA / NATS_TLS_CERT /
NATS_TLS_KEY, NATS_CONNECT_TIMEOUT_MS (default 5000 for the CLI). Exit codes: 0 ok, 1 failure, 2 usage,
130 interrupted.`;

/**
 * Runs the `l2flow` command line with `argv` (without the node and script paths) against `io`, and
 * resolves with the exit code. Never calls `process.exit` and reads no global state, so tests call it
 * directly.
 */
export async function main(argv: readonly string[], io: CliIo): Promise<number> {
  const name = commandName(argv);
  if (name === undefined) {
    if (argv.includes("--help") || argv.includes("-h")) {
      io.stdout.write(`${USAGE}\n`);
      return EXIT.ok;
    }
    io.stderr.write(`${USAGE}\n`);
    return EXIT.usage;
  }
  if (name.command === "help") {
    const topic = commands[argv[name.index + 1] ?? ""];
    io.stdout.write(`${topic?.usage ?? USAGE}\n`);
    return EXIT.ok;
  }
  const command = commands[name.command];
  if (command === undefined) {
    io.stderr.write(`l2flow: unknown command ${JSON.stringify(name.command)}\n\n${USAGE}\n`);
    return EXIT.usage;
  }

  let bus: Bus | undefined;
  try {
    const { values, positionals } = parseArgs({
      args: [...argv.slice(0, name.index), ...argv.slice(name.index + 1)],
      options: { ...globalOptions, ...command.options },
      allowPositionals: true,
      strict: true,
    });
    if (values.help === true) {
      io.stdout.write(`${command.usage}\n`);
      return EXIT.ok;
    }
    const natsFlag = typeof values.nats === "string" ? values.nats : undefined;
    let connecting: Promise<Bus> | undefined;
    const ctx: CommandContext = {
      io,
      values,
      positionals,
      connect: () =>
        (connecting ??= connectCli(io.env, natsFlag).then((b) => {
          bus = b;
          return b;
        })),
    };
    return await command.run(ctx);
  } catch (err) {
    return reportError(err, io, command.usage);
  } finally {
    await bus?.close().catch(() => undefined);
  }
}

/** The first argument that is not a global option (or its value), with its index. */
function commandName(argv: readonly string[]): { command: string; index: number } | undefined {
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    if (a === "--nats") {
      i++;
      continue;
    }
    if (a.startsWith("-")) continue;
    return { command: a, index: i };
  }
  return undefined;
}

function reportError(err: unknown, io: CliIo, usage: string): number {
  const code = (err as { code?: unknown } | undefined)?.code;
  if (err instanceof UsageError || (typeof code === "string" && code.startsWith("ERR_PARSE_ARGS"))) {
    io.stderr.write(`l2flow: ${(err as Error).message}\n\n${usage}\n`);
    return EXIT.usage;
  }
  if (err instanceof ConfigError) {
    io.stderr.write(`l2flow: ${err.message}\n`);
    return EXIT.usage;
  }
  io.stderr.write(`l2flow: ${err instanceof Error ? err.message : String(err)}\n`);
  return EXIT.failure;
}

#!/usr/bin/env node
// Runs the whole l2flow pipeline on this machine: a local nats-server (unless NATS_URL is set), then
// ingest, normalizer and analyzer, against live Binance or the simulator replaying a recording.
//
//   npm start                      live Binance (BTCUSDT,ETHUSDT unless SYMBOLS is set)
//   npm run demo                   the simulator replaying the shipped BTCUSDT recording, looping
//   npm run demo -- --recording ten --speed 5
//
// Every variable of the README's configuration table passes through to the services.
import { spawn, spawnSync } from "node:child_process";
import { accessSync, constants, mkdirSync, readdirSync, rmSync } from "node:fs";
import { createServer } from "node:net";
import { delimiter, join, resolve } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { parseArgs } from "node:util";

const root = resolve(import.meta.dirname, "..");
const { values: args } = parseArgs({
  options: {
    simulator: { type: "boolean", default: false },
    recording: { type: "string", default: "btcusdt" },
    speed: { type: "string", default: "1" },
    "no-loop": { type: "boolean", default: false },
    help: { type: "boolean", short: "h", default: false },
  },
});
if (args.help) {
  console.log(`usage: npm start | npm run demo -- [--recording btcusdt|ten|<path>] [--speed N] [--no-loop]`);
  process.exit(0);
}

const children = [];
let stopping = false;
const say = (msg) => console.log(`\x1b[1m[l2flow]\x1b[0m ${msg}`);

async function freePort(preferred) {
  const tryPort = (port) =>
    new Promise((res) => {
      const srv = createServer();
      srv.once("error", () => res(undefined));
      srv.listen(port, "127.0.0.1", () => {
        const p = srv.address().port;
        srv.close(() => res(p));
      });
    });
  return (await tryPort(preferred)) ?? (await tryPort(0));
}

function findNatsServer() {
  const dirs = [...(process.env.PATH ?? "").split(delimiter), "/usr/sbin", "/usr/local/bin"];
  for (const d of dirs) {
    try {
      accessSync(join(d, "nats-server"), constants.X_OK);
      return join(d, "nats-server");
    } catch {
      // keep looking
    }
  }
  return undefined;
}

function ensureNatsServer() {
  let bin = findNatsServer();
  if (bin) return bin;
  if (process.getuid?.() === 0 && findOnPath("apt-get")) {
    say("nats-server is missing: installing Debian's package (apt-get install nats-server)");
    spawnSync("apt-get", ["update", "-qq"], { stdio: "inherit" });
    const r = spawnSync("apt-get", ["install", "-y", "-qq", "nats-server"], {
      stdio: "inherit",
      env: { ...process.env, DEBIAN_FRONTEND: "noninteractive" },
    });
    bin = r.status === 0 ? findNatsServer() : undefined;
    if (bin) return bin;
  }
  console.error(
    "nats-server was not found. Install it (Debian/Ubuntu: `sudo apt-get install nats-server`; macOS: `brew install nats-server`; " +
      "or download from https://github.com/nats-io/nats-server/releases), or set NATS_URL to a server started with -js.",
  );
  process.exit(1);
}

function findOnPath(cmd) {
  return (process.env.PATH ?? "").split(delimiter).some((d) => {
    try {
      accessSync(join(d, cmd), constants.X_OK);
      return true;
    } catch {
      return false;
    }
  });
}

function start(name, cmd, cmdArgs, env, color) {
  const child = spawn(cmd, cmdArgs, {
    cwd: root,
    env: { ...process.env, ...env },
    stdio: ["ignore", "pipe", "pipe"],
  });
  const prefix = `\x1b[${color}m${name.padEnd(10)}\x1b[0m| `;
  for (const stream of [child.stdout, child.stderr]) {
    let buf = "";
    stream.setEncoding("utf8");
    stream.on("data", (chunk) => {
      buf += chunk;
      let i;
      while ((i = buf.indexOf("\n")) >= 0) {
        process.stdout.write(prefix + buf.slice(0, i) + "\n");
        buf = buf.slice(i + 1);
      }
    });
  }
  child.on("exit", (code, signal) => {
    if (!stopping) {
      say(`${name} exited (${signal ?? code}); stopping everything`);
      void shutdown(1);
    }
  });
  children.push({ name, child });
  return child;
}

async function shutdown(code) {
  if (stopping) return;
  stopping = true;
  say("stopping…");
  for (const { child } of [...children].reverse()) {
    if (child.exitCode !== null || child.signalCode !== null) continue;
    child.kill("SIGTERM");
    await Promise.race([new Promise((r) => child.once("exit", r)), sleep(25_000)]);
  }
  process.exit(code);
}
process.on("SIGINT", () => void shutdown(0));
process.on("SIGTERM", () => void shutdown(0));

const tsx = [join(root, "node_modules/tsx/dist/cli.mjs"), "--conditions=l2flow-source"];
const node = process.execPath;

// 1. NATS
let natsUrl = process.env.NATS_URL;
if (!natsUrl) {
  const bin = ensureNatsServer();
  const dir = join(root, ".l2flow");
  mkdirSync(join(dir, "nats"), { recursive: true });
  for (const f of readdirSync(dir)) if (f.endsWith(".ports")) rmSync(join(dir, f));
  const port = await freePort(4222);
  const monitor = await freePort(8222);
  const nats = start(
    "nats",
    bin,
    [
      "-a",
      "127.0.0.1",
      "-p",
      String(port),
      "-m",
      String(monitor),
      "-js",
      "-sd",
      join(dir, "nats"),
      "--ports_file_dir",
      dir,
    ],
    {},
    "90",
  );
  for (let i = 0; i < 100 && !readdirSync(dir).some((f) => f === `nats-server_${nats.pid}.ports`); i++)
    await sleep(50);
  natsUrl = `nats://127.0.0.1:${port}`;
  say(
    `nats-server with JetStream at ${natsUrl} (monitoring http://127.0.0.1:${monitor}, store ${join(dir, "nats")})`,
  );
}

// 2. The exchange: live Binance or the simulator
let wsUrl = process.env.BINANCE_WS_URL ?? "wss://stream.binance.com:9443";
let restUrl = process.env.BINANCE_REST_URL ?? "https://api.binance.com";
let symbols = process.env.SYMBOLS ?? "BTCUSDT,ETHUSDT";
if (args.simulator) {
  const simPort = await freePort(18443);
  start(
    "simulator",
    node,
    [
      ...tsx,
      join(root, "libs/testkit/src/bin/simulator.ts"),
      "--recording",
      args.recording,
      "--port",
      String(simPort),
      "--speed",
      args.speed,
      ...(args["no-loop"] ? [] : ["--loop"]),
    ],
    {},
    "35",
  );
  wsUrl = `ws://127.0.0.1:${simPort}`;
  restUrl = `http://127.0.0.1:${simPort}`;
  symbols =
    process.env.SYMBOLS ??
    (args.recording === "ten"
      ? "BTCAUD,MANAUSDT,ETHBRL,DENTUSDT,ZILUSDT,RENBTCETH,BTCSTUSDT,QTUMETH,AXSBNB,NEOUSDC"
      : "BTCUSDT");
  for (let i = 0; i < 100; i++) {
    const ok = await fetch(`${restUrl}/api/v3/ping`).then(
      (r) => r.ok,
      () => false,
    );
    if (ok) break;
    await sleep(100);
  }
  say(`simulator replaying ${args.recording} at ${wsUrl} / ${restUrl}`);
}

// 3. The services
const common = { NATS_URL: natsUrl, LOG_LEVEL: process.env.LOG_LEVEL ?? "info" };
const ports = { ingest: 9464, normalizer: 9465, analyzer: 9466 };
for (const k of Object.keys(ports)) ports[k] = await freePort(ports[k]);
start(
  "ingest",
  node,
  [...tsx, "services/ingest/src/main.ts"],
  {
    ...common,
    BINANCE_WS_URL: wsUrl,
    BINANCE_REST_URL: restUrl,
    SYMBOLS: symbols,
    METRICS_PORT: String(ports.ingest),
  },
  "36",
);
start(
  "normalizer",
  node,
  [...tsx, "services/normalizer/src/main.ts"],
  {
    ...common,
    METRICS_PORT: String(ports.normalizer),
    WINDOW_INTERVALS: process.env.WINDOW_INTERVALS ?? "1s,1m",
  },
  "32",
);
start(
  "analyzer",
  node,
  [...tsx, "services/analyzer/src/main.ts"],
  {
    ...common,
    METRICS_PORT: String(ports.analyzer),
    ANALYZER_INTERVALS: process.env.ANALYZER_INTERVALS ?? "1s,1m",
  },
  "33",
);

say(`pipeline starting for ${symbols}
    raw frames     md.raw.binance.{trade,depth,snapshot,status}.<SYMBOL>   (stream MD_RAW)
    books, trades  md.book.binance.<SYMBOL>, md.trade.binance.<SYMBOL>      (stream MD_NORM)
    windows        md.window.binance.<interval>.<SYMBOL>                  (stream MD_WINDOW)
    signals        signal.binance.<interval>.<SYMBOL>                     (stream SIGNALS)
    metrics        ingest http://127.0.0.1:${ports.ingest}/metrics  normalizer http://127.0.0.1:${ports.normalizer}/metrics  analyzer http://127.0.0.1:${ports.analyzer}/metrics
    watch signals  NATS_URL=${natsUrl} npm run tail -- 'signal.>'
    stop           Ctrl-C`);
if (!process.env.HOLYSHEEP_API_KEY)
  say(
    "HOLYSHEEP_API_KEY is not set: the analyzer uses its rule provider (signals marked degraded: not configured)",
  );

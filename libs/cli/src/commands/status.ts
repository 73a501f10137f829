import { listConsumers, type Bus } from "@l2flow/bus";
import { EXIT, UsageError, writeLine } from "../io.js";
import { flag, stringOption, type CommandContext } from "./context.js";

/** Options of `l2flow status`. */
export const statusOptions = {
  health: { type: "string" },
  json: { type: "boolean" },
} as const;

/** One stream's state. */
export interface StreamStatus {
  readonly name: string;
  readonly subjects: readonly string[];
  readonly messages: number;
  readonly bytes: number;
  readonly firstTime: string | undefined;
  readonly lastTime: string | undefined;
  readonly consumers: number;
}

/** One consumer's lag. */
export interface ConsumerStatus {
  readonly stream: string;
  readonly name: string;
  readonly durable: boolean;
  readonly filter: string;
  /** Messages not yet delivered. */
  readonly pending: number;
  /** Delivered, not yet acknowledged. */
  readonly ackPending: number;
  readonly redelivered: number;
}

/** One service's health, probed on `<url>/readyz`. */
export interface ServiceStatus {
  readonly url: string;
  readonly ready: boolean;
  readonly detail: string;
}

/**
 * `l2flow status`: streams (messages, bytes, time span), consumers (pending, ack pending,
 * redelivered) and, with `--health url,...`, each service's `/readyz`. Exit code 1 when NATS is
 * unreachable or a probed service is not ready.
 */
export async function status(ctx: CommandContext): Promise<number> {
  if (ctx.positionals.length > 0)
    throw new UsageError(`status takes no arguments, got: ${ctx.positionals.join(" ")}`);
  const urls = (stringOption(ctx, "health") ?? "")
    .split(",")
    .map((u) => u.trim().replace(/\/+$/, ""))
    .filter((u) => u.length > 0);
  for (const u of urls) {
    if (!/^https?:\/\/[^/]+/.test(u))
      throw new UsageError(
        `--health ${JSON.stringify(u)} is not a URL: give metrics URLs like http://127.0.0.1:9464`,
      );
  }
  const { io } = ctx;
  const [services, nats] = await Promise.all([
    Promise.all(urls.map((u) => probe(u))),
    ctx.connect().then(
      async (bus) => ({ ok: true as const, ...(await natsState(bus)) }),
      (err: unknown) => ({ ok: false as const, error: err instanceof Error ? err.message : String(err) }),
    ),
  ]);
  if (flag(ctx, "json")) {
    await writeLine(io.stdout, JSON.stringify({ nats, services }));
  } else {
    const text = nats.ok
      ? [streamTable(nats.streams), "", consumerTable(nats.consumers)]
      : [`NATS: ${nats.error}`];
    if (services.length > 0) text.push("", serviceTable(services));
    await writeLine(io.stdout, text.join("\n"));
  }
  return nats.ok && services.every((s) => s.ready) ? EXIT.ok : EXIT.failure;
}

async function natsState(bus: Bus): Promise<{ streams: StreamStatus[]; consumers: ConsumerStatus[] }> {
  const streams: StreamStatus[] = [];
  const consumers: ConsumerStatus[] = [];
  for await (const s of bus.jsm.streams.list()) {
    streams.push({
      name: s.config.name,
      subjects: s.config.subjects ?? [],
      messages: s.state.messages,
      bytes: s.state.bytes,
      firstTime: s.state.messages > 0 ? s.state.first_ts : undefined,
      lastTime: s.state.messages > 0 ? s.state.last_ts : undefined,
      consumers: s.state.consumer_count,
    });
    for await (const c of listConsumers(bus, s.config.name)) {
      consumers.push({
        stream: s.config.name,
        name: c.name,
        durable: c.config.durable_name !== undefined,
        filter: c.config.filter_subject ?? "",
        pending: c.num_pending,
        ackPending: c.num_ack_pending,
        redelivered: c.num_redelivered,
      });
    }
  }
  streams.sort((a, b) => a.name.localeCompare(b.name));
  consumers.sort((a, b) => a.stream.localeCompare(b.stream) || a.name.localeCompare(b.name));
  return { streams, consumers };
}

async function probe(url: string): Promise<ServiceStatus> {
  try {
    const res = await fetch(`${url}/readyz`, { signal: AbortSignal.timeout(2_000) });
    const body = (await res.json().catch(() => ({}))) as { status?: string; reason?: string };
    return res.ok
      ? { url, ready: true, detail: "ready" }
      : {
          url,
          ready: false,
          detail: `not ready (${res.status}): ${body.reason ?? body.status ?? "no reason given"}`,
        };
  } catch (err) {
    const cause = (err as { cause?: { code?: string } }).cause?.code;
    return {
      url,
      ready: false,
      detail: `unreachable: ${cause ?? (err instanceof Error ? err.message : String(err))}`,
    };
  }
}

function table(
  header: readonly string[],
  rows: readonly (readonly string[])[],
  right: ReadonlySet<number>,
): string {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? "").length)));
  const line = (cells: readonly string[]) =>
    cells
      .map((c, i) => (right.has(i) ? c.padStart(widths[i]!) : c.padEnd(widths[i]!)))
      .join("  ")
      .trimEnd();
  return [line(header), ...rows.map(line)].join("\n");
}

function streamTable(streams: readonly StreamStatus[]): string {
  if (streams.length === 0) return "no streams (nothing has provisioned l2flow's topology on this NATS yet)";
  return table(
    ["STREAM", "MESSAGES", "BYTES", "FIRST", "LAST", "CONSUMERS"],
    streams.map((s) => [
      s.name,
      String(s.messages),
      bytes(s.bytes),
      s.firstTime ?? "-",
      s.lastTime ?? "-",
      String(s.consumers),
    ]),
    new Set([1, 2, 5]),
  );
}

function consumerTable(consumers: readonly ConsumerStatus[]): string {
  if (consumers.length === 0) return "no consumers";
  return table(
    ["CONSUMER", "STREAM", "FILTER", "PENDING", "ACK PENDING", "REDELIVERED"],
    consumers.map((c) => [
      c.durable ? c.name : `${c.name} (ephemeral)`,
      c.stream,
      c.filter || "-",
      String(c.pending),
      String(c.ackPending),
      String(c.redelivered),
    ]),
    new Set([3, 4, 5]),
  );
}

function serviceTable(services: readonly ServiceStatus[]): string {
  return table(
    ["SERVICE", "HEALTH"],
    services.map((s) => [s.url, s.detail]),
    new Set(),
  );
}

function bytes(n: number): string {
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let v = n;
  let i = 0;
  while (v >= 1024 && i < units.length - 1) {
    v /= 1024;
    i++;
  }
  return i === 0 ? `${n} B` : `${v.toFixed(1)} ${units[i]}`;
}

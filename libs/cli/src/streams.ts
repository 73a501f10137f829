import { STREAMS } from "@l2flow/contracts";
import { provisionTopology, type Bus } from "@l2flow/bus";

/** True when every subject matching `filter` also matches `pattern` (NATS wildcards `*` and `>`). */
export function subjectWithin(filter: string, pattern: string): boolean {
  const f = filter.split(".");
  const p = pattern.split(".");
  for (let i = 0; i < f.length; i++) {
    const pt = p[i];
    if (pt === undefined) return false;
    if (pt === ">") return true;
    const ft = f[i]!;
    if (ft === ">") return false;
    if (pt === "*") continue;
    if (ft === "*" || ft !== pt) return false;
  }
  return f.length === p.length;
}

/** True when some subject matches both `a` and `b`. */
export function subjectsOverlap(a: string, b: string): boolean {
  const x = a.split(".");
  const y = b.split(".");
  for (let i = 0; ; i++) {
    const s = x[i];
    const t = y[i];
    if (s === ">" || t === ">") return s !== undefined && t !== undefined;
    if (s === undefined || t === undefined) return s === t;
    if (s !== "*" && t !== "*" && s !== t) return false;
  }
}

/** Which streams hold a subject filter: the one that contains it, or all it overlaps. */
export async function streamsFor(
  bus: Bus,
  subject: string,
): Promise<{ within?: string; overlapping: string[] }> {
  const overlapping: string[] = [];
  let within: string | undefined;
  for await (const info of bus.jsm.streams.list()) {
    const patterns = info.config.subjects ?? [];
    if (patterns.some((p) => subjectWithin(subject, p))) within ??= info.config.name;
    if (patterns.some((p) => subjectsOverlap(subject, p))) overlapping.push(info.config.name);
  }
  return { ...(within !== undefined ? { within } : {}), overlapping };
}

/** Creates MD_RAW with l2flow's defaults when it does not exist; an existing stream is left as it is. */
export async function ensureRawStream(bus: Bus): Promise<void> {
  try {
    await bus.jsm.streams.info(STREAMS.raw);
  } catch {
    await provisionTopology(bus, { only: [STREAMS.raw], buckets: false });
  }
}

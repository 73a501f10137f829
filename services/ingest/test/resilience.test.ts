// Ingest under failure: a replica killed with SIGKILL, NATS going away (within and beyond the outage
// buffer), Binance's REST ban, and symbols changed at run time.
import { spawn, type ChildProcess } from "node:child_process";
import { fileURLToPath } from "node:url";
import { afterEach, describe, expect, it } from "vitest";
import { subjects } from "@l2flow/contracts";
import { readRecording } from "@l2flow/recording";
import { fixtures } from "@l2flow/testkit";
import { expectPaced, expectRecordingStoredOnce, startHarness, waitUntil, type Harness } from "./harness.js";
import { metric, readRaw } from "./support.js";

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const ROOT = fileURLToPath(new URL("../../..", import.meta.url));
const enc = new TextEncoder();
const dec = new TextDecoder();

/** Ingest as its own process (the real entry point), so it can be killed with SIGKILL. */
function spawnIngest(env: Record<string, string>): ChildProcess {
  const child = spawn(
    process.execPath,
    ["--conditions=l2flow-source", "--import", "tsx", "services/ingest/src/main.ts"],
    {
      cwd: ROOT,
      env: { PATH: process.env.PATH ?? "", LOG_LEVEL: "warn", METRICS_PORT: "0", ...env },
      stdio: ["ignore", "ignore", "pipe"],
    },
  );
  child.stderr?.on("data", () => undefined);
  return child;
}

describe("ingest resilience", () => {
  let h: Harness | undefined;
  let child: ChildProcess | undefined;
  afterEach(async () => {
    child?.kill("SIGKILL");
    child = undefined;
    await h?.close();
    h = undefined;
  });

  it("two replicas on the same symbols store each frame once; killing one loses nothing", async () => {
    h = await startHarness({});
    const { sim } = h;
    child = spawnIngest({
      NATS_URL: h.nats.url,
      BINANCE_WS_URL: sim.wsUrl,
      BINANCE_REST_URL: sim.restUrl,
      SYMBOLS: "BTCUSDT",
    });
    // Both replicas with both connection sets up.
    await waitUntil(
      () => sim.stats().connections.filter((c) => c.closedAt === undefined).length === 4,
      30_000,
      "the second replica's connections",
    );
    sim.start();
    await waitUntil(() => sim.progress().replayed > sim.progress().total * 0.4, 30_000, "40% of the replay");
    child.kill("SIGKILL");
    await sim.done;
    await expectRecordingStoredOnce(h);
    // The surviving replica found most of what it sent already stored by the other one.
    expect(await metric(h.ingest.opsUrl, "l2flow_ingest_stored_total", 'duplicate="true"')).toBeGreaterThan(
      0,
    );
    expectPaced(sim);
  });

  it("keeps frames while NATS is down and stores them, each once, when it is back", async () => {
    h = await startHarness({});
    const { sim, nats, ingest } = h;
    sim.start();
    await waitUntil(() => sim.progress().replayed > sim.progress().total * 0.3, 30_000, "30% of the replay");
    await nats.stop();
    await sleep(2_000);
    // The frames wait packed: counted at their packed size, held in a segment of its own size at least.
    expect(await metric(ingest.opsUrl, "l2flow_ingest_buffer_bytes")).toBeGreaterThan(0);
    expect(await metric(ingest.opsUrl, "l2flow_ingest_buffer_memory_bytes")).toBeGreaterThan(0);
    await nats.restart();
    await sim.done;
    await expectRecordingStoredOnce(h);
    await waitUntil(
      async () =>
        (await metric(ingest.opsUrl, "l2flow_ingest_buffer_bytes")) === 0 &&
        (await metric(ingest.opsUrl, "l2flow_ingest_buffer_memory_bytes")) === 0,
      10_000,
      "the outage buffer to empty",
    );
    expect(await metric(ingest.opsUrl, "l2flow_ingest_frames_dropped_total")).toBe(0);
    const status = await readRaw(h.bus, subjects.raw("status", "BTCUSDT"));
    expect(status.filter((m) => m.json.type === "gap")).toHaveLength(0);
  });

  it("beyond the outage buffer drops the oldest frames, counts them, stores a gap event and fetches the trades back", async () => {
    h = await startHarness({ OUTAGE_BUFFER_BYTES: "20000" });
    const { sim, nats, ingest } = h;
    sim.start();
    await waitUntil(() => sim.progress().replayed > sim.progress().total * 0.3, 30_000, "30% of the replay");
    await nats.stop();
    await sleep(2_000);
    const buffered = await metric(ingest.opsUrl, "l2flow_ingest_buffer_bytes");
    expect(buffered).toBeLessThanOrEqual(20_000);
    expect(await metric(ingest.opsUrl, "l2flow_ingest_buffer_limit_bytes")).toBe(20_000);
    await nats.restart();
    await waitUntil(
      async () =>
        // JetStream may still be recovering its store right after the restart.
        (await readRaw(h!.bus, subjects.raw("status", "BTCUSDT")).catch(() => [])).some(
          (m) => m.json.type === "gap",
        ),
      20_000,
      "a gap status event",
    );
    expect(
      await metric(ingest.opsUrl, "l2flow_ingest_frames_dropped_total", 'reason="overflow"'),
    ).toBeGreaterThan(0);
    // The dropped trades are fetched back over REST by id: none is missing (diffs cannot be had again).
    await sim.done;
    await expectRecordingStoredOnce(h, { diffs: false });
    expect(await metric(ingest.opsUrl, "l2flow_ingest_trades_backfilled_total")).toBeGreaterThan(0);
  });

  it("a 418 stops snapshot requests until Retry-After has passed; resync requests meanwhile share one snapshot", async () => {
    h = await startHarness(
      // The client's own budget stays out of the way: the ban is what is under test.
      { SNAPSHOT_LIMIT: "100", REST_WEIGHT_PER_MIN: "6000" },
      { sim: { weightLimitPerMinute: 100, weightWindowMs: 2_000, banMs: 3_000 } },
    );
    const { sim, bus, ingest } = h;
    await waitUntil(
      async () => (await metric(ingest.opsUrl, "l2flow_ingest_snapshots_total")) === 1,
      10_000,
      "the first snapshot",
    );
    // Someone else on this IP ignores the limit until Binance bans the IP.
    let banned = false;
    for (let i = 0; i < 10 && !banned; i++) {
      const res = await fetch(`${sim.restUrl}/api/v3/depth?symbol=BTCUSDT&limit=5000`);
      await res.text();
      banned = res.status === 418;
    }
    expect(banned).toBe(true);
    const bannedAt = Date.now();
    // Ingest's requests are the ones after ours (by time alone, our last 418 can share bannedAt's millisecond).
    const ours = sim.stats().rest.requests.length;
    // The normalizer asks for a resync during the ban, and asks again while waiting (as normalizers
    // do every RESYNC_REQUEST_TIMEOUT_MS, or as two partitions' would): ingest answers only after the
    // ban is over, every request with the same single snapshot.
    const ask = () =>
      bus.nc.request(subjects.resyncRequest("BTCUSDT"), enc.encode("{}"), { timeout: 30_000 });
    const first = ask();
    await new Promise((r) => setTimeout(r, 300));
    const replies = await Promise.all([first, ask(), ask(), ask()]);
    const answers = replies.map(
      (r) => JSON.parse(dec.decode(r.data)) as { ok: boolean; lastUpdateId: number },
    );
    expect(answers.map((a) => a.ok)).toEqual([true, true, true, true]);
    expect(new Set(answers.map((a) => a.lastUpdateId)).size).toBe(1);
    const after = sim.stats().rest.requests.slice(ours);
    const refused = after.filter((r) => r.status === 418);
    const served = after.filter((r) => r.status === 200);
    // One request learnt of the ban; nothing more was sent until Retry-After had passed.
    expect(refused.length).toBeLessThanOrEqual(1);
    expect(served).toHaveLength(1);
    expect(served[0]!.atMs).toBeGreaterThanOrEqual(bannedAt + 2_500);
    expect(await metric(ingest.opsUrl, "l2flow_ingest_rest_rate_limited_total", 'status="418"')).toBe(
      refused.length,
    );
  });

  it("adds and removes symbols at run time without touching other connections", async () => {
    const ten = readRecording(fixtures.tenSymbols);
    const [a, b, c] = ten.symbols as [string, string, string];
    h = await startHarness(
      { SYMBOLS: `${a},${b}`, STREAM_KINDS: "aggTrade,depth", WS_REDUNDANCY: "1" },
      { recording: ten, sim: { speed: 5 } },
    );
    const { sim, bus, ingest } = h;
    sim.start();
    const ask = async (body: unknown) =>
      JSON.parse(
        dec.decode(
          (
            await bus.nc.request(subjects.ingestSymbols, enc.encode(JSON.stringify(body)), {
              timeout: 10_000,
            })
          ).data,
        ),
      ) as {
        ok: boolean;
        symbols?: string[];
        error?: string;
      };
    const bad = await ask({ add: ["not a symbol"] });
    expect(bad.ok).toBe(false);
    expect(bad.error).toMatch(/not a valid symbol/);
    const added = await ask({ add: [c.toLowerCase()] });
    expect(added).toEqual({ ok: true, symbols: [a, b, c] });
    const count = async (s: string) => {
      const subject = subjects.raw("depth", s);
      return (
        (await bus.jsm.streams.info("MD_RAW", { subjects_filter: subject })).state.subjects?.[subject] ?? 0
      );
    };
    await waitUntil(async () => (await count(c)) > 5, 15_000, `frames of ${c}`);
    // Added by SUBSCRIBE on the open connection: no new connection was opened.
    expect(sim.stats().connectionAttempts).toBe(1);
    // As at a connect: a "connected" status and a snapshot for the normalizer to sync from.
    await waitUntil(
      async () => (await readRaw(bus, subjects.raw("snapshot", c)).catch(() => [])).length === 1,
      10_000,
      `a snapshot of ${c}`,
    );
    const statuses = await readRaw(bus, subjects.raw("status", c));
    expect(statuses.map((m) => m.json.type)).toEqual(["connected"]);
    const removed = await ask({ remove: [a] });
    expect(removed).toEqual({ ok: true, symbols: [b, c] });
    await sleep(500);
    const before = await count(a);
    await sleep(1_500);
    expect(await count(a)).toBe(before);
    expect(await count(b)).toBeGreaterThan(0);
    expect(ingest.symbols()).toEqual([b, c]);
    expectPaced(sim);
  });
});

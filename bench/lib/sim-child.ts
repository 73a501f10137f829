/**
 * The simulator in a process of its own, driven over IPC by `startSimulatorProcess` (procs.ts), so
 * that replaying many symbols does not share an event loop with the services it feeds or with the
 * benchmark's measurements. Options arrive in `L2FLOW_SIM_OPTIONS` (JSON `SimChildOptions`).
 */
import { readRecording } from "@l2flow/recording";
import { fixtures, startSimulator } from "@l2flow/testkit";
import { frameRate, loopStaggerLimit, scaleRecording } from "./scale.js";
import type { SimChildOptions, SimProgress, SimReply, SimRequest } from "./procs.js";

const options = JSON.parse(process.env.L2FLOW_SIM_OPTIONS ?? "{}") as SimChildOptions;
const base = readRecording(fixtures[options.recording]);
const stagger = fittingStagger();
const recording = scaleRecording(base, {
  copies: options.copies,
  dropKinds: options.dropKinds ?? [],
  compress: options.compress ?? 1,
  stagger,
  loop: options.loop === true,
});
const speed = options.rate === undefined ? 1 : speedFor(options.rate, options.seconds ?? 0);
const sim = await startSimulator({
  recording,
  speed,
  autoStart: false,
  ...(options.weightLimitPerMinute === undefined
    ? {}
    : { weightLimitPerMinute: options.weightLimitPerMinute }),
  ...(options.maxLagMs === undefined ? {} : { maxLagMs: options.maxLagMs }),
});
const send = (reply: SimReply) => process.send!(reply);
send({
  id: 0,
  result: { wsUrl: sim.wsUrl, restUrl: sim.restUrl, symbols: recording.symbols, speed, stagger },
});

// Wall time of the replay: from start until it finished or was paused (performance.now() ms).
let startedAt: number | undefined;
let stoppedAt: number | undefined;
void sim.done.then(() => (stoppedAt ??= performance.now()));

process.on("message", (msg: SimRequest) => {
  void (async () => {
    let result: unknown;
    switch (msg.op) {
      case "start":
        startedAt ??= performance.now();
        sim.start();
        break;
      case "pause":
        sim.pause();
        if (startedAt !== undefined) stoppedAt ??= performance.now();
        break;
      case "progress":
        result = {
          ...sim.progress(),
          elapsedMs: startedAt === undefined ? 0 : (stoppedAt ?? performance.now()) - startedAt,
        } satisfies SimProgress;
        break;
      case "replayedBySymbol": {
        const index = new Map(recording.symbols.map((s, i) => [s, i]));
        const counts = new Array<number>(recording.symbols.length).fill(0);
        const { replayed } = sim.progress();
        for (let i = 0; i < replayed; i++) counts[index.get(recording.events[i]!.symbol)!]! += 1;
        result = counts;
        break;
      }
      case "openConnections":
        result = openIds().length;
        break;
      case "dropConnections": {
        const { target, minOpen } = msg.drop ?? { target: "random", minOpen: 0 };
        const open = openIds();
        result =
          open.length < minOpen
            ? 0
            : target === "all"
              ? sim.dropConnections()
              : sim.dropConnections(
                  target === "random" ? open[Math.floor(Math.random() * open.length)]! : target,
                );
        break;
      }
      case "close":
        await sim.close();
        send({ id: msg.id, result: undefined });
        process.exit(0);
    }
    send({ id: msg.id, result });
  })();
});
process.on("disconnect", () => process.exit(0));

/** Ids of the WebSocket connections open now. */
function openIds(): number[] {
  return sim
    .stats()
    .connections.filter((c) => c.closedAt === undefined)
    .map((c) => c.id);
}

/**
 * `options.stagger`, or less so that the last copy (the shortest: it starts furthest into the
 * recording) still lasts the run: at `rate`, the copies together replay about `rate × seconds` frames,
 * `rate × seconds / copies` each, which at the recording's own frame rate (with a tenth to spare)
 * takes a span of the recording that must fit after the last copy's start. A multiple of 0.1 s, so
 * every copy's depth updates keep the recording's 100 ms phase.
 */
function fittingStagger(): number {
  const wanted = options.stagger ?? 0;
  // Every looping copy replays the whole recording once: only the copies' starts must fit in it.
  if (options.loop === true) return Math.max(0, Math.min(wanted, loopStaggerLimit(base, options.copies)));
  if (wanted <= 0 || options.copies < 2 || options.rate === undefined) return Math.max(0, wanted);
  const drop = new Set(options.dropKinds ?? []);
  const frames = base.events.filter((e) => e.type === "frame" && !drop.has(e.kind));
  if (frames.length < 2) return 0;
  // In the recording's own seconds (before `compress`), as `stagger` is.
  const spanS = (frames.at(-1)!.receiveTimeUs - frames[0]!.receiveTimeUs) / 1e6;
  const needS = ((options.rate * (options.seconds ?? 0)) / options.copies / (frames.length / spanS)) * 1.1;
  const fits = Math.floor(((spanS - needS) / (options.copies - 1)) * 10) / 10;
  return Math.max(0, Math.min(wanted, fits));
}

/**
 * The replay speed at which the first `seconds` of the replay carry `rate` frames per second on
 * average. A recording's rate varies (trades come in bursts), so the whole recording's average would
 * give another rate over the part a benchmark actually replays. Without `seconds`, the average.
 */
function speedFor(rate: number, seconds: number): number {
  const times = recording.events.filter((e) => e.type === "frame").map((e) => e.receiveTimeUs);
  if (seconds <= 0 || times.length < 2) return rate / frameRate(recording);
  const framesWithin = (speed: number) => {
    const until = times[0]! + speed * seconds * 1e6;
    let lo = 0;
    let hi = times.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (times[mid]! <= until) lo = mid + 1;
      else hi = mid;
    }
    return lo;
  };
  const want = rate * seconds;
  if (framesWithin(Number.MAX_SAFE_INTEGER / 1e9) < want) return rate / frameRate(recording); // shorter than asked
  let lo = 0;
  let hi = 1;
  while (framesWithin(hi) < want) hi *= 2;
  for (let i = 0; i < 50; i++) {
    const mid = (lo + hi) / 2;
    if (framesWithin(mid) < want) lo = mid;
    else hi = mid;
  }
  return hi;
}

import { setFlagsFromString } from "node:v8";
import type { OnOff } from "./config.js";

/**
 * V8 flags every service sets as it starts (`GC_TUNING=on`, the default).
 *
 * A service runs with a capped old space (`--max-old-space-size=192`, see the Dockerfile) and V8's
 * 16 MB semi-spaces. With a cap that small V8 grows the old generation's limit by little (live size
 * plus 8 MB, plus room for the young generation), and its rule for starting incremental marking —
 * start when the room left under the limit is less than the young generation's capacity — then holds
 * right after every collection: nearly every scavenge started a full mark-compact. Measured in the
 * e2e set-up at 10k frames/s (ingest and the normalizer, 100 symbols, 45 s): the normalizer ran 47
 * mark-compacts (each a 2-10 ms pause, plus marking steps of up to 12 ms on the main thread), ingest
 * 51 (7 once the protocol writer stopped allocating a chunk per 256 KiB sent).
 *
 * `--incremental-marking-soft-trigger=60` replaces that rule with "start marking once 60 % of the room
 * the last collection left has been used". The limit stays, so does the bound on the heap, but the heap
 * fills more of it between collections. At 60 %: the normalizer 26 mark-compacts, ingest 3, frame →
 * book p90 6.8-8.9 ms against 8.8-10.9 with V8's rule (three runs each), the 400-symbol soak's
 * normalizers at 188-189 MB RSS at most (183-185 with V8's rule; the soak's bound is 200). At 90 %: 18
 * mark-compacts and p90 5.7-8.0 ms, but the soak's normalizers reached 196-197 MB.
 */
export const GC_TUNING_FLAGS: readonly string[] = ["--incremental-marking-soft-trigger=60"];

/** A service's `GC_TUNING`. */
export type GcTuning = OnOff;

/**
 * Sets `GC_TUNING_FLAGS` (`mode` "on") or leaves V8's defaults ("off"). V8 reads these when it
 * decides whether to start marking, so setting them after start-up takes effect at once (Node does
 * not accept them in `NODE_OPTIONS`).
 */
export function applyGcTuning(mode: GcTuning): void {
  if (mode === "on") for (const flag of GC_TUNING_FLAGS) setFlagsFromString(flag);
}

/**
 * The replay's one global clock: maps the recording's receive times onto wall time at a speed,
 * delivers every event whose time has come in batches (never one timer per event), yields to the
 * event loop between batches, and at full speed waits while a client's send buffer is full.
 */
import type { RecordedEvent } from "@l2flow/recording";
import type { ReplayProgress } from "./options.js";

/** Where replayed events go. */
export interface ReplaySink {
  deliver(event: RecordedEvent): void;
  /** At full speed: false while some client's buffer is too full to take more. */
  ready(): boolean;
  /** The last event was replayed; `willLoop` when the replay starts over. */
  ended(willLoop: boolean): void;
  /** A new pass starts from the first event. */
  rewound(): void;
  /** The events delivered since the last call are all out of the clock's hands: send them now. */
  flush(): void;
}

/** Options of `ReplayClock`. */
export interface ReplayClockOptions {
  /** Infinity = as fast as possible. */
  readonly speed: number;
  readonly loop: boolean;
  readonly batchMaxEvents: number;
  /** Longest a batch may run before yielding. */
  readonly batchMaxMs?: number;
  /** Poll interval while waiting on a full client buffer. */
  readonly backpressurePollMs?: number;
  /**
   * At a finite speed, the most the replay may run behind its timeline (its own ticks late); further
   * behind, the timeline is moved back to this lag. Default Infinity.
   */
  readonly maxLagMs?: number;
}

/** Drives the replay. */
export class ReplayClock {
  readonly #events: readonly RecordedEvent[];
  readonly #sink: ReplaySink;
  readonly #o: Required<ReplayClockOptions>;
  #speed: number;
  #index = 0;
  #loops = 0;
  #started = false;
  #paused = false;
  #finished = false;
  #closed = false;
  // Recording time (µs) that corresponds to wall time #anchorWallMs (performance.now()).
  #anchorRecUs = 0;
  #anchorWallMs = 0;
  #timer: NodeJS.Timeout | undefined;
  #immediate: NodeJS.Immediate | undefined;

  constructor(events: readonly RecordedEvent[], sink: ReplaySink, options: ReplayClockOptions) {
    this.#events = events;
    this.#sink = sink;
    this.#o = { batchMaxMs: 8, backpressurePollMs: 2, maxLagMs: Infinity, ...options };
    this.#speed = options.speed;
  }

  start(): void {
    if (this.#started || this.#closed) return;
    this.#started = true;
    this.#rewindAnchor();
    this.#schedule(0);
  }

  pause(): void {
    if (this.#paused || this.#closed) return;
    if (this.#started) this.#reanchor();
    this.#paused = true;
    this.#cancel();
  }

  resume(): void {
    if (!this.#paused || this.#closed) return;
    this.#paused = false;
    this.#anchorWallMs = performance.now();
    if (this.#started) this.#schedule(0);
  }

  setSpeed(speed: number): void {
    if (this.#started && !this.#paused) this.#reanchor();
    this.#speed = speed === 0 ? Infinity : speed;
    if (this.#started && !this.#paused && !this.#closed) {
      this.#cancel();
      this.#schedule(0);
    }
  }

  close(): void {
    this.#closed = true;
    this.#cancel();
  }

  progress(): ReplayProgress {
    const last = this.#events[this.#index - 1];
    return {
      replayed: this.#index,
      total: this.#events.length,
      loops: this.#loops,
      started: this.#started,
      paused: this.#paused,
      finished: this.#finished,
      speed: this.#speed,
      recordingTimeUs: last?.receiveTimeUs,
    };
  }

  /** Recording time (µs) reached at wall time `wallMs`. */
  #recordingNow(wallMs: number): number {
    if (this.#speed === Infinity) return Infinity;
    return this.#anchorRecUs + (wallMs - this.#anchorWallMs) * 1000 * this.#speed;
  }

  /** Re-bases the anchor on now, so a change of speed or a pause keeps the current position. */
  #reanchor(): void {
    const now = performance.now();
    const next = this.#events[this.#index];
    const reached = this.#recordingNow(now);
    // At full speed "now" is wherever the replay has got to: the next event's time.
    this.#anchorRecUs = reached === Infinity ? (next?.receiveTimeUs ?? this.#anchorRecUs) : reached;
    this.#anchorWallMs = now;
  }

  #rewindAnchor(): void {
    this.#anchorRecUs = this.#events[0]?.receiveTimeUs ?? 0;
    this.#anchorWallMs = performance.now();
  }

  #cancel(): void {
    clearTimeout(this.#timer);
    this.#timer = undefined;
    if (this.#immediate !== undefined) clearImmediate(this.#immediate);
    this.#immediate = undefined;
  }

  #schedule(delayMs: number): void {
    if (this.#timer !== undefined || this.#immediate !== undefined) return;
    if (delayMs <= 0) this.#immediate = setImmediate(this.#tick);
    else this.#timer = setTimeout(this.#tick, Math.min(delayMs, 2_147_483_647));
  }

  readonly #tick = (): void => {
    this.#timer = undefined;
    this.#immediate = undefined;
    if (this.#closed || this.#paused || this.#finished) return;
    if (this.#speed === Infinity && !this.#sink.ready()) {
      this.#schedule(this.#o.backpressurePollMs);
      return;
    }
    try {
      this.#deliverDue();
    } finally {
      this.#sink.flush();
    }
  };

  /** Delivers every event whose time has come (or a batch's worth), then schedules the next tick. */
  #deliverDue(): void {
    const startMs = performance.now();
    let horizonUs = this.#recordingNow(startMs);
    const events = this.#events;
    const due = events[this.#index];
    if (due !== undefined && horizonUs !== Infinity) {
      const lagMs = (horizonUs - due.receiveTimeUs) / (1000 * this.#speed);
      if (lagMs > this.#o.maxLagMs) {
        // Running late by more than allowed: the timeline waits for the replay.
        this.#anchorWallMs += lagMs - this.#o.maxLagMs;
        horizonUs = this.#recordingNow(startMs);
      }
    }
    let n = 0;
    while (this.#index < events.length) {
      const event = events[this.#index]!;
      if (event.receiveTimeUs > horizonUs) break;
      this.#index++;
      this.#sink.deliver(event);
      n++;
      if (
        n >= this.#o.batchMaxEvents ||
        ((n & 63) === 0 && performance.now() - startMs > this.#o.batchMaxMs)
      ) {
        // Budget spent: let sockets, REST and timers run, then carry on.
        if (this.#index < events.length) {
          this.#schedule(0);
          return;
        }
      }
      if (this.#closed || this.#paused) return;
    }
    if (this.#index >= events.length) {
      this.#sink.ended(this.#o.loop);
      if (!this.#o.loop) {
        this.#finished = true;
        return;
      }
      this.#loops++;
      this.#index = 0;
      this.#sink.rewound();
      this.#rewindAnchor();
      this.#schedule(0);
      return;
    }
    const next = events[this.#index]!;
    const dueWallMs = this.#anchorWallMs + (next.receiveTimeUs - this.#anchorRecUs) / (1000 * this.#speed);
    this.#schedule(Math.max(1, Math.ceil(dueWallMs - performance.now())));
  }
}

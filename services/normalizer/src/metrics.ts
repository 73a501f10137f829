import { WindowCloseReason } from "@l2flow/contracts";
import { Counter, Gauge, Tally, talliesBy, type Registry } from "@l2flow/runtime";
import type { ProcessorEvents } from "./symbol.js";

/** The normalizer's Prometheus metrics (docs/operations.md, "Metrics"). */
export function normalizerMetrics(registry: Registry) {
  const registers = [registry];
  const m = {
    raw: new Counter({
      name: "l2flow_normalizer_raw_messages_total",
      help: "Raw messages handled, by kind",
      labelNames: ["kind"],
      registers,
    }),
    bad: new Counter({
      name: "l2flow_normalizer_bad_messages_total",
      help: "Raw messages that could not be used (counted and skipped), by code",
      labelNames: ["code"],
      registers,
    }),
    bookUpdates: new Counter({
      name: "l2flow_normalizer_book_updates_total",
      help: "Diffs applied to books (rate() gives book updates per second)",
      registers,
    }),
    books: new Counter({
      name: "l2flow_normalizer_book_snapshots_total",
      help: "Book snapshots published",
      registers,
    }),
    gaps: new Counter({
      name: "l2flow_normalizer_gaps_total",
      help: "Gaps detected, by reason",
      labelNames: ["reason"],
      registers,
    }),
    resyncs: new Counter({
      name: "l2flow_normalizer_resync_requests_total",
      help: "Snapshots asked of ingest, by reason (gap: to resynchronise; refresh: to correct an in-sync book) and outcome",
      labelNames: ["reason", "outcome"],
      registers,
    }),
    refreshes: new Counter({
      name: "l2flow_normalizer_book_refreshes_total",
      help: "In-sync books corrected by a refresh snapshot",
      registers,
    }),
    crossed: new Counter({
      name: "l2flow_normalizer_crossed_books_total",
      help: "Crossed books detected",
      registers,
    }),
    windows: new Counter({
      name: "l2flow_normalizer_windows_total",
      help: "Windows closed, by interval and reason",
      labelNames: ["interval", "reason"],
      registers,
    }),
    late: new Counter({
      name: "l2flow_normalizer_late_events_total",
      help: "Events that arrived after their window closed",
      registers,
    }),
    windowLag: new Gauge({
      name: "l2flow_normalizer_window_lag_seconds",
      help: "Wall clock minus the end of the last closed window",
      registers,
    }),
    symbols: new Gauge({
      name: "l2flow_normalizer_symbols",
      help: "Symbols this instance normalizes",
      registers,
    }),
    bookLevels: new Gauge({
      name: "l2flow_normalizer_book_levels",
      help: "Price levels held in all books, both sides (most of the normalizer's memory; BOOK_MAX_LEVELS caps each side)",
      registers,
    }),
    bufferedDiffs: new Gauge({
      name: "l2flow_normalizer_buffered_diffs",
      help: "Diffs held for books waiting for a snapshot (MAX_BUFFERED_DIFFS caps each book)",
      registers,
    }),
    bufferDrops: new Counter({
      name: "l2flow_normalizer_buffered_diffs_dropped_total",
      help: "Oldest diffs dropped from a full buffer while waiting for a snapshot (one older than the buffer is then refused and another requested)",
      registers,
    }),
    tradesOutOfOrder: new Counter({
      name: "l2flow_normalizer_trades_out_of_order_total",
      help: "Trades out of id order on MD_RAW, by outcome (late: a missing id, e.g. backfilled by ingest, published; repeat: an id already had, dropped)",
      labelNames: ["outcome"],
      registers,
    }),
    checkpoints: new Counter({
      name: "l2flow_normalizer_checkpoints_total",
      help: "Checkpoints written to KV md_state",
      registers,
    }),
    rawPending: new Gauge({
      name: "l2flow_normalizer_raw_pending",
      help: "Messages of MD_RAW not yet read by this instance (its consumer's pending count at the last message; asked of nats-server once reading has been quiet for 1 s): how far behind it is",
      registers,
    }),
    caughtUp: new Gauge({
      name: "l2flow_normalizer_caught_up",
      help: "1 once this instance has read all of MD_RAW (windows idle-close only then), 0 while it is behind",
      registers,
    }),
    outputsInFlight: new Gauge({
      name: "l2flow_normalizer_outputs_in_flight",
      help: "Outputs waiting for JetStream's ack",
      registers,
    }),
    outputsLost: new Counter({
      name: "l2flow_normalizer_outputs_lost_total",
      help: "Outputs never stored (only at shutdown); the next start republishes them from the checkpoint",
      registers,
    }),
    outputsFenced: new Counter({
      name: "l2flow_normalizer_fenced_outputs_total",
      help: "Outputs sent under a batch's fence, by stream (MD_NORM, MD_WINDOW) and outcome: proven (stored, by the stream sequences of the fence's answer) or unconfirmed (a duplicate or another partition's outputs in the batch, a refusal, a loss; sent again with an ack each)",
      labelNames: ["stream", "outcome"],
      registers,
    }),
    threadHeap: new Gauge({
      name: "l2flow_normalizer_thread_heap_bytes",
      help: "The processing thread's V8 heap (NORMALIZER_THREAD=on; the l2flow_nodejs_heap_* metrics are the main thread's), by what: used (live objects and garbage not yet collected), committed, external (Buffers and ArrayBuffers)",
      labelNames: ["what"],
      registers,
    }),
    publishErrors: new Counter({
      name: "l2flow_normalizer_publish_errors_total",
      help: "Output publishes that failed and were sent again",
      labelNames: ["code"],
      registers,
    }),
  };
  // Counted per message: tallies, handed to prom-client at each scrape (see Tally).
  return {
    ...m,
    /** `raw` for one kind, counted per message. */
    rawOf: talliesBy(m.raw, "kind"),
    bookUpdateTally: new Tally(m.bookUpdates),
    bookTally: new Tally(m.books),
  };
}

/** The metrics object `normalizerMetrics` returns. */
export type NormalizerMetrics = ReturnType<typeof normalizerMetrics>;

/** The processors' events, counted into the metrics. */
export function processorEvents(m: NormalizerMetrics): ProcessorEvents {
  return {
    raw: (kind) => m.rawOf(kind).inc(),
    bookUpdate: () => m.bookUpdateTally.inc(),
    bookSnapshot: () => m.bookTally.inc(),
    gap: (reason, crossed) => {
      m.gaps.inc({ reason });
      if (crossed) m.crossed.inc();
    },
    refresh: () => m.refreshes.inc(),
    bufferDrop: () => m.bufferDrops.inc(),
    tradeOutOfOrder: (outcome) => m.tradesOutOfOrder.inc({ outcome }),
    window: (w) => {
      // The enum's name (WINDOW_CLOSE_REASON_WATERMARK, …), as the analyzer labels DegradedReason.
      m.windows.inc({
        interval: w.interval,
        reason: WindowCloseReason[w.closeReason] ?? String(w.closeReason),
      });
      if (w.lateEventCount > 0) m.late.inc(w.lateEventCount);
      m.windowLag.set(Math.max(0, (Date.now() - w.endTimeMs) / 1000));
    },
  };
}

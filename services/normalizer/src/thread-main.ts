/**
 * The normalizer's processing thread: every symbol's `SymbolProcessor` (parsing, books, windows,
 * encoding) runs here, on the commands the main thread sends in batches; the main thread keeps NATS
 * (reading MD_RAW, publishing, checkpoints). Started by `startProcessingThread`.
 */
import { getHeapStatistics } from "node:v8";
import { parentPort, workerData } from "node:worker_threads";
import { BatchReader, BatchWriter } from "./batch.js";
import { closeWindowsOf, handleRaw } from "./port.js";
import { SymbolProcessor, type ProcessorState } from "./symbol.js";
import {
  ANS,
  CMD,
  EventRecorder,
  HEAP_REPORT_MS,
  READY,
  writeCounts,
  writeHandled,
  type AnswerBatch,
  type Batch,
  type HeapReport,
  type ThreadData,
} from "./thread-protocol.js";

if (parentPort === null) throw new Error("thread-main.ts runs as a worker thread of the normalizer");
const port = parentPort;
const { options } = workerData as ThreadData;
const events = new EventRecorder();
const procs: SymbolProcessor[] = [];
const out = new BatchWriter(256 * 1024);
/** Answer batches the main thread has read and given back. */
const spare: ArrayBuffer[] = [];

port.on("message", (batch: Batch) => {
  if (batch.returned !== undefined && spare.length < 4) spare.push(batch.returned);
  const r = new BatchReader(batch.bytes, batch.length);
  const extras: unknown[] = [];
  while (!r.done) {
    const op = r.u8();
    const slot = r.u32();
    if (op === CMD.open) {
      procs[slot] = new SymbolProcessor(r.str(), options, events);
      continue;
    }
    const p = procs[slot]!;
    switch (op) {
      case CMD.handle: {
        const kind = r.str();
        const seq = r.f64();
        const receiveTimeUs = r.f64();
        const h = handleRaw(p, kind, r.bytes(), receiveTimeUs, seq);
        out.u8(ANS.handled);
        out.u32(slot);
        out.f64(seq);
        writeCounts(out, p);
        writeHandled(out, h);
        break;
      }
      case CMD.refill: {
        const kind = r.str();
        const seq = r.f64();
        p.refill(kind, r.bytes(), seq);
        break;
      }
      case CMD.restore: {
        const ok = p.restore(batch.extras[r.u32()] as ProcessorState);
        out.u8(ANS.restored);
        out.u32(slot);
        out.u8(ok ? 1 : 0);
        writeCounts(out, p);
        break;
      }
      case CMD.endRefill:
        out.u8(ANS.refillEnded);
        out.u32(slot);
        out.u8(p.endRefill() ? 1 : 0);
        break;
      case CMD.closeWindows:
        out.u8(ANS.handled);
        out.u32(slot);
        out.f64(0);
        writeCounts(out, p);
        writeHandled(out, closeWindowsOf(p));
        break;
      case CMD.serialize:
        extras.push(JSON.stringify(p.serialize()));
        out.u8(ANS.serialized);
        out.u32(slot);
        out.u32(extras.length - 1);
        break;
      default:
        throw new Error(`the processing thread got an unknown command ${op}`);
    }
  }
  const length = out.length;
  const bytes = out.take(spare.pop());
  const answer: AnswerBatch = { bytes, length, extras, events: events.take(), returned: batch.bytes };
  port.postMessage(answer, [bytes, batch.bytes]);
});
// Loaded: the main thread starts handing over messages.
port.postMessage(READY);

/** The main thread's metrics cannot read this thread's heap: it is sent to them. */
function reportHeap(): void {
  const h = getHeapStatistics();
  const report: HeapReport = {
    heap: { used: h.used_heap_size, committed: h.total_heap_size, external: h.external_memory },
  };
  port.postMessage(report);
}
reportHeap();
setInterval(reportHeap, HEAP_REPORT_MS).unref();

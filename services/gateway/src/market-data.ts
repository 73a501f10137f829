import { status, type sendUnaryData, type ServerUnaryCall, type ServerWritableStream } from "@grpc/grpc-js";
import type { Bus, KV } from "@l2flow/bus";
import {
  BookSnapshot,
  bookKey,
  EXCHANGE,
  Signal,
  STREAMS,
  subjects,
  Window,
  type GetBookRequest,
  type GetBookResponse,
  type GetWindowRequest,
  type GetWindowResponse,
  type ListSymbolsRequest,
  type ListSymbolsResponse,
  type MarketDataServer,
  type StreamSignalsRequest,
  type StreamSignalsResponse,
  type StreamWindowsRequest,
  type StreamWindowsResponse,
  type SymbolInfo,
} from "@l2flow/contracts";
import type { Logger } from "@l2flow/runtime";
import { parseDepth, parseInterval, parseStreamRequest, parseSymbol } from "./args.js";
import { notFound, RpcError, statusName, toRpcError, toServiceError } from "./errors.js";
import type { GatewayMetrics } from "./metrics.js";
import { StreamPump } from "./streaming.js";

/** What the MarketData handlers need. */
export interface MarketDataOptions {
  readonly bus: Bus;
  /**
   * JetStream manager for GetWindow's reads. Its request timeout (the NATS client's default, 5 s) is how
   * long a read a call gave up on stays pending; `bus.jsm` waits NATS_CONNECT_TIMEOUT_MS.
   */
  readonly jsm: Bus["jsm"];
  /** KV `md_book`. */
  readonly books: KV;
  readonly metrics: GatewayMetrics;
  readonly logger: Logger;
  readonly maxStreams: number;
  readonly streamBuffer: number;
  readonly slowClientTimeoutMs: number;
  readonly streamResumeTimeoutMs: number;
  /** Upper bound of one NATS request inside a unary call (the call's deadline may cut it shorter). */
  readonly natsTimeoutMs: number;
}

/** The MarketData implementation plus what shutdown needs. */
export interface MarketDataImpl {
  readonly server: MarketDataServer;
  /** Streams open now. */
  activeStreams(): number;
  /** Ends every open stream with UNAVAILABLE (shutdown); new streams are refused from now on. */
  stopStreams(reason: string): void;
}

/** Symbols read from KV at once by ListSymbols. */
const LIST_CONCURRENCY = 32;

/** Builds the handlers of `l2flow.v1.MarketData` over the bus and KV `md_book`. */
export function createMarketData(o: MarketDataOptions): MarketDataImpl {
  const pumps = new Set<StreamPump<unknown>>();
  let closing: string | undefined;

  const getBook = async (req: GetBookRequest, call: CallScope): Promise<GetBookResponse> => {
    const symbol = parseSymbol(req.symbol);
    const depth = parseDepth(req.depth);
    const entry = await nats(o, call, "reading KV md_book", () => o.books.get(bookKey(symbol)));
    if (entry === null || entry.operation !== "PUT" || entry.length === 0)
      throw notFound(
        `no book for ${symbol}: l2flow has no data for it (ListSymbols lists the symbols it has)`,
      );
    const book = decodeStored((b) => BookSnapshot.decode(b), entry.value, `the stored book of ${symbol}`);
    if (depth > 0) {
      book.bids = book.bids.slice(0, depth);
      book.asks = book.asks.slice(0, depth);
    }
    return { book };
  };

  const getWindow = async (req: GetWindowRequest, call: CallScope): Promise<GetWindowResponse> => {
    const symbol = parseSymbol(req.symbol);
    const interval = parseInterval(req.interval);
    const subject = subjects.window(interval, symbol);
    const stored = await nats(o, call, `reading the last message of ${subject}`, () =>
      o.jsm.streams.getMessage(STREAMS.window, { last_by_subj: subject }).catch((err: unknown) => {
        if (isNoMessage(err)) return null;
        throw err;
      }),
    );
    if (stored === null)
      throw notFound(
        `no ${interval} window for ${symbol}: l2flow has none stored (check the symbol with ListSymbols and the ` +
          "intervals the normalizer closes, WINDOW_INTERVALS)",
      );
    return { window: decodeStored((b) => Window.decode(b), stored.data, `the stored window on ${subject}`) };
  };

  const listSymbols = async (_req: ListSymbolsRequest, call: CallScope): Promise<ListSymbolsResponse> => {
    const keys = await nats(o, call, "listing KV md_book", async () => {
      const out: string[] = [];
      for await (const k of await o.books.keys(`${EXCHANGE}.*`)) out.push(k);
      return out.sort();
    });
    const symbols: SymbolInfo[] = [];
    for (let i = 0; i < keys.length; i += LIST_CONCURRENCY) {
      const chunk = keys.slice(i, i + LIST_CONCURRENCY);
      const entries = await nats(o, call, "reading KV md_book", () =>
        Promise.all(chunk.map((k) => o.books.get(k))),
      );
      for (const [j, entry] of entries.entries()) {
        if (entry === null || entry.operation !== "PUT" || entry.length === 0) continue;
        const symbol = chunk[j]!.slice(EXCHANGE.length + 1);
        let book: BookSnapshot | undefined;
        try {
          book = BookSnapshot.decode(entry.value);
        } catch {
          o.metrics.undecodable.inc({ method: "ListSymbols" });
        }
        symbols.push({
          exchange: EXCHANGE,
          symbol,
          lastUpdateId: book?.lastUpdateId ?? 0,
          eventTimeUs: book?.eventTimeUs ?? 0,
        });
      }
    }
    return { symbols };
  };

  const stream =
    <Req extends StreamWindowsRequest | StreamSignalsRequest, Res>(
      method: string,
      prefix: "md.window" | "signal",
      streamName: string,
      decode: (data: Uint8Array) => Res,
    ) =>
    (call: ServerWritableStream<Req, Res>): void => {
      const started = performance.now();
      const finish = (err: RpcError | undefined, cancelled: boolean) => {
        const code = cancelled ? status.CANCELLED : (err?.grpcCode ?? status.OK);
        o.metrics.rpcs.inc({ method, code: statusName(code) });
        o.metrics.rpcSeconds.observe(
          { method, code: statusName(code) },
          (performance.now() - started) / 1000,
        );
        if (cancelled) return;
        if (err !== undefined) call.emit("error", toServiceError(err));
        else call.end();
      };
      let pump: StreamPump<Res>;
      try {
        if (closing !== undefined) throw new RpcError(status.UNAVAILABLE, closing);
        if (pumps.size >= o.maxStreams)
          throw new RpcError(
            status.RESOURCE_EXHAUSTED,
            `the gateway serves at most ${o.maxStreams} streams at once; retry later or use another replica`,
          );
        const selection = parseStreamRequest(prefix, call.request);
        pump = new StreamPump<Res>({
          bus: o.bus,
          stream: streamName,
          selection,
          call,
          decode,
          bufferSize: o.streamBuffer,
          slowClientTimeoutMs: o.slowClientTimeoutMs,
          resumeTimeoutMs: o.streamResumeTimeoutMs,
          logger: o.logger,
          on: {
            message: () => o.metrics.streamMessages.inc({ method }),
            slowWait: () => o.metrics.slowClientWaits.inc({ method }),
            dropped: () => {
              o.metrics.droppedClients.inc({ method });
              o.logger.warn({ method, peer: call.getPeer() }, "dropped a stream client that stopped reading");
            },
            undecodable: () => o.metrics.undecodable.inc({ method }),
            resume: () => o.metrics.streamResumes.inc({ method }),
          },
        });
      } catch (err) {
        finish(toRpcError(err), false);
        return;
      }
      pumps.add(pump);
      o.metrics.activeStreams.inc({ method });
      call.on("cancelled", () => pump.stop());
      pump.run().then(
        (end) => {
          pumps.delete(pump);
          o.metrics.activeStreams.dec({ method });
          finish(end, call.cancelled);
        },
        (err: unknown) => {
          pumps.delete(pump);
          o.metrics.activeStreams.dec({ method });
          o.logger.error({ err, method }, "stream failed");
          finish(toRpcError(err), call.cancelled);
        },
      );
    };

  const server: MarketDataServer = {
    getBook: unary(o, "GetBook", getBook),
    getWindow: unary(o, "GetWindow", getWindow),
    listSymbols: unary(o, "ListSymbols", listSymbols),
    streamWindows: stream<StreamWindowsRequest, StreamWindowsResponse>(
      "StreamWindows",
      "md.window",
      STREAMS.window,
      (data) => ({ window: Window.decode(data) }),
    ),
    streamSignals: stream<StreamSignalsRequest, StreamSignalsResponse>(
      "StreamSignals",
      "signal",
      STREAMS.signals,
      (data) => ({ signal: Signal.decode(data) }),
    ),
  };

  return {
    server,
    activeStreams: () => pumps.size,
    stopStreams: (reason) => {
      closing = reason;
      for (const p of pumps) p.stop(new RpcError(status.UNAVAILABLE, reason));
    },
  };
}

/** What a unary implementation knows of its call. */
interface CallScope {
  /** The call's deadline in milliseconds since the epoch; Infinity when the client set none. */
  readonly deadlineMs: number;
  /**
   * Aborted when the call ends before the implementation does, with reason DEADLINE_EXCEEDED (grpc-js
   * ended it on its deadline) or CANCELLED (the client cancelled or went away).
   */
  readonly signal: AbortSignal;
}

/**
 * Wraps a unary implementation: errors become statuses, every call is counted and timed, and a call
 * the client cancels stops waiting for NATS at once.
 */
function unary<Req, Res>(
  o: MarketDataOptions,
  method: string,
  impl: (req: Req, call: CallScope) => Promise<Res>,
): (call: ServerUnaryCall<Req, Res>, callback: sendUnaryData<Res>) => void {
  return (call, callback) => {
    const started = performance.now();
    const record = (code: status) => {
      o.metrics.rpcs.inc({ method, code: statusName(code) });
      o.metrics.rpcSeconds.observe({ method, code: statusName(code) }, (performance.now() - started) / 1000);
    };
    const deadline = call.getDeadline();
    const deadlineMs = deadline instanceof Date ? deadline.getTime() : deadline;
    const cancel = new AbortController();
    const onCancelled = () =>
      cancel.abort(
        Date.now() >= deadlineMs - DEADLINE_SLACK_MS ? status.DEADLINE_EXCEEDED : status.CANCELLED,
      );
    call.once("cancelled", onCancelled);
    if (call.cancelled) onCancelled();
    o.metrics.activeUnaryCalls.inc({ method });
    const done = () => {
      call.off("cancelled", onCancelled);
      o.metrics.activeUnaryCalls.dec({ method });
    };
    impl(call.request, { deadlineMs, signal: cancel.signal }).then(
      (res) => {
        done();
        record(status.OK);
        callback(null, res);
      },
      (err: unknown) => {
        done();
        const e = toRpcError(err);
        record(e.grpcCode);
        if (e.grpcCode === status.INTERNAL) o.logger.error({ err, method }, "call failed");
        callback(toServiceError(e));
      },
    );
  };
}

/**
 * Runs one NATS operation within the call's deadline and the NATS timeout: UNAVAILABLE when NATS is
 * down or slow, DEADLINE_EXCEEDED when the caller's deadline passes first, CANCELLED when the client
 * cancels. The call stops waiting then; the NATS request itself (which nats.js cannot abort) is left
 * to settle on its own, counted by `l2flow_gateway_nats_requests_in_flight`.
 */
async function nats<T>(
  o: MarketDataOptions,
  call: CallScope,
  what: string,
  op: () => Promise<T>,
): Promise<T> {
  if (call.signal.aborted) throw interrupted(call, what);
  if (!o.bus.isConnected())
    throw new RpcError(
      status.UNAVAILABLE,
      `NATS is not connected, so the gateway cannot answer; retry shortly`,
    );
  const remainingMs = call.deadlineMs - Date.now();
  if (remainingMs <= 0) throw new RpcError(status.DEADLINE_EXCEEDED, `deadline exceeded before ${what}`);
  const byDeadline = remainingMs < o.natsTimeoutMs;
  const limitMs = Math.min(remainingMs, o.natsTimeoutMs);

  const request = Promise.resolve().then(op);
  o.metrics.natsRequestsInFlight.inc();
  const settled = () => o.metrics.natsRequestsInFlight.dec();
  request.then(settled, settled);

  let timer: NodeJS.Timeout | undefined;
  let onAbort: (() => void) | undefined;
  const cut = new Promise<never>((_, reject) => {
    timer = setTimeout(
      () =>
        reject(
          byDeadline
            ? new RpcError(status.DEADLINE_EXCEEDED, `deadline exceeded while ${what}`)
            : new RpcError(
                status.UNAVAILABLE,
                `NATS did not answer within ${o.natsTimeoutMs} ms while ${what}; retry shortly`,
              ),
        ),
      limitMs,
    );
    onAbort = () => reject(interrupted(call, what));
    call.signal.addEventListener("abort", onAbort, { once: true });
  });
  try {
    return await Promise.race([request, cut]);
  } catch (err) {
    if (err instanceof RpcError) throw err;
    if (!o.bus.isConnected())
      throw new RpcError(status.UNAVAILABLE, `NATS connection lost while ${what}; retry shortly`, {
        cause: err,
      });
    // nats.js gave up before GATEWAY_NATS_TIMEOUT_MS did (its request timeout is 5 s).
    if (isNatsTimeout(err))
      throw new RpcError(status.UNAVAILABLE, `NATS did not answer while ${what}; retry shortly`, {
        cause: err,
      });
    throw err;
  } finally {
    clearTimeout(timer);
    if (onAbort !== undefined) call.signal.removeEventListener("abort", onAbort);
  }
}

/** grpc-js's deadline timer and ours may fire a few milliseconds apart. */
const DEADLINE_SLACK_MS = 20;

/** Why an aborted call stopped waiting. */
function interrupted(call: CallScope, what: string): RpcError {
  return call.signal.reason === status.DEADLINE_EXCEEDED
    ? new RpcError(status.DEADLINE_EXCEEDED, `deadline exceeded while ${what}`)
    : new RpcError(status.CANCELLED, `the client cancelled the call while ${what}`);
}

/** nats.js's request timeout (`TimeoutError`, also what JetStream API calls throw). */
function isNatsTimeout(err: unknown): boolean {
  return (err as { name?: unknown } | undefined)?.name === "TimeoutError";
}

function decodeStored<T>(decode: (b: Uint8Array) => T, data: Uint8Array, what: string): T {
  try {
    return decode(data);
  } catch (err) {
    throw new RpcError(
      status.DATA_LOSS,
      `${what} does not decode: ${err instanceof Error ? err.message : String(err)}`,
      {
        cause: err,
      },
    );
  }
}

/** JetStream's "no message found" (err_code 10037) for a subject without messages. */
function isNoMessage(err: unknown): boolean {
  const e = err as { code?: unknown; api_error?: { err_code?: unknown } } | undefined;
  return e?.api_error?.err_code === 10037 || e?.code === 10037 || e?.code === 404;
}

import type { Logger } from "pino";
import { applyGcTuning, type GcTuning } from "./gc.js";

/** Anything with an idempotent async `close()`. */
export interface Closeable {
  close(): Promise<void> | void;
}

/** Options for `runService`. */
export interface RunServiceOptions {
  readonly logger: Logger;
  /**
   * Time allowed to close everything after SIGTERM/SIGINT before the process exits anyway. Keep it
   * below the pod's termination grace period (30 s by default). Default 20 000 ms.
   */
  readonly shutdownBudgetMs?: number;
  /** The service's `GC_TUNING` (see `applyGcTuning`); default "on". */
  readonly gcTuning?: GcTuning;
}

/**
 * Runs a service: sets the GC tuning, then `start()` returns its resources in creation order; on
 * SIGTERM or SIGINT they are closed in reverse order within the budget, then the process exits (0, or
 * 1 if closing failed or overran). A start-up failure is logged with its code and exits 1.
 */
export function runService(start: () => Promise<readonly Closeable[]>, options: RunServiceOptions): void {
  const { logger } = options;
  applyGcTuning(options.gcTuning ?? "on");
  const budgetMs = options.shutdownBudgetMs ?? 20_000;
  let resources: readonly Closeable[] = [];
  let stopping = false;
  const stop = async (signal: string): Promise<void> => {
    if (stopping) return;
    stopping = true;
    logger.info({ signal, budgetMs }, "shutting down");
    const timer = setTimeout(() => {
      logger.error({ budgetMs }, "shutdown budget exceeded; exiting");
      logger.flush();
      process.exit(1);
    }, budgetMs);
    timer.unref();
    let failed = false;
    for (const r of [...resources].reverse()) {
      try {
        await r.close();
      } catch (err) {
        failed = true;
        logger.error({ err }, "error while closing");
      }
    }
    clearTimeout(timer);
    logger.info("stopped");
    logger.flush();
    process.exit(failed ? 1 : 0);
  };
  process.once("SIGTERM", () => void stop("SIGTERM"));
  process.once("SIGINT", () => void stop("SIGINT"));
  start().then(
    (r) => {
      resources = r;
    },
    (err: unknown) => {
      const e = err as { code?: string; message?: string };
      logger.fatal({ err, code: e.code }, `failed to start: ${e.message ?? String(err)}`);
      logger.flush();
      setTimeout(() => process.exit(1), 100).unref();
      process.exitCode = 1;
    },
  );
}

/**
 * Resources in creation order, closed in reverse by `close()` (idempotent). A service's factory pushes
 * each resource as it creates it, so a failure half-way closes what was already made.
 */
export class ResourceStack implements Closeable {
  readonly #items: Closeable[] = [];
  #closing: Promise<void> | undefined;
  /** Adds a resource (or a close function) and returns it. */
  push<T extends Closeable>(resource: T): T {
    this.#items.push(resource);
    return resource;
  }
  /** Adds a close function. */
  defer(close: () => Promise<void> | void): void {
    this.#items.push({ close });
  }
  /** Closes everything in reverse order of creation; errors are collected and the first rethrown. */
  close(): Promise<void> {
    return (this.#closing ??= (async () => {
      let first: Error | undefined;
      for (const r of this.#items.splice(0).reverse()) {
        try {
          await r.close();
        } catch (err) {
          first ??= err instanceof Error ? err : new Error(String(err));
        }
      }
      if (first !== undefined) throw first;
    })());
  }
}

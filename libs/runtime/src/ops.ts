import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { collectDefaultMetrics, Registry } from "prom-client";
import type { Logger } from "pino";

/** A Prometheus registry with Node's default metrics, labelled with the service name. */
export function createMetricsRegistry(options: { service: string; defaultMetrics?: boolean }): Registry {
  const registry = new Registry();
  registry.setDefaultLabels({ service: options.service });
  if (options.defaultMetrics ?? true) collectDefaultMetrics({ register: registry, prefix: "l2flow_" });
  return registry;
}

/** What a readiness check returns: ready, or not with a reason an operator can act on. */
export type Readiness = { readonly ready: true } | { readonly ready: false; readonly reason: string };

/** Options for `startOpsServer`. */
export interface OpsServerOptions {
  /** Default 0 (any free port). */
  readonly port?: number;
  /** Default "0.0.0.0". */
  readonly host?: string;
  readonly registry: Registry;
  /** Called on every `/readyz`. Default: always ready. */
  readonly readiness?: () => Readiness;
  /** Called on every `/healthz` (liveness). Default: alive while the process answers. */
  readonly liveness?: () => Readiness;
  readonly logger?: Logger;
}

/** The metrics and health HTTP server of a service. */
export interface OpsServer {
  readonly port: number;
  readonly url: string;
  /** Idempotent. */
  close(): Promise<void>;
}

/** Serves `/metrics` (Prometheus), `/healthz` (liveness) and `/readyz` (readiness). */
export async function startOpsServer(options: OpsServerOptions): Promise<OpsServer> {
  const { registry } = options;
  const check = (fn: (() => Readiness) | undefined): Readiness => {
    try {
      return fn ? fn() : { ready: true };
    } catch (err) {
      return { ready: false, reason: err instanceof Error ? err.message : String(err) };
    }
  };
  const server: Server = createServer((req, res) => {
    const path = (req.url ?? "/").split("?")[0];
    if (path === "/metrics") {
      registry.metrics().then(
        (body) => {
          res.writeHead(200, { "content-type": registry.contentType });
          res.end(body);
        },
        (err: unknown) => {
          options.logger?.error({ err }, "metrics collection failed");
          res.writeHead(500).end();
        },
      );
      return;
    }
    if (path === "/healthz" || path === "/readyz") {
      const r = check(path === "/healthz" ? options.liveness : options.readiness);
      res.writeHead(r.ready ? 200 : 503, { "content-type": "application/json" });
      res.end(JSON.stringify(r.ready ? { status: "ok" } : { status: "unavailable", reason: r.reason }));
      return;
    }
    res
      .writeHead(404, { "content-type": "application/json" })
      .end('{"error":"not found: try /metrics, /healthz or /readyz"}');
  });
  server.keepAliveTimeout = 5_000;
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(options.port ?? 0, options.host ?? "0.0.0.0", () => {
      server.off("error", reject);
      resolve();
    });
  });
  const port = (server.address() as AddressInfo).port;
  let closing: Promise<void> | undefined;
  return {
    port,
    url: `http://127.0.0.1:${port}`,
    close: () =>
      (closing ??= new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      })),
  };
}

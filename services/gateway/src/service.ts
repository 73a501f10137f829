import { Server, type ServerCredentials } from "@grpc/grpc-js";
import { HealthImplementation, type ServingStatus } from "grpc-health-check";
import { connectBus, openKv, provisionTopology, type Bus } from "@l2flow/bus";
import { BUCKETS, MarketDataService } from "@l2flow/contracts";
import {
  createMetricsRegistry,
  L2flowError,
  natsOptions,
  ResourceStack,
  startOpsServer,
  type Logger,
  type Registry,
} from "@l2flow/runtime";
import type { GatewayConfig } from "./config.js";
import { createMarketData, type MarketDataImpl } from "./market-data.js";
import { gatewayMetrics } from "./metrics.js";
import { addReflection, MARKET_DATA_SERVICE } from "./reflection.js";
import { grpcServerSecurity, type GrpcTlsMode } from "./tls.js";

/** A running gateway. */
export interface GatewayService {
  /** Base URL of `/metrics`, `/healthz`, `/readyz`. */
  readonly opsUrl: string;
  /** Port the gRPC server listens on (useful with GRPC_PORT=0). */
  readonly grpcPort: number;
  /** `host:port` for a client on this machine, e.g. `127.0.0.1:50051`. */
  readonly grpcTarget: string;
  /** "off" (plaintext), "tls", or "mtls" (clients need a certificate signed by GRPC_TLS_CLIENT_CA_FILE). */
  readonly grpcTls: GrpcTlsMode;
  /**
   * Graceful stop: health NOT_SERVING, open streams end with UNAVAILABLE, running unary calls get
   * GATEWAY_SHUTDOWN_GRACE_MS to finish (then are cut), then NATS drains. Idempotent.
   */
  close(): Promise<void>;
}

/** Dependencies the composition root passes in. */
export interface GatewayDeps {
  readonly logger: Logger;
  /** Default: a new registry with Node's default metrics. */
  readonly registry?: Registry;
}

/**
 * Starts the gateway: the gRPC `l2flow.v1.MarketData` API over KV `md_book`, `MD_WINDOW` and
 * `SIGNALS`, with gRPC health (SERVING only while NATS is connected) and server reflection; over TLS
 * when GRPC_TLS_CERT_FILE is set. Throws `ConfigError` for a TLS file it cannot use, before connecting
 * to NATS.
 */
export async function startGateway(config: GatewayConfig, deps: GatewayDeps): Promise<GatewayService> {
  const { logger } = deps;
  const security = grpcServerSecurity(config);
  const registry = deps.registry ?? createMetricsRegistry({ service: "gateway" });
  const metrics = gatewayMetrics(registry);
  const resources = new ResourceStack();
  try {
    const bus: Bus = await connectBus({ ...natsOptions(config, "gateway"), logger });
    resources.defer(() => bus.drain());
    // Creates nothing where the streams exist (its NATS user may not): only checks them.
    await provisionTopology(bus);
    const books = await openKv(bus, BUCKETS.book);
    const jsm = await bus.js.jetstreamManager();

    // /readyz is gRPC health's condition (deployments without a gRPC probe use it): serving once the
    // gRPC server is bound, while NATS is connected, and not once shutdown began.
    let serving: "starting" | "up" | "stopping" = "starting";
    const ops = await startOpsServer({
      port: config.METRICS_PORT,
      registry,
      logger,
      readiness: () =>
        serving === "starting"
          ? { ready: false, reason: "the gRPC server is not bound yet" }
          : serving === "stopping"
            ? { ready: false, reason: "shutting down" }
            : bus.isConnected()
              ? { ready: true }
              : { ready: false, reason: "NATS is not connected" },
    });
    resources.push(ops);

    const md = createMarketData({
      bus,
      jsm,
      books,
      metrics,
      logger,
      maxStreams: config.GATEWAY_MAX_STREAMS,
      streamBuffer: config.GATEWAY_STREAM_BUFFER,
      slowClientTimeoutMs: config.GATEWAY_SLOW_CLIENT_TIMEOUT_MS,
      streamResumeTimeoutMs: config.GATEWAY_STREAM_RESUME_TIMEOUT_MS,
      natsTimeoutMs: config.GATEWAY_NATS_TIMEOUT_MS,
    });
    const health = new HealthImplementation();
    const setHealth = (serving: boolean) => {
      const value: ServingStatus = serving ? "SERVING" : "NOT_SERVING";
      health.setStatus("", value);
      health.setStatus(MARKET_DATA_SERVICE, value);
    };
    setHealth(bus.isConnected());
    const offHealth = bus.onConnectionChange((up) => {
      setHealth(up);
      logger.info({ serving: up }, up ? "gRPC health: SERVING" : "gRPC health: NOT_SERVING (NATS lost)");
    });
    resources.defer(() => offHealth());

    const server = new Server();
    server.addService(MarketDataService, md.server);
    health.addToServer(server);
    addReflection(server);
    const port = await bind(server, config.GRPC_HOST, config.GRPC_PORT, security.credentials);
    serving = "up";
    resources.defer(() => {
      serving = "stopping";
      offHealth();
      setHealth(false);
      return shutdownGrpc(server, md, config.GATEWAY_SHUTDOWN_GRACE_MS, logger);
    });
    logger.info(
      { grpc: `${config.GRPC_HOST}:${port}`, grpcTls: security.mode, ops: ops.url },
      `gateway started (gRPC ${TLS_LOG[security.mode]})`,
    );

    return {
      opsUrl: ops.url,
      grpcPort: port,
      grpcTarget: `127.0.0.1:${port}`,
      grpcTls: security.mode,
      close: () => resources.close(),
    };
  } catch (err) {
    await resources.close();
    throw err;
  }
}

const TLS_LOG: Record<GrpcTlsMode, string> = {
  off: "plaintext: TLS is off",
  tls: "TLS on",
  mtls: "mutual TLS on: clients need a certificate",
};

function bind(server: Server, host: string, port: number, credentials: ServerCredentials): Promise<number> {
  const address = host.includes(":") ? `[${host}]:${port}` : `${host}:${port}`;
  return new Promise<number>((resolve, reject) => {
    server.bindAsync(address, credentials, (err, bound) => {
      if (err)
        reject(
          new L2flowError(
            "GRPC_BIND",
            `cannot listen for gRPC on ${address} (${err.message}): free the port or set GRPC_PORT / GRPC_HOST`,
            { cause: err },
          ),
        );
      else resolve(bound);
    });
  });
}

async function shutdownGrpc(
  server: Server,
  md: MarketDataImpl,
  graceMs: number,
  logger: Logger,
): Promise<void> {
  md.stopStreams("the gateway is shutting down: call again (another replica) with start_time_ms to resume");
  await new Promise<void>((resolve) => {
    const timer = setTimeout(() => {
      logger.warn({ graceMs }, "gRPC calls still running after the shutdown grace; cutting them");
      server.forceShutdown();
      resolve();
    }, graceMs);
    server.tryShutdown(() => {
      clearTimeout(timer);
      resolve();
    });
  });
}

import { Counter, Gauge, Histogram, type Registry } from "@l2flow/runtime";

/** The gateway's Prometheus metrics. */
export interface GatewayMetrics {
  /** Finished calls by method and gRPC status name. */
  readonly rpcs: Counter<"method" | "code">;
  /** Call duration by method and status (a stream's whole life for streaming methods). */
  readonly rpcSeconds: Histogram<"method" | "code">;
  /** Streaming calls open now. */
  readonly activeStreams: Gauge<"method">;
  /** Unary calls running now (from the request until the status is sent). */
  readonly activeUnaryCalls: Gauge<"method">;
  /**
   * NATS requests made for unary calls and not yet settled, including those of calls that already
   * ended (deadline, cancel, GATEWAY_NATS_TIMEOUT_MS): they settle when NATS answers or when the NATS
   * client gives up on them (its request timeout is 5 s).
   */
  readonly natsRequestsInFlight: Gauge;
  /** Messages written to stream clients. */
  readonly streamMessages: Counter<"method">;
  /** Times a stream client was slower than the stream, so the gateway paused pulling for it. */
  readonly slowClientWaits: Counter<"method">;
  /** Stream clients disconnected because they read nothing for the slow-client timeout. */
  readonly droppedClients: Counter<"method">;
  /** Stored payloads that did not decode (skipped). */
  readonly undecodable: Counter<"method">;
  /** Times a stream recreated its JetStream consumer (after a NATS outage or a lost consumer). */
  readonly streamResumes: Counter<"method">;
}

/** Registers the gateway's metrics (all prefixed `l2flow_gateway_`). */
export function gatewayMetrics(registry: Registry): GatewayMetrics {
  const registers = [registry];
  return {
    rpcs: new Counter({
      name: "l2flow_gateway_rpcs_total",
      help: "Finished gRPC calls by method and status code",
      labelNames: ["method", "code"],
      registers,
    }),
    rpcSeconds: new Histogram({
      name: "l2flow_gateway_rpc_seconds",
      help: "gRPC call duration by method and status code (streams: their whole life)",
      labelNames: ["method", "code"],
      buckets: [0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 30, 300, 3600],
      registers,
    }),
    activeStreams: new Gauge({
      name: "l2flow_gateway_active_streams",
      help: "Streaming calls open now",
      labelNames: ["method"],
      registers,
    }),
    activeUnaryCalls: new Gauge({
      name: "l2flow_gateway_active_unary_calls",
      help: "Unary calls running now",
      labelNames: ["method"],
      registers,
    }),
    natsRequestsInFlight: new Gauge({
      name: "l2flow_gateway_nats_requests_in_flight",
      help: "NATS requests of unary calls not yet answered, including those of calls that already ended",
      registers,
    }),
    streamMessages: new Counter({
      name: "l2flow_gateway_stream_messages_total",
      help: "Messages written to stream clients",
      labelNames: ["method"],
      registers,
    }),
    slowClientWaits: new Counter({
      name: "l2flow_gateway_slow_client_waits_total",
      help: "Times a stream client could not keep up and the gateway stopped pulling until it drained",
      labelNames: ["method"],
      registers,
    }),
    droppedClients: new Counter({
      name: "l2flow_gateway_dropped_clients_total",
      help: "Stream clients disconnected for reading nothing during the slow-client timeout",
      labelNames: ["method"],
      registers,
    }),
    undecodable: new Counter({
      name: "l2flow_gateway_undecodable_total",
      help: "Stored payloads that did not decode and were skipped",
      labelNames: ["method"],
      registers,
    }),
    streamResumes: new Counter({
      name: "l2flow_gateway_stream_resumes_total",
      help: "Times a stream recreated its JetStream consumer after a NATS outage or a lost consumer",
      labelNames: ["method"],
      registers,
    }),
  };
}

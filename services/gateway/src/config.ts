import { z } from "zod";
import { env, natsEnvShape, opsEnvShape, parseEnv, type Env } from "@l2flow/runtime";

const schema = z.object({
  ...natsEnvShape,
  ...opsEnvShape,
  /** Port of the gRPC server (0 = any free port). */
  GRPC_PORT: env.port(50051),
  /** Address the gRPC server binds. */
  GRPC_HOST: z
    .string()
    .regex(/^[0-9A-Za-z.:[\]-]+$/, { error: "expected a host name or IP address, e.g. 0.0.0.0 or ::" })
    .default("0.0.0.0"),
  /** StreamWindows + StreamSignals calls open at once; more get RESOURCE_EXHAUSTED. */
  GATEWAY_MAX_STREAMS: env.positiveInt(1_000),
  /** Messages a stream pulls from JetStream at a time: the most a slow client can make the gateway hold. */
  GATEWAY_STREAM_BUFFER: z.coerce
    .number({ error: "expected an integer 1-10000" })
    .int({ error: "expected an integer 1-10000" })
    .min(1, { error: "expected an integer 1-10000" })
    .max(10_000, { error: "expected an integer 1-10000" })
    .default(256),
  /** A stream client that reads nothing for this long is disconnected (RESOURCE_EXHAUSTED). */
  GATEWAY_SLOW_CLIENT_TIMEOUT_MS: env.positiveInt(30_000),
  /** Time a stream waits for NATS to come back before ending with UNAVAILABLE. */
  GATEWAY_STREAM_RESUME_TIMEOUT_MS: env.positiveInt(30_000),
  /** Time allowed for one NATS request of a unary call (within the call's own deadline). */
  GATEWAY_NATS_TIMEOUT_MS: env.positiveInt(5_000),
  /** On shutdown, time given to running calls before they are cut. */
  GATEWAY_SHUTDOWN_GRACE_MS: env.positiveInt(5_000),
});

/** The gateway's configuration (docs/gateway.md). */
export type GatewayConfig = z.infer<typeof schema>;

/** Reads and validates the gateway's environment; throws `ConfigError` naming each bad variable. */
export function loadConfig(vars: Env): GatewayConfig {
  return parseEnv(schema, vars, { secretKeys: ["NATS_PASSWORD", "NATS_TOKEN"] });
}

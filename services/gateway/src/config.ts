import { z } from "zod";
import { env, natsEnvShape, opsEnvShape, parseEnv, type Env } from "@l2flow/runtime";

const fields = z.object({
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
  /** PEM certificate chain the gRPC server presents; with GRPC_TLS_KEY_FILE turns TLS on. Default: unset (plaintext). */
  GRPC_TLS_CERT_FILE: z.string().optional(),
  /** Unencrypted PEM private key of GRPC_TLS_CERT_FILE. Default: unset. */
  GRPC_TLS_KEY_FILE: z.string().optional(),
  /** PEM CA: clients must present a certificate it signed (mutual TLS). Default: unset (no client certificates). */
  GRPC_TLS_CLIENT_CA_FILE: z.string().optional(),
});

/** The TLS files come as a pair (certificate and key), and a client CA needs them. */
const schema = fields.superRefine((c, ctx) => {
  const cert = c.GRPC_TLS_CERT_FILE !== undefined;
  const key = c.GRPC_TLS_KEY_FILE !== undefined;
  if (cert !== key)
    ctx.addIssue({
      code: "custom",
      path: [cert ? "GRPC_TLS_KEY_FILE" : "GRPC_TLS_CERT_FILE"],
      message:
        `missing while ${cert ? "GRPC_TLS_CERT_FILE" : "GRPC_TLS_KEY_FILE"} is set: set both GRPC_TLS_CERT_FILE and ` +
        "GRPC_TLS_KEY_FILE (PEM certificate chain and its private key) to serve TLS, or neither for plaintext",
    });
  else if (!cert && c.GRPC_TLS_CLIENT_CA_FILE !== undefined)
    ctx.addIssue({
      code: "custom",
      path: ["GRPC_TLS_CLIENT_CA_FILE"],
      message:
        "client certificates need TLS: set GRPC_TLS_CERT_FILE and GRPC_TLS_KEY_FILE too, or unset GRPC_TLS_CLIENT_CA_FILE",
    });
});

/** The gateway's configuration (docs/gateway.md). */
export type GatewayConfig = z.infer<typeof schema>;

/** Reads and validates the gateway's environment; throws `ConfigError` naming each bad variable. */
export function loadConfig(vars: Env): GatewayConfig {
  return parseEnv(schema, vars, { secretKeys: ["NATS_PASSWORD", "NATS_TOKEN"] });
}

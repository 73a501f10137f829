import { readFileSync } from "node:fs";
import { createSecureContext } from "node:tls";
import { ServerCredentials } from "@grpc/grpc-js";
import { ConfigError } from "@l2flow/runtime";
import type { GatewayConfig } from "./config.js";

/** How the gRPC server talks to clients: plaintext, TLS, or TLS with client certificates. */
export type GrpcTlsMode = "off" | "tls" | "mtls";

/** The credentials the gRPC server binds with, and which mode they give. */
export interface GrpcServerSecurity {
  readonly credentials: ServerCredentials;
  readonly mode: GrpcTlsMode;
}

type TlsVariable = "GRPC_TLS_CERT_FILE" | "GRPC_TLS_KEY_FILE" | "GRPC_TLS_CLIENT_CA_FILE";

/** What each file must hold, and the PEM line that shows it does. */
const EXPECTED: Record<TlsVariable, { noun: string; marker: string; begin: RegExp }> = {
  GRPC_TLS_CERT_FILE: {
    noun: "PEM certificate chain",
    marker: "-----BEGIN CERTIFICATE-----",
    begin: /-----BEGIN CERTIFICATE-----/,
  },
  GRPC_TLS_KEY_FILE: {
    noun: "unencrypted PEM private key",
    marker: "-----BEGIN PRIVATE KEY-----",
    begin: /-----BEGIN (?:[A-Z]+ )?PRIVATE KEY-----/,
  },
  GRPC_TLS_CLIENT_CA_FILE: {
    noun: "PEM CA certificate",
    marker: "-----BEGIN CERTIFICATE-----",
    begin: /-----BEGIN CERTIFICATE-----/,
  },
};

/**
 * The gRPC server's credentials from GRPC_TLS_CERT_FILE / GRPC_TLS_KEY_FILE (TLS) and
 * GRPC_TLS_CLIENT_CA_FILE (clients must present a certificate it signed); plaintext when unset (the
 * default). Reads and checks the files now, so a bad one stops the start with a `ConfigError` naming
 * the variable and the path. Messages never include what the files hold: the key is a secret.
 */
export function grpcServerSecurity(config: Pick<GatewayConfig, TlsVariable>): GrpcServerSecurity {
  const certFile = config.GRPC_TLS_CERT_FILE;
  const keyFile = config.GRPC_TLS_KEY_FILE;
  const caFile = config.GRPC_TLS_CLIENT_CA_FILE;
  // config.ts already refused one of the pair without the other, and a client CA without them.
  if (certFile === undefined || keyFile === undefined)
    return { credentials: ServerCredentials.createInsecure(), mode: "off" };

  const cert = readPem("GRPC_TLS_CERT_FILE", certFile);
  const key = readPem("GRPC_TLS_KEY_FILE", keyFile);
  const ca = caFile === undefined ? undefined : readPem("GRPC_TLS_CLIENT_CA_FILE", caFile);
  try {
    createSecureContext({ cert, key });
  } catch (err) {
    throw new ConfigError(
      `invalid configuration:\n  GRPC_TLS_CERT_FILE=${JSON.stringify(certFile)} and GRPC_TLS_KEY_FILE=` +
        `${JSON.stringify(keyFile)} do not make a TLS identity (${reason(err)}): the key file must hold ` +
        "the unencrypted private key of the first certificate in the certificate file",
      { cause: err },
    );
  }
  if (ca !== undefined) {
    try {
      createSecureContext({ ca });
    } catch (err) {
      throw new ConfigError(
        `invalid configuration:\n  GRPC_TLS_CLIENT_CA_FILE=${JSON.stringify(caFile)}: the CA certificate ` +
          `does not load (${reason(err)}): point it at the PEM certificate of the CA that signs client certificates`,
        { cause: err },
      );
    }
  }
  return {
    credentials: ServerCredentials.createSsl(
      ca ?? null,
      [{ cert_chain: cert, private_key: key }],
      ca !== undefined,
    ),
    mode: ca === undefined ? "tls" : "mtls",
  };
}

function readPem(variable: TlsVariable, path: string): Buffer {
  const { noun, marker, begin } = EXPECTED[variable];
  const fix =
    variable === "GRPC_TLS_CLIENT_CA_FILE"
      ? "or unset GRPC_TLS_CLIENT_CA_FILE to accept clients without a certificate"
      : "or unset GRPC_TLS_CERT_FILE and GRPC_TLS_KEY_FILE to serve plaintext gRPC";
  let data: Buffer;
  try {
    data = readFileSync(path);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code ?? reason(err);
    throw new ConfigError(
      `invalid configuration:\n  ${variable}=${JSON.stringify(path)}: cannot read the file (${code}): ` +
        `mount the ${noun} there, readable by the gateway's user, ${fix}`,
      { cause: err },
    );
  }
  if (!begin.test(data.toString("latin1")))
    throw new ConfigError(
      `invalid configuration:\n  ${variable}=${JSON.stringify(path)}: the file holds no ${noun} ` +
        `(no ${marker} line): point ${variable} at one, ${fix}`,
    );
  return data;
}

/** An error's message without anything it may quote: OpenSSL and fs messages name no file content. */
function reason(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

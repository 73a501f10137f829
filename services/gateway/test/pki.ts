// A throwaway PKI for the TLS tests, made at test time with the openssl command line.
import { execFileSync, spawnSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

/** PEM file paths of a test CA, a server certificate (localhost, 127.0.0.1) and client certificates. */
export interface TestPki {
  readonly dir: string;
  readonly caCert: string;
  readonly serverCert: string;
  readonly serverKey: string;
  /** Signed by `caCert`, for client authentication. */
  readonly clientCert: string;
  readonly clientKey: string;
  /** A client certificate signed by another CA (`otherCaCert`), which the gateway must not accept. */
  readonly strangerCert: string;
  readonly strangerKey: string;
  readonly otherCaCert: string;
  /** The file's bytes. */
  read(path: string): Buffer;
  /** Removes the directory. Idempotent. */
  remove(): void;
}

const OPENSSL_CONFIG = `
[req]
distinguished_name = dn
prompt = no
[dn]
CN = l2flow-test
[ca]
basicConstraints = critical, CA:TRUE
keyUsage = critical, keyCertSign, cRLSign
subjectKeyIdentifier = hash
[server]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature
extendedKeyUsage = serverAuth
subjectAltName = DNS:localhost, IP:127.0.0.1
[client]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature
extendedKeyUsage = clientAuth
`;

/**
 * Makes a CA, a server certificate and client certificates (P-256 keys, valid one day) in a new
 * temporary directory. Throws, never skips, when the `openssl` command is missing.
 */
export function makeTestPki(): TestPki {
  const probe = spawnSync("openssl", ["version"], { encoding: "utf8" });
  if (probe.error !== undefined || probe.status !== 0)
    throw new Error(
      "the gateway TLS tests need the openssl command line to make their test certificates, and " +
        `\`openssl version\` failed (${probe.error?.message ?? probe.stderr.trim()}). Install it ` +
        "(Debian/Ubuntu: `apt-get install openssl`; Alpine: `apk add openssl`; macOS: it ships with the system) " +
        "and put it on PATH.",
    );
  const dir = mkdtempSync(join(tmpdir(), "l2flow-gateway-pki-"));
  const config = join(dir, "openssl.cnf");
  writeFileSync(config, OPENSSL_CONFIG);
  const file = (name: string) => join(dir, name);
  const openssl = (...args: string[]) => {
    try {
      execFileSync("openssl", args, { cwd: dir, stdio: ["ignore", "ignore", "pipe"] });
    } catch (err) {
      const stderr = (err as { stderr?: Buffer }).stderr?.toString() ?? "";
      throw new Error(`openssl ${args[0]} failed making the test certificates: ${stderr.trim()}`, {
        cause: err,
      });
    }
  };
  const newKey = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"];
  const ca = (name: string) =>
    openssl(
      "req",
      "-x509",
      "-config",
      config,
      "-extensions",
      "ca",
      ...newKey,
      "-keyout",
      file(`${name}.key`),
      "-out",
      file(`${name}.pem`),
      "-days",
      "1",
      "-subj",
      `/CN=${name}`,
    );
  let serial = 1;
  const leaf = (name: string, signer: string, extensions: "server" | "client", cn: string) => {
    openssl(
      "req",
      "-new",
      "-config",
      config,
      ...newKey,
      "-keyout",
      file(`${name}.key`),
      "-out",
      file(`${name}.csr`),
      "-subj",
      `/CN=${cn}`,
    );
    openssl(
      "x509",
      "-req",
      "-in",
      file(`${name}.csr`),
      "-CA",
      file(`${signer}.pem`),
      "-CAkey",
      file(`${signer}.key`),
      "-set_serial",
      String(++serial),
      "-days",
      "1",
      "-extfile",
      config,
      "-extensions",
      extensions,
      "-out",
      file(`${name}.pem`),
    );
  };
  try {
    ca("ca");
    ca("other-ca");
    leaf("server", "ca", "server", "localhost");
    leaf("client", "ca", "client", "l2flow-test-client");
    leaf("stranger", "other-ca", "client", "l2flow-test-stranger");
  } catch (err) {
    rmSync(dir, { recursive: true, force: true });
    throw err;
  }
  return {
    dir,
    caCert: file("ca.pem"),
    serverCert: file("server.pem"),
    serverKey: file("server.key"),
    clientCert: file("client.pem"),
    clientKey: file("client.key"),
    strangerCert: file("stranger.pem"),
    strangerKey: file("stranger.key"),
    otherCaCert: file("other-ca.pem"),
    read: (path) => readFileSync(path),
    remove: () => rmSync(dir, { recursive: true, force: true }),
  };
}

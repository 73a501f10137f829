// TLS and mutual TLS on the gRPC server, with certificates made by openssl at test time.
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { credentials, status, type ChannelCredentials } from "@grpc/grpc-js";
import { MarketDataClient } from "@l2flow/contracts";
import { loadConfig, startGateway } from "@l2flow/gateway";
import { ConfigError, createLogger } from "@l2flow/runtime";
import { startTestNats, type TestNats } from "@l2flow/testkit";
import { makeTestPki, type TestPki } from "./pki.js";
import { book, call, codeOf, putBook, startHarness, type Harness } from "./support.js";

/**
 * GetBook and ListSymbols through a new client of `localhost:<port>` (the certificate's name: Node
 * warns about TLS to a bare IP address), with `creds`; the answers, or the first failure's status.
 */
async function ask(port: number, creds: ChannelCredentials) {
  const client = new MarketDataClient(`localhost:${port}`, creds);
  const options = { deadline: Date.now() + 3_000 };
  try {
    const res = await call(client.getBook.bind(client), { symbol: "BTCUSDT", depth: 1 }, options);
    const list = await call(client.listSymbols.bind(client), {}, options);
    return { lastUpdateId: res.book?.lastUpdateId, symbols: list.symbols.map((s) => s.symbol) };
  } finally {
    client.close();
  }
}

const SERVED = { lastUpdateId: 42, symbols: ["BTCUSDT"] };

/** Asserts `message` quotes none of the base64 lines of the PEM files at `paths`. */
function expectNoFileContent(message: string, paths: readonly string[]): void {
  for (const path of paths) {
    let text: string;
    try {
      text = readFileSync(path, "latin1");
    } catch {
      continue;
    }
    for (const line of text.split("\n")) {
      if (line.length < 16 || line.startsWith("-----")) continue;
      expect(message).not.toContain(line);
    }
  }
}

describe("gateway: TLS on the gRPC server", () => {
  let nats: TestNats;
  let pki: TestPki;
  const open: Harness[] = [];

  /** A gateway with `env`, and its log lines. */
  const start = async (env: Record<string, string>) => {
    const logs: Record<string, unknown>[] = [];
    const h = await startHarness(nats.url, env, { logs });
    open.push(h);
    return { port: h.gateway.grpcPort, mode: h.gateway.grpcTls, logs };
  };
  const started = (logs: Record<string, unknown>[]) => logs.find((l) => "grpcTls" in l);

  beforeAll(async () => {
    pki = makeTestPki();
    nats = await startTestNats();
    const seed = await startHarness(nats.url);
    await putBook(seed.bus, book("BTCUSDT", 42));
    await seed.close();
  });
  afterAll(async () => {
    for (const h of open) await h.close();
    await nats?.close();
    pki?.remove();
  });

  it("with GRPC_TLS_CERT_FILE and GRPC_TLS_KEY_FILE, a client trusting the CA is served; plaintext and untrusting clients get UNAVAILABLE", async () => {
    const { port, mode, logs } = await start({
      GRPC_TLS_CERT_FILE: pki.serverCert,
      GRPC_TLS_KEY_FILE: pki.serverKey,
    });
    expect(mode).toBe("tls");
    expect(started(logs)).toMatchObject({ grpcTls: "tls", msg: "gateway started (gRPC TLS on)" });

    expect(await ask(port, credentials.createSsl(pki.read(pki.caCert)))).toEqual(SERVED);
    // A client with a certificate is served too: the server asks for none.
    expect(
      await ask(
        port,
        credentials.createSsl(pki.read(pki.caCert), pki.read(pki.clientKey), pki.read(pki.clientCert)),
      ),
    ).toEqual(SERVED);

    const plaintext = await codeOf(ask(port, credentials.createInsecure()));
    expect(plaintext.code).toBe(status.UNAVAILABLE);
    const untrusting = await codeOf(ask(port, credentials.createSsl(pki.read(pki.otherCaCert))));
    expect(untrusting.code).toBe(status.UNAVAILABLE);
  });

  it("with GRPC_TLS_CLIENT_CA_FILE, only clients with a certificate that CA signed are served", async () => {
    const { port, mode, logs } = await start({
      GRPC_TLS_CERT_FILE: pki.serverCert,
      GRPC_TLS_KEY_FILE: pki.serverKey,
      GRPC_TLS_CLIENT_CA_FILE: pki.caCert,
    });
    expect(mode).toBe("mtls");
    expect(started(logs)).toMatchObject({
      grpcTls: "mtls",
      msg: "gateway started (gRPC mutual TLS on: clients need a certificate)",
    });

    const ca = pki.read(pki.caCert);
    expect(
      await ask(port, credentials.createSsl(ca, pki.read(pki.clientKey), pki.read(pki.clientCert))),
    ).toEqual(SERVED);
    const noCertificate = await codeOf(ask(port, credentials.createSsl(ca)));
    expect(noCertificate.code).toBe(status.UNAVAILABLE);
    const stranger = await codeOf(
      ask(port, credentials.createSsl(ca, pki.read(pki.strangerKey), pki.read(pki.strangerCert))),
    );
    expect(stranger.code).toBe(status.UNAVAILABLE);
    const plaintext = await codeOf(ask(port, credentials.createInsecure()));
    expect(plaintext.code).toBe(status.UNAVAILABLE);
  });

  it("without the TLS variables the server stays plaintext and logs it", async () => {
    const { port, mode, logs } = await start({});
    expect(mode).toBe("off");
    expect(started(logs)).toMatchObject({
      grpcTls: "off",
      msg: "gateway started (gRPC plaintext: TLS is off)",
    });
    expect(await ask(port, credentials.createInsecure())).toEqual(SERVED);
    const tls = await codeOf(ask(port, credentials.createSsl(pki.read(pki.caCert))));
    expect(tls.code).toBe(status.UNAVAILABLE);
  });

  it("refuses half a TLS configuration, naming both variables", () => {
    const refused = (env: Record<string, string>): string => {
      try {
        loadConfig(env);
      } catch (err) {
        expect(err).toBeInstanceOf(ConfigError);
        return (err as Error).message;
      }
      throw new Error(`loadConfig accepted ${JSON.stringify(env)}`);
    };
    expect(refused({ GRPC_TLS_CERT_FILE: pki.serverCert })).toContain(
      'GRPC_TLS_KEY_FILE="": missing while GRPC_TLS_CERT_FILE is set: set both GRPC_TLS_CERT_FILE and GRPC_TLS_KEY_FILE',
    );
    expect(refused({ GRPC_TLS_KEY_FILE: pki.serverKey })).toContain(
      'GRPC_TLS_CERT_FILE="": missing while GRPC_TLS_KEY_FILE is set: set both GRPC_TLS_CERT_FILE and GRPC_TLS_KEY_FILE',
    );
    expect(refused({ GRPC_TLS_CLIENT_CA_FILE: pki.caCert })).toContain(
      "GRPC_TLS_CLIENT_CA_FILE=" +
        `${JSON.stringify(pki.caCert)}: client certificates need TLS: set GRPC_TLS_CERT_FILE and GRPC_TLS_KEY_FILE`,
    );
    // Empty means unset, as for every variable.
    const plain = loadConfig({ GRPC_TLS_CERT_FILE: "", GRPC_TLS_KEY_FILE: "" });
    expect(plain.GRPC_TLS_CERT_FILE).toBeUndefined();
    expect(plain.GRPC_TLS_KEY_FILE).toBeUndefined();
  });

  it("refuses TLS files it cannot use before connecting to NATS, naming the variable and path, never their contents", async () => {
    const secret = "TOP-SECRET-KEY-MATERIAL-5f1c";
    const notPem = join(pki.dir, "not-a-key.pem");
    writeFileSync(notPem, `${secret}\n`);
    const missing = join(pki.dir, "missing.key");
    const logger = createLogger({ service: "gateway-test", level: "silent" });
    // No NATS listens here: the files are checked first, so the error is about them, and at once.
    const base = {
      NATS_URL: "nats://127.0.0.1:1",
      NATS_CONNECT_TIMEOUT_MS: "10000",
      GRPC_PORT: "0",
      METRICS_PORT: "0",
    };
    const startError = async (env: Record<string, string>): Promise<string> => {
      const t0 = performance.now();
      const err = await startGateway(loadConfig({ ...base, ...env }), { logger }).then(
        async (g) => {
          await g.close();
          return new Error("the gateway started");
        },
        (e: unknown) => e,
      );
      expect(err).toBeInstanceOf(ConfigError);
      expect(performance.now() - t0).toBeLessThan(1_000);
      const message = (err as Error).message;
      expect(message).not.toContain(secret);
      expectNoFileContent(message, Object.values(env));
      return message;
    };

    const noKey = await startError({ GRPC_TLS_CERT_FILE: pki.serverCert, GRPC_TLS_KEY_FILE: missing });
    expect(noKey).toContain(`GRPC_TLS_KEY_FILE=${JSON.stringify(missing)}: cannot read the file (ENOENT)`);
    expect(noKey).toContain("or unset GRPC_TLS_CERT_FILE and GRPC_TLS_KEY_FILE to serve plaintext gRPC");

    const dirAsCert = await startError({ GRPC_TLS_CERT_FILE: pki.dir, GRPC_TLS_KEY_FILE: pki.serverKey });
    expect(dirAsCert).toContain(
      `GRPC_TLS_CERT_FILE=${JSON.stringify(pki.dir)}: cannot read the file (EISDIR)`,
    );

    const notAKey = await startError({ GRPC_TLS_CERT_FILE: pki.serverCert, GRPC_TLS_KEY_FILE: notPem });
    expect(notAKey).toContain(
      `GRPC_TLS_KEY_FILE=${JSON.stringify(notPem)}: the file holds no unencrypted PEM private key`,
    );

    const wrongKey = await startError({
      GRPC_TLS_CERT_FILE: pki.serverCert,
      GRPC_TLS_KEY_FILE: pki.clientKey,
    });
    expect(wrongKey).toContain(
      `GRPC_TLS_CERT_FILE=${JSON.stringify(pki.serverCert)} and GRPC_TLS_KEY_FILE=${JSON.stringify(pki.clientKey)} ` +
        "do not make a TLS identity",
    );

    const keyAsCert = await startError({
      GRPC_TLS_CERT_FILE: pki.serverKey,
      GRPC_TLS_KEY_FILE: pki.serverKey,
    });
    expect(keyAsCert).toContain(
      `GRPC_TLS_CERT_FILE=${JSON.stringify(pki.serverKey)}: the file holds no PEM certificate`,
    );

    const badCa = await startError({
      GRPC_TLS_CERT_FILE: pki.serverCert,
      GRPC_TLS_KEY_FILE: pki.serverKey,
      GRPC_TLS_CLIENT_CA_FILE: missing,
    });
    expect(badCa).toContain(
      `GRPC_TLS_CLIENT_CA_FILE=${JSON.stringify(missing)}: cannot read the file (ENOENT)`,
    );
    expect(badCa).toContain("or unset GRPC_TLS_CLIENT_CA_FILE");
  });
});

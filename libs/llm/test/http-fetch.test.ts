import { execFileSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import {
  createServer as createHttp,
  type IncomingMessage,
  type Server,
  type ServerResponse,
} from "node:http";
import { createServer as createHttps } from "node:https";
import type { AddressInfo, Socket } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { gzipSync } from "node:zlib";
import { afterEach, describe, expect, it } from "vitest";
import { HolySheepClient, keepAliveFetch, LlmError, type KeepAliveFetch } from "../src/index.js";

interface Seen {
  method: string;
  url: string;
  headers: IncomingMessage["headers"];
  body: string;
}

const cleanups: (() => unknown)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

/** A local server: `answer` writes each response; every request and connection is recorded. */
async function serve(
  answer: (req: Seen, res: ServerResponse) => void,
  tls?: { cert: Buffer; key: Buffer },
): Promise<{ url: string; seen: Seen[]; connections: () => number; server: Server }> {
  const seen: Seen[] = [];
  const sockets = new Set<Socket>();
  let connections = 0;
  const handler = (req: IncomingMessage, res: ServerResponse) => {
    const chunks: Buffer[] = [];
    req.on("data", (c: Buffer) => chunks.push(c));
    req.on("end", () => {
      const s = {
        method: req.method ?? "",
        url: req.url ?? "",
        headers: req.headers,
        body: Buffer.concat(chunks).toString(),
      };
      seen.push(s);
      answer(s, res);
    });
  };
  const server: Server = tls !== undefined ? createHttps(tls, handler) : createHttp(handler);
  server.on(tls !== undefined ? "secureConnection" : "connection", (s: Socket) => {
    connections++;
    sockets.add(s);
    s.once("close", () => sockets.delete(s));
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  cleanups.push(
    () =>
      new Promise<void>((r) => {
        for (const s of sockets) s.destroy();
        server.close(() => r());
      }),
  );
  const { port } = server.address() as AddressInfo;
  return {
    url: `${tls !== undefined ? "https" : "http"}://127.0.0.1:${port}`,
    seen,
    connections: () => connections,
    server,
  };
}

function client(options?: Parameters<typeof keepAliveFetch>[0]): KeepAliveFetch {
  const c = keepAliveFetch(options);
  cleanups.push(() => c.close());
  return c;
}

describe("keepAliveFetch", () => {
  it("sends the method, headers and body, and returns status, headers and body as fetch does", async () => {
    const srv = await serve((_req, res) => {
      res.setHeader("x-multi", ["a", "b"]);
      res.writeHead(201, "Made", { "content-type": "application/json" });
      res.end(JSON.stringify({ ok: true, n: 7 }));
    });
    const { fetch: f } = client();
    const headers = new Headers({ authorization: "Bearer sk-test", "content-type": "application/json" });
    const res = await f(`${srv.url}/v1/chat/completions?x=1`, { method: "POST", headers, body: '{"a":1}' });
    expect(res.status).toBe(201);
    expect(res.statusText).toBe("Made");
    expect(res.ok).toBe(true);
    expect(res.headers.get("x-multi")).toBe("a, b");
    expect(await res.json()).toEqual({ ok: true, n: 7 });
    expect(srv.seen).toHaveLength(1);
    expect(srv.seen[0]).toMatchObject({ method: "POST", url: "/v1/chat/completions?x=1", body: '{"a":1}' });
    expect(srv.seen[0]!.headers.authorization).toBe("Bearer sk-test");
    expect(srv.seen[0]!.headers["content-type"]).toBe("application/json");
  });

  it("keeps one connection for sequential requests, and several for concurrent ones", async () => {
    const srv = await serve((req, res) => res.end(req.body));
    const { fetch: f } = client();
    for (let i = 0; i < 20; i++) {
      const res = await f(`${srv.url}/echo`, { method: "POST", body: new TextEncoder().encode(`m${i}`) });
      expect(await res.text()).toBe(`m${i}`);
    }
    expect(srv.connections()).toBe(1);
    const texts = await Promise.all(
      Array.from({ length: 4 }, (_, i) =>
        f(`${srv.url}/echo`, { method: "POST", body: `c${i}` }).then((r) => r.text()),
      ),
    );
    expect(texts).toEqual(["c0", "c1", "c2", "c3"]);
    expect(srv.connections()).toBeGreaterThan(1);
  });

  it("opens a new connection when the server has closed an idle one", async () => {
    const srv = await serve((req, res) => res.end(req.body));
    const { fetch: f } = client();
    expect(await (await f(`${srv.url}/a`, { method: "POST", body: "one" })).text()).toBe("one");
    srv.server.keepAliveTimeout = 100;
    expect(await (await f(`${srv.url}/a`, { method: "POST", body: "two" })).text()).toBe("two");
    await new Promise((r) => setTimeout(r, 400)); // the server closes the idle connection meanwhile
    expect(await (await f(`${srv.url}/a`, { method: "POST", body: "three" })).text()).toBe("three");
    expect(srv.connections()).toBe(2);
  });

  it("gives a 204 no body, and decompresses a gzip answer", async () => {
    const srv = await serve((req, res) => {
      if (req.url === "/none") {
        res.writeHead(204).end();
        return;
      }
      res.writeHead(200, { "content-encoding": "gzip" }).end(gzipSync('{"zipped":true}'));
    });
    const { fetch: f } = client();
    const none = await f(`${srv.url}/none`);
    expect(none.status).toBe(204);
    expect(none.body).toBeNull();
    expect(await (await f(`${srv.url}/zip`)).json()).toEqual({ zipped: true });
  });

  it("rejects with an AbortError when aborted before sending or while waiting for the answer", async () => {
    const srv = await serve(() => undefined); // never answers
    const { fetch: f } = client();
    const before = new AbortController();
    before.abort();
    await expect(f(`${srv.url}/x`, { signal: before.signal })).rejects.toMatchObject({ name: "AbortError" });
    expect(srv.seen).toHaveLength(0);
    const during = new AbortController();
    setTimeout(() => during.abort(), 50);
    const t0 = Date.now();
    await expect(
      f(`${srv.url}/x`, { method: "POST", body: "{}", signal: during.signal }),
    ).rejects.toMatchObject({
      name: "AbortError",
    });
    expect(Date.now() - t0).toBeLessThan(2_000);
  });

  it("rejects an answer cut off by a closed connection, instead of returning it truncated", async () => {
    const srv = await serve((_req, res) => {
      res.writeHead(200, { "content-length": "100", "content-type": "application/json" });
      res.write('{"partial":');
      setTimeout(() => res.socket?.destroy(), 20);
    });
    const { fetch: f } = client();
    await expect(f(`${srv.url}/cut`, { method: "POST", body: "{}" })).rejects.toThrow();
  });

  it("rejects when nothing listens; the client reports CONNECTION, never the key", async () => {
    const srv = await serve(() => undefined);
    const closedUrl = srv.url;
    for (const c of cleanups.splice(0).reverse()) await c(); // the server is gone
    const { fetch: f } = client();
    await expect(f(`${closedUrl}/x`)).rejects.toMatchObject({ code: "ECONNREFUSED" });
    const llm = new HolySheepClient({
      apiKey: "sk-never-in-errors-123",
      baseURL: `${closedUrl}/v1`,
      timeoutMs: 2_000,
    });
    const err: unknown = await llm.complete([{ role: "user", content: "hi" }]).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(LlmError);
    expect((err as LlmError).code).toBe("CONNECTION");
    expect(JSON.stringify(err) + String(err)).not.toContain("sk-never-in-errors-123");
  });

  it("speaks HTTPS, trusting the given certificate", async () => {
    const dir = mkdtempSync(join(tmpdir(), "l2flow-fetch-tls-"));
    cleanups.push(() => rmSync(dir, { recursive: true, force: true }));
    execFileSync(
      "openssl",
      [
        "req",
        "-x509",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
        "-days",
        "1",
        "-subj",
        "/CN=localhost",
        "-addext",
        "subjectAltName=IP:127.0.0.1",
        "-keyout",
        join(dir, "key.pem"),
        "-out",
        join(dir, "cert.pem"),
      ],
      { stdio: "ignore" },
    );
    const cert = readFileSync(join(dir, "cert.pem"));
    const key = readFileSync(join(dir, "key.pem"));
    const srv = await serve((req, res) => res.end(`secure ${req.body}`), { cert, key });
    expect(srv.url.startsWith("https://")).toBe(true);
    const trusted = client({ ca: cert });
    expect(await (await trusted.fetch(`${srv.url}/`, { method: "POST", body: "hello" })).text()).toBe(
      "secure hello",
    );
    // Without the certificate the connection is refused by verification, not silently trusted.
    await expect(client().fetch(`${srv.url}/`)).rejects.toThrow(
      /self[- ]signed|unable to verify|certificate/i,
    );
  });

  it("hands a request it does not cover (a stream body) to the global fetch", async () => {
    const srv = await serve((req, res) => res.end(`got ${req.body}`));
    const { fetch: f } = client();
    const body = new ReadableStream<Uint8Array>({
      start(c) {
        c.enqueue(new TextEncoder().encode("streamed"));
        c.close();
      },
    });
    const res = await f(`${srv.url}/s`, { method: "POST", body, duplex: "half" });
    expect(await res.text()).toBe("got streamed");
  });
});

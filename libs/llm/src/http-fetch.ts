import http from "node:http";
import https from "node:https";
import { brotliDecompressSync, gunzipSync, inflateSync } from "node:zlib";

/** Options for `keepAliveFetch`. */
export interface KeepAliveFetchOptions {
  /** Connections per host at most (requests beyond wait for one). Default: no limit. */
  readonly maxSockets?: number;
  /** Certificates to trust for HTTPS instead of Node's bundled CAs (a private endpoint). */
  readonly ca?: string | Buffer | readonly (string | Buffer)[];
}

/** A `fetch` over `node:http`/`node:https` with keep-alive agents; `close()` ends their idle connections. */
export interface KeepAliveFetch {
  readonly fetch: typeof fetch;
  close(): void;
}

/** Statuses whose response has no body (a `Response` refuses one). */
const NULL_BODY = new Set([101, 103, 204, 205, 304]);

/**
 * The `fetch` the `openai` client is given: a request over `node:http`/`node:https` on keep-alive
 * connections, the response buffered whole into a `Response`. Node's own `fetch` (undici, WHATWG
 * streams for every request and body) cost 530-600 us of CPU per chat completion against the local
 * fake server; this one 330-370 us, the rest being the `openai` client itself. The analyzer makes one
 * call per window (hundreds a second with hundreds of symbols): ~20 % of its CPU per signal saved.
 *
 * It covers what a JSON API client sends: a string or byte body, any method and headers, an abort
 * signal (the client's timeout), a compressed answer (gzip, deflate, br). Redirects are returned, not
 * followed (a chat completion is never redirected; a base URL that is gets its 3xx as an error). Any
 * other request (a `Request` object, a stream or form body) goes to the global `fetch` unchanged.
 */
export function keepAliveFetch(options: KeepAliveFetchOptions = {}): KeepAliveFetch {
  const agentOptions = { keepAlive: true, maxSockets: options.maxSockets ?? Number.POSITIVE_INFINITY };
  const agents = {
    "http:": new http.Agent(agentOptions),
    "https:": new https.Agent({
      ...agentOptions,
      ...(options.ca !== undefined ? { ca: options.ca as string | Buffer | (string | Buffer)[] } : {}),
    }),
  };

  const request = (url: URL, init: RequestInit, body: string | Uint8Array | undefined): Promise<Response> =>
    new Promise<Response>((resolve, reject) => {
      const signal = init.signal ?? undefined;
      if (signal?.aborted === true) {
        reject(abortError(signal));
        return;
      }
      const headers: Record<string, string> = {};
      new Headers(init.headers).forEach((value, key) => {
        headers[key] = value;
      });
      // Aborted (the client's timeout, or its caller): an AbortError whatever stage it cut, as
      // fetch rejects, so the client reports a timeout and not a broken connection.
      const fail = (err: Error) => reject(signal?.aborted === true ? abortError(signal, err) : err);
      const secure = url.protocol === "https:";
      const method = (init.method ?? "GET").toUpperCase();
      const req = (secure ? https : http).request(
        url,
        {
          method,
          headers,
          agent: secure ? agents["https:"] : agents["http:"],
          ...(signal !== undefined ? { signal } : {}),
        },
        (res) => {
          const chunks: Buffer[] = [];
          res.on("data", (c: Buffer) => chunks.push(c));
          // A connection closed mid-answer errors the response ("aborted"): rejected, never a
          // truncated body (a test pins it).
          res.once("error", fail);
          res.once("end", () => {
            try {
              resolve(toResponse(res, Buffer.concat(chunks), method === "HEAD"));
            } catch (err) {
              reject(err instanceof Error ? err : new Error(String(err)));
            }
          });
        },
      );
      req.once("error", fail);
      req.end(body);
    });

  const fetchImpl = (input: string | URL | Request, init: RequestInit = {}): Promise<Response> => {
    const body = init.body;
    const simple =
      (typeof input === "string" || input instanceof URL) &&
      (body === undefined || body === null || typeof body === "string" || body instanceof Uint8Array);
    if (!simple) return fetch(input, init);
    const url = new URL(input);
    if (url.protocol !== "http:" && url.protocol !== "https:") return fetch(input, init);
    return request(url, init, body ?? undefined);
  };

  return {
    fetch: fetchImpl,
    close: () => {
      agents["http:"].destroy();
      agents["https:"].destroy();
    },
  };
}

/** An `AbortError` as `fetch` rejects with, so callers (the `openai` client) tell a timeout apart. */
function abortError(signal: AbortSignal, cause?: unknown): Error {
  const reason: unknown = signal.reason;
  if (reason instanceof Error && reason.name === "AbortError") return reason;
  return Object.assign(new Error("This operation was aborted", { cause: cause ?? reason }), {
    name: "AbortError",
  });
}

function toResponse(res: http.IncomingMessage, raw: Buffer, head: boolean): Response {
  const status = res.statusCode ?? 0;
  const headers = new Headers();
  const h = res.rawHeaders;
  for (let i = 0; i + 1 < h.length; i += 2) headers.append(h[i]!, h[i + 1]!);
  const encoding = (res.headers["content-encoding"] ?? "").trim().toLowerCase();
  const body =
    NULL_BODY.has(status) || head
      ? null
      : raw.length === 0
        ? raw
        : encoding === "gzip" || encoding === "x-gzip"
          ? gunzipSync(raw)
          : encoding === "deflate"
            ? inflateSync(raw)
            : encoding === "br"
              ? brotliDecompressSync(raw)
              : raw;
  return new Response(body, { status, statusText: res.statusMessage ?? "", headers });
}

import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { AddressInfo, Socket } from "node:net";

/** What the fake answers to one request. */
export type FakeLlmBehaviour =
  /** A valid completion whose content is this object as JSON. */
  | { readonly kind: "json"; readonly body: unknown }
  /** A completion whose content is this text (e.g. not JSON). */
  | { readonly kind: "text"; readonly content: string }
  /** An HTTP error, optionally with `Retry-After` (seconds). */
  | {
      readonly kind: "status";
      readonly status: number;
      readonly retryAfterS?: number;
      /** More response headers (e.g. `retry-after` as an HTTP date). */
      readonly headers?: Readonly<Record<string, string>>;
      readonly body?: unknown;
    }
  /** Waits, then behaves as `then`. */
  | { readonly kind: "slow"; readonly delayMs: number; readonly then: FakeLlmBehaviour }
  /** Never answers (until the fake closes). */
  | { readonly kind: "hang" };

/** One request the fake received. */
export interface FakeLlmRequest {
  readonly atMs: number;
  readonly path: string;
  readonly headers: Readonly<Record<string, string | undefined>>;
  readonly body: { model?: string; messages?: { role: string; content: string }[]; [k: string]: unknown };
}

/** A running fake OpenAI-compatible server. */
export interface FakeLlm {
  /** Base URL to give the `openai` client (ends in `/v1`). */
  readonly url: string;
  /** Every request received, in order. */
  readonly requests: FakeLlmRequest[];
  /** Requests being answered right now, and the most seen at once. */
  readonly inFlight: number;
  readonly maxInFlight: number;
  /** Behaviours for the next requests, consumed one per request. */
  setScript(script: readonly (FakeLlmBehaviour | ((req: FakeLlmRequest) => FakeLlmBehaviour))[]): void;
  /** Behaviour once the script is empty. Default: a valid signal derived from the request. */
  setDefault(behaviour: FakeLlmBehaviour | ((req: FakeLlmRequest) => FakeLlmBehaviour)): void;
  /** Idempotent; also ends hanging requests. */
  close(): Promise<void>;
}

/** The default answer: a valid signal, deterministic from the prompt's length. */
export function defaultFakeSignal(req: FakeLlmRequest): FakeLlmBehaviour {
  const text = JSON.stringify(req.body.messages ?? []);
  const s = ["bearish", "neutral", "bullish"][text.length % 3]!;
  const p = ["sell", "balanced", "buy"][text.length % 3]!;
  return {
    kind: "json",
    body: { sentiment: s, confidence: 0.6, pressure: p, rationale: "fake model: deterministic answer" },
  };
}

/** Starts a fake OpenAI-compatible `/v1/chat/completions` server on 127.0.0.1 with scripted answers. */
export async function startFakeLlm(): Promise<FakeLlm> {
  const requests: FakeLlmRequest[] = [];
  let script: (FakeLlmBehaviour | ((req: FakeLlmRequest) => FakeLlmBehaviour))[] = [];
  let fallback: FakeLlmBehaviour | ((req: FakeLlmRequest) => FakeLlmBehaviour) = defaultFakeSignal;
  let inFlight = 0;
  let maxInFlight = 0;
  let counter = 0;
  const timers = new Set<NodeJS.Timeout>();
  const sockets = new Set<Socket>();

  const answer = (res: ServerResponse, req: FakeLlmRequest, b: FakeLlmBehaviour, done: () => void): void => {
    switch (b.kind) {
      case "hang":
        return; // the socket is destroyed on close
      case "slow": {
        const t = setTimeout(() => {
          timers.delete(t);
          answer(res, req, b.then, done);
        }, b.delayMs);
        timers.add(t);
        return;
      }
      case "status": {
        const headers: Record<string, string> = { "content-type": "application/json" };
        if (b.retryAfterS !== undefined) headers["retry-after"] = String(b.retryAfterS);
        Object.assign(headers, b.headers);
        res.writeHead(b.status, headers);
        res.end(
          JSON.stringify(
            b.body ?? { error: { message: `fake error ${b.status}`, type: "fake", code: b.status } },
          ),
        );
        done();
        return;
      }
      case "json":
      case "text": {
        const content = b.kind === "json" ? JSON.stringify(b.body) : b.content;
        const promptTokens = Math.ceil(JSON.stringify(req.body.messages ?? []).length / 4);
        const completionTokens = Math.ceil(content.length / 4);
        res.writeHead(200, { "content-type": "application/json" });
        res.end(
          JSON.stringify({
            id: `chatcmpl-fake-${++counter}`,
            object: "chat.completion",
            created: Math.floor(Date.now() / 1000),
            model: req.body.model ?? "fake",
            choices: [{ index: 0, message: { role: "assistant", content }, finish_reason: "stop" }],
            usage: {
              prompt_tokens: promptTokens,
              completion_tokens: completionTokens,
              total_tokens: promptTokens + completionTokens,
            },
          }),
        );
        done();
        return;
      }
    }
  };

  const server: Server = createServer((req: IncomingMessage, res: ServerResponse) => {
    const chunks: Buffer[] = [];
    req.on("data", (c: Buffer) => chunks.push(c));
    req.on("end", () => {
      const path = (req.url ?? "/").split("?")[0]!;
      if (req.method !== "POST" || !path.endsWith("/chat/completions")) {
        res.writeHead(404, { "content-type": "application/json" }).end('{"error":{"message":"not found"}}');
        return;
      }
      let body: FakeLlmRequest["body"];
      try {
        body = JSON.parse(Buffer.concat(chunks).toString("utf8")) as FakeLlmRequest["body"];
      } catch {
        res
          .writeHead(400, { "content-type": "application/json" })
          .end('{"error":{"message":"body is not JSON"}}');
        return;
      }
      const headers: Record<string, string | undefined> = {};
      for (const [k, v] of Object.entries(req.headers)) headers[k] = Array.isArray(v) ? v.join(",") : v;
      const r: FakeLlmRequest = { atMs: Date.now(), path, headers, body };
      requests.push(r);
      const next = script.shift() ?? fallback;
      const behaviour = typeof next === "function" ? next(r) : next;
      inFlight++;
      maxInFlight = Math.max(maxInFlight, inFlight);
      let finished = false;
      const done = () => {
        if (!finished) {
          finished = true;
          inFlight--;
        }
      };
      res.on("close", done);
      answer(res, r, behaviour, done);
    });
  });
  server.on("connection", (s: Socket) => {
    sockets.add(s);
    s.on("close", () => sockets.delete(s));
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const port = (server.address() as AddressInfo).port;
  let closing: Promise<void> | undefined;
  return {
    url: `http://127.0.0.1:${port}/v1`,
    requests,
    get inFlight() {
      return inFlight;
    },
    get maxInFlight() {
      return maxInFlight;
    },
    setScript: (s) => {
      script = [...s];
    },
    setDefault: (b) => {
      fallback = b;
    },
    close: () =>
      (closing ??= new Promise<void>((resolve) => {
        for (const t of timers) clearTimeout(t);
        for (const s of sockets) s.destroy();
        server.close(() => resolve());
      })),
  };
}

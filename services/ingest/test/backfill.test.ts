// The trade backfill's bound on waiting holes, against a real HTTP server that bans (418) like Binance.
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { afterEach, describe, expect, it } from "vitest";
import { BinanceRestClient, DedupeFilter } from "@l2flow/binance";
import { TradeBackfill } from "../src/backfill.js";
import { waitUntil } from "./harness.js";

describe("TradeBackfill", () => {
  let server: Server | undefined;
  let rest: BinanceRestClient | undefined;
  afterEach(async () => {
    rest?.close();
    await new Promise((r) => (server ? server.close(r) : r(undefined)));
  });

  it("reports a hole beyond maxHoles as unrecoverable at once while REST is paused by a ban", async () => {
    let requests = 0;
    server = createServer((_req, res) => {
      requests++;
      res.writeHead(418, { "retry-after": "60", "content-type": "application/json" });
      res.end('{"code":-1003,"msg":"banned"}');
    });
    await new Promise<void>((r) => server!.listen(0, "127.0.0.1", r));
    rest = new BinanceRestClient({ baseUrl: `http://127.0.0.1:${(server.address() as AddressInfo).port}` });
    const missing: [number, number, string][] = [];
    const backfill = new TradeBackfill({
      rest,
      dedupe: new DedupeFilter(),
      delayMs: 0,
      maxIdsPerGap: 1_000,
      timeScale: 1,
      maxHoles: 3,
      publish: () => undefined,
      onUnrecoverable: (_kind, _symbol, from, to, reason) => missing.push([from, to, reason]),
    });
    // The first hole's request meets the ban: it waits in the paused queue (60 s).
    backfill.observe("trade", "BTCUSDT", 1);
    backfill.observe("trade", "BTCUSDT", 3);
    await waitUntil(() => requests === 1, 5_000, "the first request to meet the ban");
    await new Promise((r) => setTimeout(r, 100));
    expect(backfill.pending).toBe(1);
    // Reconnects keep opening holes meanwhile: two more wait, the fourth is reported at once.
    for (const id of [5, 7, 9]) backfill.observe("trade", "BTCUSDT", id);
    expect(backfill.pending).toBe(3);
    expect(missing).toEqual([[8, 8, expect.stringMatching(/too many holes/)]]);
    expect(requests).toBe(1); // nothing more sent during the ban
    // Closing reports the waiting ones.
    await backfill.close();
    expect(missing.slice(1).map(([from, to]) => [from, to])).toEqual([
      [2, 2],
      [4, 4],
      [6, 6],
    ]);
  });
});

// gRPC health follows the NATS connection; streams survive a NATS restart; shutdown ends streams.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { status, type ServiceError } from "@grpc/grpc-js";
import { STREAMS, type StreamWindowsResponse } from "@l2flow/contracts";
import { startTestNats, type TestNats } from "@l2flow/testkit";
import {
  book,
  call,
  codeOf,
  consumerFilters,
  eventually,
  healthCheck,
  publishWindow,
  putBook,
  startHarness,
  window,
  type Harness,
} from "./support.js";

const SERVING = 1;
const NOT_SERVING = 2;

describe("gateway: health, NATS outages and shutdown", () => {
  let nats: TestNats;
  let h: Harness;

  beforeAll(async () => {
    nats = await startTestNats();
    h = await startHarness(nats.url, { GATEWAY_STREAM_RESUME_TIMEOUT_MS: "30000" });
    await putBook(h.bus, book("BTCUSDT", 7));
  });
  afterAll(async () => {
    await h?.close();
    await nats?.close();
  });

  it("is SERVING while NATS is connected", async () => {
    expect(await healthCheck(h.gateway.grpcTarget, "")).toBe(SERVING);
    expect(await healthCheck(h.gateway.grpcTarget, "l2flow.v1.MarketData")).toBe(SERVING);
    expect((await fetch(`${h.gateway.opsUrl}/readyz`)).status).toBe(200);
  });

  it("goes NOT_SERVING when NATS goes away, and SERVING again after it is back; open streams resume", async () => {
    const received: number[] = [];
    const stream = h.client.streamWindows({ symbols: ["BTCUSDT"], intervals: ["1s"], startTimeMs: 0 });
    stream.on("data", (r: StreamWindowsResponse) => received.push(r.window?.startTimeMs ?? -1));
    stream.on("error", () => undefined);
    await eventually(
      () => consumerFilters(h.bus, STREAMS.window),
      (f) => f.includes("md.window.binance.1s.BTCUSDT"),
    );
    await publishWindow(h.bus, window("BTCUSDT", "1s", 1_000));
    await eventually(
      () => received,
      (r) => r.length === 1,
    );

    await nats.stop();
    expect(
      await eventually(
        () => healthCheck(h.gateway.grpcTarget, "l2flow.v1.MarketData"),
        (s) => s === NOT_SERVING,
      ),
    ).toBe(NOT_SERVING);
    expect(await healthCheck(h.gateway.grpcTarget, "")).toBe(NOT_SERVING);
    expect((await fetch(`${h.gateway.opsUrl}/readyz`)).status).toBe(503);
    const down = await codeOf(call(h.client.getBook.bind(h.client), { symbol: "BTCUSDT", depth: 1 }));
    expect(down.code).toBe(status.UNAVAILABLE);
    expect(down.details).toContain("NATS");

    await nats.restart();
    expect(
      await eventually(
        () => healthCheck(h.gateway.grpcTarget, "l2flow.v1.MarketData"),
        (s) => s === SERVING,
        20_000,
      ),
    ).toBe(SERVING);
    const res = await call(h.client.getBook.bind(h.client), { symbol: "BTCUSDT", depth: 1 });
    expect(res.book?.lastUpdateId).toBe(7);

    // The stream that was open across the outage continues after the last window it delivered.
    await eventually(
      () => h.bus.isConnected(),
      (up) => up,
      20_000,
    );
    await publishWindow(h.bus, window("BTCUSDT", "1s", 2_000));
    expect(
      await eventually(
        () => received,
        (r) => r.length === 2,
        20_000,
      ),
    ).toEqual([1_000, 2_000]);
    stream.cancel();
  });

  it("on close, open streams end with UNAVAILABLE and the server stops", async () => {
    const stream = h.client.streamWindows({ symbols: [], intervals: [], startTimeMs: 0 });
    const ended = new Promise<ServiceError>((resolve) => stream.on("error", resolve));
    await eventually(
      () => consumerFilters(h.bus, STREAMS.window),
      (f) => f.includes("md.window.binance.*.*"),
    );
    const closing = h.gateway.close();
    // Not ready from the start of shutdown, as gRPC health (the ops server may already be gone).
    const ready = await fetch(`${h.gateway.opsUrl}/readyz`).then(
      (r) => r.status,
      () => "gone",
    );
    expect(ready).not.toBe(200);
    await closing;
    const err = await ended;
    expect(err.code).toBe(status.UNAVAILABLE);
    expect(err.details).toContain("shutting down");
    await expect(healthCheck(h.gateway.grpcTarget, "")).rejects.toMatchObject({ code: status.UNAVAILABLE });
  });
});

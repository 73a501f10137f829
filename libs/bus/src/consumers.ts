import type { ConsumerInfo } from "@nats-io/jetstream";
import type { Bus } from "./connect.js";

/**
 * The consumers of `stream`, page after page as `jsm.consumers.list` reads them, without the empty
 * entries nats-server before 2.10 writes into a page for a consumer that goes away while the page is
 * built (its inactivity threshold passing, say; fixed in nats-io/nats-server#4669): nats.js hands
 * those on as `null`, and reading a field of one threw.
 */
export async function* listConsumers(bus: Bus, stream: string): AsyncGenerator<ConsumerInfo> {
  for await (const c of bus.jsm.consumers.list(stream)) {
    const info = c as ConsumerInfo | null;
    if (info !== null) yield info;
  }
}

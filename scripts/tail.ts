// Prints the messages of a NATS subject as JSON lines, decoding l2flow's protobuf payloads by subject.
// Usage: NATS_URL=nats://127.0.0.1:4222 npm run tail -- 'signal.>'
// (The full CLI with history, `book`, `replay` and `record` is tracked in the gateway/CLI issue.)
import { connectBus } from "@l2flow/bus";
import { BookSnapshot, Gap, Signal, Trade, Window } from "@l2flow/contracts";

const subject = process.argv[2] ?? "signal.>";
const decoders: [string, (b: Uint8Array) => unknown][] = [
  ["md.book.", (b) => BookSnapshot.toJSON(BookSnapshot.decode(b))],
  ["md.trade.", (b) => Trade.toJSON(Trade.decode(b))],
  ["md.gap.", (b) => Gap.toJSON(Gap.decode(b))],
  ["md.window.", (b) => Window.toJSON(Window.decode(b))],
  ["signal.", (b) => Signal.toJSON(Signal.decode(b))],
];
const bus = await connectBus({
  servers: (process.env.NATS_URL ?? "nats://127.0.0.1:4222").split(","),
  name: "l2flow-tail",
});
const sub = bus.nc.subscribe(subject);
process.once("SIGINT", () => void bus.drain());
for await (const msg of sub) {
  const decode = decoders.find(([prefix]) => msg.subject.startsWith(prefix))?.[1];
  let payload: unknown;
  try {
    payload = decode ? decode(msg.data) : msg.string();
  } catch (err) {
    payload = { undecodable: err instanceof Error ? err.message : String(err) };
  }
  process.stdout.write(`${JSON.stringify({ subject: msg.subject, payload })}\n`);
}

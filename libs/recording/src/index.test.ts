import { describe, expect, it } from "vitest";
import { formatRecordedEvent, parseRecording, readRecording, RecordingFormatError } from "@l2flow/recording";
import { fixtures } from "@l2flow/testkit";

describe("recording", () => {
  it("reads the hftbacktest BTCUSDT recording", () => {
    const rec = readRecording(fixtures.btcusdt);
    expect(rec.format).toBe("hftbacktest");
    expect(rec.symbols).toEqual(["BTCUSDT"]);
    const count = (kind: string) => rec.events.filter((e) => e.type === "frame" && e.kind === kind).length;
    expect(count("depth@100ms")).toBe(3451);
    expect(count("trade")).toBe(9757);
    expect(count("bookTicker")).toBe(28040);
    const snaps = rec.events.filter((e) => e.type === "snapshot");
    expect(snaps).toHaveLength(1);
    expect(snaps[0]).toMatchObject({ symbol: "BTCUSDT", limit: 1000 });
    expect(rec.events.indexOf(snaps[0]!)).toBe(7);
  });

  it("reads the cryptofeed 10-symbol recording", () => {
    const rec = readRecording(fixtures.tenSymbols);
    expect(rec.format).toBe("cryptofeed");
    expect(rec.symbols).toHaveLength(10);
    const frames = rec.events.filter((e) => e.type === "frame");
    expect(frames.filter((e) => e.kind === "depth@100ms")).toHaveLength(4709);
    expect(frames.filter((e) => e.kind === "aggTrade")).toHaveLength(1240);
    expect(rec.events.filter((e) => e.type === "snapshot")).toHaveLength(10);
    const first = frames[0]!;
    expect(JSON.parse(first.data)).toMatchObject({ s: first.symbol });
  });

  it("round-trips l2flow's own format", () => {
    const rec = readRecording(fixtures.tenSymbols);
    const text = rec.events.slice(0, 50).map(formatRecordedEvent).join("\n");
    const again = parseRecording(text);
    expect(again.format).toBe("l2flow");
    expect(again.events).toEqual(rec.events.slice(0, 50));
  });

  it("names the line of a malformed entry", () => {
    expect(() => parseRecording('123 {"stream":"x@trade","data":{}}\nnonsense')).toThrow(
      RecordingFormatError,
    );
    expect(() => parseRecording('123 {"stream":"x@trade","data":{}}\nnonsense')).toThrow(/line 2/);
  });
});

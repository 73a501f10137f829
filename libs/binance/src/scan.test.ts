import { describe, expect, it } from "vitest";
import { readRecording } from "@l2flow/recording";
import { fixtures } from "@l2flow/testkit";
import { routeFrame, type FrameRoute } from "./parse.js";
import { scanFrame } from "./scan.js";

/** What routeFrame says of a frame: its route, or the FrameError's code. */
function slow(frame: Buffer): FrameRoute | string {
  try {
    return routeFrame(frame.toString("utf8"));
  } catch (err) {
    return (err as { code: string }).code;
  }
}

/** scanFrame's answer in routeFrame's terms, or undefined when it leaves the frame to routeFrame. */
function fast(frame: Buffer): FrameRoute | undefined {
  const s = scanFrame(frame);
  if (s === undefined) return undefined;
  const { dataStart, dataEnd, ...rest } = s;
  return { ...rest, data: frame.subarray(dataStart, dataEnd).toString("latin1") };
}

/** Fails unless scanFrame either leaves the frame alone or routes it exactly as routeFrame does. */
function agrees(frame: Buffer): "fast" | "slow" {
  const f = fast(frame);
  if (f === undefined) return "slow";
  expect(f, frame.toString("latin1")).toEqual(slow(frame));
  return "fast";
}

const combined = (stream: string, data: string) => Buffer.from(`{"stream":"${stream}","data":${data}}`);

describe("scanFrame", () => {
  it("routes every frame of both recordings itself, exactly as routeFrame, combined and raw", () => {
    let n = 0;
    for (const file of [fixtures.btcusdt, fixtures.tenSymbols]) {
      for (const e of readRecording(file).events) {
        if (e.type !== "frame") continue;
        // Every recorded frame is well formed, so none may be left to the slow path.
        expect(agrees(combined(e.stream, e.data))).toBe("fast");
        expect(agrees(Buffer.from(e.data))).toBe("fast");
        n++;
      }
    }
    expect(n).toBeGreaterThan(40_000);
  });

  const trade =
    '{"e":"trade","E":1723161255343,"s":"BTCUSDT","t":3735683259,"p":"61837.63","q":"0.02","T":1,"m":true}';
  it.each([
    [
      "whitespace JSON allows",
      '{ "e" : "trade" ,\n"E":5,\t"s":"BTCUSDT","t":7,"x":[ 1 , {"y": null} ] }',
      "fast",
    ],
    ["the last of a repeated key", '{"e":"aggTrade","E":5,"s":"A","s":"ETHUSDT","a":1,"a":9}', "fast"],
    ["a bookTicker", '{"u":400900217,"s":"BNBUSDT","b":"25.3","B":"31.2","a":"25.4","A":"40.6"}', "fast"],
    ["an empty depth diff", '{"e":"depthUpdate","E":1,"s":"X","U":1,"u":2,"b":[],"a":[]}', "fast"],
    [
      "escapes in fields not routed",
      '{"e":"trade","E":5,"s":"BTCUSDT","t":7,"x":"a\\"b\\\\c\\u00e9\\n"}',
      "fast",
    ],
    ["an escaped key", '{"\\u0065":"trade","E":5,"s":"BTCUSDT","t":7}', "slow"],
    ["a routed key repeated, escaped", '{"e":"trade","E":5,"s":"BTCUSDT","t":7,"\\u0074":9}', "slow"],
    ["an escaped symbol", '{"e":"trade","E":5,"s":"BTC\\u0055SDT","t":7}', "slow"],
    ["an escaped event type", '{"e":"tr\\u0061de","E":5,"s":"BTCUSDT","t":7}', "slow"],
    ["non-ASCII", '{"e":"trade","E":5,"s":"BTCUSDT","t":7,"x":"é"}', "slow"],
    ["an id written 7e0", '{"e":"trade","E":5,"s":"BTCUSDT","t":7e0}', "slow"],
    ["an id written 7.0", '{"e":"trade","E":5,"s":"BTCUSDT","t":7.0}', "slow"],
    ["a negative id", '{"e":"trade","E":5,"s":"BTCUSDT","t":-7}', "slow"],
    ["a 16-digit id", '{"e":"trade","E":5,"s":"BTCUSDT","t":1234567890123456}', "slow"],
    ["an id as a string", '{"e":"trade","E":5,"s":"BTCUSDT","t":"7"}', "slow"],
    ["no event time", '{"e":"trade","s":"BTCUSDT","t":7}', "slow"],
    ["an empty symbol", '{"e":"trade","E":5,"s":"","t":7}', "slow"],
    ["a symbol that is a number", '{"e":"trade","E":5,"s":1,"t":7}', "slow"],
    ["an unknown event", '{"e":"kline","E":5,"s":"BTCUSDT","t":7}', "slow"],
    ["serverShutdown", '{"e":"serverShutdown","E":5}', "slow"],
    ["a leading zero", '{"e":"trade","E":05,"s":"BTCUSDT","t":7}', "slow"],
    ["a missing comma", '{"e":"trade" "E":5,"s":"BTCUSDT","t":7}', "slow"],
    ["a trailing comma", '{"e":"trade","E":5,"s":"BTCUSDT","t":7,}', "slow"],
    ["a bad escape", '{"e":"trade","E":5,"s":"BTCUSDT","t":7,"x":"\\q"}', "slow"],
    ["a raw control character", '{"e":"trade","E":5,"s":"BTCUSDT","t":7,"x":"a\tb"}', "slow"],
    ["an unclosed array", '{"e":"depthUpdate","E":1,"s":"X","U":1,"u":2,"b":[["1","2"],"a":[]}', "slow"],
    [
      "nesting past the scan's depth",
      `{"e":"trade","E":5,"s":"B","t":7,"x":${"[".repeat(40)}${"]".repeat(40)}}`,
      "slow",
    ],
    ["trailing bytes", `${trade} `, "slow"],
    ["a misspelt literal", trade.replace("true", "ture"), "slow"],
    ["an array", "[1,2]", "slow"],
  ])("leaves to routeFrame or routes exactly as it: %s", (_what, data, want) => {
    expect(agrees(Buffer.from(data))).toBe(want);
    expect(agrees(combined("x@trade", data))).toBe(want);
  });

  it.each([
    ["data not straight after stream", `{"stream":"x@trade","id":1,"data":${trade}}`],
    ["members after data", `{"stream":"x@trade","data":${trade},"id":1}`],
    ["a stream that is not a string", `{"stream":1,"data":${trade}}`],
    ["an escaped stream", `{"stream":"x\\u0040trade","data":${trade}}`],
    ["no closing brace", `{"stream":"x@trade","data":${trade}`],
    ["space before data", `{"stream":"x@trade","data": ${trade}}`],
  ])("leaves unusual combined frames to routeFrame: %s", (_what, frame) => {
    expect(agrees(Buffer.from(frame))).toBe("slow");
  });

  it("never routes a frame differently from routeFrame, over 20 000 random corruptions of real frames", () => {
    const frames = readRecording(fixtures.tenSymbols)
      .events.filter((e) => e.type === "frame")
      .slice(0, 2_000)
      .map((e) => combined((e as { stream: string }).stream, (e as { data: string }).data));
    // A fixed-seed generator (mulberry32) so a failure can be replayed.
    let seed = 0x5eed;
    const rand = (n: number) => {
      seed = (seed + 0x6d2b79f5) | 0;
      let t = Math.imul(seed ^ (seed >>> 15), 1 | seed);
      t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
      return (((t ^ (t >>> 14)) >>> 0) % n) >>> 0;
    };
    const alphabet = Buffer.from('{}[]",:\\.-+eE0123456789 \tantu\u00ff');
    const counts = { fast: 0, slow: 0 };
    for (let k = 0; k < 20_000; k++) {
      const f = Buffer.from(frames[rand(frames.length)]!);
      const at = rand(f.length);
      const op = rand(3);
      const mutated =
        op === 0
          ? ((f[at] = alphabet[rand(alphabet.length)]!), f)
          : op === 1
            ? Buffer.concat([f.subarray(0, at), f.subarray(at + 1)])
            : Buffer.concat([
                f.subarray(0, at),
                alphabet.subarray(rand(alphabet.length)).subarray(0, 1),
                f.subarray(at),
              ]);
      counts[agrees(mutated)]++;
    }
    // Both paths were exercised: corruptions that stay valid JSON (a digit changed) and ones that do not.
    expect(counts.fast).toBeGreaterThan(1_000);
    expect(counts.slow).toBeGreaterThan(1_000);
  });
});

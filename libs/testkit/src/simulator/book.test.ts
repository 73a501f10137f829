import { describe, expect, it } from "vitest";
import { parseDepthDiff, parseSnapshotBody, TrueBook } from "./book.js";

const snapshot = parseSnapshotBody(
  '{"lastUpdateId":10,"bids":[["99.00","1"],["100.00","2"],["98.50","3"]],"asks":[["101.00","1"],["100.50","4"]]}',
);

describe("TrueBook", () => {
  it("sorts bids high to low and asks low to high, cut to the limit", () => {
    const book = new TrueBook();
    book.seed(snapshot);
    expect(book.snapshot(2)).toEqual({
      lastUpdateId: 10,
      bids: [
        ["100.00", "2"],
        ["99.00", "1"],
      ],
      asks: [
        ["100.50", "4"],
        ["101.00", "1"],
      ],
    });
  });

  it("skips diffs it already contains, applies later ones, and removes levels at quantity 0", () => {
    const book = new TrueBook();
    book.seed(snapshot);
    expect(book.apply(parseDepthDiff('{"U":5,"u":10,"b":[["100.00","0"]],"a":[]}'))).toBe(false);
    expect(book.snapshot(1).bids).toEqual([["100.00", "2"]]);
    expect(
      book.apply(
        parseDepthDiff('{"U":9,"u":12,"b":[["100.00","0.00000000"],["99.50","7"]],"a":[["100.50","0"]]}'),
      ),
    ).toBe(true);
    expect(book.snapshot(5)).toEqual({
      lastUpdateId: 12,
      bids: [
        ["99.50", "7"],
        ["99.00", "1"],
        ["98.50", "3"],
      ],
      asks: [["101.00", "1"]],
    });
    expect(book.depth).toEqual({ bids: 3, asks: 1 });
  });

  it("rejects malformed bodies", () => {
    expect(() => parseSnapshotBody('{"bids":[],"asks":[]}')).toThrow(TypeError);
    expect(() => parseDepthDiff('{"U":1,"u":2,"b":[[1,2]],"a":[]}')).toThrow(TypeError);
  });
});

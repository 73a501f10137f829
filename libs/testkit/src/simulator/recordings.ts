import { fixtures } from "../fixtures.js";

/**
 * A recording path from a name or a path: `btcusdt` → the shipped BTCUSDT recording, `ten` (or
 * `tenSymbols`) → the shipped ten-symbol recording; anything else is taken as a file path.
 */
export function resolveRecordingPath(nameOrPath: string): string {
  switch (nameOrPath) {
    case "btcusdt":
      return fixtures.btcusdt;
    case "ten":
    case "tenSymbols":
      return fixtures.tenSymbols;
    default:
      return nameOrPath;
  }
}

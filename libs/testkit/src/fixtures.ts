import { fileURLToPath } from "node:url";

const dir = (name: string) => fileURLToPath(new URL(`../fixtures/binance/${name}`, import.meta.url));

/**
 * Real Binance recordings shipped with the project (see `fixtures/binance/README.md` and the licence
 * files beside them).
 */
export const fixtures = {
  /** BTCUSDT, 2024-08-08, ~346 s: depth@100ms, trade, bookTicker; hftbacktest format (gzip). */
  btcusdt: dir("hftbacktest_btcusdt_20240808.gz"),
  /** Ten symbols, 2021-04-05, ~119 s: depth@100ms, aggTrade, bookTicker; cryptofeed format. */
  tenSymbols: dir("cryptofeed_BINANCE-b38f7c.0.txt"),
} as const;

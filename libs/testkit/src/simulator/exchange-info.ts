/** `GET /api/v3/exchangeInfo` for the recording's symbols, in Binance spot's shape. */
import { stepString } from "./decimal.js";
import type { SymbolPrecision } from "./market.js";

// Longest first, so that e.g. FDUSD wins over USD and BTCST* is not split at BTC.
const QUOTE_ASSETS = [
  "FDUSD",
  "USDT",
  "USDC",
  "BUSD",
  "TUSD",
  "USDP",
  "IDRT",
  "BIDR",
  "BVND",
  "DOGE",
  "EURI",
  "AEUR",
  "DAI",
  "PAX",
  "BTC",
  "ETH",
  "BNB",
  "XRP",
  "TRX",
  "SOL",
  "DOT",
  "AUD",
  "BRL",
  "EUR",
  "GBP",
  "TRY",
  "RUB",
  "UAH",
  "NGN",
  "ZAR",
  "JPY",
  "MXN",
  "PLN",
  "RON",
  "ARS",
  "COP",
  "CZK",
  "VAI",
  "UST",
  "USD",
].sort((a, b) => b.length - a.length);

/** Splits a symbol at a common quote-asset suffix: `RENBTCETH` → RENBTC / ETH. */
export function splitSymbol(symbol: string): { baseAsset: string; quoteAsset: string } {
  for (const quote of QUOTE_ASSETS) {
    if (symbol.length > quote.length && symbol.endsWith(quote))
      return { baseAsset: symbol.slice(0, -quote.length), quoteAsset: quote };
  }
  // Unknown quote: guess the last three letters, like most fiat and coin tickers.
  return { baseAsset: symbol.slice(0, -3), quoteAsset: symbol.slice(-3) };
}

/** Binance's rate limiters as `exchangeInfo` lists them, with our request-weight limit. */
export function rateLimits(weightLimitPerMinute: number): object[] {
  return [
    { rateLimitType: "REQUEST_WEIGHT", interval: "MINUTE", intervalNum: 1, limit: weightLimitPerMinute },
    { rateLimitType: "ORDERS", interval: "SECOND", intervalNum: 10, limit: 100 },
    { rateLimitType: "ORDERS", interval: "DAY", intervalNum: 1, limit: 200000 },
    { rateLimitType: "RAW_REQUESTS", interval: "MINUTE", intervalNum: 5, limit: 61000 },
  ];
}

/** One `symbols[]` entry: TRADING, assets from the name, PRICE_FILTER / LOT_SIZE from the precision seen. */
export function symbolInfo(symbol: string, precision: SymbolPrecision | undefined): object {
  const { baseAsset, quoteAsset } = splitSymbol(symbol);
  const priceWidth = precision?.priceWidth ?? 8;
  const quantityWidth = precision?.quantityWidth ?? 8;
  const tickSize = stepString(precision?.tickDecimals ?? 2, priceWidth);
  const stepSize = stepString(precision?.stepDecimals ?? 5, quantityWidth);
  const big = (width: number, integer: string) => (width > 0 ? `${integer}.${"0".repeat(width)}` : integer);
  return {
    symbol,
    status: "TRADING",
    baseAsset,
    baseAssetPrecision: 8,
    quoteAsset,
    quotePrecision: 8,
    quoteAssetPrecision: 8,
    baseCommissionPrecision: 8,
    quoteCommissionPrecision: 8,
    orderTypes: ["LIMIT", "LIMIT_MAKER", "MARKET", "STOP_LOSS_LIMIT", "TAKE_PROFIT_LIMIT"],
    icebergAllowed: true,
    ocoAllowed: true,
    otoAllowed: true,
    quoteOrderQtyMarketAllowed: true,
    allowTrailingStop: true,
    cancelReplaceAllowed: true,
    isSpotTradingAllowed: true,
    isMarginTradingAllowed: false,
    filters: [
      { filterType: "PRICE_FILTER", minPrice: tickSize, maxPrice: big(priceWidth, "1000000"), tickSize },
      { filterType: "LOT_SIZE", minQty: stepSize, maxQty: big(quantityWidth, "9000000"), stepSize },
    ],
    permissions: [],
    permissionSets: [["SPOT"]],
    defaultSelfTradePreventionMode: "EXPIRE_MAKER",
    allowedSelfTradePreventionModes: ["EXPIRE_TAKER", "EXPIRE_MAKER", "EXPIRE_BOTH"],
  };
}

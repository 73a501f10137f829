/** The normalizer service: MD_RAW in; books, trades, gaps and windows out (see DESIGN.md, "Normalizer"). */
export { loadConfig, type NormalizerConfig } from "./config.js";
export {
  startNormalizer,
  CONSUME_WINDOW,
  RAW_FILTER,
  type NormalizerDeps,
  type NormalizerService,
} from "./service.js";
export { partitionOf, ownsSymbol } from "./partition.js";
export {
  SymbolProcessor,
  CorruptRaw,
  type ProcessorOptions,
  type ProcessorState,
  type Output,
} from "./symbol.js";

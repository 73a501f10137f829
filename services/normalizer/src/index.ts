/** The normalizer service: MD_RAW → exact books, trades, gaps and windows (see DESIGN.md). */
export { loadConfig, type NormalizerConfig } from "./config.js";
export { startNormalizer, type NormalizerDeps, type NormalizerService } from "./service.js";

/** The ingest service: Binance → MD_RAW (see DESIGN.md, "Binance"). */
export { loadConfig, type IngestConfig } from "./config.js";
export { startIngest, type IngestDeps, type IngestService } from "./service.js";

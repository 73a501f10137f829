/** The analyzer service: windows in, signals out (see DESIGN.md, "Analyzer"). */
export { loadConfig, type AnalyzerConfig } from "./config.js";
export { startAnalyzer, type AnalyzerDeps, type AnalyzerService } from "./service.js";

import { ConfigError, createLogger, runService } from "@l2flow/runtime";
import { loadConfig } from "./config.js";
import { startAnalyzer } from "./service.js";

let config;
try {
  config = loadConfig(process.env);
} catch (err) {
  if (!(err instanceof ConfigError)) throw err;
  process.stderr.write(`analyzer: ${err.message}\n`);
  process.exit(2);
}
const logger = createLogger({
  service: "analyzer",
  level: config.LOG_LEVEL,
  secrets: [config.HOLYSHEEP_API_KEY, config.NATS_PASSWORD, config.NATS_TOKEN],
});
runService(async () => [await startAnalyzer(config, { logger })], { logger, gcTuning: config.GC_TUNING });

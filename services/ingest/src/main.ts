import { ConfigError, createLogger, runService } from "@l2flow/runtime";
import { loadConfig } from "./config.js";
import { startIngest } from "./service.js";

let config;
try {
  config = loadConfig(process.env);
} catch (err) {
  if (!(err instanceof ConfigError)) throw err;
  process.stderr.write(`ingest: ${err.message}\n`);
  process.exit(2);
}
const logger = createLogger({
  service: "ingest",
  level: config.LOG_LEVEL,
  secrets: [config.NATS_PASSWORD, config.NATS_TOKEN, config.BINANCE_API_KEY],
});
runService(async () => [await startIngest(config, { logger })], { logger, gcTuning: config.GC_TUNING });

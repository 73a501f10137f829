import { ConfigError, createLogger, runService } from "@l2flow/runtime";
import { loadConfig } from "./config.js";
import { startGateway } from "./service.js";

let config;
try {
  config = loadConfig(process.env);
} catch (err) {
  if (!(err instanceof ConfigError)) throw err;
  process.stderr.write(`gateway: ${err.message}\n`);
  process.exit(2);
}
const logger = createLogger({
  service: "gateway",
  level: config.LOG_LEVEL,
  secrets: [config.NATS_PASSWORD, config.NATS_TOKEN],
});
runService(async () => [await startGateway(config, { logger })], { logger, gcTuning: config.GC_TUNING });

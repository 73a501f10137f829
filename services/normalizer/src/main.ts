import { ConfigError, createLogger, runService } from "@l2flow/runtime";
import { loadConfig } from "./config.js";
import { startNormalizer } from "./service.js";

let config;
try {
  config = loadConfig(process.env);
} catch (err) {
  if (!(err instanceof ConfigError)) throw err;
  process.stderr.write(`normalizer: ${err.message}\n`);
  process.exit(2);
}
const logger = createLogger({
  service: "normalizer",
  level: config.LOG_LEVEL,
  secrets: [config.NATS_PASSWORD, config.NATS_TOKEN],
});
runService(
  async () => [
    await startNormalizer(config, {
      logger,
      // Closes in order (the last checkpoints stay as they are) and exits; the restart continues.
      onFatal: () => process.kill(process.pid, "SIGTERM"),
    }),
  ],
  { logger, gcTuning: config.GC_TUNING },
);

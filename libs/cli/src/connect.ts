import { z } from "zod";
import { BusError, connectBus, type Bus } from "@l2flow/bus";
import { L2flowError, natsEnvShape, natsOptions, parseEnv } from "@l2flow/runtime";

/** How long the CLI tries to reach NATS unless NATS_CONNECT_TIMEOUT_MS says otherwise. */
const CLI_CONNECT_TIMEOUT_MS = 5_000;

const natsEnv = z.object(natsEnvShape);

/** The NATS servers the CLI will use: `--nats`, else NATS_URL, else the local default. */
export function natsServers(
  env: Readonly<Record<string, string | undefined>>,
  flag: string | undefined,
): string[] {
  return natsConfig(env, flag).NATS_URL;
}

function natsConfig(env: Readonly<Record<string, string | undefined>>, flag: string | undefined) {
  const vars = { ...env, ...(flag !== undefined ? { NATS_URL: flag } : {}) };
  const config = parseEnv(natsEnv, vars, { secretKeys: ["NATS_PASSWORD", "NATS_TOKEN"] });
  if (env.NATS_CONNECT_TIMEOUT_MS === undefined || env.NATS_CONNECT_TIMEOUT_MS === "")
    config.NATS_CONNECT_TIMEOUT_MS = CLI_CONNECT_TIMEOUT_MS;
  return config;
}

/**
 * Connects with the credentials of the NATS_* variables (user/password, token, creds file, TLS). An
 * unreachable server becomes an error that names the URL and says how to point the CLI elsewhere.
 */
export async function connectCli(
  env: Readonly<Record<string, string | undefined>>,
  flag: string | undefined,
): Promise<Bus> {
  const config = natsConfig(env, flag);
  try {
    return await connectBus({ ...natsOptions(config, "l2flow-cli"), reconnectTimeWaitMs: 500 });
  } catch (err) {
    if (err instanceof BusError && err.code === "NATS_UNREACHABLE") {
      throw new L2flowError(
        "NATS_UNREACHABLE",
        `cannot reach NATS at ${config.NATS_URL.join(",")} (tried for ${config.NATS_CONNECT_TIMEOUT_MS} ms). ` +
          "Start it (`npm run demo` starts one with the whole pipeline, or `nats-server -js`), or point the CLI " +
          "at yours with --nats nats://host:4222 or NATS_URL.",
        { cause: err },
      );
    }
    throw err;
  }
}

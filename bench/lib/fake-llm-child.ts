/**
 * The fake OpenAI-compatible server in a process of its own, so that its CPU is not counted with the
 * client measured beside it. Prints its base URL on the first line of stdout; keeps no request log
 * (it would grow with every call).
 */
import { startFakeLlm } from "@l2flow/testkit";

const llm = await startFakeLlm();
process.stdout.write(`${llm.url}\n`);
setInterval(() => {
  llm.requests.length = 0;
}, 1_000);

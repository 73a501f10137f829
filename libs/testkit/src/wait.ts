/**
 * Polls `cond` every `everyMs` (default 20 ms) until it holds; throws "timed out waiting for <what>"
 * after `timeoutMs`. For tests that wait on real processes and sockets, never on a fixed sleep.
 */
export async function waitUntil(
  cond: () => boolean | Promise<boolean>,
  timeoutMs: number,
  what: string,
  everyMs = 20,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await cond())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, everyMs));
  }
}

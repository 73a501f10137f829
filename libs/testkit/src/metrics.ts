/**
 * The sum of one metric's samples in Prometheus text (`/metrics`): every label set, or only the
 * lines that contain `labels` (for example `kind="trade"`); undefined when no line matches.
 */
export function readMetric(text: string, name: string, labels = ""): number | undefined {
  let sum: number | undefined;
  for (const line of text.split("\n")) {
    const next = line[name.length];
    if (line.startsWith(name) && (next === " " || next === "{") && line.includes(labels))
      sum = (sum ?? 0) + Number(line.slice(line.lastIndexOf(" ") + 1));
  }
  return sum;
}

/**
 * The sum of one metric's samples scraped from a service's `/metrics` (`opsUrl` is its ops base URL):
 * every label set, or only the lines that contain `labels` (for example `kind="trade"`); 0 when absent.
 */
export async function scrapeMetric(opsUrl: string, name: string, labels = ""): Promise<number> {
  return readMetric(await (await fetch(`${opsUrl}/metrics`)).text(), name, labels) ?? 0;
}

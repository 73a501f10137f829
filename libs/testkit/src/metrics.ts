/**
 * The sum of one metric's samples scraped from a service's `/metrics` (`opsUrl` is its ops base URL):
 * every label set, or only the lines that contain `labels` (for example `kind="trade"`).
 */
export async function scrapeMetric(opsUrl: string, name: string, labels = ""): Promise<number> {
  const text = await (await fetch(`${opsUrl}/metrics`)).text();
  let sum = 0;
  for (const line of text.split("\n")) {
    const next = line[name.length];
    if (line.startsWith(name) && (next === " " || next === "{") && line.includes(labels))
      sum += Number(line.slice(line.lastIndexOf(" ") + 1));
  }
  return sum;
}

/**
 * Stable partitioning of symbols over normalizer instances: FNV-1a (32 bit) of the upper-case symbol,
 * modulo the number of partitions. The same symbol always lands on the same partition, on every
 * machine and release, so its state (checkpoint) and its outputs come from one instance.
 */
export function partitionOf(symbol: string, partitions: number): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < symbol.length; i++) {
    h ^= symbol.charCodeAt(i);
    h = Math.imul(h, 0x01000193) >>> 0;
  }
  return h % partitions;
}

/** True when partition `index` of `partitions` owns `symbol`. */
export function ownsSymbol(symbol: string, index: number, partitions: number): boolean {
  return partitions <= 1 || partitionOf(symbol.toUpperCase(), partitions) === index;
}

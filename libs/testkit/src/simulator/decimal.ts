/** Decimal-string helpers: Binance prices and quantities stay strings, never floats. */

/** Decimals that carry information: `"61837.63000000"` → 2, `"100"` → 0. */
export function significantDecimals(value: string): number {
  const dot = value.indexOf(".");
  if (dot < 0) return 0;
  let end = value.length;
  while (end > dot + 1 && value.charCodeAt(end - 1) === 48) end--;
  return end - dot - 1;
}

/** Decimals as written: `"61837.63000000"` → 8. */
export function writtenDecimals(value: string): number {
  const dot = value.indexOf(".");
  return dot < 0 ? 0 : value.length - dot - 1;
}

/** `10^-decimals` written with `width` decimals: `stepString(2, 8)` → `"0.01000000"`. */
export function stepString(decimals: number, width: number): string {
  const w = Math.max(width, decimals);
  if (decimals <= 0) return w === 0 ? "1" : `1.${"0".repeat(w)}`;
  return `0.${"0".repeat(decimals - 1)}1${"0".repeat(w - decimals)}`;
}

function toScaled(value: string): { digits: bigint; scale: number } {
  const dot = value.indexOf(".");
  if (dot < 0) return { digits: BigInt(value), scale: 0 };
  return { digits: BigInt(value.slice(0, dot) + value.slice(dot + 1)), scale: value.length - dot - 1 };
}

/**
 * Exact product of two non-negative decimal strings, truncated to `decimals` places:
 * `multiplyDecimals("4.00000100", "12.00000000", 8)` → `"48.00001200"`.
 */
export function multiplyDecimals(a: string, b: string, decimals: number): string {
  const x = toScaled(a);
  const y = toScaled(b);
  let product = x.digits * y.digits;
  const scale = x.scale + y.scale;
  if (scale > decimals) product /= 10n ** BigInt(scale - decimals);
  else product *= 10n ** BigInt(decimals - scale);
  if (decimals === 0) return product.toString();
  const text = product.toString().padStart(decimals + 1, "0");
  return `${text.slice(0, -decimals)}.${text.slice(-decimals)}`;
}

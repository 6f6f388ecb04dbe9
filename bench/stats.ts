/** Median of a non-empty list (the upper middle for an even count). */
export function median(xs: readonly number[]): number {
  if (xs.length === 0) throw new Error('median of an empty list');
  return [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
}

/** Alternates `a` and `b` for `trials` rounds (a first on even rounds, b first on odd), so neither always runs warm. */
export async function sideBySide<T>(
  trials: number,
  a: () => Promise<T>,
  b: () => Promise<T>,
): Promise<{ a: T[]; b: T[] }> {
  const out = { a: [] as T[], b: [] as T[] };
  for (let i = 0; i < trials; i++) {
    if (i % 2 === 0) {
      out.a.push(await a());
      out.b.push(await b());
    } else {
      out.b.push(await b());
      out.a.push(await a());
    }
  }
  return out;
}

/**
 * Median of the per-trial ratios a[i] / b[i]: each pair ran back to back, so a burst of load on the machine
 * moves both sides of a pair, not the ratio.
 */
export function pairedRatio(a: readonly number[], b: readonly number[]): number {
  if (a.length !== b.length) throw new Error('paired lists differ in length');
  return median(a.map((x, i) => x / b[i]!));
}

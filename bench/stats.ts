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

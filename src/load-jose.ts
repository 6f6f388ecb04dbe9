// jose is an ES module graph of dozens of files; `import('cvm-skr')` must stay cheap (bench/startup.bench.ts)
// and most processes verify a token only after a TPM round trip or a network call. So it is imported at first
// use, once per process.
let jose: Promise<typeof import('jose')> | undefined;

/** The jose module, imported on the first call. */
export function loadJose(): Promise<typeof import('jose')> {
  jose ??= import('jose');
  return jose;
}

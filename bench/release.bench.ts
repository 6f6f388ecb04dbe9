/**
 * End-to-end release on the emulator through a swtpm-backed Azure vTPM: cold (new platform and
 * SecureKeyRelease: transfer key, attestation, release, unwrap), warm (cached token, a key not yet released:
 * release and TPM unwrap only), cache hit (nothing leaves the process), and 1,000 concurrent calls for one key,
 * with the attestations, releases and TPM commands each made.
 */
import { median } from './stats.js';
import { type ReleaseRig, startReleaseRig } from './release-rig.js';

export interface ReleaseRow {
  trials: number;
  medianMs: number;
  trialsMs: number[];
  /** Per operation, from the last trial. */
  attestations: number;
  releases: number;
  tpmCommands: number;
}

export interface ReleaseBench {
  cold: ReleaseRow;
  warm: ReleaseRow;
  cacheHit: ReleaseRow;
  concurrent: ReleaseRow & { calls: number };
}

async function measure(
  rig: ReleaseRig,
  trials: number,
  run: (trial: number) => Promise<void>,
  setup?: (trial: number) => Promise<void>,
): Promise<ReleaseRow> {
  const trialsMs: number[] = [];
  let counts = { attestations: 0, releases: 0, tpmCommands: 0 };
  for (let trial = 0; trial < trials; trial++) {
    await setup?.(trial);
    const before = { a: rig.attestations(), r: rig.releases(), t: rig.transport.transmits };
    const start = process.hrtime.bigint();
    await run(trial);
    trialsMs.push(Number(process.hrtime.bigint() - start) / 1e6);
    counts = {
      attestations: rig.attestations() - before.a,
      releases: rig.releases() - before.r,
      tpmCommands: rig.transport.transmits - before.t,
    };
  }
  return { trials, medianMs: median(trialsMs), trialsMs, ...counts };
}

export async function benchRelease(
  trials = { cold: 5, warm: 9, cacheHit: 9, concurrent: 3 },
): Promise<ReleaseBench> {
  const rig = await startReleaseRig();
  try {
    const warmKeys = Array.from({ length: trials.warm + 1 }, (_, i) => `warm-${i}`);
    const hotKeys = Array.from({ length: trials.concurrent }, (_, i) => `hot-${i}`);
    await rig.createKeys(['cold', ...warmKeys, ...hotKeys]);

    const cold = await measure(rig, trials.cold, async () => {
      const platform = await rig.platform();
      const skr = rig.skr(platform);
      try {
        await skr.releaseKey(rig.keyId('cold'));
      } finally {
        await skr.close();
        await platform.close();
      }
    });

    const platform = await rig.platform();
    const skr = rig.skr(platform);
    try {
      await skr.releaseKey(rig.keyId(warmKeys[0]!));
      const warm = await measure(rig, trials.warm, (i) =>
        skr.releaseKey(rig.keyId(warmKeys[i + 1]!)).then(() => {}),
      );
      const cacheHit = await measure(rig, trials.cacheHit, async () => {
        for (let i = 0; i < 1000; i++) await skr.releaseKey(rig.keyId(warmKeys[1]!));
      });
      // Per call, not per 1,000.
      cacheHit.medianMs /= 1000;
      cacheHit.trialsMs = cacheHit.trialsMs.map((ms) => ms / 1000);

      let fresh:
        | { p: Awaited<ReturnType<ReleaseRig['platform']>>; s: ReturnType<ReleaseRig['skr']> }
        | undefined;
      const calls = 1000;
      const concurrent = await measure(
        rig,
        trials.concurrent,
        async (i) => {
          const { s } = fresh!;
          const results = await Promise.all(
            Array.from({ length: calls }, () => s.releaseKey(rig.keyId(hotKeys[i]!))),
          );
          if (!results.every((r) => r === results[0])) throw new Error('callers got different keys');
          await s.close();
          await fresh!.p.close();
        },
        async () => {
          // A platform whose transfer key already exists, so the row measures attestation + release + unwrap.
          const p = await rig.platform();
          await p.transferKey();
          fresh = { p, s: rig.skr(p) };
        },
      );
      return { cold, warm, cacheHit, concurrent: { ...concurrent, calls } };
    } finally {
      await skr.close();
      await platform.close();
    }
  } finally {
    await rig.close();
  }
}

if (import.meta.url === `file://${process.argv[1]}`) {
  console.log(JSON.stringify(await benchRelease(), null, 2));
}

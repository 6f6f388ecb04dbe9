/**
 * End-to-end release on the emulator through a swtpm-backed Azure vTPM: cold (new platform and
 * SecureKeyRelease: transfer key, attestation, release, unwrap), warm (cached token, a key not yet released:
 * release and TPM unwrap only), cache hit (nothing leaves the process), and 1,000 concurrent calls for one key,
 * with the attestations, releases and TPM commands each made. The cold release is also broken down per step
 * (platform open, transfer key, evidence, MAA, release, verify, unwrap: the library's own step events), and
 * measured once more after `prewarm()` (what a service's first call pays when it prewarmed at boot).
 */
import type { ReleaseEvent, ReleaseStep } from '../src/keyvault/diagnostics.js';
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

/** Median milliseconds per step of the cold release; `platformOpen` is `AzureVtpmPlatform.open`. */
export type ColdBreakdown = Partial<Record<ReleaseStep | 'platformOpen', number>>;

export interface CacheHitNs {
  /** Calls per trial. */
  calls: number;
  trials: number;
  /** `await skr.releaseKey(keyId)` on a cached key, ns per call. */
  medianNs: number;
  trialsNs: number[];
  /** The floor: `await` of an async function answering from a Map, same loop, ns per call. */
  floorNs: number;
  floorTrialsNs: number[];
}

export interface ReleaseBench {
  cold: ReleaseRow;
  coldSteps: ColdBreakdown & { trials: Record<string, number[]> };
  /** First releaseKey after `prewarm()` resolved (new platform and SecureKeyRelease per trial). */
  prewarmed: ReleaseRow & { prewarmMedianMs: number };
  cacheHitNs: CacheHitNs;
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

/**
 * The cached path per call in nanoseconds: 20,000 sequential `await skr.releaseKey(keyId)` per trial (key id
 * string built once, as a service holds it), beside its floor, the same loop awaiting an async function that
 * answers from a Map. Alternating trials after a warm-up round, so the JIT has settled on both.
 */
async function measureCacheHit(
  skr: { releaseKey(keyId: string): Promise<unknown> },
  keyId: string,
  trials: number,
): Promise<CacheHitNs> {
  const calls = 20_000;
  const map = new Map([[keyId, {}]]);
  const floor = async (id: string) => map.get(id);
  const loop = async (call: (id: string) => Promise<unknown>) => {
    const start = process.hrtime.bigint();
    for (let i = 0; i < calls; i++) await call(keyId);
    return Number(process.hrtime.bigint() - start) / calls;
  };
  const ours = (id: string) => skr.releaseKey(id);
  await loop(ours);
  await loop(floor);
  const trialsNs: number[] = [];
  const floorTrialsNs: number[] = [];
  for (let i = 0; i < trials; i++) {
    if (i % 2 === 0) {
      trialsNs.push(await loop(ours));
      floorTrialsNs.push(await loop(floor));
    } else {
      floorTrialsNs.push(await loop(floor));
      trialsNs.push(await loop(ours));
    }
  }
  return {
    calls,
    trials,
    medianNs: median(trialsNs),
    trialsNs,
    floorNs: median(floorTrialsNs),
    floorTrialsNs,
  };
}

export async function benchRelease(
  trials = { cold: 5, warm: 9, cacheHit: 9, concurrent: 3 },
): Promise<ReleaseBench> {
  const rig = await startReleaseRig();
  try {
    const warmKeys = Array.from({ length: trials.warm + 1 }, (_, i) => `warm-${i}`);
    const hotKeys = Array.from({ length: trials.concurrent }, (_, i) => `hot-${i}`);
    await rig.createKeys(['cold', ...warmKeys, ...hotKeys]);

    const stepTrials: Record<string, number[]> = {};
    const record = (step: string, ms: number) => (stepTrials[step] ??= []).push(ms);
    const onEvent = (event: ReleaseEvent) => {
      if (event.type === 'step' && event.outcome === 'ok') record(event.step, event.durationMs);
    };
    const cold = await measure(rig, trials.cold, async () => {
      const opening = process.hrtime.bigint();
      const platform = await rig.platform();
      record('platformOpen', Number(process.hrtime.bigint() - opening) / 1e6);
      const skr = rig.skr(platform, { onEvent });
      try {
        await skr.releaseKey(rig.keyId('cold'));
      } finally {
        await skr.close();
        await platform.close();
      }
    });
    const coldSteps: ReleaseBench['coldSteps'] = { trials: stepTrials };
    for (const [step, xs] of Object.entries(stepTrials)) coldSteps[step as keyof ColdBreakdown] = median(xs);

    // Prewarmed: the platform, transfer key and attestation done before the clock starts.
    const prewarmMs: number[] = [];
    let pre: { p: Awaited<ReturnType<ReleaseRig['platform']>>; s: ReturnType<ReleaseRig['skr']> } | undefined;
    const prewarmed = await measure(
      rig,
      trials.cold,
      async () => {
        try {
          await pre!.s.releaseKey(rig.keyId('cold'));
        } finally {
          await pre!.s.close();
          await pre!.p.close();
        }
      },
      async () => {
        const p = await rig.platform();
        const s = rig.skr(p);
        const started = process.hrtime.bigint();
        const result = await s.prewarm();
        if (!result.ok) throw result.error;
        prewarmMs.push(Number(process.hrtime.bigint() - started) / 1e6);
        pre = { p, s };
      },
    );

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
      const cacheHitNs = await measureCacheHit(skr, rig.keyId(warmKeys[1]!), trials.cacheHit);

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
      return {
        cold,
        coldSteps,
        prewarmed: { ...prewarmed, prewarmMedianMs: median(prewarmMs) },
        cacheHitNs,
        warm,
        cacheHit,
        concurrent: { ...concurrent, calls },
      };
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

/**
 * Soak: many releases on swtpm without a resource manager, each a real release + unwrap in the TPM (the key
 * cache is invalidated before every call), with a fresh platform (new transfer key) and SecureKeyRelease (new
 * attestation) every `perSession` releases. Tracks loaded TPM handles, TPM commands per release and memory.
 */
import { TPM_CC } from '../src/tpm/constants.js';
import { startReleaseRig } from './release-rig.js';

export interface SoakOptions {
  releases: number;
  /** Releases per platform + SecureKeyRelease (one attestation and one transfer key each). Default 50. */
  perSession?: number;
  /** Releases before the memory baseline is taken. Default 10% (at least one session). */
  warmup?: number;
  /** Check loaded handles every this many releases. Default 500. */
  checkEvery?: number;
  onProgress?: (progress: SoakProgress) => void;
}

export interface SoakProgress {
  done: number;
  rssMb: number;
  heapMb: number;
  handles: { transient: number; sessions: number };
}

export interface SoakResult {
  releases: number;
  sessions: number;
  attestations: number;
  /** Calls that returned a newly released key (not a cached one). */
  freshReleases: number;
  /** TPM2_RSA_Decrypt commands: one unwrap per release, plus one per attestation (MAA's sealed answer). */
  tpmDecrypts: number;
  tpmCommands: number;
  /** TPM commands per release, first and last session: equal when nothing accumulates. */
  commandsPerSession: { first: number; last: number };
  /** Most handles seen loaded at a check while a session was open (its transfer key: 1). */
  maxTransientDuring: number;
  maxSessionsDuring: number;
  /** After every platform was closed. */
  handlesAfter: { transient: number; sessions: number };
  memory: {
    gcExposed: boolean;
    baselineRssMb: number;
    finalRssMb: number;
    rssGrowthMb: number;
    baselineHeapMb: number;
    finalHeapMb: number;
    heapGrowthMb: number;
  };
  elapsedMs: number;
  samples: SoakProgress[];
}

const mb = (bytes: number) => bytes / 1024 / 1024;

function settle(): void {
  const gc = (globalThis as { gc?: () => void }).gc;
  if (gc) {
    gc();
    gc();
  }
}

export async function runSoak(options: SoakOptions): Promise<SoakResult> {
  const perSession = options.perSession ?? 50;
  const warmup = options.warmup ?? Math.max(perSession, Math.floor(options.releases / 10));
  const checkEvery = options.checkEvery ?? 500;
  const started = Date.now();
  const rig = await startReleaseRig();
  try {
    await rig.createKeys(['soak-a', 'soak-b']);
    const keys = [rig.keyId('soak-a'), rig.keyId('soak-b')];
    let baseline: { rss: number; heap: number } | undefined;
    const samples: SoakProgress[] = [];
    const perSessionCommands: number[] = [];
    let maxTransient = 0;
    let maxSessions = 0;
    let sessions = 0;
    const decrypts = () => rig.transport.byCommand.get(TPM_CC.RSA_Decrypt) ?? 0;
    const baseCounts = { a: rig.attestations(), d: decrypts(), t: rig.transport.transmits };
    let fresh = 0;
    let previous: unknown;

    for (let done = 0; done < options.releases; ) {
      const platform = await rig.platform();
      const skr = rig.skr(platform);
      sessions++;
      const commandsBefore = rig.transport.transmits;
      let inSession = 0;
      try {
        for (; inSession < perSession && done < options.releases; inSession++) {
          // Forget this key only: a bare invalidate() would drop the attestation token too.
          const keyId = keys[done % keys.length]!;
          skr.invalidate(keyId);
          const released = await skr.releaseKey(keyId);
          if (released.key.type !== 'private') throw new Error(`release ${done} gave no private key`);
          if (released !== previous) fresh++;
          previous = released;
          done++;
          if (done % checkEvery === 0 || done === options.releases) {
            const handles = await rig.handles();
            maxTransient = Math.max(maxTransient, handles.transient);
            maxSessions = Math.max(maxSessions, handles.sessions);
            const m = process.memoryUsage();
            const progress = { done, rssMb: mb(m.rss), heapMb: mb(m.heapUsed), handles };
            samples.push(progress);
            options.onProgress?.(progress);
          }
          if (!baseline && done >= warmup) {
            settle();
            const m = process.memoryUsage();
            baseline = { rss: m.rss, heap: m.heapUsed };
          }
        }
      } finally {
        await skr.close();
        await platform.close();
      }
      if (inSession === perSession) perSessionCommands.push(rig.transport.transmits - commandsBefore);
    }
    settle();
    const final = process.memoryUsage();
    const base = baseline ?? { rss: final.rss, heap: final.heapUsed };
    return {
      releases: options.releases,
      sessions,
      attestations: rig.attestations() - baseCounts.a,
      freshReleases: fresh,
      tpmDecrypts: decrypts() - baseCounts.d,
      tpmCommands: rig.transport.transmits - baseCounts.t,
      commandsPerSession: {
        first: perSessionCommands[0] ?? 0,
        last: perSessionCommands[perSessionCommands.length - 1] ?? 0,
      },
      maxTransientDuring: maxTransient,
      maxSessionsDuring: maxSessions,
      handlesAfter: await rig.handles(),
      memory: {
        gcExposed: typeof (globalThis as { gc?: unknown }).gc === 'function',
        baselineRssMb: mb(base.rss),
        finalRssMb: mb(final.rss),
        rssGrowthMb: mb(final.rss - base.rss),
        baselineHeapMb: mb(base.heap),
        finalHeapMb: mb(final.heapUsed),
        heapGrowthMb: mb(final.heapUsed - base.heap),
      },
      elapsedMs: Date.now() - started,
      samples,
    };
  } finally {
    await rig.close();
  }
}

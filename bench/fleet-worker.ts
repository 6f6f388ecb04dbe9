/**
 * One worker of `npm run bench:fleet`: boots its share of the fleet at the agreed instant, every VM a
 * `SecureKeyRelease` of its own (own HTTPS connections, own attestation, own release) releasing one key, and
 * reports per VM what it sent, what was throttled and when its key arrived.
 */
import { parentPort, workerData } from 'node:worker_threads';
import type { AccessToken } from '@azure/core-auth';
import { EmulatedAmd } from '../src/emulator/hardware/amd.js';
import { EmulatedSevGuestPlatform } from '../src/emulator/hardware/emulated-sev-guest.js';
import type { AttestationPlatform } from '../src/hal/types.js';
import { SecureKeyRelease } from '../src/keyvault/secure-key-release.js';

export interface FleetWorkerInput {
  first: number;
  count: number;
  /** Platforms to make (an RSA transfer key each) and share round-robin: key generation is not what is measured. */
  platforms: number;
  startAt: number;
  keyId: string;
  attestationUrl: string;
  caPem: string;
  token: AccessToken;
  cacheDir: string;
  rootKeyBits: 2048;
  timeoutMs: number;
  retry?: { maxRetries?: number; baseDelayMs?: number; maxDelayMs?: number };
}

export interface VmResult {
  vm: number;
  ok: boolean;
  /** ms from the fleet's start to the key (or to the failure). */
  ms: number;
  kvRequests: number;
  kv429: number;
  maaRequests: number;
  maa429: number;
  error?: string;
}

const input = workerData as FleetWorkerInput;
const amd = await EmulatedAmd.load({ cache: input.cacheDir, rootKeyBits: input.rootKeyBits });
const platforms: AttestationPlatform[] = [];
for (let i = 0; i < input.platforms; i++) platforms.push(await EmulatedSevGuestPlatform.create({ amd }));
for (const p of platforms) await p.transferKey();
const credential = { getToken: async () => input.token };
parentPort!.postMessage({ ready: true });

async function boot(vm: number): Promise<VmResult> {
  const r: VmResult = { vm, ok: false, ms: 0, kvRequests: 0, kv429: 0, maaRequests: 1, maa429: 0 };
  // Requests are counted from the library's retry reports (every resend is one; Key Vault's 401 challenge and
  // the first release are the two every VM sends), so the counting changes nothing in the pipeline.
  r.kvRequests = 2;
  const skr = new SecureKeyRelease({
    attestationEndpoint: input.attestationUrl,
    attestationCa: input.caPem,
    credential,
    platform: platforms[vm % platforms.length]!,
    releaseSigningRoots: [input.caPem],
    vaultOptions: {
      disableChallengeResourceVerification: true,
      tlsOptions: { ca: input.caPem },
    },
    timeoutMs: input.timeoutMs,
    ...(input.retry ? { retry: input.retry } : {}),
    onRetry: (event) => {
      if (event.step === 'attestation') {
        r.maaRequests++;
        if (event.reason === 'HTTP 429') r.maa429++;
      } else {
        r.kvRequests++;
        if (event.reason === 'HTTP 429') r.kv429++;
      }
    },
  });
  try {
    await skr.releaseKey(input.keyId);
    r.ok = true;
  } catch (error) {
    r.error = `${(error as { code?: string }).code ?? 'error'}: ${(error as Error).message.slice(0, 160)}`;
    // The last answer is not followed by a retry report.
    const status = (error as { statusCode?: number }).statusCode;
    if (status === 429) {
      if ((error as { code?: string }).code === 'ERR_ATTESTATION_REQUEST') r.maa429++;
      else r.kv429++;
    }
  } finally {
    r.ms = Date.now() - input.startAt;
    await skr.close();
  }
  return r;
}

parentPort!.once('message', async (m: { startAt: number }) => {
  input.startAt = m.startAt;
  await new Promise((resolve) => setTimeout(resolve, Math.max(0, input.startAt - Date.now())));
  const results = await Promise.all(Array.from({ length: input.count }, (_, i) => boot(input.first + i)));
  parentPort!.postMessage({ results });
});

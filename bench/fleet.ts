/**
 * `npm run bench:fleet`: a fleet that boots at once. Thousands of emulated SEV-SNP guests, spread over worker
 * threads, each cold-start a `SecureKeyRelease` at the same instant and release one key from one emulated vault
 * through one emulated attestation service, both throttled at the real services' published limits:
 *
 * - Key Vault: "maximum transactions allowed in 10 seconds, per vault per region", HSM-protected keys, "all other
 *   transactions" (release is one): RSA 2048-bit 2,000, RSA 3072-bit 500, RSA 4096-bit 250
 *   (https://learn.microsoft.com/azure/key-vault/general/service-limits; the older include
 *   MicrosoftDocs/azure-docs includes/key-vault-limits.md at 005cbf5 gave half of each: 1000/250/125).
 * - Azure Attestation: no per-provider request limit is published (searched MicrosoftDocs/azure-docs and
 *   azure-security-docs articles/attestation/, the service-limits pages); `--maa-limit` sets an assumed one.
 *
 * Reports requests made, 429s, retry amplification (requests per VM), p50/p99 time to key, and draws keys
 * obtained over time to bench/fleet.svg (data in bench/fleet.json).
 *
 * Options: --vms N (default 2000) --workers N (2) --key rsa2048|rsa3072|rsa4096 (rsa4096)
 *          --maa-limit N --maa-window-ms N (default 1000 per 1000 ms, an assumption) --no-throttle
 */
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { Worker } from 'node:worker_threads';
import { startEmulator } from '../src/emulator/start.js';
import type { FleetWorkerInput, VmResult } from './fleet-worker.js';
import { lineChart } from './svg-plot.js';

const arg = (name: string, fallback: string) => {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 && process.argv[i + 1] ? process.argv[i + 1]! : fallback;
};
const vms = Number(arg('vms', '2000'));
const workers = Number(arg('workers', '2'));
const keyKind = arg('key', 'rsa4096') as 'rsa2048' | 'rsa3072' | 'rsa4096';
const noThrottle = process.argv.includes('--no-throttle');
/** HSM-key "all other transactions" per 10 s per vault (learn.microsoft.com/azure/key-vault/general/service-limits). */
const KV_LIMITS = { rsa2048: 2000, rsa3072: 500, rsa4096: 250 } as const;
const KV_BITS = { rsa2048: 2048, rsa3072: 3072, rsa4096: 4096 } as const;
const kvThrottle = { limit: KV_LIMITS[keyKind], windowMs: 10_000 };
const maaThrottle = { limit: Number(arg('maa-limit', '1000')), windowMs: Number(arg('maa-window-ms', '1000')) };
const here = path.dirname(fileURLToPath(import.meta.url));

interface Summary {
  vms: number;
  key: keyof typeof KV_LIMITS;
  keysObtained: number;
  throttle: { vault: { limit: number; windowMs: number }; attestation: { limit: number; windowMs: number } } | null;
}

/** Keys obtained over time, beside the most the vault's limit lets through (one window's worth every 10 s). */
function plot(summary: Summary, keysOverTime: readonly (readonly [number, number])[]): string {
  const t = summary.throttle;
  const series = [
    {
      label: `keys obtained (${summary.keysObtained} of ${summary.vms})`,
      color: '#1f77b4',
      points: [[0, 0] as const, ...keysOverTime],
    },
  ];
  if (t) {
    const windows = Math.ceil(summary.vms / t.vault.limit);
    series.push({
      label: `vault limit: ${t.vault.limit} releases per ${t.vault.windowMs / 1000} s`,
      color: '#999',
      dashed: true,
      points: Array.from(
        { length: windows },
        (_, k) => [(k * t.vault.windowMs) / 1000, Math.min(summary.vms, (k + 1) * t.vault.limit)] as const,
      ),
    } as (typeof series)[number]);
  }
  return lineChart(series, {
    title: `${summary.vms} emulated CVMs booting at once${
      t
        ? `: vault ${t.vault.limit}/${t.vault.windowMs / 1000} s (RSA-HSM ${KV_BITS[summary.key]}), MAA ${t.attestation.limit}/${t.attestation.windowMs / 1000} s`
        : ', no throttle'
    }`,
    xLabel: 'seconds since boot',
    yLabel: 'VMs holding their key',
    guides: [{ y: summary.vms, label: 'fleet size' }],
  });
}

if (process.argv.includes('--replot')) {
  // Redraws the SVG from a saved run: --replot [--out bench/fleet.svg]
  const out = arg('out', path.join(here, 'fleet.svg'));
  const saved = JSON.parse(await readFile(out.replace(/\.svg$/, '.json'), 'utf8')) as Summary & {
    keysOverTime: [number, number][];
  };
  await writeFile(out, plot(saved, saved.keysOverTime));
  process.exit(0);
}

const cacheDir = await mkdtemp(path.join(os.tmpdir(), 'cvm-skr-fleet-'));
const e = await startEmulator({
  rootKeyBits: 2048,
  cache: cacheDir,
  vault: noThrottle ? {} : { throttle: kvThrottle },
  attestation: noThrottle ? {} : { throttle: maaThrottle },
});
try {
  const client = e.keyClient();
  await client.createKey('fleet', 'RSA-HSM', {
    keySize: KV_BITS[keyKind],
    exportable: true,
    releasePolicy: { encodedPolicy: new Uint8Array(Buffer.from(JSON.stringify(e.releasePolicy('emulated-sev-guest')))) },
  });
  const token = await e.credential.getToken('https://vault.azure.net/.default');
  if (!token) throw new Error('the emulator issued no token');
  const per = Math.ceil(vms / workers);
  const startAt = Date.now() + 3_600_000; // set once every worker is ready
  const pool = Array.from({ length: workers }, (_, w) => {
    const input: FleetWorkerInput = {
      first: w * per,
      count: Math.max(0, Math.min(per, vms - w * per)),
      platforms: 16,
      startAt,
      keyId: `${e.vaultUrl}/keys/fleet`,
      attestationUrl: e.attestationUrl,
      caPem: e.caPem,
      token,
      cacheDir,
      rootKeyBits: 2048,
      timeoutMs: 600_000,
    };
    return { input, worker: undefined as Worker | undefined };
  });
  process.stderr.write(`fleet: ${vms} VMs on ${workers} workers, key ${keyKind}, ` +
    (noThrottle ? 'no throttle\n' : `vault ${kvThrottle.limit}/10 s, attestation ${maaThrottle.limit}/${maaThrottle.windowMs} ms\n`));
  // Workers get the start instant once all are ready (platforms made), so they boot together.
  const ready: Promise<void>[] = [];
  const done: Promise<VmResult[]>[] = [];
  const actualStart = { at: 0 };
  for (const p of pool) {
    // A worker does not inherit the main thread's tsx loader: the bootstrap registers it, then loads the worker.
    const bootstrap = `import('tsx/esm/api').then(({ register }) => { register(); return import(${JSON.stringify(
      pathToFileURL(path.join(here, 'fleet-worker.ts')).href,
    )}); })`;
    const worker = new Worker(bootstrap, { eval: true, workerData: p.input });
    p.worker = worker;
    ready.push(new Promise((resolve, reject) => {
      worker.once('message', () => resolve());
      worker.once('error', reject);
    }));
  }
  await Promise.all(ready);
  // Restart the workers' clocks: they wait for input.startAt; tell them the real one by message.
  actualStart.at = Date.now() + 500;
  for (const p of pool) {
    done.push(new Promise((resolve, reject) => {
      p.worker!.on('message', (m: { results?: VmResult[] }) => m.results && resolve(m.results));
      p.worker!.once('error', reject);
    }));
    p.worker!.postMessage({ startAt: actualStart.at });
  }
  // The vault keeps its last 1,000 release decisions; read them every second to keep every refusal's reason.
  const denials = new Map<string, string>();
  const readDecisions = () => {
    for (const d of e.vault.releaseDecisions()) if (!d.allowed) denials.set(`${d.at} ${d.reason}`, d.reason);
  };
  const poll = setInterval(readDecisions, 1000);
  const results = (await Promise.all(done)).flat();
  clearInterval(poll);
  readDecisions();
  await Promise.all(pool.map((p) => p.worker!.terminate()));

  const ok = results.filter((r) => r.ok);
  const times = ok.map((r) => r.ms).sort((a, b) => a - b);
  const q = (p: number) => times[Math.min(times.length - 1, Math.floor(p * times.length))] ?? NaN;
  const sum = (f: (r: VmResult) => number) => results.reduce((s, r) => s + f(r), 0);
  const kvRequests = sum((r) => r.kvRequests);
  const maaRequests = sum((r) => r.maaRequests);
  // Each client also fetches the attestation service's OpenID metadata and keys once to verify its token.
  const maaMetadata = e.attestation.counters.keyRequests;
  const kv429 = sum((r) => r.kv429);
  const maa429 = sum((r) => r.maa429);
  const summary = {
    vms,
    workers,
    key: keyKind,
    throttle: noThrottle ? null : { vault: kvThrottle, attestation: maaThrottle },
    keysObtained: ok.length,
    failed: results.length - ok.length,
    failures: [...new Set(results.filter((r) => !r.ok).map((r) => r.error))].slice(0, 5),
    /** Why the vault refused releases (its decision log), by reason. */
    vaultDenials: Object.fromEntries(
      [...denials.values()].reduce((m, r) => m.set(r, (m.get(r) ?? 0) + 1), new Map<string, number>()),
    ),
    requests: {
      total: kvRequests + maaRequests + maaMetadata,
      vault: kvRequests,
      attestation: maaRequests,
      attestationMetadata: maaMetadata,
    },
    throttled: { total: kv429 + maa429, vault: kv429, attestation: maa429 },
    /** Requests per VM: all of them, and the throttled operations alone (attest + release attempts). */
    amplification: Number(((kvRequests + maaRequests + maaMetadata) / vms).toFixed(2)),
    // One 401 challenge per VM (each has its own KeyClient) is not a release attempt.
    operationAttemptsPerVm: Number(((kvRequests - vms + maaRequests) / vms).toFixed(2)),
    timeToKeyMs: { p50: q(0.5), p99: q(0.99), max: times[times.length - 1] ?? NaN },
    serverCounters: { attestation: e.attestation.counters },
    node: process.version,
    cpus: os.cpus().length,
  };
  console.log(JSON.stringify(summary, null, 2));
  const keysOverTime = times.map((ms, i) => [ms / 1000, i + 1] as const);
  const out = arg('out', path.join(here, 'fleet.svg'));
  await writeFile(out, plot(summary, keysOverTime));
  await writeFile(out.replace(/\.svg$/, '.json'), `${JSON.stringify({ ...summary, keysOverTime }, null, 2)}\n`);
  process.stderr.write(`fleet: wrote ${out}\n`);
} finally {
  await e.close();
  await rm(cacheDir, { recursive: true, force: true });
}

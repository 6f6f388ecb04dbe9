/**
 * Key creation throughput of the Key Vault emulator with a state file (every answer waits for its journal
 * fsync, group commit) side by side with the in-memory emulator: 64 concurrent clients over raw HTTPS, EC
 * P-256 keys, alternating trials. Ratio is the paired median of durable time / in-memory time.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startKeyVaultEmulator } from '../src/emulator/keyvault/index.js';
import { vaultHttp } from '../test/helpers/vault-http.js';
import { median, pairedRatio, sideBySide } from './stats.js';

export interface StateBench {
  trials: number;
  keysPerTrial: number;
  clients: number;
  memoryKeysPerSec: number[];
  durableKeysPerSec: number[];
  /** Medians. */
  memoryMedian: number;
  durableMedian: number;
  /** Paired median of durable seconds / in-memory seconds (1 = as fast). */
  durableOverMemory: number;
}

async function createKeys(statePath: string | undefined, keys: number, clients: number): Promise<number> {
  const emu = await startKeyVaultEmulator({ ...(statePath ? { statePath } : {}), tickIntervalMs: 0 });
  try {
    const http = await vaultHttp(emu, clients);
    try {
      // Warm up TLS connections and the JIT outside the timed part.
      await Promise.all(
        Array.from({ length: clients }, (_, i) => http.call('POST', `/keys/warm-${i}/create`, { kty: 'EC', crv: 'P-256' })),
      );
      let next = 0;
      const start = process.hrtime.bigint();
      await Promise.all(
        Array.from({ length: clients }, async () => {
          while (next < keys) {
            const r = await http.call('POST', `/keys/k-${next++}/create`, { kty: 'EC', crv: 'P-256' });
            if (r.status !== 200) throw new Error(`create answered ${r.status}`);
          }
        }),
      );
      const seconds = Number(process.hrtime.bigint() - start) / 1e9;
      return keys / seconds;
    } finally {
      http.close();
    }
  } finally {
    await emu.close();
  }
}

export async function benchState(trials = 5, keysPerTrial = 3000, clients = 64): Promise<StateBench> {
  const dir = await mkdtemp(join(tmpdir(), 'cvm-skr-bench-state-'));
  try {
    let n = 0;
    const { a: durable, b: memory } = await sideBySide(
      trials,
      () => createKeys(join(dir, `vault-${n++}.json`), keysPerTrial, clients),
      () => createKeys(undefined, keysPerTrial, clients),
    );
    return {
      trials,
      keysPerTrial,
      clients,
      memoryKeysPerSec: memory,
      durableKeysPerSec: durable,
      memoryMedian: median(memory),
      durableMedian: median(durable),
      // Time is keys / rate, so time ratio durable/memory = memory rate / durable rate.
      durableOverMemory: pairedRatio(memory, durable),
    };
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const r = await benchState(Number(process.argv[2] ?? 5), Number(process.argv[3] ?? 3000));
  console.log(JSON.stringify({ ...r, memoryKeysPerSec: undefined, durableKeysPerSec: undefined }, null, 2));
  console.log(r.memoryKeysPerSec.map(Math.round), r.durableKeysPerSec.map(Math.round));
}

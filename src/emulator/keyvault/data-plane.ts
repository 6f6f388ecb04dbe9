/**
 * Routes of the keys data plane (cryptographic operations, backup/restore, random bytes), kept apart from the
 * management routes in server.ts, which asks here first. Paths from Azure/azure-rest-api-specs
 * `specification/keyvault/data-plane/Microsoft.KeyVault/stable/7.5/keys.json` (and `rng.json`):
 *   POST /keys/{name}/{version}/{encrypt|decrypt|sign|verify|wrapkey|unwrapkey}   (empty version = current)
 *   POST /keys/{name}/backup
 *   POST /keys/restore
 *   POST /rng                                                                   (Managed HSM only)
 * Each needs the access-policy permission of the same name (`wrapKey`, `backup`, `restore`, `rng`, ...).
 */
import type { KeyPermission } from './auth.js';
import { type BackupSealer, randomBytesAnswer, restoreConflict } from './backup.js';
import { cryptoOperationFromPath, runCryptoOperation } from './crypto-ops.js';
import type { FlavourFacts } from './flavour.js';
import type { VaultStore } from './store.js';

export interface DataPlaneContext {
  store: VaultStore;
  flavour: FlavourFacts;
  sealer: BackupSealer;
  nowSeconds: () => number;
}

export interface DataPlaneRoute {
  permission: KeyPermission;
  run: (body: unknown) => { status: number; body?: unknown };
}

const ok = (body: unknown) => ({ status: 200, body });

export function dataPlaneRoute(
  ctx: DataPlaneContext,
  method: string,
  parts: readonly string[],
): DataPlaneRoute | undefined {
  if (method !== 'POST') return undefined;
  const [root, name, a, b] = parts;
  if (root === 'rng' && parts.length === 1) {
    return ctx.flavour.rng ? { permission: 'rng', run: (body) => ok(randomBytesAnswer(body)) } : undefined;
  }
  if (root !== 'keys' || name === undefined || name === '') return undefined;
  if (parts.length === 2 && name === 'restore') {
    return {
      permission: 'restore',
      run: (body) => {
        const value = typeof body === 'object' && body !== null ? (body as { value?: unknown }).value : undefined;
        return ok(ctx.store.restoreKey(ctx.sealer.open(value), restoreConflict));
      },
    };
  }
  if (parts.length === 3 && a === 'backup') {
    return { permission: 'backup', run: () => ok({ value: ctx.sealer.seal(ctx.store.backupKey(name)) }) };
  }
  const op = parts.length === 4 ? cryptoOperationFromPath(b) : undefined;
  if (op) {
    return {
      permission: op,
      run: (body) => ok(runCryptoOperation(ctx, name, a, op, body)),
    };
  }
  return undefined;
}

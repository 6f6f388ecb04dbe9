/** Starts an emulated vault plus a test issuer it trusts; both stop in t.teardown. */
import type { ExecutionContext } from 'ava';
import { EmulatorCa } from '../../../src/emulator/ca.js';
import {
  type KeyVaultEmulator,
  type KeyVaultEmulatorOptions,
  startKeyVaultEmulator,
} from '../../../src/emulator/keyvault/index.js';
import { startTestIssuer, type TestIssuer, type TestIssuerOptions } from './issuer.js';

let sharedCa: Promise<EmulatorCa> | undefined;

/** One CA per test process keeps setup fast; every test still gets its own servers. */
export function testCa(): Promise<EmulatorCa> {
  sharedCa ??= EmulatorCa.create();
  return sharedCa;
}

export async function startVault(
  t: ExecutionContext,
  options: KeyVaultEmulatorOptions = {},
): Promise<KeyVaultEmulator> {
  const emu = await startKeyVaultEmulator({ ca: await testCa(), ...options });
  t.teardown(() => emu.close());
  return emu;
}

export async function startVaultWithIssuer(
  t: ExecutionContext,
  options: KeyVaultEmulatorOptions = {},
  issuerOptions: TestIssuerOptions = {},
): Promise<{ emu: KeyVaultEmulator; issuer: TestIssuer }> {
  const emu = await startVault(t, options);
  const ca = await testCa();
  const issuer = await startTestIssuer(ca, () => emu.clock.now(), issuerOptions);
  t.teardown(() => issuer.close());
  emu.trustIssuer({ issuer: issuer.url, ca: ca.certPem });
  return { emu, issuer };
}

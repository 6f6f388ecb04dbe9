import type { ExecutionContext } from 'ava';
import { EmulatedAkCa } from '../../src/emulator/hardware/ak-ca.js';
import { EmulatedAmd } from '../../src/emulator/hardware/amd.js';
import { type ImdsEmulator, type ImdsEmulatorOptions, startImdsEmulator } from '../../src/emulator/imds/index.js';
import {
  type AttestationEmulator,
  type AttestationEmulatorOptions,
  startAttestationEmulator,
} from '../../src/emulator/maa/server.js';

/** Emulator-only 2048-bit roots kept in memory: fast to make, and nothing touches the user's cache. */
export async function hardware(product: 'Milan' | 'Genoa' | 'Turin' = 'Milan') {
  const [amd, akCa] = await Promise.all([
    EmulatedAmd.load({ product, rootKeyBits: 2048, cache: false }),
    EmulatedAkCa.load({ cache: false }),
  ]);
  return { amd, akCa };
}

/** The emulated IMDS (THIM for `amd`, AK renewal by `akCa`), stopped with the test. */
export async function imds(
  t: ExecutionContext,
  options: ImdsEmulatorOptions,
): Promise<ImdsEmulator> {
  const server = await startImdsEmulator(options);
  t.teardown(() => server.close());
  return server;
}

export async function maa(
  t: ExecutionContext,
  options: AttestationEmulatorOptions,
): Promise<AttestationEmulator> {
  const server = await startAttestationEmulator(options);
  t.teardown(() => server.close());
  return server;
}

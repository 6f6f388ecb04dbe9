/** Starts an emulated vault plus a test issuer it trusts; both stop in t.teardown. */
import type { IncomingHttpHeaders } from 'node:http';
import { request } from 'node:https';
import type { ExecutionContext } from 'ava';
import { EmulatorCa } from '../../src/emulator/ca.js';
import {
  type KeyVaultEmulator,
  type KeyVaultEmulatorOptions,
  startKeyVaultEmulator,
} from '../../src/emulator/keyvault/index.js';
import { startTestIssuer, type TestIssuer, type TestIssuerOptions } from './vault-issuer.js';

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

export interface RawAnswer {
  status: number;
  headers: IncomingHttpHeaders;
  body: string;
}

/** One HTTPS request outside the SDK (for what the SDK cannot send: forged tokens, malformed bodies). */
export function rawRequest(
  url: string,
  caPem: string,
  options: { method?: string; token?: string; headers?: Record<string, string>; body?: string } = {},
): Promise<RawAnswer> {
  return new Promise((resolve, reject) => {
    const headers: Record<string, string | number> = { ...options.headers };
    if (options.token !== undefined) headers.authorization = `Bearer ${options.token}`;
    if (options.body !== undefined) {
      headers['content-type'] = 'application/json';
      headers['content-length'] = Buffer.byteLength(options.body);
    }
    const req = request(url, { method: options.method ?? 'GET', ca: caPem, headers }, (res) => {
      let body = '';
      res.on('data', (c) => {
        body += c;
      });
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body }));
    });
    req.on('error', reject);
    req.end(options.body);
  });
}

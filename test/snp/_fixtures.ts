import { readFileSync } from 'node:fs';

const dir = new URL('../fixtures/', import.meta.url);
export const fixture = (path: string): Buffer => readFileSync(new URL(path, dir));
export const fixtureText = (path: string): string => readFileSync(new URL(path, dir), 'utf8');

export const aciReport = (): Buffer => fixture('snp/aci-milan/report.bin');
export const aciThim = (): string => fixtureText('snp/aci-milan/thim.json');
export const debugReport = (): Buffer => fixture('snp/milan-debug/report.bin');
export const debugVcek = (): Buffer => fixture('snp/milan-debug/vcek.der');
export const hclBlob = (): Buffer => fixture('azure-vtpm/milan/hcl-report.bin');
export const azureChain = (): string => fixtureText('azure-vtpm/milan/vcek-chain.pem');
export const azureSnpReport = (): Buffer => hclBlob().subarray(0x20, 0x20 + 1184);

/** A fixed time inside every fixture certificate's validity, so tests do not depend on the clock. */
export const NOW = new Date('2025-01-01T00:00:00Z');

export function flipBit(bytes: Uint8Array, offset: number, bit = 0): Buffer {
  const out = Buffer.from(bytes);
  out[offset] = (out[offset] as number) ^ (1 << bit);
  return out;
}

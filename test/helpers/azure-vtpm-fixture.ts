import { readFileSync } from 'node:fs';

export const milanHclReport = readFileSync(
  new URL('../fixtures/azure-vtpm/milan/hcl-report.bin', import.meta.url),
);

/**
 * The real Milan HCL report, made to fit swtpm: libtpms limits an NV index to 2048 bytes (TPM_PT_NV_INDEX_MAX)
 * while the capture's data runs to byte 2346. Dropping the HCLEkPub JWK from the runtime data (and, when
 * asked, setting `user-data`) and fixing the three size fields gives a well-formed report, zero-padded to
 * 2048 bytes as on an SNP VM. The SNP report's binding to the runtime data no longer holds, which the
 * platform does not check (that is src/hcl's job).
 */
export function swtpmSizedHclReport(options: { userDataHex?: string; size?: number } = {}): Buffer {
  const report = milanHclReport;
  const varSize = report.readUInt32LE(0x4c0 + 16);
  const json = JSON.parse(report.subarray(0x4d4, 0x4d4 + varSize).toString('utf8')) as {
    keys: { kid: string }[];
    'user-data'?: string;
  };
  json.keys = json.keys.filter((k) => k.kid !== 'HCLEkPub');
  if (options.userDataHex !== undefined) json['user-data'] = options.userDataHex;
  const runtime = Buffer.from(JSON.stringify(json), 'utf8');
  const size = options.size ?? 2048;
  const out = Buffer.alloc(size);
  report.copy(out, 0, 0, 0x4d4);
  runtime.copy(out, 0x4d4);
  out.writeUInt32LE(0x4d4 + runtime.length, 0x08);
  out.writeUInt32LE(20 + runtime.length, 0x4c0);
  out.writeUInt32LE(runtime.length, 0x4c0 + 16);
  if (0x4d4 + runtime.length > size) throw new Error('runtime data does not fit');
  return out;
}

/**
 * Just enough of the HCL report to see whether the paravisor has regenerated it with new user data:
 * signature "HCLA" at 0, IGVM request data at 0x4C0 (variable data size at +16), runtime data JSON at 0x4D4.
 * Full parsing and verification of the report belongs to `src/hcl`; this never throws.
 */
const HCL_SIGNATURE = 0x414c4348;
const RUNTIME_DATA_OFFSET = 0x4d4;
const VARIABLE_DATA_SIZE_OFFSET = 0x4c0 + 16;

export function hclUserData(report: Uint8Array): { userData?: string; problem?: string } {
  if (report.length < RUNTIME_DATA_OFFSET)
    return { problem: `HCL report of ${report.length} bytes is too short` };
  const view = new DataView(report.buffer, report.byteOffset, report.byteLength);
  if (view.getUint32(0, true) !== HCL_SIGNATURE) return { problem: 'HCL report does not start with "HCLA"' };
  const size = view.getUint32(VARIABLE_DATA_SIZE_OFFSET, true);
  if (size > report.length - RUNTIME_DATA_OFFSET) {
    return { problem: `HCL runtime data size ${size} runs past the ${report.length}-byte report` };
  }
  const text = Buffer.from(report.buffer, report.byteOffset + RUNTIME_DATA_OFFSET, size).toString('utf8');
  try {
    const json: unknown = JSON.parse(text);
    if (json && typeof json === 'object' && 'user-data' in json && typeof json['user-data'] === 'string') {
      return { userData: json['user-data'] };
    }
    return { problem: 'HCL runtime data has no "user-data"' };
  } catch {
    return { problem: 'HCL runtime data is not JSON' };
  }
}

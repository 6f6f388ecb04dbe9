/**
 * UVM endorsements in the SevSnpVm request, against microsoft/confidential-sidecar-containers (commit
 * fa8df58aa0904504b6f7ae32497511083d95a3ac):
 * - pkg/common/maa.go `newAttestSNPRequestBody`: the report document (JSON fields SnpReport, VcekCertChain,
 *   Endorsements `omitempty`) gets `Endorsements` = base64.URLEncoding (padded) of `{"Uvm":[<padded base64url of
 *   the reference info bytes>]}`; without reference info the field is absent.
 * - pkg/common/info.go `GetUvmSecurityCtxDir` and `GetUvmInformation`: the file `reference-info-base64` in
 *   `UVM_SECURITY_CONTEXT_DIR`, else in the first `/security-context-*` entry, else in
 *   /opt/confidential-containers/share/kata-containers; a file that cannot be read (or is empty) is logged and
 *   `UVM_REFERENCE_INFO` used instead; both standard base64 (`base64.StdEncoding`).
 * The real document is test/fixtures/uvm/reference-info-base64 (pkg/common/security-context-test/ of that repo).
 */
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import test from 'ava';
import { EmulatedSnpReportProvider } from '../../src/emulator/hardware/emulated-snp-provider.js';
import { UvmReferenceInfoError } from '../../src/errors.js';
import { SevGuestPlatform } from '../../src/hal/platforms/sev-guest.js';
import {
  decodeUvmReferenceInfo,
  readUvmReferenceInfo,
} from '../../src/hal/platforms/uvm-security-context.js';
import { buildSevSnpVmRequest } from '../../src/maa/requests.js';
import { hardware } from '../helpers/emulated-hardware.js';

const REAL_TEXT = readFileSync(new URL('../fixtures/uvm/reference-info-base64', import.meta.url), 'utf8');
const REAL = new Uint8Array(Buffer.from(REAL_TEXT, 'base64'));

const { amd } = await hardware();

function reportDocument(body: { report: string }): Record<string, string> {
  return JSON.parse(Buffer.from(body.report, 'base64url').toString('utf8')) as Record<string, string>;
}

async function evidenceWith(uvmReferenceInfo: Uint8Array | false) {
  const platform = await SevGuestPlatform.open({
    provider: new EmulatedSnpReportProvider(amd),
    vcekFetcher: false,
    trustedRoots: [amd.trustedRoot],
    uvmReferenceInfo,
  });
  try {
    return await platform.collectEvidence();
  } finally {
    await platform.close();
  }
}

test('the report document carries Endorsements after SnpReport and VcekCertChain, encoded as maa.go does', async (t) => {
  const evidence = await evidenceWith(REAL);
  t.deepEqual(evidence.uvmReferenceInfo, REAL);
  const doc = reportDocument(buildSevSnpVmRequest(evidence));
  t.deepEqual(Object.keys(doc), ['SnpReport', 'VcekCertChain', 'Endorsements']);
  // Go's base64.URLEncoding pads: 10 864 bytes of reference info end in "=="
  t.is(REAL.length % 3, 1);
  const endorsements = doc.Endorsements!;
  t.regex(endorsements, /^[A-Za-z0-9_-]+={0,2}$/);
  t.is(endorsements.length % 4, 0);
  const json = Buffer.from(endorsements, 'base64url').toString('utf8');
  const expectedEntry = Buffer.from(REAL).toString('base64url') + '==';
  t.is(json, `{"Uvm":["${expectedEntry}"]}`);
});

test('without reference information the report document has no Endorsements field (omitempty)', async (t) => {
  const doc = reportDocument(buildSevSnpVmRequest(await evidenceWith(false)));
  t.deepEqual(Object.keys(doc), ['SnpReport', 'VcekCertChain']);
});

test('UVM_SECURITY_CONTEXT_DIR: reference-info-base64 is read from the folder, before UVM_REFERENCE_INFO', async (t) => {
  const dir = await mkdtemp(path.join(tmpdir(), 'cvm-skr-secctx-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  await writeFile(path.join(dir, 'reference-info-base64'), REAL_TEXT);
  const read = await readUvmReferenceInfo({ UVM_SECURITY_CONTEXT_DIR: dir, UVM_REFERENCE_INFO: 'AAAA' });
  t.deepEqual(read, REAL);
});

/** A scratch filesystem root and default folder, so the sidecar's search never looks at this machine's `/`. */
async function scratchLocations(t: import('ava').ExecutionContext) {
  const root = await mkdtemp(path.join(tmpdir(), 'cvm-skr-root-'));
  t.teardown(() => rm(root, { recursive: true, force: true }));
  return { root, defaultDir: path.join(root, 'opt', 'kata') };
}

test('UVM_REFERENCE_INFO is read when no security context folder holds reference information; nothing set gives none', async (t) => {
  const locations = await scratchLocations(t);
  t.deepEqual(await readUvmReferenceInfo({ UVM_REFERENCE_INFO: REAL_TEXT }, locations), REAL);
  t.is(await readUvmReferenceInfo({}, locations), undefined);
  t.is(await readUvmReferenceInfo({ UVM_REFERENCE_INFO: '' }, locations), undefined);
});

test('without UVM_SECURITY_CONTEXT_DIR the folder is the first /security-context-* entry, else the Confidential AKS default', async (t) => {
  const locations = await scratchLocations(t);
  await mkdir(locations.defaultDir, { recursive: true });
  await writeFile(path.join(locations.defaultDir, 'reference-info-base64'), REAL_TEXT);
  t.deepEqual(await readUvmReferenceInfo({}, locations), REAL, 'the default folder (Confidential AKS)');
  const aci = path.join(locations.root, 'security-context-1234');
  await mkdir(aci);
  await writeFile(path.join(aci, 'reference-info-base64'), '');
  // The ACI folder wins over the default; its empty file means "none there", so the variable is used.
  t.is(await readUvmReferenceInfo({}, locations), undefined);
  t.deepEqual(await readUvmReferenceInfo({ UVM_REFERENCE_INFO: REAL_TEXT }, locations), REAL);
  await writeFile(path.join(aci, 'reference-info-base64'), REAL_TEXT);
  t.deepEqual(await readUvmReferenceInfo({}, locations), REAL, 'the /security-context-* folder (Confidential ACI)');
});

test('a security context folder without reference-info-base64 falls back to UVM_REFERENCE_INFO, as the sidecar does', async (t) => {
  const dir = await mkdtemp(path.join(tmpdir(), 'cvm-skr-secctx-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  t.deepEqual(await readUvmReferenceInfo({ UVM_SECURITY_CONTEXT_DIR: dir, UVM_REFERENCE_INFO: REAL_TEXT }), REAL);
  t.is(await readUvmReferenceInfo({ UVM_SECURITY_CONTEXT_DIR: dir }), undefined);
});

test('a reference-info-base64 that is there but is not reference information is an UvmReferenceInfoError naming the file', async (t) => {
  const dir = await mkdtemp(path.join(tmpdir(), 'cvm-skr-secctx-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  await writeFile(path.join(dir, 'reference-info-base64'), Buffer.from('{"json":1}').toString('base64'));
  const error = await t.throwsAsync(readUvmReferenceInfo({ UVM_SECURITY_CONTEXT_DIR: dir, UVM_REFERENCE_INFO: REAL_TEXT }), {
    instanceOf: UvmReferenceInfoError,
  });
  t.is(error?.code, 'ERR_UVM_REFERENCE_INFO');
  t.is(error?.source, path.join(dir, 'reference-info-base64'));
});

test('reference information that is not base64 or not a tagged COSE_Sign1 is refused', (t) => {
  t.throws(() => decodeUvmReferenceInfo('not base64!', 'X'), { instanceOf: UvmReferenceInfoError, message: /base64/ });
  t.throws(() => decodeUvmReferenceInfo(Buffer.from('{"json":1}').toString('base64'), 'X'), {
    instanceOf: UvmReferenceInfoError,
    message: /COSE_Sign1/,
  });
  t.throws(() => decodeUvmReferenceInfo('A'.repeat(400_000), 'X'), { instanceOf: UvmReferenceInfoError, message: /larger/ });
});

test.serial('by default SevGuestPlatform sends what the container environment provides, read once', async (t) => {
  const saved = process.env.UVM_REFERENCE_INFO;
  t.teardown(() => {
    if (saved === undefined) delete process.env.UVM_REFERENCE_INFO;
    else process.env.UVM_REFERENCE_INFO = saved;
  });
  process.env.UVM_REFERENCE_INFO = REAL_TEXT;
  const platform = await SevGuestPlatform.open({
    provider: new EmulatedSnpReportProvider(amd),
    vcekFetcher: false,
    trustedRoots: [amd.trustedRoot],
  });
  t.teardown(() => platform.close());
  t.deepEqual((await platform.collectEvidence()).uvmReferenceInfo, REAL);
  process.env.UVM_REFERENCE_INFO = '';
  t.deepEqual((await platform.collectEvidence()).uvmReferenceInfo, REAL);
});

// The SevSnpVm request of the attestation service's REST specification (Azure/azure-rest-api-specs @f186684d,
// specification/attestation/data-plane/Microsoft.Attestation/stable/2022-08-01/examples/AttestSevSnpVm.json):
// `report` is unpadded base64url of a JSON document {"SnpReport", "VcekCertChain"} whose values are base64url
// (the report) and base64url of the PEM chain, and `runtimeData` is {"data": unpadded base64url, "dataType":
// "JSON"}. The excerpts below are the example's own leading characters. (The sidecar pads the same values,
// pkg/common/maa.go @fa8df58; the service takes both.)
const SPEC_REPORT_PREFIX = 'CiAgICAgICAgewogICAgICAgICAgICAiU25wUmVwb3J0IiA6ICJBUUFBQUFFQUFBQWZBQU1BQUFBQUFBRUFBQUFB';
const SPEC_RUNTIME_DATA_PREFIX = 'eyJrZXlzIjpbeyJraWQiOiJIQ0xUcmFuc2ZlcktleSIsImtleV9vcHMiOlsiZW5jcnlwdCJdLCJrdHkiOiJSU0EiLCJlIjoiQVFBQiIs';

test('the SevSnpVm request has the fields and encodings of the REST specification example', async (t) => {
  t.regex(Buffer.from(SPEC_REPORT_PREFIX, 'base64url').toString('utf8'), /^\s*\{\s*"SnpReport" : "AQAAAAEAAAAf/);
  t.regex(Buffer.from(SPEC_RUNTIME_DATA_PREFIX, 'base64url').toString('utf8'), /^\{"keys":\[\{"kid":"HCLTransferKey"/);

  const body = buildSevSnpVmRequest(await evidenceWith(false), Buffer.from('nonce-1'));
  t.deepEqual(Object.keys(body), ['report', 'runtimeData', 'nonce']);
  t.regex(body.report, /^[A-Za-z0-9_-]+$/, 'unpadded base64url, as the example');
  const doc = reportDocument(body);
  t.deepEqual(Object.keys(doc), ['SnpReport', 'VcekCertChain']);
  t.regex(doc.SnpReport!, /^[A-Za-z0-9_-]+$/);
  t.is(Buffer.from(doc.SnpReport!, 'base64url').length, 1184, 'the SNP report (AMD SEV-SNP ABI, ATTESTATION_REPORT)');
  t.regex(Buffer.from(doc.VcekCertChain!, 'base64url').toString('utf8'), /^-----BEGIN CERTIFICATE-----/);
  t.deepEqual(Object.keys(body.runtimeData), ['data', 'dataType']);
  t.is(body.runtimeData.dataType, 'JSON');
  t.regex(body.runtimeData.data, /^[A-Za-z0-9_-]+$/);
  t.regex(Buffer.from(body.runtimeData.data, 'base64url').toString('utf8'), /^\{"keys":\[/);
});

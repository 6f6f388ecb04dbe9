/**
 * The vTPM evidence path as Microsoft's guest library runs it, on a swtpm provisioned as an Azure vTPM and the
 * emulated IMDS. Artifacts (Azure/confidential-computing-cvm-guest-attestation @
 * 990f66210018f03f66f000fb4227809db94c2c55, client-library/src/Attestation/AttestationClient/lib/):
 * - ImdsOperations.cpp GetVCekCert: GET http://169.254.169.254/metadata/THIM/amd/certification, then
 *   base64(vcekCert + certificateChain) — IsolationInfo.cpp puts it in Proof as VcekCertChain (key from
 *   include/AttestationLibConst.h) beside the base64url SnpReport.
 * - TpmCertOperations.cpp: placeholder issuer "/CN=MICROSOFT AZURE TRUSTED VM RSA" means "not provisioned, try
 *   later"; renewal when notAfter is within 90 days; ImdsClient.cpp: the renew request.
 * - Azure/cvm-attestation-tools cvm-attestation/src/imds_client.py get_vcek_certificate: the same
 *   vcekCert + certificateChain concatenation from the same THIM endpoint.
 * - THIM answer shape: test/fixtures/snp/aci-milan/thim.json (microsoft/confidential-sidecar-containers).
 */
import { readFileSync } from 'node:fs';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { X509Certificate } from 'node:crypto';
import test, { type ExecutionContext } from 'ava';
import { issuePlaceholderAkCertificate } from '../../../src/emulator/hardware/ak-ca.js';
import { provisionSwtpmAsAzureVtpm } from '../../../src/emulator/hardware/provision-swtpm.js';
import {
  AkCertificateNotProvisionedError,
  TcgLogUnreadableError,
  VcekFetchError,
} from '../../../src/errors.js';
import { akCertificateStatus } from '../../../src/hal/platforms/ak-certificate.js';
import { AzureVtpmPlatform, type AzureVtpmPlatformOptions } from '../../../src/hal/platforms/azure-vtpm.js';
import { attest } from '../../../src/maa/client.js';
import { buildAzureGuestRequest } from '../../../src/maa/requests.js';
import { AZURE_VTPM } from '../../../src/tpm/azure-layout.js';
import { storeNvBlob } from '../../../src/tpm/provision.js';
import { Tpm } from '../../../src/tpm/tpm.js';
import { startSwtpm, swtpmTest } from '../../helpers/swtpm.js';
import { connectSwtpm } from '../../helpers/transport.js';
import { hardware, imds, maa } from '../../helpers/emulated-hardware.js';

const { amd, akCa } = await hardware();
const DAY = 86_400_000;
const OS = { type: 'Linux', distro: 'Ubuntu', versionMajor: 22, versionMinor: 4, build: 'NotApplicable' };

async function rig(
  t: ExecutionContext,
  options: {
    platform?: Omit<AzureVtpmPlatformOptions, 'transport' | 'path'>;
    imds?: Parameters<typeof imds>[1] | false;
    akCert?: 'expired' | 'placeholder';
  } = {},
) {
  const swtpm = await startSwtpm();
  t.teardown(swtpm.stop);
  const transport = await connectSwtpm(swtpm);
  t.teardown(() => transport.close());
  const provisioned = await provisionSwtpmAsAzureVtpm(transport, { amd, akCa });
  const tpm = new Tpm(transport);
  if (options.akCert) {
    const ak = provisioned.layout.ak.publicKey;
    const der =
      options.akCert === 'placeholder'
        ? await issuePlaceholderAkCertificate(ak)
        : await akCa.issue(ak, undefined, {
            notBefore: new Date(Date.now() - 400 * DAY),
            notAfter: new Date(Date.now() - DAY),
          });
    await storeNvBlob(tpm, AZURE_VTPM.AK_CERT_INDEX, der);
  }
  const metadata = options.imds === false ? undefined : await imds(t, options.imds ?? { amd, akCa });
  const platform = await AzureVtpmPlatform.open({
    ...(metadata ? { imdsUrl: metadata.url } : {}),
    ...options.platform,
    transport,
  });
  t.teardown(() => platform.close());
  return { platform, metadata, provisioned };
}

function proofOf(body: { AttestationInfo: string }): Record<string, string> {
  const info = JSON.parse(Buffer.from(body.AttestationInfo, 'base64url').toString('utf8')) as {
    IsolationInfo: { Evidence: { Proof: string } };
  };
  return JSON.parse(Buffer.from(info.IsolationInfo.Evidence.Proof, 'base64').toString('utf8')) as Record<
    string,
    string
  >;
}

test('the emulated THIM answers in the recorded shape: vcekCert, tcbm, certificateChain, cacheControl (aci-milan/thim.json)', async (t) => {
  const metadata = await imds(t, { amd });
  const recorded = JSON.parse(
    readFileSync(new URL('../../fixtures/snp/aci-milan/thim.json', import.meta.url), 'utf8'),
  ) as Record<string, unknown>;
  const res = await fetch(`${metadata.url}/metadata/THIM/amd/certification`, { headers: { Metadata: 'true' } });
  t.is(res.status, 200);
  const answer = (await res.json()) as Record<string, string>;
  t.deepEqual(Object.keys(answer), Object.keys(recorded));
  t.is(BigInt(`0x${answer.tcbm}`), amd.tcb.raw);
  t.true(answer.vcekCert!.endsWith('-----END CERTIFICATE-----\n'));
  t.is(answer.certificateChain!.match(/BEGIN CERTIFICATE/g)?.length, 2);
  const without = await fetch(`${metadata.url}/metadata/THIM/amd/certification`);
  t.is(without.status, 400);
});

swtpmTest('the AzureGuest request built on a swtpm-provisioned vTPM carries Proof.VcekCertChain = base64(vcekCert + certificateChain) from THIM (ImdsOperations.cpp)', async (t) => {
  const { platform, metadata } = await rig(t);
  const evidence = await platform.collectEvidence({ nonce: Uint8Array.of(1, 2) });
  const body = buildAzureGuestRequest(evidence, { os: OS });
  const proof = proofOf(body);
  const thim = (await (
    await fetch(`${metadata!.url}/metadata/THIM/amd/certification`, { headers: { Metadata: 'true' } })
  ).json()) as { vcekCert: string; certificateChain: string };
  t.is(proof.VcekCertChain, Buffer.from(thim.vcekCert + thim.certificateChain, 'utf8').toString('base64'));
  t.deepEqual(
    Buffer.from(proof.SnpReport!, 'base64url'),
    Buffer.from(evidence.hclReport.subarray(0x20, 0x20 + 1184)),
  );
  t.deepEqual(Object.keys(proof), ['SnpReport', 'VcekCertChain']);
});

swtpmTest('a swtpm-provisioned vTPM attests with the chain from the emulated THIM, fetched once per chip and TCB', async (t) => {
  const server = await maa(t, { amd, akCa });
  const { platform, metadata } = await rig(t);
  const first = await attest(platform, { endpoint: server.url, ca: server.caPem });
  await attest(platform, { endpoint: server.url, ca: server.caPem });
  t.is(first.protocol, 'AzureGuest');
  t.is(server.counters.azureGuest, 2);
  t.is(metadata!.counters.thim, 1);
  t.deepEqual(first.diagnostics, []);
});

swtpmTest("THIM's cacheControl 0 is honoured: every collection asks THIM again", async (t) => {
  const { platform, metadata } = await rig(t, { imds: { amd, akCa, cacheControl: '0' } });
  await platform.collectEvidence();
  await platform.collectEvidence();
  t.is(metadata!.counters.thim, 2);
});

swtpmTest('a THIM answer for another TCB than the report is not sent: VcekFetchError names the source', async (t) => {
  const { platform } = await rig(t, { imds: { amd, akCa, tcb: { snp: amd.tcb.snp + 1 } } });
  const error = await t.throwsAsync(platform.collectEvidence(), { instanceOf: VcekFetchError });
  t.is(error?.code, 'ERR_VCEK_FETCH');
  t.regex(error?.tried[0] ?? '', /^thim: its tcbm/);
});

swtpmTest('THIM failing and AMD KDS failing: the coded error names both sources, and nothing is attested', async (t) => {
  let kdsCalls = 0;
  const kds = createServer((_req, res) => {
    kdsCalls++;
    res.writeHead(404).end();
  });
  await new Promise<void>((resolve) => kds.listen(0, '127.0.0.1', resolve));
  t.teardown(() => new Promise<void>((resolve) => kds.close(() => resolve())));
  const kdsUrl = `http://127.0.0.1:${(kds.address() as AddressInfo).port}`;
  const server = await maa(t, { amd, akCa });
  const { platform, metadata } = await rig(t, { platform: { kds: kdsUrl } });
  metadata!.setThim({ failStatus: 500 });
  const error = await t.throwsAsync(attest(platform, { endpoint: server.url, ca: server.caPem }), {
    instanceOf: VcekFetchError,
  });
  t.deepEqual(
    error?.tried.map((s) => s.split(':')[0]),
    ['thim', 'kds'],
  );
  t.regex(error?.message ?? '', /thim: THIM answered HTTP 500.*kds: AMD KDS answered HTTP 404/);
  t.is(kdsCalls, 1);
  t.is(server.counters.azureGuest + server.counters.rejected, 0);
});

swtpmTest('an expired AK certificate is renewed through IMDS and written back to NV 0x01C101D0 before attesting (TpmCertOperations.cpp)', async (t) => {
  const server = await maa(t, { amd, akCa });
  const { platform, metadata, provisioned } = await rig(t, { akCert: 'expired' });
  t.true((await platform.akCertificateStatus()).renewalDue);
  const result = await attest(platform, { endpoint: server.url, ca: server.caPem });
  t.is(metadata!.counters.renew, 1);
  t.is(metadata!.counters.vmId, 1);
  t.regex(result.diagnostics.join('\n'), /AK certificate expired .*; renewed through IMDS/);
  const now = await platform.akCertificateStatus();
  t.false(now.renewalDue);
  t.true(now.daysLeft > 300);
  // The renewed certificate certifies the same AK.
  const stored = new X509Certificate(await platform.readAkCertificate());
  t.true(stored.publicKey.equals(provisioned.layout.ak.publicKey));
});

swtpmTest("the AK certificate's lifetime is judged at the attestation client's clock: 300 days on, it is renewed through IMDS (TpmCertOperations.cpp, 90 days)", async (t) => {
  // One clock 300 days ahead for the client and both services: the certificate, valid for a year from now,
  // has 65 days left by it (the system clock alone would see 365 and not renew).
  const later = () => new Date(Date.now() + 300 * DAY);
  const server = await maa(t, { amd, akCa, now: later });
  const { platform, metadata } = await rig(t, { imds: { amd, akCa, now: later } });
  t.false((await platform.akCertificateStatus()).renewalDue, 'not due by the system clock');
  const result = await attest(platform, { endpoint: server.url, ca: server.caPem, now: later });
  t.is(metadata!.counters.renew, 1);
  t.regex(result.diagnostics.join('\n'), /AK certificate expires .*; renewed through IMDS/);
  const renewed = await platform.akCertificateStatus(later());
  t.false(renewed.renewalDue);
  t.true(new Date(renewed.notBefore).getTime() > Date.now() + 298 * DAY, 'issued at the services\' clock');
});

swtpmTest('without renewal the expired AK certificate is sent and the service refuses it (ak-certificate)', async (t) => {
  const server = await maa(t, { amd, akCa });
  const { platform, metadata } = await rig(t, { akCert: 'expired', platform: { renewAkCertificate: false } });
  await t.throwsAsync(attest(platform, { endpoint: server.url, ca: server.caPem }), {
    message: /ak-certificate/,
  });
  t.is(metadata!.counters.renew, 0);
});

swtpmTest('a failed renewal is a diagnostic, as in the guest library, and the old certificate stays', async (t) => {
  const { platform, metadata } = await rig(t, { akCert: 'expired' });
  metadata!.setRenewalFailure('empty');
  const before = await platform.readAkCertificate();
  const evidence = await platform.collectEvidence();
  t.regex(evidence.diagnostics?.join('\n') ?? '', /renewal through IMDS failed: .*no AkCertPem/);
  t.deepEqual(Buffer.from(await platform.readAkCertificate()), Buffer.from(before));
});

swtpmTest('a placeholder AK certificate (issuer MICROSOFT AZURE TRUSTED VM RSA) is refused with ERR_AK_CERT_NOT_PROVISIONED and not renewed', async (t) => {
  const { platform, metadata } = await rig(t, { akCert: 'placeholder' });
  t.true(akCertificateStatus(await platform.readAkCertificate()).placeholder);
  const error = await t.throwsAsync(platform.collectEvidence(), { instanceOf: AkCertificateNotProvisionedError });
  t.is(error?.code, 'ERR_AK_CERT_NOT_PROVISIONED');
  t.regex(error?.message ?? '', /try again later/);
  t.is(metadata!.counters.renew, 0);
});

swtpmTest('an unreadable TCG log is a diagnostic on the attestation result, or ERR_TCG_LOG_UNREADABLE when required', async (t) => {
  const server = await maa(t, { amd, akCa });
  const missing = '/nonexistent/cvm-skr-test/binary_bios_measurements';
  const { platform } = await rig(t, { platform: { eventLogPath: missing } });
  const result = await attest(platform, { endpoint: server.url, ca: server.caPem });
  t.is(result.diagnostics.length, 1);
  t.regex(result.diagnostics[0]!, /TCG event log .* cannot be read \(ENOENT\).*x-ms-azurevm/);
  const strict = await rig(t, { platform: { eventLogPath: missing, requireTcgLog: true } });
  const error = await t.throwsAsync(strict.platform.collectEvidence(), { instanceOf: TcgLogUnreadableError });
  t.is(error?.code, 'ERR_TCG_LOG_UNREADABLE');
});

import test, { type ExecutionContext } from 'ava';
import { EmulatedSnpReportProvider } from '../../../src/emulator/hardware/emulated-snp-provider.js';
import type { EvidenceKnobs } from '../../../src/emulator/hardware/knobs.js';
import { EmulatedParavisorTransport } from '../../../src/emulator/hardware/paravisor.js';
import { provisionSwtpmAsAzureVtpm } from '../../../src/emulator/hardware/provision-swtpm.js';
import { AttestationRequestError } from '../../../src/errors.js';
import { AzureVtpmPlatform } from '../../../src/hal/platforms/azure-vtpm.js';
import { SevGuestPlatform } from '../../../src/hal/platforms/sev-guest.js';
import { parseHclReport } from '../../../src/hcl/report.js';
import { attest } from '../../../src/maa/client.js';
import { startSwtpm, swtpmTest } from '../../helpers/swtpm.js';
import { connectSwtpm } from '../../helpers/transport.js';
import { hardware, imds, maa } from '../../helpers/emulated-hardware.js';

const { amd, akCa } = await hardware();

async function provisioned(t: ExecutionContext, knobs: EvidenceKnobs = {}) {
  const swtpm = await startSwtpm();
  t.teardown(swtpm.stop);
  const transport = await connectSwtpm(swtpm);
  t.teardown(() => transport.close());
  const result = await provisionSwtpmAsAzureVtpm(transport, { amd, akCa, knobs });
  // The VCEK chain comes from THIM, as on Azure: here the emulated IMDS.
  const metadata = await imds(t, { amd, akCa });
  const platform = await AzureVtpmPlatform.open({ transport, imdsUrl: metadata.url });
  t.teardown(() => platform.close());
  return { ...result, platform };
}

swtpmTest('a provisioned swtpm attests through the real AzureVtpmPlatform and the native transport', async (t) => {
  const server = await maa(t, { amd, akCa });
  const { platform, layout } = await provisioned(t);
  const hcl = parseHclReport(await platform.readHclReport());
  // The report names the swtpm's own AK, the one the quote is signed with.
  const ak = hcl.runtimeData.akPub?.export({ format: 'jwk' });
  t.is(ak?.n, layout.ak.publicKey.export({ format: 'jwk' }).n);
  t.true(layout.hclReport.length <= 2048);
  const nonce = Uint8Array.of(5, 6, 7);
  const result = await attest(platform, { endpoint: server.url, ca: server.caPem, nonce });
  t.is(result.protocol, 'AzureGuest');
  t.is(result.claims['x-ms-attestation-type'], 'azurevm');
  const tee = result.claims['x-ms-isolation-tee'] as Record<string, unknown>;
  t.is(tee['x-ms-compliance-status'], 'azure-compliant-cvm');
  const keys = (result.claims['x-ms-runtime'] as { keys: { n: string }[] }).keys;
  t.is(keys[0]?.n, (await platform.transferKey()).jwk.n);
  t.is(server.counters.azureGuest, 1);
});

for (const [name, knobs, check] of [
  ['AK mismatch', { akMismatch: true }, 'ak-match'],
  ['stale user data', { staleUserData: true }, 'hcl-binding'],
] as const) {
  swtpmTest(`a swtpm provisioned with "${name}" is refused naming ${check}`, async (t) => {
    const server = await maa(t, { amd, akCa });
    const { platform } = await provisioned(t, knobs);
    const error = await t.throwsAsync(attest(platform, { endpoint: server.url, ca: server.caPem }), {
      instanceOf: AttestationRequestError,
    });
    t.is(error?.check, check);
  });
}

test('the real SevGuestPlatform runs unchanged on the emulated report provider', async (t) => {
  const server = await maa(t, { amd, akCa });
  const provider = new EmulatedSnpReportProvider(amd);
  const platform = await SevGuestPlatform.open({
    provider,
    vcekFetcher: false,
    trustedRoots: [amd.trustedRoot],
  });
  t.teardown(() => platform.close());
  const result = await attest(platform, { endpoint: server.url, ca: server.caPem, nonce: Uint8Array.of(1) });
  t.is(result.protocol, 'SevSnpVm');
  t.is(result.claims['x-ms-compliance-status'], 'azure-compliant-cvm');
  t.is(provider.served, 1);
});

swtpmTest('behind the emulated paravisor, AzureVtpmPlatform.writeUserData gets a regenerated report that attests', async (t) => {
  const server = await maa(t, { amd, akCa });
  const swtpm = await startSwtpm();
  t.teardown(swtpm.stop);
  const transport = await connectSwtpm(swtpm);
  t.teardown(() => transport.close());
  await provisionSwtpmAsAzureVtpm(transport, { amd, akCa });
  const paravisor = new EmulatedParavisorTransport(transport, { amd });
  const metadata = await imds(t, { amd, akCa });
  const platform = await AzureVtpmPlatform.open({ transport: paravisor, imdsUrl: metadata.url });
  t.teardown(() => platform.close());
  const data = new Uint8Array(64).fill(0x5a);
  const report = await platform.writeUserData(data, { timeoutMs: 5000 });
  t.is(paravisor.regenerated, 1);
  t.deepEqual(parseHclReport(report).runtimeData.userData, data);
  const result = await attest(platform, { endpoint: server.url, ca: server.caPem });
  const tee = result.claims['x-ms-isolation-tee'] as { 'x-ms-runtime': Record<string, unknown> };
  t.is(tee['x-ms-runtime']['user-data'], Buffer.from(data).toString('hex'));
});

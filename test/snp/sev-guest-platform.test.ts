import { constants, createHash, createPublicKey, publicEncrypt, randomBytes } from 'node:crypto';
import { inspect } from 'node:util';
import test from 'ava';
import { PlatformClosedError, SnpCertificateError, TransferKeyDecryptError } from '../../src/errors.js';
import { SevGuestPlatform } from '../../src/hal/platforms/sev-guest.js';
import type { SnpReportProvider, SnpReportRequest, SnpReportResult } from '../../src/hal/types.js';
import { encodeSnpReport, signSnpReport } from '../../src/snp/build.js';
import { buildCertTable } from '../../src/snp/cert-table.js';
import { verifySevGuestEvidence } from '../../src/snp/sev-guest-evidence.js';
import { encodeTcb } from '../../src/snp/tcb.js';
import { createSnpTestChain, type SnpTestChain } from '../helpers/snp-test-chain.js';
import { VcekFetcher } from '../../src/snp/vcek-sources.js';
import { verifySnpReport } from '../../src/snp/verify.js';

const tcb = { bootloader: 3, tee: 0, snp: 8, microcode: 115 };
const chipId = randomBytes(64);

/** Stands in for the guest device: builds a report around the requested report_data and signs it. */
class FakeSnpProvider implements SnpReportProvider {
  readonly name = 'configfs-tsm' as const;
  readonly requests: SnpReportRequest[] = [];
  /** Set to simulate a provider that hands back a report for other report_data. */
  staleReportData: Uint8Array | undefined;
  constructor(
    private readonly chain: SnpTestChain,
    private readonly withTable: boolean,
  ) {}
  async getReport(request: SnpReportRequest): Promise<SnpReportResult> {
    this.requests.push(request);
    const body = encodeSnpReport({
      version: 3,
      cpuid: { family: 0x19, model: 0x01, stepping: 1 },
      chipId,
      reportedTcb: encodeTcb(tcb, 'Milan'),
      reportData: this.staleReportData ?? request.reportData,
      vmpl: request.vmpl ?? 0,
    });
    const report = signSnpReport(body, this.chain.leafKey);
    if (!this.withTable) return { report };
    const certificateTable = buildCertTable([
      { kind: 'vcek', der: this.chain.leafDer },
      { kind: 'ask', der: this.chain.askDer },
      { kind: 'ark', der: this.chain.arkDer },
    ]);
    return { report, certificateTable };
  }
}

let chainPromise: Promise<SnpTestChain> | undefined;
const testChain = (): Promise<SnpTestChain> => {
  chainPromise ??= createSnpTestChain({ chipId, tcb });
  return chainPromise;
};

test('evidence: report_data = sha256(runtime) || zeros, runtime carries the transfer key, chain from the ext report', async (t) => {
  const chain = await testChain();
  const provider = new FakeSnpProvider(chain, true);
  const platform = await SevGuestPlatform.open({
    provider,
    vcekFetcher: false,
    trustedRoots: [chain.arkPem],
  });
  t.teardown(() => platform.close());
  t.is(platform.kind, 'sev-guest');
  const nonce = randomBytes(16);
  const evidence = await platform.collectEvidence({ nonce });
  t.is(evidence.kind, 'sev-guest');
  t.is(provider.requests[0]?.extended, true);
  t.is(provider.requests[0]?.vmpl, 0);

  const digest = createHash('sha256').update(evidence.runtimeData).digest();
  const result = verifySnpReport(evidence.report, {
    certificates: evidence.vcekCertChain,
    trustedRoots: [chain.arkPem],
    reportData: digest,
    vmpl: 0,
  });
  t.true(result.ok);
  t.is(Buffer.from(result.report.reportData.subarray(32)).toString('hex'), '00'.repeat(32));
  t.is((evidence.vcekCertChain.match(/BEGIN CERTIFICATE/g) ?? []).length, 3);

  const runtime = JSON.parse(evidence.runtimeData.toString());
  const key = await platform.transferKey();
  t.deepEqual(runtime.keys, [
    { e: key.jwk.e, key_ops: ['encrypt'], kid: key.jwk.kid, kty: 'RSA', n: key.jwk.n },
  ]);
  t.is(runtime.nonce, nonce.toString('base64url'));
  t.is(createPublicKey({ key: runtime.keys[0], format: 'jwk' }).asymmetricKeyDetails?.modulusLength, 2048);
  // No private material anywhere the caller can see.
  t.false('d' in key.jwk);
  t.false(/"d"|PRIVATE/.test(JSON.stringify(evidence)));
  t.false(/PRIVATE|privateKey/.test(inspect(platform, { depth: 5 })));
  t.false(/PRIVATE|privateKey/.test(inspect(key, { depth: 5 })));
});

test('transfer key decrypts every DecryptScheme; wrong scheme or ciphertext is a typed error', async (t) => {
  const chain = await testChain();
  const platform = new SevGuestPlatform({ provider: new FakeSnpProvider(chain, true), vcekFetcher: false });
  t.teardown(() => platform.close());
  const key = await platform.transferKey();
  const pub = createPublicKey({ key: key.jwk, format: 'jwk' });
  const secret = randomBytes(32);
  const rsaes = publicEncrypt({ key: pub, padding: constants.RSA_PKCS1_PADDING }, secret);
  t.deepEqual(await key.decrypt(rsaes, 'rsaes'), secret);
  for (const [scheme, oaepHash] of [
    ['oaep-sha1', 'sha1'],
    ['oaep-sha256', 'sha256'],
    ['oaep-sha384', 'sha384'],
  ] as const) {
    const ct = publicEncrypt({ key: pub, padding: constants.RSA_PKCS1_OAEP_PADDING, oaepHash }, secret);
    t.deepEqual(await key.decrypt(ct, scheme), secret);
  }
  const oaep = publicEncrypt(
    { key: pub, padding: constants.RSA_PKCS1_OAEP_PADDING, oaepHash: 'sha256' },
    secret,
  );
  await t.throwsAsync(key.decrypt(oaep, 'oaep-sha1'), { instanceOf: TransferKeyDecryptError });
  await t.throwsAsync(key.decrypt(oaep, 'rsaes'), { instanceOf: TransferKeyDecryptError });
  await t.throwsAsync(key.decrypt(rsaes.subarray(1), 'rsaes'), { instanceOf: TransferKeyDecryptError });
  await t.throwsAsync(key.decrypt(rsaes, 'nope' as never), { code: 'ERR_INVALID_ARGUMENT' });
  // The same key for the platform's lifetime.
  t.is((await platform.transferKey()).jwk.n, key.jwk.n);
});

test('without a certificate table the fetcher supplies the chain (confidential-container variable)', async (t) => {
  const chain = await testChain();
  const thim = {
    vcekCert: chain.leafPem,
    certificateChain: chain.askPem + chain.arkPem,
    cacheControl: '3600',
  };
  const fetcher = new VcekFetcher({
    sources: ['container'],
    container: { env: { UVM_HOST_AMD_CERTIFICATE: Buffer.from(JSON.stringify(thim)).toString('base64') } },
  });
  const platform = new SevGuestPlatform({
    provider: new FakeSnpProvider(chain, false),
    vcekFetcher: fetcher,
    trustedRoots: [chain.arkPem],
  });
  t.teardown(() => platform.close());
  const evidence = await platform.collectEvidence();
  t.true(
    verifySnpReport(evidence.report, { certificates: evidence.vcekCertChain, trustedRoots: [chain.arkPem] })
      .ok,
  );
  t.false('nonce' in JSON.parse(evidence.runtimeData.toString()));

  const noSource = new SevGuestPlatform({ provider: new FakeSnpProvider(chain, false), vcekFetcher: false });
  t.teardown(() => noSource.close());
  await t.throwsAsync(noSource.collectEvidence(), {
    instanceOf: SnpCertificateError,
    message: /no extended-report/,
  });
});

test('close: evidence and decryption refuse afterwards', async (t) => {
  const chain = await testChain();
  const platform = await SevGuestPlatform.open({
    provider: new FakeSnpProvider(chain, true),
    vcekFetcher: false,
  });
  const key = await platform.transferKey();
  await platform.close();
  await t.throwsAsync(platform.collectEvidence(), { instanceOf: PlatformClosedError });
  await t.throwsAsync(platform.transferKey(), { instanceOf: PlatformClosedError });
  await t.throwsAsync(key.decrypt(new Uint8Array(256), 'rsaes'), { instanceOf: PlatformClosedError });
  t.throws(() => new SevGuestPlatform({ provider: new FakeSnpProvider(chain, true), vmpl: 4 }), {
    code: 'ERR_INVALID_ARGUMENT',
  });
});

test('a provider returning a report for other report_data is refused', async (t) => {
  const chain = await testChain();
  const provider = new FakeSnpProvider(chain, true);
  provider.staleReportData = new Uint8Array(64).fill(7);
  const platform = new SevGuestPlatform({ provider, vcekFetcher: false });
  t.teardown(() => platform.close());
  await t.throwsAsync(platform.collectEvidence(), { code: 'ERR_SNP_REPORT_DATA' });
});

test('verifySevGuestEvidence: the platform evidence verifies; edited runtime data does not', async (t) => {
  const chain = await testChain();
  const platform = new SevGuestPlatform({ provider: new FakeSnpProvider(chain, true), vcekFetcher: false });
  t.teardown(() => platform.close());
  const evidence = await platform.collectEvidence({ nonce: Buffer.from('n') });
  const result = verifySevGuestEvidence(evidence, { trustedRoots: [chain.arkPem] });
  t.deepEqual(
    result.checks.slice(-2).map((c) => [c.name, c.ok]),
    [
      ['runtime-data-binding', true],
      ['runtime-data', true],
    ],
  );
  t.is(result.runtime.keys[0]?.kid, (await platform.transferKey()).jwk.kid);
  t.deepEqual(result.runtime.keys[0]?.keyOps, ['encrypt']);
  const edited = Buffer.from(evidence.runtimeData.toString().replace('"nonce":"bg"', '"nonce":"bh"'));
  t.notDeepEqual(edited, evidence.runtimeData);
  const error = t.throws(
    () => verifySevGuestEvidence({ ...evidence, runtimeData: edited }, { trustedRoots: [chain.arkPem] }),
    {
      code: 'ERR_SNP_REPORT_DATA',
    },
  );
  t.is((error as unknown as { check: string }).check, 'runtime-data-binding');
});

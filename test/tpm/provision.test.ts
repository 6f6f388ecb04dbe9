import { readFileSync } from 'node:fs';
import { InvalidArgumentError } from '../../src/errors.js';
import { AZURE_VTPM } from '../../src/tpm/azure-layout.js';
import { getHandles } from '../../src/tpm/commands/capability.js';
import { nvReadAll, nvReadPublic } from '../../src/tpm/commands/nv.js';
import { readPublic } from '../../src/tpm/commands/object.js';
import { publicToJwk } from '../../src/tpm/keys.js';
import { provisionAzureVtpmLayout } from '../../src/tpm/provision.js';
import { swtpmTest } from '../helpers/swtpm.js';
import { freshTpm } from '../helpers/swtpm-tpm.js';

const fixture = readFileSync(new URL('../fixtures/azure-vtpm/milan/hcl-report.bin', import.meta.url));

swtpmTest('provisionAzureVtpmLayout: AK, AK certificate, HCL report built around the AK, user-data index; idempotent', async (t) => {
  const { tpm } = await freshTpm(t);
  const build = (ak: { public: { public: Parameters<typeof publicToJwk>[0] } }) => {
    const blob = Buffer.alloc(1500);
    blob.write('HCLA', 0, 'latin1');
    blob.write(JSON.stringify(publicToJwk(ak.public.public)), 0x20);
    return blob;
  };
  const first = await provisionAzureVtpmLayout(tpm, { hclReport: build });
  const ak = await readPublic(tpm, AZURE_VTPM.AK_HANDLE);
  t.deepEqual(Buffer.from(ak.name), Buffer.from(first.ak.public.name));
  const report = await nvReadAll(tpm, { nvIndex: AZURE_VTPM.HCL_REPORT_INDEX, chunkSize: 1024 });
  t.is(report.length, 1500);
  const n = (publicToJwk(ak.public) as { n: string }).n;
  t.true(Buffer.from(report).includes(Buffer.from(n)), 'the report was built around the persisted AK');
  const cert = await nvReadAll(tpm, { nvIndex: AZURE_VTPM.AK_CERT_INDEX, chunkSize: 1024 });
  t.deepEqual(Buffer.from(cert), Buffer.from(first.akCertDer));
  t.is((await nvReadPublic(tpm, AZURE_VTPM.USER_DATA_INDEX)).public.dataSize, 64);
  // Again, with a report of another size: same AK (same seed and template), indices replaced.
  const second = await provisionAzureVtpmLayout(tpm, {
    hclReport: Buffer.alloc(700, 1),
    akCertDer: Buffer.from([0x30, 0]),
  });
  t.deepEqual(Buffer.from(second.ak.public.name), Buffer.from(first.ak.public.name));
  t.is((await nvReadPublic(tpm, AZURE_VTPM.HCL_REPORT_INDEX)).public.dataSize, 700);
  t.deepEqual(
    Buffer.from(await nvReadAll(tpm, { nvIndex: AZURE_VTPM.AK_CERT_INDEX, chunkSize: 1024 })),
    Buffer.from([0x30, 0]),
  );
  t.deepEqual(await getHandles(tpm, 0x80000000), [], 'no transient object left behind');
  t.deepEqual(await getHandles(tpm, 0x81000000), [AZURE_VTPM.AK_HANDLE]);
});

swtpmTest('provisionAzureVtpmLayout: trailing zero padding beyond NV_INDEX_MAX is dropped; real data beyond it is refused', async (t) => {
  const { tpm } = await freshTpm(t);
  const padded = Buffer.alloc(2600);
  padded.fill(7, 0, 2000);
  const layout = await provisionAzureVtpmLayout(tpm, {
    hclReport: padded,
    akCertDer: Buffer.from([0x30, 0]),
  });
  t.is(layout.hclReport.length, 2048);
  t.is((await nvReadPublic(tpm, AZURE_VTPM.HCL_REPORT_INDEX)).public.dataSize, 2048);
  // The real 2600-byte capture has data up to byte 2346: more than libtpms lets an index hold.
  const error = await t.throwsAsync(
    provisionAzureVtpmLayout(tpm, { hclReport: fixture, akCertDer: Buffer.from([0x30, 0]) }),
    {
      instanceOf: InvalidArgumentError,
    },
  );
  t.regex(error?.message ?? '', /data up to byte 2346, but this TPM's NV indices hold at most 2048 bytes/);
});

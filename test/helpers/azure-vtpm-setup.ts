import type { ExecutionContext } from 'ava';
import { AzureVtpmPlatform, type AzureVtpmPlatformOptions } from '../../src/hal/platforms/azure-vtpm.js';
import type { TpmTransport } from '../../src/hal/types.js';
import { type AzureVtpmLayout, provisionAzureVtpmLayout } from '../../src/tpm/provision.js';
import { Tpm } from '../../src/tpm/tpm.js';
import { startSwtpm } from './swtpm.js';
import { connectSwtpm } from './transport.js';
import { swtpmSizedHclReport } from './azure-vtpm-fixture.js';

export interface Provisioned {
  transport: TpmTransport;
  /** A second command layer on the same transport, for the test's own TPM commands. */
  tpm: Tpm;
  layout: AzureVtpmLayout;
  platform: AzureVtpmPlatform;
}

/** A fresh swtpm laid out like an Azure vTPM, and an AzureVtpmPlatform on it; all torn down with the test. */
export async function provisioned(
  t: ExecutionContext,
  options: Omit<AzureVtpmPlatformOptions, 'transport' | 'path'> & {
    wrap?: (inner: TpmTransport) => TpmTransport;
  } = {},
): Promise<Provisioned> {
  const swtpm = await startSwtpm();
  t.teardown(swtpm.stop);
  const transport = await connectSwtpm(swtpm);
  t.teardown(() => transport.close());
  const tpm = new Tpm(transport);
  const layout = await provisionAzureVtpmLayout(tpm, { hclReport: swtpmSizedHclReport() });
  const { wrap, ...platformOptions } = options;
  const platform = await AzureVtpmPlatform.open({
    ...platformOptions,
    transport: wrap ? wrap(transport) : transport,
  });
  t.teardown(() => platform.close());
  return { transport, tpm, layout, platform };
}

import type { ExecutionContext } from 'ava';
import type { TpmTransport } from '../../src/hal/types.js';
import { getHandles } from '../../src/tpm/commands/capability.js';
import { provisionAzureVtpmLayout } from '../../src/tpm/provision.js';
import { Tpm } from '../../src/tpm/tpm.js';
import { swtpmSizedHclReport } from './azure-vtpm-fixture.js';
import { FaultTransport } from './fault-transport.js';
import { startSwtpm, type Swtpm } from './swtpm.js';
import { connectSwtpm } from './transport.js';

export interface FaultRig {
  swtpm: Swtpm;
  /** The real connection to swtpm (for handle checks, never faulted). */
  transport: TpmTransport;
  tpm: Tpm;
  faulty: FaultTransport;
  /** Transient objects, loaded sessions (0x02/0x03) and saved contexts now in the TPM. */
  loaded(): Promise<{ transient: number[]; sessions: number[] }>;
}

/** A swtpm laid out like an Azure vTPM (AK, AK certificate, HCL report), behind a fault transport. */
export async function faultRig(t: ExecutionContext, seed = 1): Promise<FaultRig> {
  const swtpm = await startSwtpm();
  t.teardown(swtpm.stop);
  const transport = await connectSwtpm(swtpm);
  t.teardown(() => transport.close());
  const tpm = new Tpm(transport);
  await provisionAzureVtpmLayout(tpm, { hclReport: swtpmSizedHclReport() });
  const faulty = new FaultTransport(transport, () => 'pass', seed);
  return {
    swtpm,
    transport,
    tpm,
    faulty,
    loaded: async () => ({
      transient: await getHandles(tpm, 0x80000000),
      sessions: [...(await getHandles(tpm, 0x02000000)), ...(await getHandles(tpm, 0x03000000))],
    }),
  };
}

export const NOTHING_LOADED = { transient: [], sessions: [] };

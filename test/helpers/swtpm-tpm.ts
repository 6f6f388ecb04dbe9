import type { ExecutionContext } from 'ava';
import type { TpmTransport } from '../../src/hal/types.js';
import { Tpm } from '../../src/tpm/tpm.js';
import { startSwtpm } from './swtpm.js';
import { connectSwtpm } from './transport.js';

/** A fresh swtpm and a Tpm on it; both are torn down with the test. */
export async function freshTpm(t: ExecutionContext): Promise<{ tpm: Tpm; transport: TpmTransport }> {
  const swtpm = await startSwtpm();
  t.teardown(swtpm.stop);
  const transport = await connectSwtpm(swtpm);
  t.teardown(() => transport.close());
  return { tpm: new Tpm(transport), transport };
}

/**
 * An emulated service whose port is taken says which port, and that it is in use (the emulator's own
 * wording; no service artifact applies).
 */
import { once } from 'node:events';
import { createServer } from 'node:net';
import test from 'ava';
import { EmulatorError } from '../../src/emulator/errors.js';
import { startKeyVaultEmulator } from '../../src/emulator/keyvault/index.js';
import { listenError } from '../../src/emulator/listen-error.js';

test('the Key Vault emulator on a port in use names the port and says it is in use', async (t) => {
  const taken = createServer();
  taken.listen(0, '127.0.0.1');
  await once(taken, 'listening');
  t.teardown(() => new Promise<void>((resolve) => taken.close(() => resolve())));
  const port = (taken.address() as { port: number }).port;
  const error = await t.throwsAsync(startKeyVaultEmulator({ port }), { instanceOf: EmulatorError });
  t.is(error!.message, `the Key Vault emulator cannot listen on 127.0.0.1 port ${port}: the port is in use`);
  t.is((error!.cause as NodeJS.ErrnoException).code, 'EADDRINUSE');
});

test('other listen failures name their system code', (t) => {
  const error = listenError('IMDS', '10.0.0.1', Object.assign(new Error('x'), { code: 'EADDRNOTAVAIL', port: 80 }));
  t.is(error.message, 'the IMDS emulator cannot listen on 10.0.0.1 port 80 (EADDRNOTAVAIL)');
});

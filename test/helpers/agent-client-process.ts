/**
 * One client process of the concurrency test: prints "ready", waits for "go" on stdin, then releases every key
 * id of argv through the agent with `new SecureKeyRelease({ agent: { socket } })` and prints one JSON line:
 * per key, its kid and a SHA-256 of the key's bytes (never the key), or the error's code.
 */
import { createHash, createPublicKey } from 'node:crypto';
import { SecureKeyRelease } from '../../src/keyvault/secure-key-release.js';

const [socket, ...keyIds] = process.argv.slice(2);
const skr = new SecureKeyRelease({ agent: { socket: socket! } });
process.stdout.write('ready\n');
await new Promise<void>((resolve) => process.stdin.once('data', () => resolve()));
const results = await Promise.all(
  keyIds.map(async (keyId) => {
    try {
      const released = await skr.releaseKey(keyId);
      const bytes =
        released.key.type === 'secret'
          ? released.key.export()
          : createPublicKey(released.key).export({ format: 'der', type: 'spki' });
      return { kid: released.kid, keyType: released.keyType, sha256: createHash('sha256').update(bytes).digest('hex') };
    } catch (error) {
      return { error: (error as { code?: string }).code ?? String(error) };
    }
  }),
);
await skr.close();
process.stdout.write(`${JSON.stringify(results)}\n`);

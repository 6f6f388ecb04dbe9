/**
 * A Key Vault emulator in its own process, for crash tests: `node --import tsx durable-child.ts <state file>`.
 * Prints one JSON line on stdout ({vaultUrl, tokenUrl, identityHeader, caPem, pid} or {error: {code, ...}})
 * and start-up warnings on stderr; SIGTERM closes it cleanly, SIGKILL is the crash.
 */
import { startKeyVaultEmulator } from '../../src/emulator/keyvault/index.js';

const statePath = process.argv[2]!;
try {
  const emu = await startKeyVaultEmulator({
    statePath,
    tickIntervalMs: 0,
    onStateWarning: (m) => process.stderr.write(`warning: ${m}\n`),
  });
  process.stdout.write(
    `${JSON.stringify({
      vaultUrl: emu.vaultUrl,
      tokenUrl: emu.tokenUrl,
      identityHeader: emu.identityHeader,
      caPem: emu.caPem,
      pid: process.pid,
    })}\n`,
  );
  process.once('SIGTERM', () => {
    void emu.close().then(() => process.exit(0));
  });
} catch (e) {
  const err = e as { code?: string; message?: string; pid?: number; offset?: number; path?: string };
  process.stdout.write(
    `${JSON.stringify({ error: { code: err.code, message: err.message, pid: err.pid, offset: err.offset, path: err.path } })}\n`,
  );
  process.exit(3);
}

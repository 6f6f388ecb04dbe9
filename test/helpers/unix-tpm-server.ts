import { once } from 'node:events';
import { mkdtemp, rm } from 'node:fs/promises';
import net from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import type { ExecutionContext } from 'ava';

// Unix socket servers that stand in for a TPM (swtpm's command channel speaks the same framing: a 10-byte TPM
// header whose bytes 2..5 carry the command size, TPM 2.0 Part 1 section 18). Each is stopped at teardown.

/** A Unix socket server that accepts TPM commands and never answers: a hung TPM. */
export async function startSilentServer(t: ExecutionContext) {
  const dir = await mkdtemp(path.join(tmpdir(), 'cvm-skr-silent-'));
  const socketPath = path.join(dir, 'silent.sock');
  const clients = new Set<net.Socket>();
  const server = net.createServer((c) => {
    clients.add(c);
    c.on('close', () => clients.delete(c));
    c.on('error', () => {});
    c.resume(); // read and drop commands, so the end of the connection is noticed
  });
  server.listen(socketPath);
  await once(server, 'listening');
  t.teardown(async () => {
    for (const c of clients) c.destroy();
    await new Promise<void>((r) => server.close(() => r()));
    await rm(dir, { recursive: true, force: true });
  });
  return { socketPath, clients, server };
}

/** A Unix socket server that answers each command through `answer(socket, command)`. */
export async function startScriptedServer(
  t: ExecutionContext,
  answer: (socket: net.Socket, command: Buffer) => void,
) {
  const dir = await mkdtemp(path.join(tmpdir(), 'cvm-skr-scripted-'));
  const socketPath = path.join(dir, 'tpm.sock');
  const clients = new Set<net.Socket>();
  const server = net.createServer((c) => {
    clients.add(c);
    c.on('close', () => clients.delete(c));
    c.on('error', () => {});
    let buffered = Buffer.alloc(0);
    c.on('data', (d) => {
      buffered = Buffer.concat([buffered, d]);
      while (buffered.length >= 10 && buffered.length >= buffered.readUInt32BE(2)) {
        const size = buffered.readUInt32BE(2);
        answer(c, buffered.subarray(0, size));
        buffered = buffered.subarray(size);
      }
    });
  });
  server.listen(socketPath);
  await once(server, 'listening');
  t.teardown(async () => {
    for (const c of clients) c.destroy();
    await new Promise<void>((r) => server.close(() => r()));
    await rm(dir, { recursive: true, force: true });
  });
  return { socketPath, clients };
}

/** A TPM_RC_SUCCESS response to GetRandom(n): header, TPM2B of n bytes `fill`. */
export function getRandomResponse(n: number, fill = 0xab): Buffer {
  const out = Buffer.alloc(12 + n, fill);
  out.writeUInt16BE(0x8001, 0);
  out.writeUInt32BE(12 + n, 2);
  out.writeUInt32BE(0, 6);
  out.writeUInt16BE(n, 10);
  return out;
}

/**
 * `cvm-skr agent`: the per-machine key agent (src/agent/server.ts). Owns one platform and one
 * `SecureKeyRelease`, serves local processes on a Unix socket (or the one systemd passes: socket activation,
 * sd_listen_fds(3): `LISTEN_PID` is this process and `LISTEN_FDS` ≥ 1, the socket is fd 3), and stops
 * gracefully on SIGTERM/SIGINT: no new requests, those in flight answered, then the platform closed.
 */
import { readFile } from 'node:fs/promises';
import type { Command } from 'commander';
import { InvalidArgumentError } from '../errors.js';
import { progress, readInput } from './io.js';
import { checkPlatformOption, releaseSetup } from './release-setup.js';

interface AgentCliOptions {
  socket?: string;
  mode: string;
  group?: string;
  rules: string;
  http?: string;
  tokenFile?: string;
  maxPending: string;
  shutdownTimeout: string;
  emulator?: boolean;
  endpoint?: string;
  ca?: string;
  tpm?: string;
  platform?: string;
  prewarm?: boolean;
}

/** The first systemd socket (fd 3) when this process was socket-activated, and forgets it for children. */
export function socketActivationFd(env: NodeJS.ProcessEnv = process.env, pid = process.pid): number | undefined {
  if (env.LISTEN_PID !== String(pid) || !(Number(env.LISTEN_FDS) >= 1)) return undefined;
  delete env.LISTEN_PID;
  delete env.LISTEN_FDS;
  delete env.LISTEN_FDNAMES;
  return 3;
}

async function gidOf(group: string): Promise<number> {
  if (/^\d+$/.test(group)) return Number(group);
  const lines = (await readFile('/etc/group', 'utf8').catch(() => '')).split('\n');
  const entry = lines.map((l) => l.split(':')).find((f) => f[0] === group);
  if (!entry || !/^\d+$/.test(entry[2] ?? '')) throw new InvalidArgumentError(`--group ${group}: no such group`);
  return Number(entry[2]);
}

function positive(value: string, flag: string): number {
  const n = Number(value);
  if (!Number.isInteger(n) || n < 1) throw new InvalidArgumentError(`${flag} must be a positive integer, not ${value}`);
  return n;
}

export function registerAgent(program: Command): void {
  program
    .command('agent')
    .description(
      'serve released keys to local processes: one attestation and one release per key for the whole machine',
    )
    .option('--socket <path>', 'Unix socket to listen on (default $CVM_SKR_AGENT_SOCKET or /run/cvm-skr/agent.sock)')
    .option('--mode <octal>', 'mode of the socket file', '660')
    .option('--group <group>', 'group owning the socket file (name or gid)')
    .option('--rules <file>', 'authorization rules (JSON)', '/etc/cvm-skr/agent-rules.json')
    .option('--http <port>', 'also serve on 127.0.0.1:<port> (opt-in; needs --token-file)')
    .option('--token-file <file>', 'bearer token HTTP clients must send (at least 16 characters)')
    .option('--max-pending <n>', 'requests doing work at once; more are refused with ERR_AGENT_BUSY', '256')
    .option('--shutdown-timeout <seconds>', 'longest wait for requests in flight on SIGTERM', '30')
    .option('--emulator', 'use a running `cvm-skr emulator` (its exported environment) and an emulated platform')
    .option('--endpoint <url>', 'attestation provider (default $CVM_SKR_ATTESTATION_URL)')
    .option('--ca <file>', 'PEM CA for the attestation endpoint and the vault (default $CVM_SKR_CA_FILE)')
    .option('--tpm <target>', 'vTPM device, Unix socket or host:port (e.g. a provisioned swtpm)')
    .option('--platform <kind>', 'with --emulator and no --tpm: azure-vtpm (default) or sev-guest')
    .option('--prewarm', 'attest at start, so the first release pays only the release')
    .action(async (options: AgentCliOptions) => {
      // Every setting is checked before a device, socket or network is touched.
      if (!/^[0-7]{3,4}$/.test(options.mode)) throw new InvalidArgumentError(`--mode must be octal, not ${options.mode}`);
      const mode = parseInt(options.mode, 8);
      if (mode & 0o007) throw new InvalidArgumentError('--mode must not give others access to the socket');
      const maxPending = positive(options.maxPending, '--max-pending');
      const shutdownTimeoutMs = positive(options.shutdownTimeout, '--shutdown-timeout') * 1000;
      let http: { port: number; token: string } | undefined;
      if (options.http !== undefined) {
        const port = Number(options.http);
        if (!Number.isInteger(port) || port < 0 || port > 65535)
          throw new InvalidArgumentError(`--http must be a port number, not ${options.http}`);
        if (!options.tokenFile) throw new InvalidArgumentError('--http needs --token-file: loopback HTTP has no peer identity');
        const token = (await readInput(options.tokenFile, '--token-file', 'utf8')).trim();
        if (token.length < 16) throw new InvalidArgumentError('--token-file must hold at least 16 characters');
        http = { port, token };
      }
      checkPlatformOption(options.platform);
      const gid = options.group !== undefined ? await gidOf(options.group) : undefined;
      const { AgentRules } = await import('../agent/rules.js');
      const rules = await AgentRules.load(options.rules);
      const listenFd = socketActivationFd();
      const { DEFAULT_AGENT_SOCKET } = await import('../agent/wire.js');
      const socket = options.socket ?? (process.env.CVM_SKR_AGENT_SOCKET || DEFAULT_AGENT_SOCKET);
      const { checkAgentSocketPath, startAgentServer } = await import('../agent/server.js');
      if (listenFd === undefined) await checkAgentSocketPath(socket);

      const cleanup: (() => Promise<void>)[] = [];
      try {
        const setup = await releaseSetup(options, cleanup);
        const endpoint = setup.attestationEndpoint;
        const { SecureKeyRelease } = await import('../keyvault/secure-key-release.js');
        const skr = new SecureKeyRelease({
          ...setup,
          // The agent itself never delegates to another agent.
          agent: false,
          ...(options.prewarm ? { prewarm: true } : {}),
        });
        cleanup.unshift(() => skr.close());
        const server = await startAgentServer({
          skr,
          attestationEndpoint: endpoint,
          rules,
          ...(listenFd !== undefined ? { listenFd } : { socket }),
          mode,
          ...(gid !== undefined ? { gid } : {}),
          ...(http ? { http } : {}),
          maxPending,
          shutdownTimeoutMs,
        });
        cleanup.unshift(() => server.close());
        // One line on stdout when ready (scripts and tests wait for it); the log goes to stderr.
        process.stdout.write(
          `cvm-skr agent listening on ${server.socket ?? `fd ${listenFd}`}${server.httpPort !== undefined ? ` and http://127.0.0.1:${server.httpPort}` : ''}\n`,
        );
        await new Promise<void>((resolve) => {
          const stop = () => {
            progress('stopping: finishing requests in flight');
            resolve();
          };
          process.once('SIGTERM', stop);
          process.once('SIGINT', stop);
        });
      } finally {
        for (const fn of cleanup) await fn().catch(() => {});
      }
    });
}

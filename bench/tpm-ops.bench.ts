/**
 * HCL report read, ephemeral key create+certify and RSA decrypt on swtpm: ours (AzureVtpmPlatform over the
 * native transport) vs tpm2-pytss (ESAPI, bench/pytss_ops.py) doing the same TPM commands on the same swtpm.
 * Trials alternate between the two so both see the same machine state; swtpm serves one client at a time, so
 * each side connects for its trial and disconnects after.
 */
import { spawn, spawnSync } from 'node:child_process';
import { constants, createPublicKey, publicEncrypt, randomBytes } from 'node:crypto';
import { symlink } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { provisionSwtpmAsAzureVtpm } from '../src/emulator/hardware/provision-swtpm.js';
import { openTpm } from '../src/hal/open-tpm.js';
import { AzureVtpmPlatform } from '../src/hal/platforms/azure-vtpm.js';
import type { TpmTransport } from '../src/hal/types.js';
import { getProperty } from '../src/tpm/commands/capability.js';
import { TPM_PT } from '../src/tpm/constants.js';
import { Tpm } from '../src/tpm/tpm.js';
import { startSwtpm } from '../test/helpers/swtpm.js';
import { median, pairedRatio } from './stats.js';

export type TpmOp = 'hcl' | 'certify' | 'decrypt';

export interface TpmOpResult {
  op: TpmOp;
  iterations: number;
  oursUs: number;
  /** Absent when tpm2-pytss is not installed (see `pytssSkipped`). */
  pytssUs?: number;
  /** ours / pytss, median of the per-trial ratios: below 1 means ours is faster. */
  ratio?: number;
  oursTrialsUs: number[];
  pytssTrialsUs: number[];
}

export interface TpmOpsBench {
  pytss: { python: string; version?: string } | { skipped: string };
  tcti?: string;
  results: TpmOpResult[];
}

const SCRIPT = fileURLToPath(new URL('./pytss_ops.py', import.meta.url));
const ITERATIONS: Record<TpmOp, number> = { hcl: 100, certify: 5, decrypt: 30 };

/** The first python with tpm2_pytss importable (Debian installs it for /usr/bin/python3). Never installs. */
export function findPytss(): { python: string; version?: string } | { skipped: string } {
  for (const python of ['python3', '/usr/bin/python3']) {
    const probe = spawnSync(
      python,
      ['-c', 'import tpm2_pytss, importlib.metadata as m; print(m.version("tpm2-pytss"))'],
      { encoding: 'utf8' },
    );
    if (probe.status === 0) return { python, version: probe.stdout.trim() };
  }
  return {
    skipped:
      'tpm2-pytss is not installed (Debian: apt-get install python3-tpm2-pytss); the peer rows are skipped',
  };
}

function runPytss(
  python: string,
  tcti: string,
  op: TpmOp,
  iterations: number,
  chunk: number,
): Promise<number> {
  return new Promise((resolve, reject) => {
    const child = spawn(
      python,
      [SCRIPT, '--tcti', tcti, '--op', op, '--iterations', String(iterations), '--chunk', String(chunk)],
      { stdio: ['ignore', 'pipe', 'pipe'] },
    );
    let out = '';
    let err = '';
    child.stdout.on('data', (d) => {
      out += d;
    });
    child.stderr.on('data', (d) => {
      err += d;
    });
    child.once('error', reject);
    child.once('close', (code) => {
      try {
        const parsed = JSON.parse(out.trim().split('\n').pop() ?? '') as { usPerOp?: number; error?: string };
        if (code === 0 && typeof parsed.usPerOp === 'number') return resolve(parsed.usPerOp);
        reject(new Error(`pytss ${op} exited ${code}: ${parsed.error ?? err.slice(-400)}`));
      } catch {
        reject(new Error(`pytss ${op} exited ${code}: ${err.slice(-400)}`));
      }
    });
  });
}

async function oursTrial(socketPath: string, op: TpmOp, iterations: number): Promise<number> {
  const transport = await openTpm({ path: socketPath });
  try {
    const platform = await AzureVtpmPlatform.open({ transport });
    let run: () => Promise<unknown>;
    if (op === 'hcl') {
      run = () => platform.readHclReport();
    } else if (op === 'certify') {
      // A new platform per operation: PCR_Read, CreatePrimary, Certify, FlushContext, as the peer does.
      run = async () => {
        const p = await AzureVtpmPlatform.open({ transport });
        try {
          await p.certifyTransferKey();
        } finally {
          await p.close();
        }
      };
    } else {
      const key = await platform.transferKey();
      const secret = randomBytes(32);
      const ct = publicEncrypt(
        {
          key: createPublicKey({ key: key.jwk, format: 'jwk' }),
          padding: constants.RSA_PKCS1_OAEP_PADDING,
          oaepHash: 'sha256',
        },
        secret,
      );
      run = async () => {
        const plain = await platform.decrypt(ct, 'oaep-sha256');
        if (!plain.equals(secret)) throw new Error('decrypt returned the wrong plaintext');
      };
    }
    try {
      for (let i = 0; i < 2; i++) await run();
      const start = process.hrtime.bigint();
      for (let i = 0; i < iterations; i++) await run();
      return Number(process.hrtime.bigint() - start) / iterations / 1000;
    } finally {
      await platform.close();
    }
  } finally {
    await transport.close();
  }
}

async function nvBufferMax(socketPath: string): Promise<number> {
  const transport: TpmTransport = await openTpm({ path: socketPath });
  try {
    return await getProperty(new Tpm(transport), TPM_PT.NV_BUFFER_MAX);
  } finally {
    await transport.close();
  }
}

export async function benchTpmOps(
  trials = 5,
  ops: readonly TpmOp[] = ['hcl', 'certify', 'decrypt'],
): Promise<TpmOpsBench> {
  const pytss = findPytss();
  const swtpm = await startSwtpm();
  try {
    const setup = await openTpm({ path: swtpm.socketPath });
    try {
      await provisionSwtpmAsAzureVtpm(setup, { cache: false, rootKeyBits: 2048 });
    } finally {
      await setup.close();
    }
    const chunk = await nvBufferMax(swtpm.socketPath);
    // tpm2-tss's swtpm TCTI finds the control channel at `<path>.ctrl`; startSwtpm names it ctrl.sock.
    await symlink(path.join(swtpm.dir, 'ctrl.sock'), `${swtpm.socketPath}.ctrl`);
    const tcti = `swtpm:path=${swtpm.socketPath}`;
    const results: TpmOpResult[] = [];
    for (const op of ops) {
      const iterations = ITERATIONS[op];
      const ours: number[] = [];
      const peer: number[] = [];
      for (let trial = 0; trial < trials; trial++) {
        // Alternate which side goes first, so neither always runs on a warmer machine.
        const peerTrial = async () => {
          if ('python' in pytss) peer.push(await runPytss(pytss.python, tcti, op, iterations, chunk));
        };
        if (trial % 2 === 1) await peerTrial();
        ours.push(await oursTrial(swtpm.socketPath, op, iterations));
        if (trial % 2 === 0) await peerTrial();
      }
      const oursUs = median(ours);
      const result: TpmOpResult = { op, iterations, oursUs, oursTrialsUs: ours, pytssTrialsUs: peer };
      if (peer.length > 0) {
        result.pytssUs = median(peer);
        result.ratio = pairedRatio(ours, peer);
      }
      results.push(result);
    }
    return { pytss, tcti, results };
  } finally {
    await swtpm.stop();
  }
}

if (import.meta.url === `file://${process.argv[1]}`) {
  console.log(JSON.stringify(await benchTpmOps(Number(process.env.TRIALS ?? 3)), null, 2));
}

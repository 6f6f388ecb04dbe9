/**
 * Runs `cvm-skr agent --emulator` as its own process against an in-test emulator, as an operator would run it
 * on a VM (the emulated platform stands in for the vTPM). Every process, socket and folder is removed in
 * teardown, also when the test fails.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import type { ExecutionContext } from 'ava';
import type { Emulator } from '../../src/emulator/start.js';
import type { AgentRule } from '../../src/agent/rules.js';

export interface RunningAgent {
  child: ChildProcess;
  /** stderr so far (the agent's JSON log lines). */
  log(): string;
  /** Resolves with the exit code once the process ended. */
  exited: Promise<number | null>;
}

export interface AgentFixture {
  dir: string;
  socket: string;
  env: Record<string, string>;
  start(extra?: string[]): Promise<RunningAgent>;
}

export async function agentFixture(
  t: ExecutionContext,
  e: Emulator,
  rules: AgentRule[],
  /** Replaces entries of the emulator's environment, e.g. the attestation URL of a proxy in front of it. */
  environment: Record<string, string> = {},
): Promise<AgentFixture> {
  const dir = await mkdtemp(path.join(tmpdir(), 'cvm-skr-agent-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  const caFile = path.join(dir, 'ca.pem');
  await writeFile(caFile, e.caPem);
  const rulesFile = path.join(dir, 'rules.json');
  await writeFile(rulesFile, JSON.stringify({ rules }));
  const socket = path.join(dir, 'agent.sock');
  const env = { ...e.environment(), CVM_SKR_CA_FILE: caFile, ...environment };
  const start = async (extra: string[] = []): Promise<RunningAgent> => {
    const child = spawn(
      process.execPath,
      ['--import', 'tsx', 'src/cli/main.ts', 'agent', '--emulator', '--socket', socket, '--rules', rulesFile, ...extra],
      { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] },
    );
    const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
    t.teardown(async () => {
      if (child.exitCode === null && child.signalCode === null) {
        child.kill('SIGKILL');
        await exited;
      }
    });
    let stderr = '';
    child.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
    await new Promise<void>((resolve, reject) => {
      let stdout = '';
      child.stdout!.on('data', (d: Buffer) => {
        stdout += d.toString();
        if (stdout.includes('cvm-skr agent listening on')) resolve();
      });
      void exited.then((code) => reject(new Error(`the agent exited with ${code} before listening: ${stderr}`)));
    });
    return { child, log: () => stderr, exited };
  };
  return { dir, socket, env, start };
}

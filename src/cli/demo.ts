import { randomBytes, sign, verify, createPublicKey } from 'node:crypto';
import type { Command } from 'commander';
import { CvmSkrError, ReleaseDeniedError } from '../errors.js';
import type { AttestationPlatform } from '../hal/types.js';
import { noteKeyGeneration } from './emulator.js';

export interface DemoStep {
  name: string;
  ok: boolean;
  skipped?: boolean;
  ms: number;
  detail: string;
}

export interface DemoSummary {
  ok: boolean;
  vaultUrl: string;
  attestationUrl: string;
  steps: DemoStep[];
}

interface DemoOptions {
  json?: boolean;
  cache?: boolean;
  swtpm?: boolean;
}

/**
 * The whole flow on the embedded emulator, step by step with timings: emulated MAA and Key Vault, an
 * exportable key with a release policy, attestation, release, use of the key, the same through a real TPM
 * (swtpm) when installed, and a machine that fails the policy.
 */
export async function runDemo(
  options: DemoOptions = {},
  report: (step: DemoStep) => void = () => {},
): Promise<DemoSummary> {
  const { startEmulator } = await import('../emulator/start.js');
  const { EMULATED_MEASUREMENT } = await import('../emulator/hardware/amd.js');
  const { SecureKeyRelease } = await import('../keyvault/secure-key-release.js');
  const { AttestationClient } = await import('../maa/client.js');
  const steps: DemoStep[] = [];
  const cleanup: (() => Promise<unknown>)[] = [];
  const step = async (name: string, run: () => Promise<string | { skipped: string }>): Promise<boolean> => {
    const started = performance.now();
    let result: DemoStep;
    try {
      const detail = await run();
      const ms = Math.round(performance.now() - started);
      result =
        typeof detail === 'string'
          ? { name, ok: true, ms, detail }
          : { name, ok: true, skipped: true, ms, detail: detail.skipped };
    } catch (error) {
      const ms = Math.round(performance.now() - started);
      const message = error instanceof CvmSkrError ? `${error.message} [${error.code}]` : String(error);
      result = { name, ok: false, ms, detail: message };
    }
    steps.push(result);
    report(result);
    return result.ok;
  };

  try {
    let e!: Awaited<ReturnType<typeof startEmulator>>;
    await step('start the emulated attestation service and Key Vault (HTTPS on loopback)', async () => {
      e = await startEmulator(options.cache === false ? { cache: false, rootKeyBits: 2048 } : {});
      cleanup.push(() => e.close());
      return `vault ${e.vaultUrl}, attestation ${e.attestationUrl}`;
    });
    if (!e) return { ok: false, vaultUrl: '', attestationUrl: '', steps };

    const policy = e.releasePolicy();
    policy.anyOf[0]!.allOf.push({
      claim: 'x-ms-isolation-tee.x-ms-sevsnpvm-launchmeasurement',
      equals: EMULATED_MEASUREMENT.toString('hex'),
    });
    const client = e.keyClient();
    await step(
      'create an exportable RSA-HSM key with a release policy (attested SNP guest, no debug, this image)',
      async () => {
        const key = await client.createKey('demo-key', 'RSA-HSM', {
          keySize: 2048,
          exportable: true,
          releasePolicy: { encodedPolicy: new Uint8Array(Buffer.from(JSON.stringify(policy))) },
        });
        return key.id ?? 'created';
      },
    );

    const settings = {
      attestationEndpoint: e.attestationUrl,
      attestationCa: e.caPem,
      credential: e.credential,
      releaseSigningRoots: [e.caPem],
      vaultOptions: { disableChallengeResourceVerification: true, tlsOptions: { ca: e.caPem } },
    };
    const keyId = `${e.vaultUrl}/keys/demo-key`;
    const vaultKey = await client.getKey('demo-key');
    const publicKey = createPublicKey({
      key: {
        kty: 'RSA',
        n: Buffer.from(vaultKey.key!.n!).toString('base64url'),
        e: Buffer.from(vaultKey.key!.e!).toString('base64url'),
      },
      format: 'jwk',
    });
    const useKey = (released: Awaited<ReturnType<InstanceType<typeof SecureKeyRelease>['releaseKey']>>) => {
      const message = randomBytes(32);
      const signature = sign('sha256', message, released.key);
      if (!verify('sha256', message, publicKey, signature))
        throw new CvmSkrError('the released key does not match the vault key');
      return `signed with the released key, verified with the vault's public key (${released.kid})`;
    };

    const platform = await e.platform('emulated-azure-vtpm');
    cleanup.push(() => platform.close());
    await step(
      'attest an emulated Azure confidential VM (vTPM, SEV-SNP) with the attestation service',
      async () => {
        const attestation = await new AttestationClient({ endpoint: e.attestationUrl, ca: e.caPem }).attest(
          platform,
        );
        const tee = attestation.claims['x-ms-isolation-tee'] as Record<string, unknown>;
        return `${attestation.claims['x-ms-attestation-type']} / ${tee['x-ms-attestation-type']}, ${tee['x-ms-compliance-status']}, token valid until ${attestation.expiresAt.toISOString()}`;
      },
    );

    const skr = new SecureKeyRelease({ ...settings, platform });
    cleanup.push(() => skr.close());
    let released: Awaited<ReturnType<typeof skr.releaseKey>> | undefined;
    await step('release the key to that machine (attest, release, unwrap inside the platform)', async () => {
      released = await skr.releaseKey(keyId);
      return `${released.keyType} ${released.kid}`;
    });
    await step('use the released key', async () => {
      if (!released) throw new CvmSkrError('no key was released');
      return useKey(released);
    });
    await step('release again: served from cache (no attestation, no Key Vault call)', async () => {
      const before = e.attestation.counters.attestations;
      const again = await skr.releaseKey(keyId);
      if (again !== released || e.attestation.counters.attestations !== before)
        throw new CvmSkrError('cache missed');
      return 'same key, 0 requests';
    });

    await step(
      'the same through a real TPM 2.0 (swtpm provisioned as an Azure vTPM, native transport)',
      async () => {
        const { haveSwtpm, startSwtpm } = await import('../emulator/hardware/swtpm-process.js');
        if (options.swtpm === false || !haveSwtpm)
          return { skipped: 'skipped: swtpm is not installed (apt-get install swtpm)' };
        const { openTpm } = await import('../hal/open-tpm.js');
        const { provisionSwtpmAsAzureVtpm } = await import('../emulator/hardware/provision-swtpm.js');
        const { AzureVtpmPlatform } = await import('../hal/platforms/azure-vtpm.js');
        const swtpm = await startSwtpm();
        cleanup.push(() => swtpm.stop());
        const transport = await openTpm({ path: swtpm.socketPath });
        cleanup.push(() => transport.close());
        await provisionSwtpmAsAzureVtpm(transport, { amd: e.amd, akCa: e.akCa });
        // The VCEK chain comes from the emulated IMDS (THIM), as on Azure from the real one.
        const vtpm = await AzureVtpmPlatform.open({ transport, imdsUrl: e.imdsUrl });
        cleanup.push(() => vtpm.close());
        const tpmSkr = new SecureKeyRelease({ ...settings, platform: vtpm });
        cleanup.push(() => tpmSkr.close());
        const fromTpm = await tpmSkr.releaseKey(keyId);
        return `released and unwrapped with RSA-OAEP inside the TPM; ${useKey(fromTpm)}`;
      },
    );

    await step(
      'release through a key agent (cvm-skr agent) on a Unix socket: two clients, one attestation and one release',
      async () => {
        const { tryLoadAddon } = await import('../hal/addon.js');
        if (tryLoadAddon() instanceof Error || typeof process.getuid !== 'function')
          return { skipped: 'the agent authorizes callers by SO_PEERCRED, which needs the native addon on Linux' };
        const { mkdtemp, rm } = await import('node:fs/promises');
        const { tmpdir } = await import('node:os');
        const path = await import('node:path');
        const { AgentRules } = await import('../agent/rules.js');
        const { startAgentServer } = await import('../agent/server.js');
        const dir = await mkdtemp(path.join(tmpdir(), 'cvm-skr-demo-agent-'));
        cleanup.push(() => rm(dir, { recursive: true, force: true }));
        const agentPlatform = await e.platform('emulated-azure-vtpm');
        cleanup.push(() => agentPlatform.close());
        const agentSkr = new SecureKeyRelease({ ...settings, platform: agentPlatform, agent: false });
        const decisions: string[] = [];
        const server = await startAgentServer({
          skr: agentSkr,
          attestationEndpoint: e.attestationUrl,
          rules: new AgentRules([{ uid: process.getuid(), keys: [`${e.vaultUrl}/keys/demo-*`] }]),
          socket: path.join(dir, 'agent.sock'),
          mode: 0o600,
          log: (entry) => {
            if (entry.event === 'decision') decisions.push(`${String(entry.caller)}: ${entry.allowed ? 'allowed' : 'refused'}`);
          },
        });
        cleanup.push(() => server.close());
        const attestations = e.attestation.counters.attestations;
        const released = e.vault.releaseDecisions().length;
        const clients = [1, 2].map(() => new SecureKeyRelease({ agent: { socket: server.socket! } }));
        cleanup.push(async () => void (await Promise.all(clients.map((c) => c.close()))));
        const keys = await Promise.all(clients.map((c) => c.releaseKey(keyId)));
        useKey(keys[0]!);
        const attested = e.attestation.counters.attestations - attestations;
        const releases = e.vault.releaseDecisions().length - released;
        if (attested !== 1 || releases !== 1)
          throw new CvmSkrError(`expected 1 attestation and 1 release, saw ${attested} and ${releases}`);
        return `2 clients got ${keys[0]!.kid} as KeyObjects; ${attested} attestation, ${releases} release; rules: ${decisions.join(', ')}`;
      },
    );

    await step(
      'a machine running another image asks for the key: refused, with the failing clause',
      async () => {
        const other: AttestationPlatform = await e.platform('emulated-azure-vtpm', {
          knobs: { measurement: Buffer.alloc(48, 0x5a) },
        });
        cleanup.push(() => other.close());
        const otherSkr = new SecureKeyRelease({ ...settings, platform: other });
        cleanup.push(() => otherSkr.close());
        try {
          await otherSkr.releaseKey(keyId);
        } catch (error) {
          if (error instanceof ReleaseDeniedError)
            return `refused as expected: ${error.message} [${error.code}]`;
          throw error;
        }
        throw new CvmSkrError('the key was released to a machine that does not meet the policy');
      },
    );
    return { ok: steps.every((s) => s.ok), vaultUrl: e.vaultUrl, attestationUrl: e.attestationUrl, steps };
  } finally {
    for (const fn of cleanup.reverse()) await fn().catch(() => {});
  }
}

export function registerDemo(program: Command): void {
  program
    .command('demo')
    .description('show the whole key release flow on the embedded emulator (no hardware, no network)')
    .option('--json', 'print a machine-readable summary')
    .option(
      '--no-cache',
      'fresh emulator-only 2048-bit AMD roots in memory instead of the per-user key cache',
    )
    .option('--no-swtpm', 'skip the step through a real TPM 2.0 (swtpm)')
    .action(async (options: DemoOptions) => {
      await noteKeyGeneration(undefined, options.cache !== false);
      if (!options.json) {
        process.stdout.write(
          'cvm-skr demo: Secure Key Release on the embedded emulator (no hardware, no network)\n\n',
        );
      }
      let n = 0;
      const summary = await runDemo(options, (s) => {
        if (options.json) return;
        n++;
        const mark = s.skipped ? 'SKIP' : s.ok ? ' OK ' : 'FAIL';
        process.stdout.write(
          `${String(n).padStart(2)}. [${mark}] ${s.name} (${s.ms} ms)\n       ${s.detail}\n`,
        );
      });
      if (options.json) process.stdout.write(`${JSON.stringify(summary, null, 2)}\n`);
      else process.stdout.write(`\n${summary.ok ? 'demo complete' : 'demo FAILED'}\n`);
      if (!summary.ok) process.exitCode = 1;
    });
}

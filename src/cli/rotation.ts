/**
 * `cvm-skr rotation ...`: offline planning and validation of rotation policies, and the vault-backed
 * get / set / rotate / audit commands (KeyClient + DefaultAzureCredential; `--emulator` for a running
 * `cvm-skr emulator`), mirroring
 * `az keyvault key rotation-policy show|update --value policy.json` and `az keyvault key rotate`.
 */
import { parseTimeout } from './io.js';
import { open, readFile, stat } from 'node:fs/promises';
import type { Command } from 'commander';
import {
  CvmSkrError,
  InvalidArgumentError,
  RotationPolicyFormatError,
  RotationPolicyInvalidError,
  RotationRequestError,
} from '../errors.js';
import { auditRotation, type RotationAuditReport } from '../rotation/audit.js';
import { type EnvelopeHeader, MAX_ENVELOPE_HEADER_BYTES, parseEnvelopeHeader } from '../rotation/envelope.js';
import { planRotation, type RotationPlan } from '../rotation/plan.js';
import {
  fromSdk,
  parseRotationPolicy,
  type RotationPolicy,
  toSdk,
  toServiceJson,
} from '../rotation/policy.js';
import {
  type RotationPolicyViolation,
  rotationPolicyErrors,
  rotationPolicyWarnings,
  validateRotationPolicy,
} from '../rotation/validate.js';
import { whyUnreadable } from '../util/read-error.js';
import { EXIT } from './exit.js';

/** A policy file is a few hundred bytes; refuse anything that cannot be one before reading it. */
const MAX_POLICY_FILE_BYTES = 1 << 20;

const ISO_INSTANT = /^\d{4}-\d{2}-\d{2}(?:T\d{2}:\d{2}(?::\d{2}(?:\.\d{1,9})?)?(?:Z|[+-]\d{2}:\d{2}))?$/;

/** Dates must be unambiguous: date only (UTC midnight) or a date-time with `Z` or an offset. */
export function parseInstant(text: string, option: string): Date {
  const date = ISO_INSTANT.test(text) ? new Date(text) : undefined;
  if (date === undefined || Number.isNaN(date.getTime())) {
    throw new InvalidArgumentError(
      `${option} must be an ISO-8601 date (2025-01-31) or date-time with a zone (2025-01-31T08:00:00Z), got ${JSON.stringify(text)}`,
    );
  }
  return date;
}

export async function readPolicyFile(path: string): Promise<RotationPolicy> {
  let text: string;
  try {
    const info = await stat(path);
    if (!info.isFile()) throw new InvalidArgumentError(`--policy ${path} is not a file`);
    if (info.size > MAX_POLICY_FILE_BYTES) {
      throw new InvalidArgumentError(`--policy ${path} is larger than ${MAX_POLICY_FILE_BYTES} bytes`);
    }
    text = await readFile(path, 'utf8');
  } catch (error) {
    if (error instanceof InvalidArgumentError) throw error;
    throw new InvalidArgumentError(`cannot read --policy ${path}: check the path and permissions`, {
      cause: error,
    });
  }
  let json: unknown;
  try {
    json = JSON.parse(text.replace(/^\uFEFF/, ''));
  } catch (error) {
    throw new RotationPolicyFormatError(`${path} is not valid JSON: ${(error as Error).message}`, 'policy', {
      cause: error,
    });
  }
  return parseRotationPolicy(json);
}

function formatViolations(violations: readonly RotationPolicyViolation[]): string {
  return violations.map((v) => `  ${v.field}: ${v.message} [${v.code}]`).join('\n');
}

export interface PlanCommandInput {
  policy: RotationPolicy;
  createdOn: Date;
  expiresOn?: Date;
  now: Date;
}

/** The text `rotation plan` prints; separate from the command so it can be tested without a process. */
export function formatPlan(plan: RotationPlan): string {
  const lines: string[] = [];
  const when = (at: Date, due: boolean) => `${at.toISOString()}${due ? '  (due: at or before now)' : ''}`;
  if (plan.rotation) {
    lines.push(`next rotation:        ${when(plan.rotation.at, plan.rotation.due)}`);
    lines.push(`  trigger:            ${plan.rotation.trigger} ${plan.rotation.duration}`);
  } else {
    lines.push(`next rotation:        none (${plan.rotationReason})`);
  }
  if (plan.newVersionExpiresOn) {
    lines.push(`new version expires:  ${plan.newVersionExpiresOn.toISOString()}`);
  } else {
    lines.push(`new version expires:  never (${plan.newVersionExpiresReason})`);
  }
  if (plan.notification) {
    lines.push(`next notification:    ${when(plan.notification.at, plan.notification.due)}`);
    lines.push(
      `  about:              ${plan.notification.version === 'current' ? 'the current version' : 'a version that rotation creates'}, ${plan.notification.duration} before its expiry`,
    );
  } else {
    lines.push(`next notification:    none (${plan.notificationReason})`);
  }
  if (plan.expired) lines.push('warning: the current version has already expired');
  else if (plan.expiresBeforeRotation)
    lines.push('warning: the current version expires before it is rotated');
  return `${lines.join('\n')}\n`;
}

/** A plan as JSON, with the findings split as `rotation validate --json` splits them. */
export function planToJson(plan: RotationPlan, findings: readonly RotationPolicyViolation[]): unknown {
  return { ...plan, violations: rotationPolicyErrors(findings), warnings: rotationPolicyWarnings(findings) };
}

/** How the vault commands reach a vault: a real one (defaults) or a running `cvm-skr emulator`. */
export interface VaultConnectionOptions {
  /** Use a running `cvm-skr emulator` through the environment it prints. */
  emulator?: boolean;
  /** PEM file of a CA to trust in addition to the system roots (default `$CVM_SKR_CA_FILE` with `--emulator`). */
  ca?: string;
  /** Accept a challenge whose resource does not match the vault host (private endpoints, proxies). */
  disableChallengeResourceVerification?: boolean;
  /** `--timeout <seconds>`: bound of each HTTP request to the vault (and its token), retries apart. */
  timeout?: string;
}

/**
 * `myvault` -> `https://myvault.vault.azure.net`; a full URL stays (its origin). Plain http, and the word
 * `emulator` for `$CVM_SKR_VAULT_URL`, only with `--emulator`.
 */
export function vaultUrl(vault: string, options: Pick<VaultConnectionOptions, 'emulator'> = {}): string {
  if (options.emulator && vault === 'emulator') {
    const url = process.env.CVM_SKR_VAULT_URL;
    if (!url) {
      throw new InvalidArgumentError(
        'the vault "emulator" is $CVM_SKR_VAULT_URL, which is not set: export the variables "cvm-skr emulator" prints',
      );
    }
    return vaultUrl(url, options);
  }
  if (/^[a-z][a-z0-9+.-]*:\/\//i.test(vault)) {
    let url: URL;
    try {
      url = new URL(vault);
    } catch {
      throw new InvalidArgumentError(`vault URL ${vault} does not parse`);
    }
    if (url.pathname.replace(/\/+$/, '') !== '' || url.search || url.hash || url.username) {
      throw new InvalidArgumentError(
        `vault URL ${vault} must be just the vault, like https://<name>.vault.azure.net`,
      );
    }
    if (url.protocol === 'http:' && !options.emulator) {
      throw new InvalidArgumentError(
        `vault URL ${vault} is plain http: real vaults are https (http only with --emulator)`,
      );
    }
    if (url.protocol !== 'https:' && url.protocol !== 'http:') {
      throw new InvalidArgumentError(`vault URL ${vault} must be https`);
    }
    return url.origin;
  }
  if (/^[a-zA-Z][a-zA-Z0-9-]{1,22}[a-zA-Z0-9]$/.test(vault)) return `https://${vault}.vault.azure.net`;
  throw new InvalidArgumentError(
    `vault must be a vault name or URL (https://<name>.vault.azure.net), got ${vault}`,
  );
}

/** Turns the SDK's RestError into our error, keeping the service's own message. */
function serviceError(what: string, error: unknown): RotationRequestError {
  const e = error as { statusCode?: unknown; code?: unknown; message?: unknown };
  const statusCode = typeof e?.statusCode === 'number' ? e.statusCode : undefined;
  const serviceCode = typeof e?.code === 'string' ? e.code : undefined;
  const message = typeof e?.message === 'string' ? e.message : String(error);
  const head = [statusCode, serviceCode].filter((p) => p !== undefined).join(' ');
  return new RotationRequestError(
    `${what} failed${head ? ` (${head})` : ''}: ${message}`,
    {
      ...(statusCode === undefined ? {} : { statusCode }),
      ...(serviceCode === undefined ? {} : { serviceCode }),
    },
    { cause: error },
  );
}

async function readCa(path: string, option: string): Promise<string> {
  try {
    const info = await stat(path);
    if (!info.isFile() || info.size > MAX_POLICY_FILE_BYTES) throw new Error('not a small file');
    const pem = await readFile(path, 'utf8');
    if (!pem.includes('-----BEGIN CERTIFICATE-----')) throw new Error('no PEM certificate');
    return pem;
  } catch (error) {
    throw new InvalidArgumentError(`${option} ${path} is not a readable PEM certificate file`, {
      cause: error,
    });
  }
}

export async function keyClientFor(vault: string, options: VaultConnectionOptions = {}) {
  const url = vaultUrl(vault, options);
  const timeoutMs = parseTimeout(options.timeout) ?? 30_000;
  const [{ KeyClient }, identity, { rootCertificates }] = await Promise.all([
    import('@azure/keyvault-keys'),
    import('@azure/identity'),
    import('node:tls'),
  ]);
  const caFile = options.ca ?? (options.emulator ? process.env.CVM_SKR_CA_FILE : undefined);
  if (options.emulator) {
    const missing = ['IDENTITY_ENDPOINT', 'IDENTITY_HEADER'].filter((name) => !process.env[name]);
    if (!caFile && url.startsWith('https:')) missing.push('CVM_SKR_CA_FILE (or --ca)');
    if (missing.length > 0) {
      throw new InvalidArgumentError(
        `--emulator talks to a running "cvm-skr emulator": export the variables it prints (missing ${missing.join(', ')})`,
      );
    }
  }
  const ca = caFile === undefined ? undefined : await readCa(caFile, options.ca ? '--ca' : 'CVM_SKR_CA_FILE');
  // The emulator's managed identity endpoint is the App Service kind that ManagedIdentityCredential reads from
  // IDENTITY_ENDPOINT/IDENTITY_HEADER; a real vault gets the usual credential chain.
  const credential = options.emulator
    ? new identity.ManagedIdentityCredential()
    : new identity.DefaultAzureCredential();
  return new KeyClient(url, credential, {
    // The SDK sets no request timeout: a vault that accepts and never answers would hang the command.
    additionalPolicies: [
      {
        position: 'perRetry',
        policy: {
          name: 'cvmSkrCliTimeout',
          sendRequest: (request, next) => {
            request.timeout ||= timeoutMs;
            return next(request);
          },
        },
      },
    ],
    ...(ca ? { tlsOptions: { ca: [...rootCertificates, ca] } } : {}),
    ...(options.emulator && url.startsWith('http:') ? { allowInsecureConnection: true } : {}),
    ...(options.emulator || options.disableChallengeResourceVerification
      ? { disableChallengeResourceVerification: true }
      : {}),
  });
}

/** The connection options every vault command takes. */
function withVaultOptions(command: Command): Command {
  return command
    .option(
      '--emulator',
      'use a running "cvm-skr emulator" (the environment it prints; vault "emulator" = $CVM_SKR_VAULT_URL)',
    )
    .option(
      '--ca <file>',
      'PEM CA to trust besides the system roots (default $CVM_SKR_CA_FILE with --emulator)',
    )
    .option(
      '--disable-challenge-resource-verification',
      'accept an auth challenge for another resource than the vault host (private endpoints, proxies)',
    )
    .option('--timeout <seconds>', 'give up on each request to the vault after this long (default 30)');
}

function print(value: unknown): void {
  process.stdout.write(`${JSON.stringify(value, null, 2)}\n`);
}

export function formatAudit(report: RotationAuditReport): string {
  const lines = report.keys.map((k) => {
    const flag = k.expiresWithoutRotation ? '  [expires without rotating]' : '';
    return `${k.status.padEnd(13)} ${k.name}: ${k.message}${flag}`;
  });
  const s = report.summary;
  lines.push(
    '',
    `${s.total} keys, max ${report.maximumDaysToRotate} days: ${s.compliant} compliant, ${s.nonCompliant} non-compliant, ${s.skipped} skipped, ${s.errors} errors; ${s.expiringWithoutRotation} will expire without rotating`,
  );
  return `${lines.join('\n')}\n`;
}

export function registerRotation(program: Command): void {
  const rotation = program
    .command('rotation')
    .description('plan, validate, apply and audit Key Vault key rotation policies');

  withVaultOptions(rotation.command('plan'))
    .description(
      'when the service will rotate a key, notify about it, and expire the new version: offline from --policy and --created, or for a key in a vault (--policy then overrides its policy: "what if I set this")',
    )
    .argument('[vault]', 'vault name or URL (with <key>): read the policy and dates from the vault')
    .argument('[key]', 'key name')
    .option('--policy <file>', 'rotation policy JSON (service/CLI shape, az output, or SDK shape)')
    .option('--created <iso>', "creation time of the key's current version")
    .option('--expires <iso>', "expiry of the key's current version")
    .option('--now <iso>', 'plan as of this instant (default: now)')
    .option('--json', 'print a machine-readable plan')
    .action(
      async (
        vault: string | undefined,
        key: string | undefined,
        options: {
          policy?: string;
          created?: string;
          expires?: string;
          now?: string;
          json?: boolean;
        } & VaultConnectionOptions,
      ) => {
        if ((vault === undefined) !== (key === undefined)) {
          throw new InvalidArgumentError('give both <vault> and <key>, or neither');
        }
        const now = options.now === undefined ? new Date() : parseInstant(options.now, '--now');
        let policy = options.policy === undefined ? undefined : await readPolicyFile(options.policy);
        let createdOn: Date;
        let expiresOn: Date | undefined;
        if (vault !== undefined && key !== undefined) {
          if (options.created !== undefined || options.expires !== undefined) {
            throw new InvalidArgumentError(
              '--created and --expires come from the vault when <vault> <key> are given',
            );
          }
          const client = await keyClientFor(vault, options);
          try {
            const properties = (await client.getKey(key)).properties;
            if (properties.createdOn === undefined) {
              throw new RotationRequestError(`the vault did not report when ${key} was created`, {});
            }
            createdOn = properties.createdOn;
            expiresOn = properties.expiresOn;
            if (policy === undefined) {
              const stored = await client.getKeyRotationPolicy(key);
              // Without timestamps the service is showing its default, not a policy someone set.
              policy =
                stored.createdOn === undefined && stored.updatedOn === undefined
                  ? undefined
                  : fromSdk(stored);
            }
          } catch (error) {
            if (error instanceof CvmSkrError) throw error;
            throw serviceError(`reading ${key} and its rotation policy`, error);
          }
        } else {
          if (options.policy === undefined || options.created === undefined) {
            throw new InvalidArgumentError('offline planning needs --policy <file> and --created <iso>');
          }
          createdOn = parseInstant(options.created, '--created');
          expiresOn = options.expires === undefined ? undefined : parseInstant(options.expires, '--expires');
        }
        const violations =
          policy === undefined ? [] : validateRotationPolicy(policy, { keyExpiresOn: expiresOn ?? null });
        const plan = planRotation(policy, { createdOn, expiresOn }, { now });
        const refused = rotationPolicyErrors(violations);
        // A plan of a policy the service would refuse is a negative verdict, as in `rotation validate`.
        if (refused.length > 0) process.exitCode = 1;
        if (options.json) {
          print(planToJson(plan, violations));
          return;
        }
        if (refused.length > 0) {
          process.stderr.write(
            `warning: the service would refuse this policy:\n${formatViolations(refused)}\n`,
          );
        }
        const inert = rotationPolicyWarnings(violations);
        if (inert.length > 0) process.stderr.write(`warning:\n${formatViolations(inert)}\n`);
        process.stdout.write(formatPlan(plan));
      },
    );

  rotation
    .command('validate')
    .description("check a rotation policy against the service's rules, listing every violation (offline)")
    .requiredOption('--policy <file>', 'rotation policy JSON')
    .option('--key-expires <iso>', 'the key has this expiry date')
    .option('--key-no-expiry', 'the key has no expiry date')
    .option('--json', 'print the violations as JSON')
    .action(
      async (options: { policy: string; keyExpires?: string; keyNoExpiry?: boolean; json?: boolean }) => {
        const policy = await readPolicyFile(options.policy);
        if (options.keyExpires !== undefined && options.keyNoExpiry) {
          throw new InvalidArgumentError('use either --key-expires or --key-no-expiry, not both');
        }
        const keyExpiresOn = options.keyNoExpiry
          ? null
          : options.keyExpires === undefined
            ? undefined
            : parseInstant(options.keyExpires, '--key-expires');
        const findings = validateRotationPolicy(policy, keyExpiresOn === undefined ? {} : { keyExpiresOn });
        // Same verdict as `rotation set` and the service: warnings do not make a policy invalid.
        const violations = rotationPolicyErrors(findings);
        const warnings = rotationPolicyWarnings(findings);
        if (options.json) print({ valid: violations.length === 0, violations, warnings });
        else {
          if (violations.length === 0) process.stdout.write('policy is valid\n');
          else process.stdout.write(`policy is invalid:\n${formatViolations(violations)}\n`);
          if (warnings.length > 0) process.stdout.write(`warnings:\n${formatViolations(warnings)}\n`);
        }
        if (violations.length > 0) process.exitCode = 1;
      },
    );

  withVaultOptions(rotation.command('get'))
    .description("show a key's rotation policy (service JSON shape)")
    .argument('<vault>', 'vault name or URL')
    .argument('<key>', 'key name')
    .action(async (vault: string, key: string, options: VaultConnectionOptions) => {
      const client = await keyClientFor(vault, options);
      try {
        print(toServiceJson(fromSdk(await client.getKeyRotationPolicy(key)), { includeMetadata: true }));
      } catch (error) {
        throw serviceError(`getting the rotation policy of ${key}`, error);
      }
    });

  withVaultOptions(rotation.command('set'))
    .description("replace a key's rotation policy, validated before the call")
    .argument('<vault>', 'vault name or URL')
    .argument('<key>', 'key name')
    .requiredOption('--policy <file>', 'rotation policy JSON, e.g. the documented P18M / P30D / P2Y example')
    .action(async (vault: string, key: string, options: { policy: string } & VaultConnectionOptions) => {
      const policy = await readPolicyFile(options.policy);
      const client = await keyClientFor(vault, options);
      // The key's expiry decides whether before-expiry triggers are allowed; without `get` rights, skip it.
      let keyExpiresOn: Date | null | undefined;
      try {
        keyExpiresOn = (await client.getKey(key)).properties.expiresOn ?? null;
      } catch {
        keyExpiresOn = undefined;
      }
      const findings = validateRotationPolicy(policy, keyExpiresOn === undefined ? {} : { keyExpiresOn });
      const violations = rotationPolicyErrors(findings);
      if (violations.length > 0) throw new RotationPolicyInvalidError(violations);
      const warnings = rotationPolicyWarnings(findings);
      if (warnings.length > 0) process.stderr.write(`warning:\n${formatViolations(warnings)}\n`);
      try {
        const stored = await client.updateKeyRotationPolicy(key, toSdk(policy));
        print(toServiceJson(fromSdk(stored), { includeMetadata: true }));
      } catch (error) {
        throw serviceError(`setting the rotation policy of ${key}`, error);
      }
    });

  withVaultOptions(rotation.command('rotate'))
    .description('create a new version of a key now (needs the rotate permission)')
    .argument('<vault>', 'vault name or URL')
    .argument('<key>', 'key name')
    .action(async (vault: string, key: string, options: VaultConnectionOptions) => {
      const client = await keyClientFor(vault, options);
      try {
        const rotated = await client.rotateKey(key);
        // Never print key material: only the versioned id and dates.
        print({
          id: rotated.id,
          version: rotated.properties.version,
          createdOn: rotated.properties.createdOn,
          expiresOn: rotated.properties.expiresOn,
        });
      } catch (error) {
        throw serviceError(`rotating ${key}`, error);
      }
    });

  withVaultOptions(rotation.command('audit'))
    .description('check every key of a vault against "rotation scheduled within N days after creation"')
    .argument('<vault>', 'vault name or URL')
    .requiredOption('--max-days <n>', 'maximumDaysToRotate of the Azure Policy built-in, e.g. 730')
    .option('--json', 'print the full report as JSON')
    .option('--strict', 'exit with status 1 when a key is non-compliant or could not be audited')
    .action(
      async (
        vault: string,
        options: { maxDays: string; json?: boolean; strict?: boolean } & VaultConnectionOptions,
      ) => {
        const maximumDaysToRotate = Number(options.maxDays);
        if (
          !/^\d+$/.test(options.maxDays) ||
          !Number.isSafeInteger(maximumDaysToRotate) ||
          maximumDaysToRotate < 1
        ) {
          throw new InvalidArgumentError(`--max-days must be a whole number of days, got ${options.maxDays}`);
        }
        const client = await keyClientFor(vault, options);
        const interactive = process.stderr.isTTY === true && !options.json;
        let report: RotationAuditReport;
        try {
          report = await auditRotation(client, {
            maximumDaysToRotate,
            onProgress: (p) => {
              if (interactive)
                process.stderr.write(`\raudited ${p.audited}/${p.listed} keys (${p.pages} pages)`);
            },
          });
        } catch (error) {
          if (error instanceof CvmSkrError) throw error;
          throw serviceError('listing the keys of the vault', error);
        } finally {
          if (interactive) process.stderr.write('\n');
        }
        if (options.json) print(report);
        else process.stdout.write(formatAudit(report));
        if (options.strict && (report.summary.nonCompliant > 0 || report.summary.errors > 0))
          process.exitCode = 1;
      },
    );

  rotation
    .command('envelopes')
    .description(
      'which key version each envelope file is under, from its header alone (no key, no vault): find the envelopes to rewrap before an old version is disabled or expires',
    )
    .argument('<files...>', 'envelope files written by EnvelopeCipher')
    .option('--json', 'print one JSON object per file')
    .action(async (files: string[], options: { json?: boolean }) => {
      const results: ({ file: string } & (EnvelopeHeader | { error: string }))[] = [];
      for (const file of files) {
        try {
          results.push({ file, ...(await readEnvelopeHeader(file)) });
        } catch (error) {
          if (!(error instanceof CvmSkrError)) throw error;
          results.push({ file, error: `${error.message} [${error.code}]` });
          // A file that is not an envelope, or cannot be read, is wrong input (README "Exit codes").
          process.exitCode = EXIT.usage;
        }
      }
      if (options.json) {
        print(results);
        return;
      }
      for (const r of results) {
        process.stdout.write(
          'error' in r
            ? `${r.file}: ${r.error}\n`
            : `${r.file}: ${r.kid} (${r.keyWrapping}, ${r.dataLength} bytes of data)\n`,
        );
      }
    });
}

/** Reads only the first bytes of a file: envelopes may be large, their header never is. */
async function readEnvelopeHeader(path: string): Promise<EnvelopeHeader> {
  const unreadable = (error: unknown) =>
    new InvalidArgumentError(`cannot read ${path}: ${whyUnreadable(error)}`, { cause: error });
  let handle: Awaited<ReturnType<typeof open>>;
  try {
    handle = await open(path, 'r');
  } catch (error) {
    throw unreadable(error);
  }
  try {
    let head: Buffer;
    let size: number;
    try {
      ({ size } = await handle.stat());
      head = Buffer.alloc(Math.min(size, MAX_ENVELOPE_HEADER_BYTES));
      // A folder opens but does not read (EISDIR): that is the file's fault, reported like a missing one.
      head = head.subarray(0, (await handle.read(head, 0, head.length, 0)).bytesRead);
    } catch (error) {
      throw unreadable(error);
    }
    return parseEnvelopeHeader(head, Math.max(size, head.length));
  } finally {
    await handle.close();
  }
}

import { stat } from 'node:fs/promises';
import type { Command } from 'commander';
import { InvalidArgumentError } from '../errors.js';
import { loadJose } from '../load-jose.js';
import {
  evaluateReleasePolicy,
  parseReleasePolicy,
  type ReleasePolicyEvaluation,
} from '../keyvault/release-policy.js';
import { EXIT } from './exit.js';
import { readInput, readJsonInput } from './io.js';

interface PolicyCheckOptions {
  policy: string;
  token?: string;
  claims?: string;
  json?: boolean;
}

/** Reads a release policy file: the policy JSON itself, or its base64url form as stored on a key. */
async function readPolicy(file: string) {
  const text = (await readInput(file, '--policy', 'utf8')).trim();
  return parseReleasePolicy(text.startsWith('{') ? text : Buffer.from(text, 'base64url'));
}

/**
 * `--token` names a file or is the token itself. A file that exists wins (its name may hold dots, as
 * maa.token.jwt does); anything else is taken as the token, and an error about it never repeats the value.
 */
async function readToken(given: string): Promise<{ token: string; file?: string }> {
  const isFile = await stat(given).then(
    (info) => !info.isDirectory(),
    () => false,
  );
  return isFile
    ? { token: (await readInput(given, '--token', 'utf8')).trim(), file: given }
    : { token: given.trim() };
}

async function readClaims(options: PolicyCheckOptions): Promise<Record<string, unknown>> {
  if ((options.token === undefined) === (options.claims === undefined)) {
    throw new InvalidArgumentError('give exactly one of --token <jwt|file> or --claims <file>');
  }
  if (options.claims !== undefined) {
    const parsed = await readJsonInput(options.claims, '--claims');
    if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) {
      throw new InvalidArgumentError('--claims must hold a JSON object of token claims');
    }
    // The output of `cvm-skr attest --json` holds the claims under "claims"; a token's claims have an issuer.
    const nested = (parsed as { claims?: unknown }).claims;
    if (!('iss' in parsed) && typeof nested === 'object' && nested !== null && !Array.isArray(nested)) {
      return nested as Record<string, unknown>;
    }
    return parsed as Record<string, unknown>;
  }
  const { token, file } = await readToken(options.token!);
  try {
    const { decodeJwt } = await loadJose();
    return decodeJwt(token);
  } catch (error) {
    // Never the value itself: it may be a real token.
    throw new InvalidArgumentError(
      file === undefined
        ? '--token is neither a readable file nor a JWT (three base64url parts)'
        : `--token ${file} does not hold a JWT (three base64url parts)`,
      { cause: error },
    );
  }
}

export function formatEvaluation(evaluation: ReleasePolicyEvaluation): string {
  const lines = evaluation.clauses.map((c) => {
    const depth = (c.path.match(/\[/g)?.length ?? 1) - 1;
    const what = c.kind === 'claim' ? `${c.claim} ${c.operator} ${JSON.stringify(c.expected)}` : c.kind;
    return `${c.passed ? 'PASS' : 'FAIL'}  ${'  '.repeat(depth)}${c.path}  ${what}: ${c.reason}`;
  });
  lines.push(
    evaluation.allowed
      ? 'ALLOWED: these claims satisfy the release policy'
      : 'DENIED: these claims do not satisfy the release policy',
  );
  return `${lines.join('\n')}\n`;
}

export function registerPolicy(program: Command): void {
  const policy = program.command('policy').description('release policies');
  policy
    .command('check')
    .description(
      'explain, clause by clause, whether token claims satisfy a key release policy (local; verifies nothing)',
    )
    .requiredOption('--policy <file>', 'release policy JSON (or its base64url form)')
    .option('--token <jwt>', 'an attestation token (or a file holding one); decoded, not verified')
    .option('--claims <file>', 'JSON object of claims, or the output of `cvm-skr attest --json`')
    .option('--json', 'print the evaluation as JSON')
    .action(async (options: PolicyCheckOptions) => {
      const evaluation = evaluateReleasePolicy(await readPolicy(options.policy), await readClaims(options));
      process.stdout.write(
        options.json ? `${JSON.stringify(evaluation, null, 2)}\n` : formatEvaluation(evaluation),
      );
      if (!evaluation.allowed) process.exitCode = EXIT.negative;
    });
}

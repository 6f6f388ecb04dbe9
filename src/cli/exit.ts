/**
 * How the CLI ends: one coded line per error (no stack trace; `--verbose` adds the cause chain), JSON with
 * `--json`, and exit codes that separate success, a negative verdict, usage errors and runtime failures.
 */
import { CommanderError } from 'commander';
import {
  AgentForbiddenError,
  AttestationRejectedError,
  CvmSkrError,
  EvidenceVerificationError,
  InvalidArgumentError,
  ReleaseDeniedError,
  ReleasePolicyParseError,
  RotationPolicyFormatError,
  RotationPolicyInvalidError,
} from '../errors.js';

/** Documented in the README ("Exit codes"). */
export const EXIT = {
  /** The command did what was asked; a check passed. */
  ok: 0,
  /** A negative verdict: a policy check denied, a report rejected, attestation rejected, release denied (by
   * the vault's policy or the key agent's rules). */
  negative: 1,
  /** The command line or an input is wrong: unknown option, bad value, missing or malformed input file. */
  usage: 2,
  /** Something in the environment failed: device, network, service, timeout, file system. */
  runtime: 3,
} as const;

export function exitCodeOf(error: unknown): number {
  if (error instanceof CommanderError) return error.exitCode === 0 ? EXIT.ok : EXIT.usage;
  if (
    error instanceof ReleaseDeniedError ||
    error instanceof AgentForbiddenError ||
    error instanceof AttestationRejectedError ||
    error instanceof EvidenceVerificationError
  ) {
    return EXIT.negative;
  }
  // Input the user gave that does not parse (a --policy file) is a usage error like a bad flag value.
  if (
    error instanceof InvalidArgumentError ||
    error instanceof ReleasePolicyParseError ||
    error instanceof RotationPolicyFormatError ||
    error instanceof RotationPolicyInvalidError
  ) {
    return EXIT.usage;
  }
  return EXIT.runtime;
}

/**
 * The code of any error: ours, a Node.js one (`ENOENT`, `ERR_INVALID_URL`), a service's own (an Azure SDK
 * `RestError` carries the service's error code, e.g. `KeyNotFound`), or `ERR_INTERNAL` when it has none.
 */
export function codeOf(error: unknown): string {
  if (error instanceof CvmSkrError) return error.code;
  if (error instanceof CommanderError) return 'ERR_USAGE';
  const code = (error as { code?: unknown })?.code;
  return typeof code === 'string' && /^[A-Za-z][A-Za-z0-9_.]{0,63}$/.test(code) ? code : 'ERR_INTERNAL';
}

function messageOf(error: unknown): string {
  const text = error instanceof Error ? error.message : String(error);
  // One line: messages from dependencies may carry newlines.
  return text.replace(/\s*\n\s*/g, ' ').trim();
}

/** The causes below `error`, outermost first. */
function causes(error: unknown): unknown[] {
  const chain: unknown[] = [];
  let next = (error as { cause?: unknown })?.cause;
  while (next !== undefined && chain.length < 8) {
    chain.push(next);
    next = (next as { cause?: unknown })?.cause;
  }
  return chain;
}

export function formatError(error: unknown, verbose: boolean): string {
  const lines = [`cvm-skr: ${messageOf(error)} [${codeOf(error)}]`];
  if (verbose) for (const cause of causes(error)) lines.push(`  caused by: ${messageOf(cause)} [${codeOf(cause)}]`);
  return `${lines.join('\n')}\n`;
}

export function errorJson(error: unknown, verbose: boolean): string {
  const body = {
    error: {
      code: codeOf(error),
      message: messageOf(error),
      exitCode: exitCodeOf(error),
      ...(verbose
        ? { causes: causes(error).map((c) => ({ code: codeOf(c), message: messageOf(c) })) }
        : {}),
    },
  };
  return `${JSON.stringify(body, null, 2)}\n`;
}

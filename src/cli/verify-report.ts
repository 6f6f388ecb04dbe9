import type { Command } from 'commander';
import type { VerifyReportOptions } from './verify-report-run.js';

export type { VerifyReportResult } from './verify-report-run.js';

/** `cvm-skr verify-report`; the verification code loads only when the command runs. */
export function registerVerifyReport(program: Command): void {
  program
    .command('verify-report')
    .description(
      'verify an SEV-SNP attestation report (1184 bytes) or an Azure HCL report against the embedded AMD roots',
    )
    .argument('<file>', 'raw SNP report or HCL report (vTPM NV index 0x01400001)')
    .option(
      '--certs <file>',
      'VCEK and chain: THIM JSON, PEM bundle, DER, or extended-report certificate table',
    )
    .option(
      '--fetch',
      'without --certs: fetch the VCEK (confidential-container variable, Azure THIM, AMD KDS)',
    )
    .option('--thim-url <url>', 'THIM endpoint for --fetch (default: the Azure instance metadata address)')
    .option('--kds-url <url>', 'AMD KDS base URL for --fetch')
    .option('--product <name>', 'Milan, Genoa or Turin, for version-2 reports fetched from KDS')
    .option('--now <time>', 'ISO time at which certificates must be valid (default: now)')
    .option('--allow-debug', 'accept a guest policy that allows debugging')
    .option('--json', 'print a machine-readable result')
    .option('--timeout <seconds>', 'with --fetch: give up on each certificate request after this long (default 10)')
    .action(async (file: string, options: VerifyReportOptions) => {
      const { runVerifyReport } = await import('./verify-report-run.js');
      await runVerifyReport(file, options);
    });
}


import type { Command } from 'commander';
import type { PathStatus, PlatformDetection } from '../hal/detect.js';

function describePath(label: string, status: PathStatus): string {
  if (!status.exists)
    return `${label.padEnd(14)} ${status.path}: absent${status.error ? ` (${status.error})` : ''}`;
  const access = `${status.readable ? 'r' : '-'}${status.writable ? 'w' : '-'}`;
  return `${label.padEnd(14)} ${status.path}: present, ${status.mode}, this process: ${access}`;
}

export function formatDetection(report: PlatformDetection): string {
  const lines: string[] = [];
  lines.push('cvm-skr doctor');
  lines.push('');
  lines.push(
    report.addon.loaded
      ? `${'native addon'.padEnd(14)} loaded${report.addon.supported ? '' : ' (stub: device backends unsupported on this OS)'}: ${report.addon.path}`
      : `${'native addon'.padEnd(14)} not loaded: ${report.addon.error}`,
  );
  lines.push(
    describePath('vTPM', report.tpm) +
      (report.tpm.hclReportIndex ? `, HCL report index ${report.tpm.hclReportIndex}` : ''),
  );
  lines.push(describePath('sev-guest', report.sevGuest));
  lines.push(describePath('configfs-tsm', report.configfsTsm));
  lines.push(
    `${'swtpm'.padEnd(14)} ${report.swtpm.onPath ? report.swtpm.path : 'not on PATH (apt-get install swtpm)'}`,
  );
  lines.push('');
  lines.push('backends:');
  for (const b of report.backends) {
    const state = b.available ? (b.automatic ? 'available' : 'available, opt-in') : 'unavailable';
    lines.push(`  ${b.kind.padEnd(20)} ${state.padEnd(18)} ${b.reason}`);
  }
  lines.push('');
  lines.push(
    report.selected
      ? `platform 'auto' uses: ${report.selected}`
      : "platform 'auto' finds no confidential hardware here; use the emulator (cvm-skr demo, or platform 'emulated-azure-vtpm')",
  );
  return `${lines.join('\n')}\n`;
}

export function registerDoctor(program: Command): void {
  program
    .command('doctor')
    .description(
      'show which confidential-computing backends this machine offers, and why the others are missing',
    )
    .option('--json', 'print a machine-readable report')
    .option('--tpm <path>', 'TPM device or swtpm Unix socket to check instead of /dev/tpmrm0')
    .option(
      '--deep',
      'also check, read-only, what attestation needs: THIM, the AK certificate, the HCL report, PCR banks, the TCG log',
    )
    .option('--imds <url>', 'IMDS base URL for --deep (default $CVM_SKR_IMDS_URL, else http://169.254.169.254)')
    .action(async (options: { json?: boolean; tpm?: string; deep?: boolean; imds?: string }) => {
      const { detectPlatform } = await import('../hal/detect.js');
      const report = await detectPlatform(options.tpm ? { tpmPath: options.tpm } : {});
      if (options.deep) {
        const { deepReport, formatDeep } = await import('./doctor-deep.js');
        const deep = await deepReport({
          ...(options.tpm ? { tpm: options.tpm } : {}),
          ...(options.imds ? { imdsUrl: options.imds } : {}),
        });
        process.stdout.write(
          options.json
            ? `${JSON.stringify({ ...report, deep }, null, 2)}\n`
            : formatDetection(report) + formatDeep(deep),
        );
        return;
      }
      process.stdout.write(options.json ? `${JSON.stringify(report, null, 2)}\n` : formatDetection(report));
    });
}

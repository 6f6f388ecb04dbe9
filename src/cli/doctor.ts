import type { Command } from 'commander';

export function registerDoctor(program: Command): void {
  program
    .command('doctor')
    .description(
      'show which confidential-computing backends this machine offers, and why the others are missing',
    )
    .option('--json', 'print a machine-readable report')
    .action(async (options: { json?: boolean }) => {
      const { detectPlatform } = await import('../hal/detect.js');
      const report = await detectPlatform();
      if (options.json) {
        process.stdout.write(`${JSON.stringify(report, null, 2)}\n`);
        return;
      }
      process.stdout.write(`${JSON.stringify(report, null, 2)}\n`);
    });
}

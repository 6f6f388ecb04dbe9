#!/usr/bin/env node
import { readFileSync } from 'node:fs';
import { Command, CommanderError } from 'commander';
import { registerAgent } from './agent.js';
import { registerAttest } from './attest.js';
import { registerDemo } from './demo.js';
import { registerDoctor } from './doctor.js';
import { registerEmulator } from './emulator.js';
import { registerEmulatorServe } from './emulator-serve.js';
import { errorJson, EXIT, exitCodeOf, formatError } from './exit.js';
import { setQuiet } from './io.js';
import { registerPolicy } from './policy.js';
import { registerRelease } from './release.js';
import { registerRotation } from './rotation.js';
import { registerVerifyReport } from './verify-report.js';

// package.json is two levels up from both src/cli/main.ts and dist/cli/main.js.
const { version } = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as {
  version: string;
};

// Read before parsing, so even a parse error is printed the way the user asked.
const argv = process.argv.slice(2);
const json = argv.includes('--json');
const verbose = argv.includes('--verbose');
setQuiet(json || argv.includes('--quiet') || argv.includes('-q'));

const program = new Command('cvm-skr')
  .description('Secure Key Release on AMD SEV-SNP confidential machines, and rotation of the released keys')
  .version(version, '-V, --version', 'print the version')
  .option('--verbose', 'on errors, also print the chain of causes')
  .option('-q, --quiet', 'no progress notes on stderr')
  .addHelpText(
    'after',
    '\nExit codes: 0 success, 1 negative verdict (denied, rejected), 2 usage or input error, 3 runtime error.',
  )
  // Settings copied to every subcommand registered below: usage errors become exceptions handled here.
  .exitOverride()
  .configureOutput({
    outputError: (message, write) => {
      const text = message.replace(/^error: /, '').trim();
      write(
        json
          ? errorJson(new CommanderError(EXIT.usage, 'commander.usage', text), false)
          : `cvm-skr: ${text} [ERR_USAGE]\n`,
      );
    },
    ...(json ? { writeErr: (text: string) => process.stdout.write(text) } : {}),
  })
  // With --json, stdout carries exactly one JSON document.
  .showHelpAfterError(json ? false : '(run with --help for usage)');

registerAgent(program);
registerAttest(program);
registerDoctor(program);
registerDemo(program);
registerEmulatorServe(registerEmulator(program));
registerPolicy(program);
registerRelease(program);
registerRotation(program);
registerVerifyReport(program);

try {
  await program.parseAsync(process.argv);
} catch (error) {
  if (error instanceof CommanderError) {
    // Commander already printed its message (through outputError above), or help/version on purpose.
    process.exitCode = exitCodeOf(error);
  } else {
    process.exitCode = exitCodeOf(error);
    if (json) process.stdout.write(errorJson(error, verbose));
    else process.stderr.write(formatError(error, verbose));
  }
}

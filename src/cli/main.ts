#!/usr/bin/env node
import { Command } from 'commander';
import { CvmSkrError } from '../errors.js';
import { registerAttest } from './attest.js';
import { registerDemo } from './demo.js';
import { registerDoctor } from './doctor.js';
import { registerEmulator } from './emulator.js';
import { registerEmulatorServe } from './emulator-serve.js';
import { registerPolicy } from './policy.js';
import { registerRelease } from './release.js';
import { registerRotation } from './rotation.js';
import { registerVerifyReport } from './verify-report.js';

const program = new Command('cvm-skr')
  .description('Secure Key Release on AMD SEV-SNP confidential machines, and rotation of the released keys')
  .showHelpAfterError();

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
  if (error instanceof CvmSkrError) {
    process.stderr.write(`cvm-skr: ${error.message} [${error.code}]\n`);
  } else {
    process.stderr.write(`cvm-skr: ${(error as Error)?.stack ?? String(error)}\n`);
  }
  process.exitCode = process.exitCode || 1;
}

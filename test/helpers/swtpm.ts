import type { ExecutionContext } from 'ava';
import { haveSwtpm } from '../../src/emulator/hardware/swtpm-process.js';

export { haveSwtpm, type Swtpm, startSwtpm } from '../../src/emulator/hardware/swtpm-process.js';

/** Skips locally without swtpm; under CI=true a missing swtpm fails the test instead of skipping it. */
export function requireSwtpm(t: ExecutionContext): boolean {
  if (haveSwtpm) return true;
  if (process.env.CI === 'true')
    t.fail('swtpm is not installed, and CI=true requires swtpm-backed tests to run');
  else {
    t.log('swtpm not installed: skipping (apt-get install swtpm)');
    t.pass();
  }
  return false;
}

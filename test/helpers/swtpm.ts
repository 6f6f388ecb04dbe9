import test, { type TestFn } from 'ava';
import { haveSwtpm } from '../../src/emulator/hardware/swtpm-process.js';
import { tryLoadAddon } from '../../src/hal/addon.js';

export { haveSwtpm, type Swtpm, startSwtpm } from '../../src/emulator/hardware/swtpm-process.js';

const haveAddon = !(tryLoadAddon() instanceof Error);

/**
 * `test`, for tests that need something this machine may lack: where it is missing they are reported as skipped
 * (ava lists them), never as passed. Under CI=true they always run, so a CI machine without swtpm or the addon
 * fails instead of passing by skipping.
 */
export function gatedTest(available: boolean): TestFn {
  if (available || process.env.CI === 'true') return test;
  const skipped = ((...args: Parameters<TestFn['skip']>) => test.skip(...args)) as unknown as TestFn;
  return Object.assign(skipped, { serial: test.serial.skip });
}

/** Declares a test that needs swtpm (`apt-get install swtpm`). */
export const swtpmTest = gatedTest(haveSwtpm);
/** Declares a test that needs the native addon (`npm run build:native`). */
export const addonTest = gatedTest(haveAddon);
/** Declares a test that needs both. */
export const swtpmAddonTest = gatedTest(haveSwtpm && haveAddon);

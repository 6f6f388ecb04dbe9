/**
 * The emulated hardware of a running emulator in another process: `$CVM_SKR_EMULATOR_HARDWARE_URL`
 * (`GET /emulator/hardware` on its attestation service, see `maa/emulator-routes.ts`), so that a client signs
 * evidence as the emulator's chip and vTPM CA even when they exist only in the emulator's memory
 * (`cvm-skr emulator serve --no-cache`). Loopback https only, with the emulator's `IDENTITY_HEADER`.
 */
import { InvalidArgumentError } from '../../errors.js';
import { EmulatorError } from '../errors.js';
import { httpFetch } from '../http-client.js';
import { isLoopbackHost } from '../maa/emulator-routes.js';
import { EmulatedAkCa } from './ak-ca.js';
import { EmulatedAmd } from './amd.js';

export const EMULATOR_HARDWARE_URL_ENV = 'CVM_SKR_EMULATOR_HARDWARE_URL';

export interface EmulatedHardware {
  amd: EmulatedAmd;
  akCa: EmulatedAkCa;
}

/**
 * Fetches the emulated hardware named by `$CVM_SKR_EMULATOR_HARDWARE_URL`, trusting only `ca` (the emulator
 * CA). Undefined when the variable is not set (the caller then uses the emulator cache folder).
 */
export async function emulatedHardwareFromEnvironment(
  ca: string,
  env: NodeJS.ProcessEnv = process.env,
): Promise<EmulatedHardware | undefined> {
  const value = env[EMULATOR_HARDWARE_URL_ENV];
  if (!value) return undefined;
  let url: URL;
  try {
    url = new URL(value);
  } catch {
    throw new InvalidArgumentError(`$${EMULATOR_HARDWARE_URL_ENV} is not a URL`);
  }
  if (url.protocol !== 'https:' || !isLoopbackHost(url.hostname)) {
    throw new InvalidArgumentError(
      `$${EMULATOR_HARDWARE_URL_ENV} must be an https URL on a loopback address (the emulator's attestation service)`,
    );
  }
  const secret = env.IDENTITY_HEADER;
  if (!secret) {
    throw new InvalidArgumentError(
      `$${EMULATOR_HARDWARE_URL_ENV} needs $IDENTITY_HEADER from the same emulator's environment`,
    );
  }
  const response = await httpFetch(url, { ca, headers: { 'x-identity-header': secret } }).catch(
    (error: unknown) => {
      throw new EmulatorError(
        `cannot reach the emulator at ${url.origin}: is it still running, and is $CVM_SKR_CA_FILE its CA?`,
        { cause: error },
      );
    },
  );
  if (response.status !== 200) {
    throw new EmulatorError(
      `the emulator refused its hardware (HTTP ${response.status}): check $IDENTITY_HEADER comes from the same emulator`,
    );
  }
  let document: { amd?: unknown; akCa?: unknown };
  try {
    document = JSON.parse(response.body.toString('utf8')) as { amd?: unknown; akCa?: unknown };
  } catch (error) {
    throw new EmulatorError('the emulator answered its hardware with something other than JSON', { cause: error });
  }
  const [amd, akCa] = await Promise.all([
    EmulatedAmd.fromDocument(document.amd),
    EmulatedAkCa.fromDocument(document.akCa),
  ]);
  return { amd, akCa };
}

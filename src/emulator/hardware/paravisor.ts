/**
 * The emulated paravisor for a swtpm provisioned as an Azure vTPM: on Azure, writing NV 0x01400002 makes the
 * paravisor regenerate the HCL report at 0x01400001 with `user-data`. This transport wrapper does the same:
 * after a successful TPM2_NV_Write to 0x01400002 it reads the user data and the AK, and rewrites the HCL
 * report (signed by the emulated chip) before answering, so `AzureVtpmPlatform.writeUserData` works unchanged.
 * The extra commands run on the wrapped transport, within the caller's NV_Write round trip.
 */
import type { TpmTransport } from '../../hal/types.js';
import { AZURE_VTPM } from '../../tpm/azure-layout.js';
import { nvReadAll, nvReadPublic } from '../../tpm/commands/nv.js';
import { readPublic } from '../../tpm/commands/object.js';
import { TPM_CC } from '../../tpm/constants.js';
import { publicToKeyObject } from '../../tpm/keys.js';
import { storeNvBlob } from '../../tpm/provision.js';
import { Tpm } from '../../tpm/tpm.js';
import type { EmulatedAmd } from './amd.js';
import { buildEmulatedHclReport, type EmulatedHclReportOptions } from './provision-swtpm.js';

const HEADER = 10;

function u32(bytes: Uint8Array, offset: number): number | undefined {
  if (bytes.length < offset + 4) return undefined;
  return new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength).getUint32(offset);
}

export interface EmulatedParavisorOptions extends Omit<EmulatedHclReportOptions, 'userData'> {
  amd: EmulatedAmd;
}

export class EmulatedParavisorTransport implements TpmTransport {
  readonly #inner: TpmTransport;
  readonly #tpm: Tpm;
  readonly #options: EmulatedParavisorOptions;
  /** HCL reports regenerated so far. */
  regenerated = 0;

  constructor(inner: TpmTransport, options: EmulatedParavisorOptions) {
    this.#inner = inner;
    this.#tpm = new Tpm(inner);
    this.#options = options;
  }

  async transmit(command: Uint8Array): Promise<Uint8Array> {
    const response = await this.#inner.transmit(command);
    // TPM2_NV_Write: handles authHandle, nvIndex; a zero response code means the data is in.
    if (
      u32(command, 6) === TPM_CC.NV_Write &&
      u32(command, HEADER + 4) === AZURE_VTPM.USER_DATA_INDEX &&
      u32(response, 6) === 0
    ) {
      await this.#regenerate();
    }
    return response;
  }

  async #regenerate(): Promise<void> {
    const info = await nvReadPublic(this.#tpm, AZURE_VTPM.USER_DATA_INDEX);
    const userData = await nvReadAll(this.#tpm, {
      nvIndex: AZURE_VTPM.USER_DATA_INDEX,
      chunkSize: 64,
      public: info.public,
    });
    const ak = await readPublic(this.#tpm, AZURE_VTPM.AK_HANDLE);
    const { amd, ...rest } = this.#options;
    const { hclReport } = await buildEmulatedHclReport(amd, publicToKeyObject(ak.public), {
      ...rest,
      userData,
    });
    await storeNvBlob(this.#tpm, AZURE_VTPM.HCL_REPORT_INDEX, hclReport);
    this.regenerated++;
  }

  close(): Promise<void> {
    return this.#inner.close();
  }
}

import { MalformedDataError } from '../../errors.js';
import { TPM_CAP, TPM_CC } from '../constants.js';
import type { PcrSelection } from '../structures.js';
import { readPcrSelection } from '../structures.js';
import type { Tpm } from '../tpm.js';

/** TPM2_GetCapability(TPM_CAP_TPM_PROPERTIES): tagged properties from `first`, up to `count` of them. */
export async function getProperties(
  tpm: Tpm,
  first: number,
  count = 1,
): Promise<{ moreData: boolean; properties: Map<number, number> }> {
  const { params: r } = await tpm.execute({
    cc: TPM_CC.GetCapability,
    params: (w) => w.u32(TPM_CAP.TPM_PROPERTIES).u32(first).u32(count),
  });
  const moreData = r.u8('moreData') !== 0;
  const capability = r.u32('capability');
  if (capability !== TPM_CAP.TPM_PROPERTIES) r.fail(`capability ${capability} answered for TPM_PROPERTIES`);
  const n = r.u32('TPML_TAGGED_TPM_PROPERTY.count');
  if (n > 256) r.fail(`property count ${n} is too large`);
  const properties = new Map<number, number>();
  for (let i = 0; i < n; i++) properties.set(r.u32('property'), r.u32('value'));
  r.expectEnd();
  return { moreData, properties };
}

/** One property value; throws when the TPM does not report it. */
export async function getProperty(tpm: Tpm, property: number): Promise<number> {
  const { properties } = await getProperties(tpm, property, 1);
  const value = properties.get(property);
  if (value === undefined) {
    throw new MalformedDataError('ERR_TPM_MALFORMED', `TPM did not report property 0x${property.toString(16)}`);
  }
  return value;
}

/**
 * TPM2_GetCapability(TPM_CAP_HANDLES): every handle of one range (the first octet of `first`), all pages.
 * Loaded sessions (0x02) come back with their own handle types (0x02 HMAC, 0x03 policy).
 */
export async function getHandles(tpm: Tpm, first: number): Promise<number[]> {
  const handles: number[] = [];
  const range = first & 0xff000000;
  let next = first >>> 0;
  for (;;) {
    const { params: r } = await tpm.execute({
      cc: TPM_CC.GetCapability,
      params: (w) => w.u32(TPM_CAP.HANDLES).u32(next).u32(254),
    });
    const moreData = r.u8('moreData') !== 0;
    const capability = r.u32('capability');
    if (capability !== TPM_CAP.HANDLES) r.fail(`capability ${capability} answered for HANDLES`);
    const n = r.u32('TPML_HANDLE.count');
    if (n > 254) r.fail(`handle count ${n} is too large`);
    let last = -1;
    for (let i = 0; i < n; i++) {
      const h = r.u32('handle');
      handles.push(h);
      last = h;
    }
    r.expectEnd();
    if (!moreData || n === 0) return handles;
    const following = (last & 0x00ffffff) + 1;
    if (following > 0x00ffffff) return handles;
    next = (range | following) >>> 0;
  }
}

/** TPM2_GetCapability(TPM_CAP_PCRS): the allocated PCR banks. */
export async function getPcrBanks(tpm: Tpm): Promise<PcrSelection[]> {
  const { params: r } = await tpm.execute({
    cc: TPM_CC.GetCapability,
    params: (w) => w.u32(TPM_CAP.PCRS).u32(0).u32(1),
  });
  r.u8('moreData');
  const capability = r.u32('capability');
  if (capability !== TPM_CAP.PCRS) r.fail(`capability ${capability} answered for PCRS`);
  const banks = readPcrSelection(r);
  r.expectEnd();
  return banks;
}

/** TPM2_GetRandom: up to `count` bytes (a TPM returns at most its largest digest size per call). */
export async function getRandom(tpm: Tpm, count: number): Promise<Uint8Array> {
  const { params: r } = await tpm.execute({ cc: TPM_CC.GetRandom, params: (w) => w.u16(count) });
  const bytes = r.tpm2b('randomBytes', 64);
  r.expectEnd();
  if (bytes.length > count) r.fail(`returned ${bytes.length} bytes for ${count} requested`);
  return bytes;
}

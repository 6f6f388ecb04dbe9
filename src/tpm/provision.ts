import type { KeyObject } from 'node:crypto';
import { InvalidArgumentError, NvIndexNotDefinedError, TpmKeyNotFoundError } from '../errors.js';
import type { TpmTransport } from '../hal/types.js';
import { AZURE_VTPM } from './azure-layout.js';
import { getProperty } from './commands/capability.js';
import { nvDefineSpace, nvReadPublic, nvUndefineSpace, nvWriteAll } from './commands/nv.js';
import { createPrimary, evictControl, flushContext, type PublicInfo, readPublic } from './commands/object.js';
import { TPM_ALG, TPM_PT, TPM_RH, TPMA_NV, TPMA_OBJECT } from './constants.js';
import { publicToKeyObject } from './keys.js';
import { rsaTemplate } from './structures.js';
import { Tpm } from './tpm.js';

/**
 * Lays out a TPM (swtpm in tests and the emulator) like an Azure confidential VM vTPM: AK at 0x81000003,
 * AK certificate at NV 0x01C101D0, HCL report at NV 0x01400001 and the user-data index 0x01400002, so the
 * real `azure-vtpm` platform runs against it unchanged. Never point this at a real TPM: it replaces
 * whatever is at those handles.
 */

/** The Azure AK template: RSA-2048 restricted signing key, RSASSA SHA-256. */
export const AK_TEMPLATE = rsaTemplate({
  objectAttributes:
    TPMA_OBJECT.fixedTPM |
    TPMA_OBJECT.fixedParent |
    TPMA_OBJECT.sensitiveDataOrigin |
    TPMA_OBJECT.userWithAuth |
    TPMA_OBJECT.noDA |
    TPMA_OBJECT.restricted |
    TPMA_OBJECT.sign,
  scheme: { scheme: TPM_ALG.RSASSA, hashAlg: TPM_ALG.SHA256 },
});

/** Read and write by owner or by the index itself, with the (empty) index password; no dictionary attack. */
export const LAYOUT_NV_ATTRIBUTES =
  TPMA_NV.OWNERWRITE | TPMA_NV.AUTHWRITE | TPMA_NV.OWNERREAD | TPMA_NV.AUTHREAD | TPMA_NV.NO_DA;

export interface ProvisionedAk {
  public: PublicInfo;
  publicKey: KeyObject;
}

type FromAk<T> = T | ((ak: ProvisionedAk) => T | Promise<T>);

export interface AzureVtpmLayoutOptions {
  /** The NV blob of 0x01400001, or a function that builds it around the AK (an emulated report). */
  hclReport: FromAk<Uint8Array>;
  /** DER certificate for the AK; default: one issued by a throwaway "cvm-skr emulated AK CA". */
  akCertDer?: FromAk<Uint8Array>;
  /** Hierarchy of the AK primary. Default `endorsement`. */
  akHierarchy?: 'endorsement' | 'owner';
  /** Also define the 64-byte user-data index 0x01400002 (unwritten). Default true. */
  defineUserDataIndex?: boolean;
}

export interface AzureVtpmLayout {
  ak: ProvisionedAk;
  akCertDer: Uint8Array;
  /** The bytes stored at 0x01400001 (the report, without trailing zero padding the TPM could not hold). */
  hclReport: Uint8Array;
}

async function resolve<T>(value: FromAk<T>, ak: ProvisionedAk): Promise<T> {
  return typeof value === 'function' ? await (value as (ak: ProvisionedAk) => T | Promise<T>)(ak) : value;
}

async function isDefined(tpm: Tpm, nvIndex: number): Promise<{ dataSize: number } | undefined> {
  try {
    return (await nvReadPublic(tpm, nvIndex)).public;
  } catch (error) {
    if (error instanceof NvIndexNotDefinedError) return undefined;
    throw error;
  }
}

/**
 * Stores `data` as the whole content of an NV index, (re)defining the index with `data.length` bytes when it
 * is missing or of another size. Writes in chunks of TPM_PT_NV_BUFFER_MAX.
 */
export async function storeNvBlob(
  tpm: Tpm,
  nvIndex: number,
  data: Uint8Array,
  options: { chunkSize?: number; attributes?: number } = {},
): Promise<void> {
  const chunkSize = options.chunkSize ?? (await getProperty(tpm, TPM_PT.NV_BUFFER_MAX));
  const existing = await isDefined(tpm, nvIndex);
  if (existing && existing.dataSize !== data.length) await nvUndefineSpace(tpm, { nvIndex });
  const publicArea = {
    nvIndex,
    nameAlg: TPM_ALG.SHA256,
    attributes: options.attributes ?? LAYOUT_NV_ATTRIBUTES,
    authPolicy: new Uint8Array(0),
    dataSize: data.length,
  };
  if (!existing || existing.dataSize !== data.length) await nvDefineSpace(tpm, { public: publicArea });
  if (data.length > 0) await nvWriteAll(tpm, { nvIndex, data, chunkSize, public: publicArea });
}

/** Drops trailing zero padding that does not fit an index of at most `max` bytes. */
function fitReport(report: Uint8Array, max: number): Uint8Array {
  if (report.length <= max) return report;
  if (report.subarray(max).every((b) => b === 0)) return report.subarray(0, max);
  throw new InvalidArgumentError(
    `the HCL report holds data up to byte ${report.findLastIndex((b) => b !== 0) + 1}, but this TPM's NV indices ` +
      `hold at most ${max} bytes (TPM_PT_NV_INDEX_MAX; swtpm/libtpms is built with 2048): use a report whose ` +
      'runtime data is smaller, e.g. without the HCLEkPub key',
  );
}

/** Creates the AK primary and persists it at 0x81000003 (replacing what was there). */
export async function provisionAk(
  tpm: Tpm,
  hierarchy: 'endorsement' | 'owner' = 'endorsement',
): Promise<ProvisionedAk> {
  const created = await createPrimary(tpm, {
    hierarchy: hierarchy === 'owner' ? TPM_RH.OWNER : TPM_RH.ENDORSEMENT,
    template: AK_TEMPLATE,
  });
  try {
    try {
      await readPublic(tpm, AZURE_VTPM.AK_HANDLE);
      await evictControl(tpm, { objectHandle: AZURE_VTPM.AK_HANDLE, persistentHandle: AZURE_VTPM.AK_HANDLE });
    } catch (error) {
      if (!(error instanceof TpmKeyNotFoundError)) throw error;
    }
    await evictControl(tpm, { objectHandle: created.handle, persistentHandle: AZURE_VTPM.AK_HANDLE });
  } finally {
    await flushContext(tpm, created.handle);
  }
  const persisted = await readPublic(tpm, AZURE_VTPM.AK_HANDLE);
  return { public: persisted, publicKey: publicToKeyObject(persisted.public) };
}

/** A certificate for the AK issued by a throwaway CA; stands in for Azure's AK certificate. */
export async function makeAkCertificate(akPublicKey: KeyObject): Promise<Uint8Array> {
  await import('reflect-metadata');
  const x509 = await import('@peculiar/x509');
  const { webcrypto } = await import('node:crypto');
  const subtle = webcrypto.subtle;
  const alg = { name: 'RSASSA-PKCS1-v1_5', hash: 'SHA-256' };
  const ca = await subtle.generateKey(
    { ...alg, modulusLength: 2048, publicExponent: new Uint8Array([1, 0, 1]) },
    false,
    ['sign', 'verify'],
  );
  const spki = akPublicKey.export({ format: 'der', type: 'spki' });
  const publicKey = await subtle.importKey('spki', spki, alg, true, ['verify']);
  const now = Date.now();
  const cert = await x509.X509CertificateGenerator.create(
    {
      serialNumber: Buffer.from(webcrypto.getRandomValues(new Uint8Array(8)))
        .toString('hex')
        .replace(/^./, '1'),
      issuer: 'CN=cvm-skr emulated AK CA, O=cvm-skr emulator',
      subject: 'CN=cvm-skr emulated AK, O=cvm-skr emulator',
      notBefore: new Date(now - 3600_000),
      notAfter: new Date(now + 365 * 24 * 3600_000),
      signingAlgorithm: alg,
      publicKey,
      signingKey: ca.privateKey,
      extensions: [new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature, true)],
    } as unknown as Parameters<typeof x509.X509CertificateGenerator.create>[0],
    webcrypto as unknown as Parameters<typeof x509.X509CertificateGenerator.create>[1],
  );
  return new Uint8Array(cert.rawData);
}

/** Provisions the Azure vTPM layout (see the module comment). Accepts a transport or a `Tpm`. */
export async function provisionAzureVtpmLayout(
  target: TpmTransport | Tpm,
  options: AzureVtpmLayoutOptions,
): Promise<AzureVtpmLayout> {
  const tpm = target instanceof Tpm ? target : new Tpm(target);
  const chunkSize = await getProperty(tpm, TPM_PT.NV_BUFFER_MAX);
  const indexMax = await getProperty(tpm, TPM_PT.NV_INDEX_MAX);
  const ak = await provisionAk(tpm, options.akHierarchy);
  const akCertDer = await resolve(options.akCertDer ?? ((a) => makeAkCertificate(a.publicKey)), ak);
  if (akCertDer.length > indexMax) {
    throw new InvalidArgumentError(
      `AK certificate of ${akCertDer.length} bytes exceeds NV_INDEX_MAX ${indexMax}`,
    );
  }
  const hclReport = fitReport(await resolve(options.hclReport, ak), indexMax);
  await storeNvBlob(tpm, AZURE_VTPM.AK_CERT_INDEX, akCertDer, { chunkSize });
  await storeNvBlob(tpm, AZURE_VTPM.HCL_REPORT_INDEX, hclReport, { chunkSize });
  if (options.defineUserDataIndex ?? true) {
    const existing = await isDefined(tpm, AZURE_VTPM.USER_DATA_INDEX);
    if (existing && existing.dataSize !== AZURE_VTPM.USER_DATA_SIZE) {
      await nvUndefineSpace(tpm, { nvIndex: AZURE_VTPM.USER_DATA_INDEX });
    }
    if (!existing || existing.dataSize !== AZURE_VTPM.USER_DATA_SIZE) {
      await nvDefineSpace(tpm, {
        public: {
          nvIndex: AZURE_VTPM.USER_DATA_INDEX,
          nameAlg: TPM_ALG.SHA256,
          attributes: LAYOUT_NV_ATTRIBUTES,
          authPolicy: new Uint8Array(0),
          dataSize: AZURE_VTPM.USER_DATA_SIZE,
        },
      });
    }
  }
  return { ak, akCertDer, hclReport };
}

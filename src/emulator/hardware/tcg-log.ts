/**
 * The emulated vTPM's firmware event log: a small, deterministic crypto-agile TCG log (src/tpm/event-log.ts)
 * with the events a Linux Azure confidential VM's UEFI firmware records: the CRTM version in PCR 0, the
 * secure-boot configuration (SecureBoot, PK, KEK, db, dbx as EV_EFI_VARIABLE_DRIVER_CONFIG) in PCR 7,
 * separators in PCRs 0-7, the boot applications (shim, grub, kernel) in PCR 4, the db certificate that verified
 * them in PCR 7 (EV_EFI_VARIABLE_AUTHORITY), and grub's commands and files in PCRs 8 and 9. Each event carries
 * SHA-1 and SHA-256 digests, as the logs of Azure vTPMs (both banks active) do. The emulated PCRs are its replay.
 *
 * The variable contents are placeholders (an EFI_SIGNATURE_LIST of one SHA-256 entry derived from a label), not
 * Microsoft's keys: nothing here checks certificates, only that the log, the PCRs and the claims agree.
 */
import { createHash } from 'node:crypto';
import type { PcrValue } from '../../hal/types.js';
import { TPM_ALG } from '../../tpm/constants.js';
import {
  EFI_GLOBAL_VARIABLE,
  EFI_IMAGE_SECURITY_DATABASE,
  EV,
  encodeEventLog,
  encodeUefiVariable,
  parseEventLog,
  replaySha256,
  type TcgEvent,
  type TcgEventLog,
} from '../../tpm/event-log.js';

export interface EmulatedBootOptions {
  /** Default true. Off: SecureBoot measured as 0 and no image was verified against db. */
  secureBoot?: boolean;
}

/** EFI_CERT_SHA256_GUID (UEFI 2.10 section 32.4.1). */
const EFI_CERT_SHA256 = Buffer.from('2616c4c14c509240aca941f936934328', 'hex');

function signatureList(label: string): Uint8Array {
  // EFI_SIGNATURE_LIST: SignatureType, ListSize, HeaderSize (0), SignatureSize, then EFI_SIGNATURE_DATA
  // (owner GUID, data).
  const owner = Buffer.from('bd9afa775903324dbd6028f4e78f784b', 'hex'); // the Microsoft owner GUID
  const data = Buffer.concat([owner, createHash('sha256').update(`cvm-skr emulated ${label}`).digest()]);
  const header = Buffer.alloc(12);
  header.writeUInt32LE(28 + data.length);
  header.writeUInt32LE(0, 4);
  header.writeUInt32LE(data.length, 8);
  return new Uint8Array(Buffer.concat([EFI_CERT_SHA256, header, data]));
}

function measured(pcrIndex: number, eventType: number, event: Uint8Array, measuredBytes = event): TcgEvent {
  return {
    pcrIndex,
    eventType,
    digests: [
      { algorithmId: TPM_ALG.SHA1, digest: new Uint8Array(createHash('sha1').update(measuredBytes).digest()) },
      { algorithmId: TPM_ALG.SHA256, digest: new Uint8Array(createHash('sha256').update(measuredBytes).digest()) },
    ],
    event,
  };
}

const text = (s: string) => new Uint8Array(Buffer.from(s, 'latin1'));
const utf16 = (s: string) => new Uint8Array(Buffer.from(`${s}\0`, 'utf16le'));

function imageLoad(name: string): TcgEvent {
  // UEFI_IMAGE_LOAD_EVENT (PFP section 10.4.1): location, length, link-time address, device path length, device
  // path (empty here). The digest is the image's Authenticode hash, emulated from its name.
  const event = Buffer.alloc(32);
  event.writeBigUInt64LE(0x7e000000n);
  event.writeBigUInt64LE(0x100000n, 8);
  return measured(4, EV.EFI_BOOT_SERVICES_APPLICATION, new Uint8Array(event), text(`cvm-skr emulated image ${name}`));
}

function variable(guid: string, name: string, data: Uint8Array, type: number = EV.EFI_VARIABLE_DRIVER_CONFIG): TcgEvent {
  return measured(7, type, encodeUefiVariable({ guid, name, data }));
}

/** The emulated boot's event log. */
export function emulatedEventLog(options: EmulatedBootOptions = {}): TcgEventLog {
  const secureBoot = options.secureBoot ?? true;
  const separator = (pcr: number) => measured(pcr, EV.SEPARATOR, new Uint8Array(4));
  const db = signatureList('db');
  const events: TcgEvent[] = [
    measured(0, EV.S_CRTM_VERSION, utf16('Hyper-V UEFI Release v4.1 (cvm-skr emulated)')),
    variable(EFI_GLOBAL_VARIABLE, 'SecureBoot', Uint8Array.of(secureBoot ? 1 : 0)),
    variable(EFI_GLOBAL_VARIABLE, 'PK', signatureList('PK')),
    variable(EFI_GLOBAL_VARIABLE, 'KEK', signatureList('KEK')),
    variable(EFI_IMAGE_SECURITY_DATABASE, 'db', db),
    variable(EFI_IMAGE_SECURITY_DATABASE, 'dbx', signatureList('dbx')),
    ...[0, 1, 2, 3, 4, 5, 6, 7].map(separator),
    measured(4, EV.EFI_ACTION, text('Calling EFI Application from Boot Option')),
    imageLoad('shimx64.efi'),
    // With secure boot on, the firmware records the db entry that verified the first image (PFP 10.4.4).
    ...(secureBoot ? [variable(EFI_IMAGE_SECURITY_DATABASE, 'db', db.subarray(28), EV.EFI_VARIABLE_AUTHORITY)] : []),
    imageLoad('grubx64.efi'),
    measured(8, EV.IPL, text('grub_cmd: linux /boot/vmlinuz-6.8.0-azure root=/dev/sda1 ro\0')),
    measured(9, EV.IPL, text('/boot/vmlinuz-6.8.0-azure\0')),
    imageLoad('vmlinuz-6.8.0-azure'),
  ];
  return {
    specId: {
      platformClass: 0,
      specVersionMajor: 2,
      specVersionMinor: 0,
      specErrata: 2,
      uintnSize: 2,
      algorithms: [
        { algorithmId: TPM_ALG.SHA1, digestSize: 20 },
        { algorithmId: TPM_ALG.SHA256, digestSize: 32 },
      ],
      vendorInfo: new Uint8Array(0),
    },
    events,
  };
}

/** The log's bytes and the SHA-256 PCR values (`indices`) its replay gives (zero for PCRs it does not extend). */
export function emulatedBoot(
  indices: readonly number[],
  options: EmulatedBootOptions = {},
): { tcgLog: Uint8Array; pcrs: PcrValue[] } {
  const tcgLog = encodeEventLog(emulatedEventLog(options));
  const replay = replaySha256(parseEventLog(tcgLog));
  return {
    tcgLog,
    pcrs: indices.map((index) => ({ index, digest: new Uint8Array(replay.get(index) ?? new Uint8Array(32)) })),
  };
}

import { createPublicKey, type KeyObject } from 'node:crypto';
import type { Jwk } from '../util/jwk.js';
import { MalformedDataError } from '../errors.js';

export interface HclRuntimeKey {
  kid: string;
  keyOps: string[];
  jwk: Jwk;
  key: KeyObject;
}

export interface HclVmConfiguration {
  secureBoot?: boolean;
  tpmEnabled?: boolean;
  consoleEnabled?: boolean;
  vmUniqueId?: string;
  rootCertThumbprint?: string;
  tpmPersisted?: boolean;
}

/** The runtime-data JSON of an HCL report, with its keys imported. */
export interface HclRuntimeData {
  /** The JSON as parsed, for fields this library does not model. */
  json: Record<string, unknown>;
  keys: HclRuntimeKey[];
  /** The attestation key (`HCLAkPub`) that must sign TPM quotes. */
  akPub?: KeyObject;
  /** The endorsement key (`HCLEkPub`), in newer reports. */
  ekPub?: KeyObject;
  vmConfiguration?: HclVmConfiguration;
  /** The 64 bytes written to NV index 0x01400002, when the report carries `user-data`. */
  userData?: Uint8Array;
}

function fail(message: string, cause?: unknown): never {
  throw new MalformedDataError(
    'ERR_HCL_REPORT_MALFORMED',
    `HCL runtime data: ${message}`,
    cause === undefined ? undefined : { cause },
  );
}

const isObject = (v: unknown): v is Record<string, unknown> =>
  typeof v === 'object' && v !== null && !Array.isArray(v);

function vmConfiguration(v: Record<string, unknown>): HclVmConfiguration {
  const out: HclVmConfiguration = {};
  const flag = (name: string, key: 'secureBoot' | 'tpmEnabled' | 'consoleEnabled' | 'tpmPersisted'): void => {
    const x = v[name];
    if (x === undefined) return;
    if (typeof x !== 'boolean') fail(`vm-configuration.${name} is not a boolean`);
    out[key] = x;
  };
  flag('secure-boot', 'secureBoot');
  flag('tpm-enabled', 'tpmEnabled');
  flag('console-enabled', 'consoleEnabled');
  flag('tpm-persisted', 'tpmPersisted');
  const text = (name: string, key: 'vmUniqueId' | 'rootCertThumbprint'): void => {
    const x = v[name];
    if (x === undefined) return;
    if (typeof x !== 'string') fail(`vm-configuration.${name} is not a string`);
    out[key] = x;
  };
  text('vmUniqueId', 'vmUniqueId');
  text('root-cert-thumbprint', 'rootCertThumbprint');
  return out;
}

/** Parses runtime data: JSON (trailing NUL padding ignored), keys imported as KeyObjects. */
export function parseHclRuntimeData(bytes: Uint8Array): HclRuntimeData {
  let end = bytes.length;
  while (end > 0 && bytes[end - 1] === 0) end--;
  let json: unknown;
  try {
    json = JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(bytes.subarray(0, end)));
  } catch (error) {
    fail('is not UTF-8 JSON', error);
  }
  if (!isObject(json)) fail('is not a JSON object');
  const keys: HclRuntimeKey[] = [];
  if (json.keys !== undefined) {
    if (!Array.isArray(json.keys)) fail('"keys" is not an array');
    json.keys.forEach((k: unknown, i: number) => {
      if (!isObject(k) || typeof k.kid !== 'string') fail(`key ${i} is not a JWK with a kid`);
      const keyOps = Array.isArray(k.key_ops)
        ? k.key_ops.filter((o): o is string => typeof o === 'string')
        : [];
      let key: KeyObject;
      try {
        key = createPublicKey({ key: k as Jwk, format: 'jwk' });
      } catch (error) {
        fail(`key ${k.kid} is not a usable public JWK`, error);
      }
      keys.push({ kid: k.kid, keyOps, jwk: k as Jwk, key });
    });
  }
  const out: HclRuntimeData = { json, keys };
  const ak = keys.find((k) => k.kid === 'HCLAkPub');
  if (ak !== undefined) out.akPub = ak.key;
  const ek = keys.find((k) => k.kid === 'HCLEkPub');
  if (ek !== undefined) out.ekPub = ek.key;
  const config = json['vm-configuration'];
  if (config !== undefined) {
    if (!isObject(config)) fail('"vm-configuration" is not an object');
    out.vmConfiguration = vmConfiguration(config);
  }
  const userData = json['user-data'];
  if (userData !== undefined) {
    if (typeof userData !== 'string' || !/^[0-9a-fA-F]{128}$/.test(userData))
      fail('"user-data" is not 128 hex characters');
    out.userData = Uint8Array.from(Buffer.from(userData, 'hex'));
  }
  return out;
}

import { KeyObject, webcrypto } from 'node:crypto';
import type { SnpProduct, TcbVersion } from '../../src/snp/tcb.js';
import { x509 } from '../../src/emulator/x509.js';

/** A self-made ARK -> ASK -> VCEK/VLEK chain with AMD's extensions, for emulators and tests. Not AMD's. */
export interface SnpTestChain {
  arkPem: string;
  askPem: string;
  leafPem: string;
  /** Leaf, ASK, ARK as one PEM bundle (THIM order). */
  bundlePem: string;
  leafDer: Uint8Array;
  askDer: Uint8Array;
  arkDer: Uint8Array;
  /** The leaf's ECDSA P-384 private key, for signing reports. */
  leafKey: KeyObject;
}

export interface SnpTestChainOptions {
  product?: SnpProduct;
  signer?: 'vcek' | 'vlek';
  /** 64 bytes (Turin: the first 8 are used); ignored for VLEK. */
  chipId?: Uint8Array;
  tcb?: Omit<TcbVersion, 'raw'>;
  /** Name prefix for the root and intermediate (default "Test"), so they never collide with AMD's names. */
  name?: string;
  notBefore?: Date;
  notAfter?: Date;
  /** Use this root (PEM of an earlier chain's ARK plus its private key) instead of making one. */
  root?: { certPem: string; privateKey: webcrypto.CryptoKey };
  /** Wrap hwID in an OCTET STRING, as some issuers do. */
  wrapHwid?: boolean;
}

const OID = '1.3.6.1.4.1.3704.1';
const derInt = (n: number): Uint8Array => (n >= 0x80 ? Uint8Array.of(2, 2, 0, n) : Uint8Array.of(2, 1, n));
const derIa5 = (s: string): Uint8Array => Uint8Array.from([0x16, s.length, ...Buffer.from(s, 'latin1')]);

const RSA_PSS = {
  name: 'RSA-PSS',
  modulusLength: 2048,
  publicExponent: new Uint8Array([1, 0, 1]),
  hash: 'SHA-384',
} as const;

const PSS_SIGN: webcrypto.RsaPssParams = { name: 'RSA-PSS', saltLength: 48 };

export interface SnpTestRoot {
  certPem: string;
  privateKey: webcrypto.CryptoKey;
}

/** Makes a self-signed RSA-PSS root named `${name}-ARK`. */
export async function createSnpTestRoot(
  name = 'Test',
  notBefore?: Date,
  notAfter?: Date,
): Promise<SnpTestRoot> {
  const keys = (await webcrypto.subtle.generateKey(RSA_PSS, true, [
    'sign',
    'verify',
  ])) as webcrypto.CryptoKeyPair;
  const cert = await x509.X509CertificateGenerator.createSelfSigned({
    name: `CN=${name}-ARK, O=cvm-skr test`,
    keys,
    notBefore: notBefore ?? new Date(Date.now() - 86_400_000),
    notAfter: notAfter ?? new Date(Date.now() + 365 * 86_400_000),
    signingAlgorithm: PSS_SIGN,
  });
  return { certPem: cert.toString('pem'), privateKey: keys.privateKey };
}

/** Makes a test chain whose leaf carries the product, TCB and hwID extensions of a real VCEK. */
export async function createSnpTestChain(options: SnpTestChainOptions = {}): Promise<SnpTestChain> {
  const product = options.product ?? 'Milan';
  const signer = options.signer ?? 'vcek';
  const name = options.name ?? 'Test';
  const tcb = options.tcb ?? {
    bootloader: 3,
    tee: 0,
    snp: 8,
    microcode: 115,
    ...(product === 'Turin' ? { fmc: 1 } : {}),
  };
  const notBefore = options.notBefore ?? new Date(Date.now() - 86_400_000);
  const notAfter = options.notAfter ?? new Date(Date.now() + 365 * 86_400_000);
  const root = options.root ?? (await createSnpTestRoot(name, notBefore, notAfter));
  const ark = new x509.X509Certificate(root.certPem);

  const askKeys = (await webcrypto.subtle.generateKey(RSA_PSS, true, [
    'sign',
    'verify',
  ])) as webcrypto.CryptoKeyPair;
  const ask = await x509.X509CertificateGenerator.create({
    subject: `CN=${name}-${signer === 'vlek' ? 'ASVK' : 'ASK'}, O=cvm-skr test`,
    issuer: ark.subject,
    publicKey: askKeys.publicKey,
    signingKey: root.privateKey,
    notBefore,
    notAfter,
    signingAlgorithm: PSS_SIGN,
  });

  const leafKeys = (await webcrypto.subtle.generateKey({ name: 'ECDSA', namedCurve: 'P-384' }, true, [
    'sign',
    'verify',
  ])) as webcrypto.CryptoKeyPair;
  const ext = (suffix: string, value: Uint8Array): x509.Extension =>
    new x509.Extension(`${OID}.${suffix}`, false, value);
  const extensions = [
    ext('1', derInt(0)),
    ext('2', derIa5(`${product}-B0`)),
    ext('3.1', derInt(tcb.bootloader)),
    ext('3.2', derInt(tcb.tee)),
    ext('3.3', derInt(tcb.snp)),
    ext('3.8', derInt(tcb.microcode)),
  ];
  if (product === 'Turin') extensions.push(ext('3.9', derInt(tcb.fmc ?? 0)));
  if (signer === 'vcek') {
    const chip = options.chipId ?? new Uint8Array(64);
    const hwid = product === 'Turin' ? chip.subarray(0, 8) : chip.subarray(0, 64);
    extensions.push(ext('4', options.wrapHwid ? Uint8Array.from([4, hwid.length, ...hwid]) : hwid));
  } else {
    extensions.push(ext('5', derIa5('cvm-skr-test-csp')));
  }
  const leaf = await x509.X509CertificateGenerator.create({
    subject: `CN=SEV-${signer === 'vlek' ? 'VLEK' : 'VCEK'}, O=cvm-skr test`,
    issuer: ask.subject,
    publicKey: leafKeys.publicKey,
    signingKey: askKeys.privateKey,
    notBefore,
    notAfter,
    signingAlgorithm: PSS_SIGN,
    extensions,
  });
  const leafPem = leaf.toString('pem');
  const askPem = ask.toString('pem');
  return {
    arkPem: root.certPem,
    askPem,
    leafPem,
    bundlePem: `${leafPem}\n${askPem}\n${root.certPem}\n`,
    leafDer: new Uint8Array(leaf.rawData),
    askDer: new Uint8Array(ask.rawData),
    arkDer: new Uint8Array(ark.rawData),
    leafKey: KeyObject.from(leafKeys.privateKey),
  };
}

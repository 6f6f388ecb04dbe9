// src/util/der.ts against @peculiar/asn1-x509 (the schema library it replaces at start-up) on real
// certificates: AMD's ARK/ASK/ASVK chains (google/go-sev-guest verify/trust/, test/fixtures/amd/), the Milan
// VCEKs (google/go-sev-guest verify/testdata/vcek.der; Azure vTPM capture and microsoft/confidential-sidecar-containers
// pkg/attest/test_data/, test/fixtures/README.md), the x5c chains of real Key Vault and Managed HSM release answers
// (Azure/azure-sdk-for-js sdk/keyvault/keyvault-keys/recordings/, test/fixtures/real-release/), and every root
// certificate Node.js ships.
import { X509Certificate } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { rootCertificates } from 'node:tls';
import { RsaSaPssParams } from '@peculiar/asn1-rsa';
import { AsnConvert } from '@peculiar/asn1-schema';
import {
  AlgorithmIdentifier,
  BasicConstraints,
  Certificate,
  ExtendedKeyUsage,
  KeyUsage,
  id_ce_basicConstraints,
  id_ce_extKeyUsage,
  id_ce_keyUsage,
} from '@peculiar/asn1-x509';
import test from 'ava';
import {
  DerError,
  oidString,
  readBasicConstraints,
  readCertificate,
  readExtendedKeyUsage,
  readKeyUsage,
  readRsaPssParams,
} from '../../src/util/der.js';

const fixture = (path: string) => readFileSync(new URL(`../fixtures/${path}`, import.meta.url));
const pems = (text: string): Buffer[] =>
  (text.match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g) ?? []).map((p) =>
    Buffer.from(p.replace(/-----[A-Z ]+-----|\s/g, ''), 'base64'),
  );
const x5c = (jws: string): Buffer[] =>
  (JSON.parse(Buffer.from(jws.split('.')[0]!, 'base64url').toString()) as { x5c: string[] }).x5c.map((c) =>
    Buffer.from(c, 'base64'),
  );
const thim = JSON.parse(fixture('snp/aci-milan/thim.json').toString()) as Record<string, string>;

const REAL: Array<[string, Buffer[]]> = [
  ...['ask-ark', 'asvk-ark'].flatMap((chain) =>
    ['milan', 'genoa', 'turin'].map(
      (p): [string, Buffer[]] => [`amd/${chain}-${p}.pem`, pems(fixture(`amd/${chain}-${p}.pem`).toString())],
    ),
  ),
  ['snp/milan-debug/vcek.der', [fixture('snp/milan-debug/vcek.der')]],
  ['azure-vtpm/milan/vcek-chain.pem', pems(fixture('azure-vtpm/milan/vcek-chain.pem').toString())],
  ['snp/aci-milan/thim.json', pems(`${thim.vcekCert}${thim.certificateChain}`)],
  ...['kv-create-release', 'kv2022-create-release', 'mhsm-create-release'].map(
    (name): [string, Buffer[]] => [`real-release/${name}.jws`, x5c(fixture(`real-release/${name}.jws`).toString())],
  ),
  ['node:tls rootCertificates', rootCertificates.flatMap(pems)],
];

for (const [source, certs] of REAL) {
  test(`the DER reader agrees with @peculiar/asn1-x509 on every certificate of ${source}`, (t) => {
    t.true(certs.length > 0);
    for (const der of certs) {
      const mine = readCertificate(der);
      const theirs = AsnConvert.parse(der, Certificate);
      const name = new X509Certificate(der).subject;
      t.is(mine.signatureAlgorithm.oid, theirs.signatureAlgorithm.algorithm, name);
      // The schema library reports NULL parameters (RFC 4055 section 5, sha256WithRSAEncryption) as absent.
      const mineParams = mine.signatureAlgorithm.parameters && Buffer.from(mine.signatureAlgorithm.parameters);
      t.deepEqual(
        mineParams?.equals(Buffer.of(0x05, 0x00)) ? undefined : mineParams,
        theirs.signatureAlgorithm.parameters ? Buffer.from(theirs.signatureAlgorithm.parameters) : undefined,
        name,
      );
      t.is(mine.notBefore.getTime(), theirs.tbsCertificate.validity.notBefore.getTime().getTime(), name);
      t.is(mine.notAfter.getTime(), theirs.tbsCertificate.validity.notAfter.getTime().getTime(), name);
      const ext = [...(theirs.tbsCertificate.extensions ?? [])];
      t.deepEqual(
        mine.extensions.map((e) => [e.oid, e.critical, Buffer.from(e.value)]),
        ext.map((e) => [e.extnID, e.critical, Buffer.from(e.extnValue.buffer)]),
        name,
      );
      for (const e of ext) {
        const value = e.extnValue.buffer;
        if (e.extnID === id_ce_basicConstraints) {
          const bc = AsnConvert.parse(value, BasicConstraints);
          t.deepEqual(readBasicConstraints(new Uint8Array(value)), {
            ca: bc.cA,
            ...(bc.pathLenConstraint === undefined ? {} : { pathLength: bc.pathLenConstraint }),
          });
        } else if (e.extnID === id_ce_keyUsage) {
          t.is(readKeyUsage(new Uint8Array(value)), AsnConvert.parse(value, KeyUsage).toNumber(), name);
        } else if (e.extnID === id_ce_extKeyUsage) {
          t.deepEqual(readExtendedKeyUsage(new Uint8Array(value)), [...AsnConvert.parse(value, ExtendedKeyUsage)]);
        }
      }
      const params = theirs.signatureAlgorithm.parameters;
      if (theirs.signatureAlgorithm.algorithm === '1.2.840.113549.1.1.10' && params) {
        const pss = AsnConvert.parse(params, RsaSaPssParams);
        t.deepEqual(readRsaPssParams(new Uint8Array(params)), {
          hash: pss.hashAlgorithm.algorithm,
          mgfHash: AsnConvert.parse(pss.maskGenAlgorithm.parameters!, AlgorithmIdentifier).algorithm,
          saltLength: pss.saltLength,
        });
      }
    }
  });
}

test('AMD chains carry RSASSA-PSS SHA-384 parameters, which the reader decodes', (t) => {
  const [ask] = pems(fixture('amd/ask-ark-milan.pem').toString());
  const { parameters } = readCertificate(ask!).signatureAlgorithm;
  t.deepEqual(readRsaPssParams(parameters!), {
    hash: '2.16.840.1.101.3.4.2.2',
    mgfHash: '2.16.840.1.101.3.4.2.2',
    saltLength: 48,
  });
});

test('RSASSA-PSS-params with every field absent means SHA-1, MGF1 SHA-1, salt 20 (RFC 4055 section 3.1)', (t) => {
  t.deepEqual(readRsaPssParams(Uint8Array.of(0x30, 0x00)), {
    hash: '1.3.14.3.2.26',
    mgfHash: '1.3.14.3.2.26',
    saltLength: 20,
  });
});

test('the reader refuses what is not DER: truncation, indefinite or padded lengths, trailing bytes', (t) => {
  const [der] = pems(fixture('amd/ask-ark-milan.pem').toString());
  t.throws(() => readCertificate(der!.subarray(0, der!.length - 1)), { instanceOf: DerError });
  t.throws(() => readCertificate(Buffer.concat([der!, Buffer.of(0)])), { instanceOf: DerError });
  t.throws(() => readBasicConstraints(Uint8Array.of(0x30, 0x80, 0x00, 0x00)), { instanceOf: DerError });
  t.throws(() => readBasicConstraints(Uint8Array.of(0x30, 0x81, 0x03, 0x01, 0x01, 0xff)), { instanceOf: DerError });
  t.throws(() => readBasicConstraints(Uint8Array.of(0x30, 0x03, 0x01, 0x01, 0x01)), { instanceOf: DerError });
  t.throws(() => readKeyUsage(Uint8Array.of(0x03, 0x02, 0x08, 0x80)), { instanceOf: DerError });
  t.throws(() => oidString(Uint8Array.of(0x2a, 0x80)), { instanceOf: DerError });
  t.throws(() => oidString(Uint8Array.of(0x2a, 0x80, 0x01)), { instanceOf: DerError });
});

test('OIDs decode per X.690 section 8.19, first two arcs included', (t) => {
  t.is(oidString(Uint8Array.of(0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x0a)), '1.2.840.113549.1.1.10');
  t.is(oidString(Uint8Array.of(0x55, 0x1d, 0x13)), '2.5.29.19');
  t.is(oidString(Uint8Array.of(0x88, 0x37, 0x03)), '2.999.3');
});

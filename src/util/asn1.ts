// The ASN.1 certificate schema (@peculiar/asn1-schema, -x509, -rsa and asn1js under them) is megabytes of module
// graph that most processes never need at import: `import('cvm-skr')` must stay cheap (test/startup.test.ts).
// It is required at first use, synchronously (each package's "main" is its CommonJS build, the one an import of
// it would resolve to as well, so there is one instance of its classes either way). Unlike @peculiar/x509, these
// patch no global.
import { createRequire } from 'node:module';
import type * as Asn1Rsa from '@peculiar/asn1-rsa';
import type * as Asn1Schema from '@peculiar/asn1-schema';
import type * as Asn1X509 from '@peculiar/asn1-x509';

export interface Asn1 {
  schema: typeof Asn1Schema;
  x509: typeof Asn1X509;
  rsa: typeof Asn1Rsa;
}

let loaded: Asn1 | undefined;

export function asn1(): Asn1 {
  if (!loaded) {
    const require = createRequire(import.meta.url);
    loaded = {
      schema: require('@peculiar/asn1-schema') as typeof Asn1Schema,
      x509: require('@peculiar/asn1-x509') as typeof Asn1X509,
      rsa: require('@peculiar/asn1-rsa') as typeof Asn1Rsa,
    };
  }
  return loaded;
}

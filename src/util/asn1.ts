// The ASN.1 certificate schema (@peculiar/asn1-schema, -x509, -rsa). Unlike @peculiar/x509, these patch no
// global. They are imported statically: a synchronous require() at first use (to keep them out of start-up)
// hung a test worker under a module-customization loader (tsx) once in three CI runs here, so start-up pays
// for them instead (README, Performance).
import * as rsa from '@peculiar/asn1-rsa';
import * as schema from '@peculiar/asn1-schema';
import * as x509 from '@peculiar/asn1-x509';

export interface Asn1 {
  schema: typeof schema;
  x509: typeof x509;
  rsa: typeof rsa;
}

const loaded: Asn1 = { schema, x509, rsa };

export function asn1(): Asn1 {
  return loaded;
}

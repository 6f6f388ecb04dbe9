// @peculiar/x509 (and reflect-metadata, which its tsyringe container needs before the library loads) take
// tens of milliseconds and megabytes to load, and most processes never parse a certificate: `import('cvm-skr')`
// must stay cheap (bench/startup.bench.ts). So the library is required at first use, synchronously (its
// package "main" is the CommonJS build, the same one an ESM import resolves to, so there is one instance of its
// classes either way), and `x509` stands in for its namespace. Import X.509 from here.
import { createRequire } from 'node:module';
import type * as X509 from '@peculiar/x509';

let loaded: typeof X509 | undefined;

function load(): typeof X509 {
  if (!loaded) {
    const require = createRequire(import.meta.url);
    require('reflect-metadata');
    loaded = require('@peculiar/x509') as typeof X509;
  }
  return loaded;
}

/** The @peculiar/x509 namespace, loaded when a member is first used. */
export const x509: typeof X509 = new Proxy({} as typeof X509, {
  get: (_target, key) => Reflect.get(load(), key) as unknown,
  has: (_target, key) => Reflect.has(load(), key),
  ownKeys: () => Reflect.ownKeys(load()),
  getOwnPropertyDescriptor: (_target, key) => {
    const descriptor = Reflect.getOwnPropertyDescriptor(load(), key);
    return descriptor && { ...descriptor, configurable: true };
  },
});

// The library's types under the same name, for annotations such as `x509.X509Certificate`.
// eslint-disable-next-line @typescript-eslint/no-namespace
export declare namespace x509 {
  export type X509Certificate = X509.X509Certificate;
  export type Extension = X509.Extension;
  export type JsonName = X509.JsonName;
}

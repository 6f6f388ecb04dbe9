// @peculiar/x509 resolves its classes through tsyringe, which needs the Reflect metadata API at load time, so
// the polyfill is imported first (ESM evaluates imports in order). Only the emulator and the tests generate
// certificates with it; the library's own certificate checks use node:crypto and src/util/der.ts, which
// patch no global. Import X.509 from here.
import 'reflect-metadata';

export * as x509 from '@peculiar/x509';

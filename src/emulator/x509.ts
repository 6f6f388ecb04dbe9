// @peculiar/x509 resolves its classes through tsyringe, which needs the Reflect metadata API at load time.
// ESM evaluates imports in order, so the polyfill is in place before the library loads. Import X.509 from here.
import 'reflect-metadata';

export * as x509 from '@peculiar/x509';

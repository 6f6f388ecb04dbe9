#!/usr/bin/env node
// Records or checks the hash of the native sources a prebuild was made from, so a stale prebuild is caught
// by the tests instead of shipping.
import { createHash } from 'node:crypto';
import { readdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
export const HASH_FILE = path.join(root, 'prebuilds', 'native-sources.sha256');

export function nativeSourceHash() {
  const files = [
    'binding.gyp',
    ...readdirSync(path.join(root, 'native'))
      .filter((f) => /\.(cc|h)$/.test(f))
      .sort()
      .map((f) => `native/${f}`),
  ];
  const hash = createHash('sha256');
  for (const file of files) {
    hash.update(`${file}\0`);
    // Line endings normalised so a checkout with CRLF does not look stale.
    hash.update(readFileSync(path.join(root, file), 'utf8').replace(/\r\n/g, '\n'));
    hash.update('\0');
  }
  return hash.digest('hex');
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const mode = process.argv[2];
  const current = nativeSourceHash();
  if (mode === 'write') {
    writeFileSync(HASH_FILE, `${current}\n`);
    console.log(`prebuilds made from native sources ${current}`);
  } else if (mode === 'check') {
    const recorded = readFileSync(HASH_FILE, 'utf8').trim();
    if (recorded !== current) {
      console.error(
        `prebuilds are stale: made from ${recorded}, sources are now ${current}; run npm run prebuild`,
      );
      process.exit(1);
    }
    console.log('prebuilds match the native sources');
  } else {
    console.error('usage: native-hash.mjs write|check');
    process.exit(2);
  }
}

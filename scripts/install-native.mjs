#!/usr/bin/env node
// npm install hook: use the prebuilt addon when it loads, otherwise build from source; never fail the
// install, since the library works without the addon (emulator, TCP transport) and says why at run time.
import { spawnSync } from 'node:child_process';
import { createRequire } from 'node:module';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const require = createRequire(import.meta.url);
const nodeGypBuild = require('node-gyp-build');

function loads() {
  try {
    require(nodeGypBuild.path(root));
    return true;
  } catch {
    return false;
  }
}

if (loads()) process.exit(0);

const gyp = process.env.npm_config_node_gyp;
const [command, args] = gyp ? [process.execPath, [gyp, 'rebuild']] : ['node-gyp', ['rebuild']];
const result = spawnSync(command, args, { cwd: root, stdio: 'inherit' });
if (result.status === 0 && loads()) process.exit(0);
console.warn(
  'cvm-skr: the native addon could not be built or loaded. The emulator and the TCP TPM transport still work; ' +
    'for /dev/tpmrm0 and /dev/sev-guest install python3, make and a C++17 compiler, then run "npm run build:native".',
);
process.exit(0);

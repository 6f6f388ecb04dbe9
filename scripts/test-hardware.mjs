#!/usr/bin/env node
// Guard for `npm run test:hardware`: runs the hardware suite only on a machine that has what it needs.
import { spawnSync } from 'node:child_process';
import { accessSync, constants } from 'node:fs';

const problems = [];
if (process.env.CI === 'true') problems.push('CI=true: the hardware suite never runs in CI');
if (!process.env.CVM_SKR_HW_ATTESTATION_URL)
  problems.push('CVM_SKR_HW_ATTESTATION_URL is not set (e.g. https://sharedeus.eus.attest.azure.net)');
if (!process.env.CVM_SKR_HW_KEY_ID)
  problems.push('CVM_SKR_HW_KEY_ID is not set (e.g. https://myvault.vault.azure.net/keys/mykey)');
try {
  accessSync('/dev/tpmrm0', constants.R_OK | constants.W_OK);
} catch (error) {
  problems.push(
    `/dev/tpmrm0 is not usable (${error.code}): run on an Azure DCasv5/ECasv5 confidential VM, as root or in the tss group`,
  );
}
if (problems.length > 0) {
  console.error(
    `test:hardware refuses to run:\n  - ${problems.join('\n  - ')}\nSee README "Running on a confidential VM".`,
  );
  process.exit(1);
}
const result = spawnSync('npx', ['ava', '--config', 'ava.hardware.config.js'], { stdio: 'inherit' });
process.exit(result.status ?? 1);

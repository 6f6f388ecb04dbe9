// The TPM 2.0 command layer: structures, response codes, sessions and one function per command.
export * from './commands/attest.js';
export * from './commands/capability.js';
export * from './commands/nv.js';
export * from './commands/object.js';
export * from './commands/pcr.js';
export * from './commands/policy.js';
export * from './commands/rsa.js';
export * from './constants.js';
export * from './keys.js';
export * from './marshal.js';
export * from './rc.js';
export * from './sessions.js';
export * from './structures.js';
export * from './tpm.js';

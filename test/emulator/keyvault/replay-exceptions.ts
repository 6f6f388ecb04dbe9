/**
 * Documented differences between the emulated vault and the recorded real service
 * (test/fixtures/kv-recordings), each with its reason. replay.test.ts fails on any difference not listed
 * here, and on any entry here that no longer matches a difference: when the emulator learns an operation,
 * delete its entry and the recording becomes a real comparison.
 */
import type { ReplayException } from '../../helpers/vault-replay.js';

export const REPLAY_EXCEPTIONS: readonly ReplayException[] = [];

/**
 * The emulated attestation service's use of the TCG log an AzureGuest request carries (`TcgLogs`): the log must
 * replay to the quoted PCRs, and the boot claims (`x-ms-azurevm-*`, top level of the token as in Microsoft's
 * AzureGuest samples: Azure/confidential-computing-cvm-guest-attestation aks-linux-sample/README.md and
 * MicrosoftDocs/azure-docs articles/confidential-computing/guest-attestation-confidential-vms.md) are derived
 * from it.
 *
 * Microsoft documents neither the service's replay check nor how it derives these claims; no public artifact
 * shows the error the real service returns for a log that does not match the quote. The emulator refuses such
 * a log (400, check `tcg-log`) and derives the claims plainly, as commented in `bootClaims`.
 */
import { type EvidenceCheck, EvidenceVerificationError, MalformedDataError } from '../../errors.js';
import { bytesEqual, toHex } from '../../snp/bytes.js';
import { runCheck } from '../../snp/verify.js';
import { parseEventLog, replaySha256, type SecureBootState, secureBootState } from '../../tpm/event-log.js';

/**
 * Checks `tcgLog` against the quoted (already verified) SHA-256 PCRs: each quoted PCR must equal the log's
 * replay (zero when the log does not extend it). An empty log is accepted without boot claims: Microsoft's
 * clients send one when the kernel's log cannot be read, and tokens then lack the x-ms-azurevm boot claims.
 */
export function checkTcgLog(
  checks: EvidenceCheck[],
  tcgLog: Uint8Array,
  pcrs: readonly { index: number; digest: Uint8Array }[],
): SecureBootState | undefined {
  if (tcgLog.length === 0) return undefined;
  return runCheck(checks, 'tcg-log', () => {
    let state: SecureBootState;
    let replay: Map<number, Uint8Array>;
    try {
      const log = parseEventLog(tcgLog);
      replay = replaySha256(log);
      state = secureBootState(log);
    } catch (error) {
      if (error instanceof MalformedDataError && error.code === 'ERR_TCG_LOG_MALFORMED') {
        throw new EvidenceVerificationError('ERR_EVIDENCE_VERIFICATION', `TcgLogs: ${error.message}`, 'tcg-log', {
          cause: error,
        });
      }
      throw error;
    }
    for (const p of pcrs) {
      const replayed = replay.get(p.index) ?? new Uint8Array(32);
      if (!bytesEqual(replayed, p.digest)) {
        throw new EvidenceVerificationError(
          'ERR_EVIDENCE_VERIFICATION',
          `the TCG log does not replay to the quoted PCR ${p.index} (log ${toHex(replayed).slice(0, 16)}..., ` +
            `quote ${toHex(p.digest).slice(0, 16)}...): send the log of the boot the quote was made in`,
          'tcg-log',
        );
      }
    }
    return { detail: `the TCG log replays to the ${pcrs.length} quoted PCRs`, value: state };
  });
}

/**
 * The boot claims of a replayed log.
 *
 * - `x-ms-azurevm-dbvalidated` / `-dbxvalidated`: secure boot was on and db / dbx were measured non-empty in
 *   PCR 7. The real service presumably also compares them with known-good contents (undocumented); the emulator
 *   does not know Microsoft's lists.
 * - `x-ms-azurevm-default-securebootkeysvalidated`: secure boot on and PK, KEK, db and dbx all measured
 *   non-empty (same caveat).
 * - The Windows boot-configuration claims (boot/kernel/hypervisor debugging, ELAM, flight and test signing,
 *   HVCI policy, signing disabled) come from Windows boot-manager events in PCRs 12-14, which this parser does
 *   not read and a Linux log does not have; they take the values of the Linux sample token (no debugging, no
 *   ELAM, HVCI policy 0, `signingdisabled` and `debuggersdisabled` true as that sample shows).
 */
export function bootClaims(state: SecureBootState): Record<string, boolean | number> {
  const nonEmpty = (name: keyof SecureBootState['variables']) => (state.variables[name]?.length ?? 0) > 0;
  const on = state.enabled;
  return {
    'x-ms-azurevm-bootdebug-enabled': false,
    'x-ms-azurevm-dbvalidated': on && nonEmpty('db'),
    'x-ms-azurevm-dbxvalidated': on && nonEmpty('dbx'),
    'x-ms-azurevm-debuggersdisabled': true,
    'x-ms-azurevm-default-securebootkeysvalidated':
      on && nonEmpty('PK') && nonEmpty('KEK') && nonEmpty('db') && nonEmpty('dbx'),
    'x-ms-azurevm-elam-enabled': false,
    'x-ms-azurevm-flightsigning-enabled': false,
    'x-ms-azurevm-hvci-policy': 0,
    'x-ms-azurevm-hypervisordebug-enabled': false,
    'x-ms-azurevm-kerneldebug-enabled': false,
    'x-ms-azurevm-signingdisabled': true,
    'x-ms-azurevm-testsigning-enabled': false,
  };
}

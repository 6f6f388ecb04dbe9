import { TransportError } from '../../src/errors.js';
import type { TpmTransport } from '../../src/hal/types.js';
import { TPM_RC } from '../../src/tpm/rc.js';

export type TpmWarning = 'RETRY' | 'YIELDED' | 'TESTING';

/** What the wrapper does with one command. */
export type TpmFault =
  | 'pass'
  /** answer with a bare warning header; the TPM never sees the command */
  | { warning: TpmWarning }
  /** wait, then pass */
  | { delayMs: number }
  /** the TPM runs the command; at most `keep` bytes of its answer arrive, always at least one byte short */
  | { truncate: number | 'half' }
  /** the TPM runs the command; its answer is replaced by `length` seeded random bytes (default: same length) */
  | { garbage: number | 'same' }
  /** the connection drops: before the TPM sees the command, or after it ran it (the answer is lost) */
  | { drop: 'before' | 'after' };

export interface TransmitRecord {
  /** 0-based index over every transmit through the wrapper. */
  index: number;
  cc: number;
  fault: TpmFault;
}

/** Chooses the fault for one command; `index` counts every transmit, `cc` is the command code. */
export type FaultScript = (index: number, cc: number) => TpmFault;

/** Small deterministic PRNG (mulberry32): the same seed injects the same faults in the same places. */
export function seededRandom(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let x = a;
    x = Math.imul(x ^ (x >>> 15), x | 1);
    x ^= x + Math.imul(x ^ (x >>> 7), x | 61);
    return ((x ^ (x >>> 14)) >>> 0) / 4294967296;
  };
}

/** Faults by command index: `{ 3: { warning: 'RETRY' } }` hits the fourth transmit only. */
export function scripted(faults: Record<number, TpmFault>): FaultScript {
  return (index) => faults[index] ?? 'pass';
}

/** Faults for every transmit of one command code, the first `times` of them (default: all). */
export function onCommand(cc: number, fault: TpmFault, times = Number.POSITIVE_INFINITY): FaultScript {
  let hits = 0;
  return (_index, code) => (code === cc && hits++ < times ? fault : 'pass');
}

/** Each command faulted with probability `rate`, the fault drawn from `faults`, all from `seed`. */
export function randomFaults(seed: number, rate: number, faults: readonly TpmFault[]): FaultScript {
  const next = seededRandom(seed);
  return () => (next() < rate ? (faults[Math.floor(next() * faults.length)] ?? 'pass') : 'pass');
}

function warningFrame(rc: number): Uint8Array {
  const out = Buffer.alloc(10);
  out.writeUInt16BE(0x8001, 0);
  out.writeUInt32BE(10, 2);
  out.writeUInt32BE(rc, 6);
  return new Uint8Array(out);
}

/**
 * A TPM transport wrapper that injects faults in front of a real TPM (swtpm): warnings, delays, truncated or
 * garbage answers and dropped connections, scripted per command index or drawn from a seed. It counts what
 * passed through, so tests can check retries are bounded and what reached the TPM.
 */
export class FaultTransport implements TpmTransport {
  readonly inner: TpmTransport;
  script: FaultScript;
  readonly log: TransmitRecord[] = [];
  /** Commands the TPM itself received. */
  delivered = 0;
  readonly #garbage: () => number;

  constructor(inner: TpmTransport, script: FaultScript = () => 'pass', seed = 1) {
    this.inner = inner;
    this.script = script;
    this.#garbage = seededRandom(seed ^ 0x5eed);
  }

  /** Transmits of one command code seen so far (faulted or not). */
  count(cc: number): number {
    return this.log.filter((r) => r.cc === cc).length;
  }

  /** Transmits that were faulted (anything but 'pass'). */
  get faults(): TransmitRecord[] {
    return this.log.filter((r) => r.fault !== 'pass');
  }

  async transmit(command: Uint8Array): Promise<Uint8Array> {
    const cc = command.length >= 10 ? Buffer.from(command.buffer, command.byteOffset, 10).readUInt32BE(6) : 0;
    const index = this.log.length;
    const fault = this.script(index, cc);
    this.log.push({ index, cc, fault });
    if (fault === 'pass') return this.#deliver(command);
    if ('warning' in fault) return warningFrame(TPM_RC[fault.warning]);
    if ('delayMs' in fault) {
      await new Promise((resolve) => setTimeout(resolve, fault.delayMs));
      return this.#deliver(command);
    }
    if ('drop' in fault) {
      if (fault.drop === 'after') await this.#deliver(command);
      throw new TransportError(
        `injected fault: connection dropped ${fault.drop} the TPM ran command ${index}`,
      );
    }
    const answer = await this.#deliver(command);
    if ('truncate' in fault) {
      const keep = fault.truncate === 'half' ? Math.floor(answer.length / 2) : fault.truncate;
      return answer.slice(0, Math.max(0, Math.min(keep, answer.length - 1)));
    }
    const length = fault.garbage === 'same' ? answer.length : fault.garbage;
    return Uint8Array.from({ length }, () => Math.floor(this.#garbage() * 256));
  }

  #deliver(command: Uint8Array): Promise<Uint8Array> {
    this.delivered++;
    return this.inner.transmit(command);
  }

  close(): Promise<void> {
    return this.inner.close();
  }
}

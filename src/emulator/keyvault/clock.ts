/**
 * The emulator's virtual clock. Key timestamps, token validity, auto-rotation and expiry notifications all
 * read it, so a test can jump two years ahead in one call and see exactly what the service would have done
 * in between. `advance()` stops at every scheduled instant on the way (a rotation due at +18 months fires
 * with the clock reading +18 months, not +2 years), in order, each exactly once.
 */
import { InvalidArgumentError } from '../../errors.js';
import { addDuration, type Duration, parseDuration } from '../../rotation/duration.js';

/** Something that has work due at certain instants (the vault's lifetime-action scheduler). */
export interface ClockTask {
  /** Earliest instant (ms) with work due, or undefined when nothing is scheduled. */
  nextDueMs(): number | undefined;
  /** Does all work due at or before `nowMs`. Must make progress: afterwards `nextDueMs()` is later. */
  runDue(nowMs: number): Promise<void>;
}

export interface VirtualClockOptions {
  /** Where the clock starts. Default: the real time. */
  start?: Date;
  /** When true the clock only moves through `advance`/`set`; otherwise it also follows real time. Default false. */
  frozen?: boolean;
}

/** Upper bound on task runs per advance; a task that never makes progress ends in an error, not a hang. */
const MAX_STEPS = 100_000;

export class VirtualClock {
  readonly frozen: boolean;
  #offsetMs: number;
  #frozenAtMs: number;
  readonly #tasks = new Set<ClockTask>();
  #queue: Promise<unknown> = Promise.resolve();

  constructor(options: VirtualClockOptions = {}) {
    this.frozen = options.frozen ?? false;
    const start = options.start?.getTime() ?? Date.now();
    if (!Number.isFinite(start)) throw new InvalidArgumentError('clock start must be a valid Date');
    this.#frozenAtMs = start;
    this.#offsetMs = start - Date.now();
  }

  nowMs(): number {
    return this.frozen ? this.#frozenAtMs : Date.now() + this.#offsetMs;
  }

  now(): Date {
    return new Date(this.nowMs());
  }

  /** Seconds since the epoch, as Key Vault attributes carry them. */
  nowSeconds(): number {
    return Math.floor(this.nowMs() / 1000);
  }

  #setMs(ms: number): void {
    if (this.frozen) this.#frozenAtMs = ms;
    else this.#offsetMs = ms - Date.now();
  }

  addTask(task: ClockTask): () => void {
    this.#tasks.add(task);
    return () => this.#tasks.delete(task);
  }

  /**
   * Moves the clock forward by an ISO-8601 duration (`P18M`, `PT1H`, calendar arithmetic) or a number of
   * milliseconds, running every task due on the way at its due instant. Calls are serialised.
   */
  advance(by: string | Duration | number): Promise<Date> {
    return this.#serial(async () => {
      const now = this.nowMs();
      let target: number;
      if (typeof by === 'number') {
        if (!Number.isFinite(by) || by < 0)
          throw new InvalidArgumentError('clock.advance takes a duration >= 0');
        target = now + by;
      } else {
        const d = typeof by === 'string' ? parseDuration(by, 'clock.advance duration') : by;
        target = addDuration(new Date(now), d).getTime();
      }
      await this.#runUntil(target);
      return this.now();
    });
  }

  /** Moves the clock to an instant (never backwards), running due tasks on the way. */
  advanceTo(date: Date): Promise<Date> {
    return this.#serial(async () => {
      const target = date.getTime();
      if (!Number.isFinite(target)) throw new InvalidArgumentError('clock.advanceTo takes a valid Date');
      if (target < this.nowMs()) throw new InvalidArgumentError('the virtual clock does not go backwards');
      await this.#runUntil(target);
      return this.now();
    });
  }

  /** Runs what is due now without moving the clock (a running clock calls this as real time passes). */
  tick(): Promise<void> {
    return this.#serial(() => this.#runUntil(this.nowMs()));
  }

  #serial<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.#queue.then(fn, fn);
    this.#queue = run.catch(() => undefined);
    return run;
  }

  async #runUntil(target: number): Promise<void> {
    for (let step = 0; ; step++) {
      if (step >= MAX_STEPS) {
        throw new InvalidArgumentError(
          'clock tasks did not settle; a scheduled action keeps rescheduling itself',
        );
      }
      let next: { task: ClockTask; at: number } | undefined;
      for (const task of this.#tasks) {
        const at = task.nextDueMs();
        if (at !== undefined && at <= target && (next === undefined || at < next.at)) next = { task, at };
      }
      if (!next) break;
      if (next.at > this.nowMs()) this.#setMs(next.at);
      await next.task.runDue(this.nowMs());
    }
    if (target > this.nowMs()) this.#setMs(target);
  }
}

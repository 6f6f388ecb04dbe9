/**
 * Cancellation and deadlines that hold.
 *
 * Why not `AbortSignal.any([..., AbortSignal.timeout(ms)])`: Node keeps the sources of `AbortSignal.any`
 * only weakly, and the timer behind `AbortSignal.timeout` only weakly references its signal, so once a
 * garbage collection runs, nothing holds the timeout signal and it never fires: a call against a server that
 * accepts and never answers then hangs (https://github.com/nodejs/node/issues/48951 and
 * https://nodejs.org/api/globals.html#static-method-abortsignaltimeoutdelay, "the timer is unref'd"). Here a
 * plain `setTimeout` closure and listeners on the parent signals hold the controller strongly until
 * `dispose()`.
 */
import { AbortError, InvalidArgumentError, TimeoutError } from '../errors.js';

/** Call options that take a cancellation signal under either name: ours, or the Azure SDK's. */
export interface CancelOptions {
  signal?: AbortSignal;
  /** Same as `signal` (the name the Azure SDK uses); when both are given, either one aborts the call. */
  abortSignal?: AbortSignal;
}

/** The caller's signal from `signal` and/or `abortSignal`; undefined when neither is given. */
export function callerSignal(options: CancelOptions | undefined): AbortSignal | undefined {
  const signals = [options?.signal, options?.abortSignal].filter(
    (s): s is AbortSignal => s !== undefined,
  );
  for (const s of signals) {
    if (!(s instanceof AbortSignal) && typeof (s as AbortSignal)?.addEventListener !== 'function') {
      throw new InvalidArgumentError('signal / abortSignal must be an AbortSignal');
    }
  }
  if (signals.length === 0) return undefined;
  if (signals.length === 1 || signals[0] === signals[1]) return signals[0];
  // Both given: the caller holds both, so AbortSignal.any's weak references are enough here.
  return AbortSignal.any(signals);
}

/** Rejects with `AbortError` when `signal` is already aborted: call before starting any work. */
export function throwIfAborted(signal: AbortSignal | undefined, what: string): void {
  if (signal?.aborted) throw abortErrorOf(signal, what);
}

/** The coded error for an aborted signal: the reason itself when it is already ours, else `AbortError`. */
export function abortErrorOf(signal: AbortSignal, what: string): Error {
  const reason: unknown = signal.reason;
  if (reason instanceof AbortError) return reason;
  return new AbortError(`${what} was aborted`, { cause: reason });
}

export interface Deadline {
  /** Aborts when any parent aborts (with the parent's reason) or when the time is up (`TimeoutError`). */
  readonly signal: AbortSignal;
  /** True when it was the deadline, not a parent, that aborted. */
  readonly timedOut: boolean;
  /** Stops the timer and detaches from the parents. Idempotent. */
  dispose(): void;
}

/**
 * A signal that aborts after `timeoutMs`, or as soon as one of `parents` aborts. Holds itself strongly
 * (timer closure, parent listeners) until `dispose()`, so garbage collection cannot cancel the deadline.
 * `message` becomes the `TimeoutError` message.
 */
export function deadline(
  timeoutMs: number,
  parents: ReadonlyArray<AbortSignal | undefined>,
  message: string,
): Deadline {
  const controller = new AbortController();
  let timedOut = false;
  const listeners: [AbortSignal, () => void][] = [];
  const dispose = () => {
    clearTimeout(timer);
    for (const [parent, listener] of listeners) parent.removeEventListener('abort', listener);
    listeners.length = 0;
  };
  const timer = setTimeout(() => {
    timedOut = true;
    controller.abort(new TimeoutError(message, { timeoutMs }));
    dispose();
  }, timeoutMs);
  // Unref'd: an idle process may exit; while work is pending its own sockets keep the loop alive, and the
  // timer list still holds this closure strongly.
  timer.unref?.();
  for (const parent of parents) {
    if (!parent) continue;
    if (parent.aborted) {
      controller.abort(parent.reason);
      dispose();
      break;
    }
    const listener = () => {
      controller.abort(parent.reason);
      dispose();
    };
    parent.addEventListener('abort', listener, { once: true });
    listeners.push([parent, listener]);
  }
  return {
    signal: controller.signal,
    get timedOut() {
      return timedOut;
    },
    dispose,
  };
}

/**
 * Settles with `promise`, or rejects as soon as `signal` aborts, whichever comes first. The work behind
 * `promise` may go on (it can be shared with other callers); its later rejection is handled here, so it can
 * never surface as an unhandled rejection.
 */
export function raceAbort<T>(promise: Promise<T>, signal: AbortSignal | undefined, what: string): Promise<T> {
  promise.catch(() => {});
  if (!signal) return promise;
  if (signal.aborted) return Promise.reject(abortErrorOf(signal, what));
  return new Promise<T>((resolve, reject) => {
    const onAbort = () => reject(abortErrorOf(signal, what));
    signal.addEventListener('abort', onAbort, { once: true });
    promise.then(
      (value) => {
        signal.removeEventListener('abort', onAbort);
        resolve(value);
      },
      (error: unknown) => {
        signal.removeEventListener('abort', onAbort);
        reject(error);
      },
    );
  });
}

/** A positive finite number of milliseconds, or `InvalidArgumentError` naming the option. */
export function checkMs(value: unknown, name: string, options: { allowZero?: boolean } = {}): void {
  if (value === undefined) return;
  const ok =
    typeof value === 'number' &&
    Number.isFinite(value) &&
    (options.allowZero ? value >= 0 : value > 0) &&
    value <= 2_147_483_647;
  if (!ok) {
    throw new InvalidArgumentError(
      `${name} must be a number of milliseconds ${options.allowZero ? '>= 0' : '> 0'} (at most 2^31-1), not ${String(value)}`,
    );
  }
}

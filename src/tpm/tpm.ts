import { TpmError } from '../errors.js';
import type { TpmTransport } from '../hal/types.js';
import { commandName, TPM_CC, TPM_ST } from './constants.js';
import { TpmReader, TpmWriter } from './marshal.js';
import { RETRYABLE_RCS, tpmErrorFor } from './rc.js';
import type { AuthSession } from './sessions.js';

/** One command as the command definitions describe it (cf. go-tpm's direct API). */
export interface CommandRequest {
  cc: number;
  /** Handles of the handle area, in order. */
  handles?: readonly number[];
  /** One authorization per handle that needs one (in handle order). Absent: TPM_ST_NO_SESSIONS. */
  auths?: readonly AuthSession[];
  /** Writes the parameter area. */
  params?: (w: TpmWriter) => void;
  /** How many handles the response carries before its parameters. */
  responseHandles?: number;
}

export interface CommandResponse {
  handles: number[];
  /** Reader over exactly the response parameter area. */
  params: TpmReader;
}

export interface RetryOptions {
  /** Attempts in total for TPM_RC_RETRY / YIELDED / TESTING. Default 8. */
  attempts?: number;
  /** First delay in ms, doubled each time up to `maxDelayMs`. Default 2. */
  initialDelayMs?: number;
  maxDelayMs?: number;
}

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

/**
 * A TPM behind a transport: frames commands, sends them, decodes the response header and response code,
 * retries the warnings that mean "send it again", and hands back the response parameters.
 */
export class Tpm {
  readonly transport: TpmTransport;
  readonly #attempts: number;
  readonly #initialDelay: number;
  readonly #maxDelay: number;

  constructor(transport: TpmTransport, retry: RetryOptions = {}) {
    this.transport = transport;
    this.#attempts = Math.max(1, retry.attempts ?? 8);
    this.#initialDelay = retry.initialDelayMs ?? 2;
    this.#maxDelay = retry.maxDelayMs ?? 100;
  }

  async execute(request: CommandRequest): Promise<CommandResponse> {
    const command = buildCommand(request);
    let delay = this.#initialDelay;
    for (let attempt = 1; ; attempt++) {
      const response = await this.transport.transmit(command);
      const handles: number[] = [];
      try {
        return parseResponse(response, request, handles);
      } catch (error) {
        // A handle the TPM created is ours even when the rest of its answer is unusable: do not leak it.
        for (const h of handles) await this.transport.transmit(flushCommand(h)).catch(() => {});
        if (!(error instanceof TpmError) || !RETRYABLE_RCS.has(error.rc) || attempt >= this.#attempts)
          throw error;
      }
      await sleep(delay);
      delay = Math.min(delay * 2, this.#maxDelay);
    }
  }
}

export function buildCommand(request: CommandRequest): Uint8Array {
  const w = new TpmWriter(128);
  const auths = request.auths;
  w.u16(auths && auths.length > 0 ? TPM_ST.SESSIONS : TPM_ST.NO_SESSIONS);
  w.u32(0); // size, patched below
  w.u32(request.cc);
  for (const h of request.handles ?? []) w.u32(h);
  if (auths && auths.length > 0) {
    const done = w.reserveSize32();
    for (const a of auths) {
      w.u32(a.handle).tpm2b(a.nonce).u8(a.attributes).tpm2b(a.hmac);
    }
    done();
  }
  request.params?.(w);
  w.setU32(2, w.length);
  return w.finish();
}

function flushCommand(handle: number): Uint8Array {
  return buildCommand({ cc: TPM_CC.FlushContext, params: (w) => w.u32(handle) });
}

/** Transient objects (0x80) and HMAC/policy sessions (0x02, 0x03): what CreatePrimary and StartAuthSession return. */
function isCreatableHandle(handle: number): boolean {
  const type = handle >>> 24;
  return type === 0x80 || type === 0x02 || type === 0x03;
}

function parseResponse(response: Uint8Array, request: CommandRequest, handles: number[]): CommandResponse {
  const name = commandName(request.cc);
  const r = new TpmReader(response, `${name} response`);
  const tag = r.u16('tag');
  const size = r.u32('responseSize');
  const rc = r.u32('responseCode');
  if (size !== response.length) {
    // A damaged success answer may still carry the handles the TPM created; record them so execute() flushes
    // them (without a resource manager nothing else would). Only handle types a command can create qualify.
    if (rc === 0) {
      for (let i = 0; i < (request.responseHandles ?? 0) && r.remaining >= 4; i++) {
        const handle = r.u32('response handle');
        if (isCreatableHandle(handle)) handles.push(handle);
      }
    }
    r.fail(`header declares ${size} bytes but ${response.length} arrived`);
  }
  if (rc !== 0) {
    // A TPM answers errors with a bare header; the code is what matters.
    throw tpmErrorFor(rc, name);
  }
  for (let i = 0; i < (request.responseHandles ?? 0); i++) handles.push(r.u32('response handle'));
  if (tag === TPM_ST.SESSIONS) {
    const paramSize = r.u32('parameterSize');
    const params = r.sub(paramSize, 'parameters');
    const expected = request.auths?.length ?? 0;
    for (let i = 0; i < expected; i++) {
      r.tpm2b('response nonce', 64);
      r.u8('response session attributes');
      r.tpm2b('response hmac', 64);
    }
    r.expectEnd();
    return { handles, params };
  }
  if (tag !== TPM_ST.NO_SESSIONS) r.fail(`tag 0x${tag.toString(16)} is not a response tag`);
  if (request.auths && request.auths.length > 0) r.fail('command had sessions but the response has none');
  return { handles, params: r.sub(r.remaining, 'parameters') };
}

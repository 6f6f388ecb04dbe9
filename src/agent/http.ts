/** JSON over HTTP for the agent's two APIs: bounded request bodies, uncached answers. */
import type { IncomingMessage } from 'node:http';
import { InvalidArgumentError } from '../errors.js';
import { readBoundedBody } from '../util/http-body.js';

export { sendJson } from '../util/http-body.js';

const MAX_BODY_BYTES = 64 * 1024;


export async function readJson(req: IncomingMessage): Promise<unknown> {
  const body = await readBoundedBody(req, MAX_BODY_BYTES);
  if (body === undefined) throw new InvalidArgumentError(`request body over ${MAX_BODY_BYTES} bytes`);
  const text = body.toString('utf8');
  if (text.trim() === '') return {};
  try {
    return JSON.parse(text);
  } catch (error) {
    throw new InvalidArgumentError('the request body is not JSON', { cause: error });
  }
}


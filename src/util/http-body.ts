/**
 * Request bodies and JSON answers for the HTTP servers of this package (the key agent and the emulated
 * services). Each server answers an oversized body in its own service's words; this reads it safely.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';

/**
 * The body of `req`, or `undefined` when it is longer than `limit` bytes. Past the limit the rest is read and
 * dropped, not kept, so memory stays bounded and the client still reads the refusal the caller sends.
 */
export async function readBoundedBody(req: IncomingMessage, limit: number): Promise<Buffer | undefined> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req as AsyncIterable<Buffer>) {
    size += chunk.length;
    if (size <= limit) chunks.push(chunk);
  }
  return size > limit ? undefined : Buffer.concat(chunks);
}

/** A JSON answer that no cache keeps. */
export function sendJson(res: ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}): void {
  const text = JSON.stringify(body);
  res.writeHead(status, {
    'content-type': 'application/json; charset=utf-8',
    'content-length': Buffer.byteLength(text),
    'cache-control': 'no-store',
    ...headers,
  });
  res.end(text);
}

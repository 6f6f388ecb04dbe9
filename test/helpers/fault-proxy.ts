import type { IncomingHttpHeaders } from 'node:http';
import { createServer, request } from 'node:https';
import type { AddressInfo } from 'node:net';
import type { EmulatorCa } from '../../src/emulator/ca.js';

export interface ProxiedRequest {
  method: string;
  path: string;
  headers: IncomingHttpHeaders;
  /** 1-based count of requests the proxy has seen so far, this one included. */
  seq: number;
  /** Arrival time (ms since the epoch). */
  at: number;
  /** The request body. */
  body: Buffer;
}

/** What the proxy does with one request. */
export type Fault =
  | 'pass'
  /** answer at once, never reaching the target */
  | { status: number; headers?: Record<string, string>; body?: string }
  /** drop the connection without answering */
  | 'reset'
  /** wait, then pass */
  | { delayMs: number }
  /** pass, then rewrite the answer body (and optionally its content type) */
  | { rewrite: (body: Buffer) => Buffer; contentType?: string };

type Duplex = import('node:stream').Duplex;

export interface FaultProxy {
  /** `https://127.0.0.1:<port>` */
  readonly url: string;
  /** Where passed requests go; settable after start, so the proxy's URL can be configured into the target. */
  target: string;
  /** Decides per request (may take its time, e.g. to fetch a genuine answer to replay); default passes everything. */
  plan: (request: ProxiedRequest) => Fault | Promise<Fault>;
  readonly requests: ProxiedRequest[];
  close(): Promise<void>;
}

/**
 * An HTTPS fault proxy on loopback for the emulated services: 429 with Retry-After, 5xx, resets, slow or
 * rewritten answers. Its certificate comes from the emulator CA, so clients trusting the emulator trust it.
 */
export async function startFaultProxy(ca: EmulatorCa, target = ''): Promise<FaultProxy> {
  const cert = await ca.issueServerCertificate();
  const requests: ProxiedRequest[] = [];
  const sockets = new Set<Duplex>();
  const proxy: FaultProxy = {
    url: '',
    target,
    plan: () => 'pass',
    requests,
    close: () =>
      new Promise<void>((resolve) => {
        for (const s of sockets) s.destroy();
        server.close(() => resolve());
      }),
  };
  const server = createServer({ key: cert.keyPem, cert: cert.certPem }, (req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', async () => {
      const info: ProxiedRequest = {
        method: req.method ?? 'GET',
        path: req.url ?? '/',
        at: Date.now(),
        headers: req.headers,
        seq: requests.length + 1,
        body: Buffer.concat(chunks),
      };
      requests.push(info);
      let fault: Fault;
      try {
        fault = await proxy.plan(info);
      } catch {
        req.socket.destroy(); // a plan that fails answers nothing rather than leaving the client waiting
        return;
      }
      if (fault === 'reset') {
        req.socket.destroy();
        return;
      }
      if (typeof fault === 'object' && 'status' in fault) {
        res.writeHead(fault.status, {
          'content-type': 'application/json',
          ...fault.headers,
        });
        res.end(fault.body ?? '');
        return;
      }
      if (typeof fault === 'object' && 'delayMs' in fault) {
        const { delayMs } = fault;
        await new Promise((r) => setTimeout(r, delayMs));
        fault = 'pass';
      }
      const rewrite = typeof fault === 'object' && 'rewrite' in fault ? fault : undefined;
      const upstream = new URL(info.path, proxy.target);
      const headers = { ...req.headers, host: upstream.host };
      const out = request(upstream, { method: info.method, headers, ca: ca.certPem }, (answer) => {
        const body: Buffer[] = [];
        answer.on('data', (c: Buffer) => body.push(c));
        answer.on('end', () => {
          let payload: Buffer = Buffer.concat(body);
          const responseHeaders = { ...answer.headers };
          if (rewrite) {
            payload = rewrite.rewrite(payload);
            if (rewrite.contentType) responseHeaders['content-type'] = rewrite.contentType;
          }
          responseHeaders['content-length'] = String(payload.length);
          delete responseHeaders['transfer-encoding'];
          res.writeHead(answer.statusCode ?? 502, responseHeaders);
          res.end(payload);
        });
      });
      out.on('error', () => req.socket.destroy());
      out.end(Buffer.concat(chunks));
    });
  });
  server.on('connection', (s) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  (proxy as { url: string }).url = `https://127.0.0.1:${(server.address() as AddressInfo).port}`;
  return proxy;
}

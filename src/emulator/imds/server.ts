/**
 * The emulated Azure Instance Metadata Service (IMDS): plain HTTP on loopback, as IMDS is plain HTTP on
 * 169.254.169.254 inside a VM. It serves what a confidential VM's guest asks IMDS for:
 *
 * - `GET /metadata/THIM/amd/certification` (header `Metadata: true`): the emulated chip's VCEK for the host's
 *   TCB, `{vcekCert, tcbm, certificateChain, cacheControl}` with PEM strings — the shape and key order of a
 *   recorded answer (microsoft/confidential-sidecar-containers pkg/attest/test_data, copied to
 *   test/fixtures/snp/aci-milan/thim.json), and the path Microsoft's guest library asks
 *   (Azure/confidential-computing-cvm-guest-attestation client-library/.../lib/ImdsOperations.cpp).
 * - `GET /metadata/instance/compute/vmId?api-version=2019-03-11&format=text`: the VM id as text.
 * - `POST /metadata/THIM/tvm/certificate/renew?api-version=2023-07-01&vmId=&requestId=`: body the current AK
 *   certificate as URL-encoded PEM; answers `{AkCertPem, CertQueryId}` with a new certificate for the same key
 *   from the emulated vTPM CA (request as in ImdsClient.cpp and TpmCertOperations.cpp of the same repo; the
 *   answer's key names from its AttestationLibConst.h; no recorded answer exists, so the rest is ours).
 *
 * Requests without `Metadata: true` are refused with 400, as IMDS refuses them.
 */
import { randomUUID, X509Certificate } from 'node:crypto';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { EmulatorError } from '../errors.js';
import { listenError } from '../listen-error.js';
import { readBoundedBody } from '../../util/http-body.js';
import type { EmulatedAkCa } from '../hardware/ak-ca.js';
import type { EmulatedAmd, TcbParts } from '../hardware/amd.js';

export interface ImdsEmulatorOptions {
  /** The chip whose VCEK THIM serves. */
  amd: EmulatedAmd;
  /** The CA that renews AK certificates; without it renewal answers 404. */
  akCa?: EmulatedAkCa;
  /** The host's TCB THIM certifies; default the chip's. */
  tcb?: Partial<TcbParts>;
  /** THIM's `cacheControl` (seconds, as a string like the service). Default '86400'. */
  cacheControl?: string;
  /** Default: a random UUID. */
  vmId?: string;
  /** Validity of renewed AK certificates; default a year from now. */
  renewedValidityDays?: number;
  /** Clock for renewed certificates. */
  now?: () => Date;
  /** Default 127.0.0.1. */
  host?: string;
  /** Default 0 (any free port). */
  port?: number;
}

export interface ImdsEmulatorCounters {
  thim: number;
  vmId: number;
  renew: number;
  /** Requests answered with an error status. */
  refused: number;
}

export interface ImdsEmulator {
  /** Base URL, e.g. `http://127.0.0.1:41234` (what `CVM_SKR_IMDS_URL` / `imdsUrl` take). */
  readonly url: string;
  readonly vmId: string;
  readonly counters: ImdsEmulatorCounters;
  /** Change what THIM serves (e.g. a host whose TCB moved) or make it fail with an HTTP status. */
  setThim(options: { tcb?: Partial<TcbParts>; failStatus?: number }): void;
  /** Make renewal answer 200 without AkCertPem (`'empty'`), an HTTP status, or work again (`undefined`). */
  setRenewalFailure(failure: 'empty' | number | undefined): void;
  close(): Promise<void>;
}

const MAX_BODY = 64 * 1024;
const DAY_MS = 86_400_000;

function withNewline(pem: string): string {
  return pem.endsWith('\n') ? pem : `${pem}\n`;
}

function send(res: ServerResponse, status: number, body: unknown, type = 'application/json; charset=utf-8'): void {
  const text = typeof body === 'string' ? body : JSON.stringify(body);
  res.writeHead(status, { 'content-type': type, 'content-length': Buffer.byteLength(text) });
  res.end(text);
}

async function readBody(req: IncomingMessage): Promise<string> {
  const body = await readBoundedBody(req, MAX_BODY);
  if (body === undefined) throw new EmulatorError('request body too large');
  return body.toString('utf8');
}

/** Starts the emulated IMDS. */
export async function startImdsEmulator(options: ImdsEmulatorOptions): Promise<ImdsEmulator> {
  const { amd } = options;
  const vmId = options.vmId ?? randomUUID();
  const now = options.now ?? (() => new Date());
  let thimTcb = options.tcb ?? {};
  let thimFailStatus: number | undefined;
  let renewalFailure: 'empty' | number | undefined;
  const counters: ImdsEmulatorCounters = { thim: 0, vmId: 0, renew: 0, refused: 0 };

  const refuse = (res: ServerResponse, status: number, error: string) => {
    counters.refused++;
    send(res, status, { error });
  };

  const handle = async (req: IncomingMessage, res: ServerResponse): Promise<void> => {
    const target = new URL(req.url ?? '/', 'http://imds.invalid');
    const path = target.pathname;
    const method = req.method ?? 'GET';
    if (String(req.headers.metadata).toLowerCase() !== 'true') {
      refuse(res, 400, 'Bad request. Required metadata header not specified');
      return;
    }
    if (path === '/metadata/THIM/amd/certification' && method === 'GET') {
      counters.thim++;
      if (thimFailStatus !== undefined) {
        refuse(res, thimFailStatus, 'emulated THIM failure');
        return;
      }
      const vcek = await amd.vcek(thimTcb);
      send(res, 200, {
        vcekCert: withNewline(vcek.certPem),
        tcbm: vcek.tcb.raw.toString(16).padStart(16, '0').toUpperCase(),
        certificateChain: withNewline(amd.askPem) + withNewline(amd.arkPem),
        cacheControl: options.cacheControl ?? '86400',
      });
      return;
    }
    if (path === '/metadata/instance/compute/vmId' && method === 'GET') {
      counters.vmId++;
      if (target.searchParams.get('format') !== 'text') {
        refuse(res, 400, 'this emulated endpoint answers format=text only');
        return;
      }
      send(res, 200, vmId, 'text/plain; charset=utf-8');
      return;
    }
    if (path === '/metadata/THIM/tvm/certificate/renew' && method === 'POST') {
      counters.renew++;
      const q = target.searchParams;
      if (q.get('vmId') !== vmId || !q.get('requestId') || !q.get('api-version')) {
        refuse(res, 400, 'api-version, vmId (of this VM) and requestId are required');
        return;
      }
      if (typeof renewalFailure === 'number') {
        refuse(res, renewalFailure, 'emulated renewal failure');
        return;
      }
      if (options.akCa === undefined) {
        refuse(res, 404, 'AK certificate renewal is not configured in this emulated IMDS');
        return;
      }
      let current: X509Certificate;
      try {
        current = new X509Certificate(decodeURIComponent(await readBody(req)));
      } catch {
        refuse(res, 400, 'the body is not a URL-encoded PEM certificate');
        return;
      }
      if (renewalFailure === 'empty') {
        send(res, 200, { CertQueryId: randomUUID() });
        return;
      }
      const start = now().getTime();
      const der = await options.akCa.issue(current.publicKey, undefined, {
        notBefore: new Date(start - DAY_MS),
        notAfter: new Date(start + (options.renewedValidityDays ?? 365) * DAY_MS),
      });
      send(res, 200, { AkCertPem: new X509Certificate(der).toString(), CertQueryId: randomUUID() });
      return;
    }
    refuse(res, 404, `no such endpoint: ${method} ${path}`);
  };

  const server: Server = createServer({ requestTimeout: 30_000 }, (req, res) => {
    handle(req, res).catch(() => {
      if (!res.headersSent) refuse(res, 500, 'internal error');
    });
  });
  const host = options.host ?? '127.0.0.1';
  await new Promise<void>((resolve, reject) => {
    server.once('error', (e) => reject(listenError('IMDS', host, e)));
    server.listen(options.port ?? 0, host, () => resolve());
  });
  const { port } = server.address() as AddressInfo;
  const url = `http://${host.includes(':') ? `[${host}]` : host}:${port}`;
  let closed: Promise<void> | undefined;
  return {
    url,
    vmId,
    counters,
    setThim(change) {
      if (change.tcb !== undefined) thimTcb = change.tcb;
      thimFailStatus = change.failStatus;
    },
    setRenewalFailure(failure) {
      renewalFailure = failure;
    },
    close() {
      closed ??= new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      });
      return closed;
    },
  };
}

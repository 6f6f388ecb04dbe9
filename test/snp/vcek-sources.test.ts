import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import test, { type ExecutionContext } from 'ava';
import { AbortError, VcekFetchError } from '../../src/errors.js';
import { parseSnpReport } from '../../src/snp/report.js';
import { decodeTcb } from '../../src/snp/tcb.js';
import { VcekCache } from '../../src/snp/vcek-cache.js';
import {
  type FetchedCertificates,
  fetchKdsChain,
  fetchKdsVcek,
  fetchThimCertificates,
  kdsVcekUrl,
  readContainerCertificates,
  VcekFetcher,
} from '../../src/snp/vcek-sources.js';
import { verifySnpReport } from '../../src/snp/verify.js';
import { aciReport, aciThim, debugReport, debugVcek, fixtureText, NOW } from './_fixtures.js';

type Handler = (req: IncomingMessage, res: ServerResponse) => void;

/** A loopback HTTP server standing in for THIM and AMD KDS; counts requests per path. */
async function startServer(t: ExecutionContext, handler: Handler): Promise<{ base: string; hits: string[] }> {
  const hits: string[] = [];
  const server = createServer((req, res) => {
    hits.push(req.url ?? '');
    handler(req, res);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  t.teardown(
    () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  );
  const { port } = server.address() as AddressInfo;
  return { base: `http://127.0.0.1:${port}`, hits };
}

const delay = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

const thimHandler =
  (body: string): Handler =>
  (req, res) => {
    if (req.headers.metadata !== 'true') {
      res.writeHead(400).end('Metadata header required');
      return;
    }
    setTimeout(() => res.writeHead(200, { 'content-type': 'application/json' }).end(body), 30);
  };

test('THIM: one fetch for many concurrent callers, cached afterwards, certificates verify', async (t) => {
  const { base, hits } = await startServer(t, thimHandler(aciThim()));
  const fetcher = new VcekFetcher({ sources: ['thim'], thimUrl: `${base}/metadata/THIM/amd/certification` });
  const report = parseSnpReport(aciReport());
  const results = await Promise.all(Array.from({ length: 10 }, () => fetcher.certificatesFor(report)));
  t.is(hits.length, 1);
  t.is(hits[0], '/metadata/THIM/amd/certification');
  t.true(results.every((r) => r === results[0]));
  t.is(results[0]?.source, 'thim');
  await fetcher.certificatesFor(report);
  t.is(hits.length, 1);
  t.true(verifySnpReport(report, { certificates: results[0]?.certificates ?? [], now: NOW }).ok);
});

test('THIM: cacheControl sets the lifetime of the cached answer', async (t) => {
  const thim = { ...JSON.parse(aciThim()), cacheControl: '1' };
  const { base, hits } = await startServer(t, thimHandler(JSON.stringify(thim)));
  let now = 1_000_000;
  const cache = new VcekCache<FetchedCertificates>({ clock: () => now });
  const fetcher = new VcekFetcher({ sources: ['thim'], thimUrl: `${base}/thim`, cache });
  const report = parseSnpReport(aciReport());
  await fetcher.certificatesFor(report);
  now += 900;
  await fetcher.certificatesFor(report);
  t.is(hits.length, 1);
  now += 200;
  await fetcher.certificatesFor(report);
  t.is(hits.length, 2);
});

test('THIM: the Metadata header is sent; HTTP errors and non-JSON answers are typed', async (t) => {
  const { base } = await startServer(t, (req, res) => {
    if (req.url === '/thim') return thimHandler(aciThim())(req, res);
    if (req.url === '/html') return void res.writeHead(200).end('<html>');
    res.writeHead(503).end();
  });
  const thim = await fetchThimCertificates({ url: `${base}/thim` });
  t.is(thim.tcbm, '7308000000000003');
  const down = await t.throwsAsync(fetchThimCertificates({ url: `${base}/down` }), {
    instanceOf: VcekFetchError,
  });
  t.is(down?.statusCode, 503);
  t.is(down?.code, 'ERR_VCEK_FETCH');
  await t.throwsAsync(fetchThimCertificates({ url: `${base}/html` }), {
    instanceOf: VcekFetchError,
    message: /not JSON/,
  });
});

test('KDS: URL per product, one fetch for concurrent callers, Cache-Control honoured, VCEK verifies', async (t) => {
  const vcek = debugVcek();
  const { base, hits } = await startServer(t, (req, res) => {
    if (req.url?.startsWith('/vcek/v1/Milan/') && !req.url.includes('cert_chain')) {
      setTimeout(
        () =>
          res
            .writeHead(200, { 'content-type': 'application/pkix-cert', 'cache-control': 'max-age=60' })
            .end(vcek),
        30,
      );
      return;
    }
    if (req.url === '/vcek/v1/Milan/cert_chain')
      return void res.writeHead(200).end(fixtureText('amd/ask-ark-milan.pem'));
    res.writeHead(404).end();
  });
  const report = parseSnpReport(debugReport());
  let now = 0;
  const cache = new VcekCache<FetchedCertificates>({ clock: () => now });
  const fetcher = new VcekFetcher({ sources: ['kds'], kdsBaseUrl: `${base}/`, cache });
  const all = await Promise.all(
    Array.from({ length: 5 }, () => fetcher.certificatesFor(report, { product: 'Milan' })),
  );
  t.is(hits.length, 1);
  t.is(
    hits[0],
    `/vcek/v1/Milan/${Buffer.from(report.chipId).toString('hex')}?blSPL=2&teeSPL=0&snpSPL=5&ucodeSPL=68`,
  );
  t.is(all[0]?.source, 'kds');
  t.true(
    verifySnpReport(report, { certificates: all[0]?.certificates ?? [], now: NOW, allowDebug: true }).ok,
  );
  now += 59_000;
  await fetcher.certificatesFor(report, { product: 'Milan' });
  t.is(hits.length, 1);
  now += 2_000;
  await fetcher.certificatesFor(report, { product: 'Milan' });
  t.is(hits.length, 2);
  t.regex(await fetchKdsChain({ product: 'Milan', baseUrl: base }), /BEGIN CERTIFICATE/);
});

test('KDS: Turin uses 8 bytes of chip_id and fmcSPL', (t) => {
  const chip = Buffer.alloc(64);
  chip.write('0102030405060708', 'hex');
  chip[9] = 0xff; // beyond the 8 bytes Turin uses
  const url = kdsVcekUrl('Turin', chip, decodeTcb(0x4800000004030201n, 'Turin'), 'https://kds.example');
  t.is(
    url,
    'https://kds.example/vcek/v1/Turin/0102030405060708?fmcSPL=1&blSPL=2&teeSPL=3&snpSPL=4&ucodeSPL=72',
  );
  t.regex(
    kdsVcekUrl('Genoa', chip, decodeTcb(0n, 'Genoa')),
    /^https:\/\/kdsintf\.amd\.com\/vcek\/v1\/Genoa\/0102030405060708[0-9a-f]{112}\?blSPL=0/,
  );
});

test('KDS: 404, 429 and unreachable hosts are typed; failures are not cached', async (t) => {
  let status = 429;
  const { base, hits } = await startServer(t, (_req, res) => {
    res.writeHead(status, status === 429 ? { 'retry-after': '30' } : {}).end();
  });
  const report = parseSnpReport(debugReport());
  const request = {
    product: 'Milan' as const,
    chipId: report.chipId,
    reportedTcb: report.reportedTcb,
    baseUrl: base,
  };
  const limited = await t.throwsAsync(fetchKdsVcek(request), {
    instanceOf: VcekFetchError,
    message: /rate-limited, retry after 30/,
  });
  t.is(limited?.statusCode, 429);
  status = 404;
  const missing = await t.throwsAsync(fetchKdsVcek(request), { instanceOf: VcekFetchError });
  t.is(missing?.statusCode, 404);

  const fetcher = new VcekFetcher({ sources: ['kds'], kdsBaseUrl: base });
  const first = await t.throwsAsync(fetcher.certificatesFor(report, { product: 'Milan' }), {
    instanceOf: VcekFetchError,
  });
  t.is(first?.statusCode, 404);
  const before = hits.length;
  await t.throwsAsync(fetcher.certificatesFor(report, { product: 'Milan' }), { instanceOf: VcekFetchError });
  t.is(hits.length, before + 1);

  // A port nobody listens on: take one from a server that is closed again.
  const closed = createServer();
  await new Promise<void>((r) => closed.listen(0, '127.0.0.1', r));
  const { port } = closed.address() as AddressInfo;
  await new Promise<void>((r) => closed.close(() => r()));
  const down = await t.throwsAsync(fetchKdsVcek({ ...request, baseUrl: `http://127.0.0.1:${port}` }), {
    instanceOf: VcekFetchError,
    message: /unreachable/,
  });
  t.is(down?.statusCode, undefined);
});

test('a caller abort is an AbortError; a slow server is a timeout', async (t) => {
  const { base } = await startServer(t, (_req, res) => {
    setTimeout(() => res.writeHead(200).end('{}'), 2_000);
  });
  const controller = new AbortController();
  const pending = fetchThimCertificates({ url: base, signal: controller.signal });
  await delay(20);
  controller.abort();
  await t.throwsAsync(pending, { instanceOf: AbortError });
  await t.throwsAsync(fetchThimCertificates({ url: base, timeoutMs: 50 }), {
    instanceOf: VcekFetchError,
    message: /within 50 ms/,
  });
});

test('confidential containers: UVM_HOST_AMD_CERTIFICATE or host-amd-cert-base64', async (t) => {
  const encoded = Buffer.from(aciThim()).toString('base64');
  const fromEnv = await readContainerCertificates({ env: { UVM_HOST_AMD_CERTIFICATE: encoded } });
  t.is(fromEnv?.tcbm, '7308000000000003');
  const dir = await mkdtemp(join(tmpdir(), 'cvm-skr-uvm-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  await writeFile(join(dir, 'host-amd-cert-base64'), encoded);
  const fromFile = await readContainerCertificates({ env: { UVM_SECURITY_CONTEXT_DIR: dir } });
  t.is(fromFile?.vcekCert, fromEnv?.vcekCert);
  t.is(await readContainerCertificates({ env: {} }), undefined);
  await t.throwsAsync(readContainerCertificates({ env: { UVM_HOST_AMD_CERTIFICATE: 'bm90IGpzb24=' } }), {
    instanceOf: VcekFetchError,
  });

  const report = parseSnpReport(aciReport());
  const fetcher = new VcekFetcher({
    sources: ['container'],
    container: { env: { UVM_HOST_AMD_CERTIFICATE: encoded } },
  });
  const found = await fetcher.certificatesFor(report);
  t.is(found.source, 'container');
  t.true(verifySnpReport(report, { certificates: found.certificates, now: NOW }).ok);
  // An answer for another TCB is not used.
  const stale = Buffer.from(JSON.stringify({ ...JSON.parse(aciThim()), tcbm: '7308000000000002' })).toString(
    'base64',
  );
  const other = new VcekFetcher({
    sources: ['container'],
    container: { env: { UVM_HOST_AMD_CERTIFICATE: stale } },
  });
  await t.throwsAsync(other.certificatesFor(report), { instanceOf: VcekFetchError, message: /tcbm/ });
});

test('one caller aborting does not fail the others sharing the fetch', async (t) => {
  const { base, hits } = await startServer(t, (req, res) => {
    setTimeout(() => thimHandler(aciThim())(req, res), 100);
  });
  const fetcher = new VcekFetcher({ sources: ['thim'], thimUrl: base });
  const report = parseSnpReport(aciReport());
  const controller = new AbortController();
  const quitter = fetcher.certificatesFor(report, { signal: controller.signal });
  const patient = fetcher.certificatesFor(report);
  const alsoPatient = fetcher.certificatesFor(report, { signal: new AbortController().signal });
  await delay(20);
  controller.abort();
  await t.throwsAsync(quitter, { instanceOf: AbortError });
  t.is((await patient).source, 'thim');
  t.is((await alsoPatient).source, 'thim');
  t.is(hits.length, 1);
});

test('an already-aborted signal rejects before any request is made', async (t) => {
  const { base, hits } = await startServer(t, thimHandler(aciThim()));
  const fetcher = new VcekFetcher({ sources: ['thim'], thimUrl: base });
  await t.throwsAsync(fetcher.certificatesFor(parseSnpReport(aciReport()), { signal: AbortSignal.abort() }), {
    instanceOf: AbortError,
  });
  await delay(50);
  t.is(hits.length, 0, 'no THIM request went out');
});

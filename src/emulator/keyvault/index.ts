/**
 * The emulated Azure Key Vault: `startKeyVaultEmulator(options)` starts an HTTPS vault on loopback (emulator
 * CA), a managed-identity token endpoint, the virtual clock and the event bus, optionally backed by a state
 * file, and returns what a client needs to talk to it with the official SDK.
 *
 * Pointing `@azure/keyvault-keys` at it:
 *   new KeyClient(vaultUrl, credential, {
 *     disableChallengeResourceVerification: true, // the challenge names https://vault.azure.net, not 127.0.0.1
 *     tlsOptions: { ca: caPem },                   // or NODE_EXTRA_CA_CERTS=<file with caPem> for the process
 *   })
 * (`keyClient()` does exactly that.) The challenge resource can be changed with `challengeResource`; the
 * SDK's check wants the request host to end with `.<resource host>`, which a loopback address cannot.
 *
 * Credentials: `credential` (an `EmulatorCredential`), or `ManagedIdentityCredential` with
 * `IDENTITY_ENDPOINT=<tokenUrl>` and `IDENTITY_HEADER=<identityHeader>` in the environment. Like App
 * Service's identity endpoint, the token endpoint is plain http on loopback, so MSAL needs no CA.
 */
import { X509Certificate } from 'node:crypto';
import { createServer as createHttpServer, type Server } from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import { type AddressInfo, isIP } from 'node:net';
import { KeyClient, type KeyClientOptions } from '@azure/keyvault-keys';
import { EmulatorError, EmulatorStateError } from '../errors.js';
import { listenError } from '../listen-error.js';
import { EmulatorCa, type IssuedCertificate } from '../ca.js';
import { EmulatorCredential } from '../identity/credential.js';
import { AttestationVerifier, type TrustedIssuer } from './attestation-verifier.js';
import { type Principal, type PrincipalConfig, VaultAuth } from './auth.js';
import { BackupSealer, newIdentitySecret } from './backup.js';
import { VirtualClock, type VirtualClockOptions } from './clock.js';
import { VaultEvents, type WebhookOptions } from './events.js';
import { type FlavourFacts, flavourFacts, type VaultFlavour } from './flavour.js';
import type { ReleaseDecision } from './release.js';
import { createTokenHandler, createVaultHandler } from './server.js';
import { FixedWindowThrottle, type ThrottleOptions } from '../throttle.js';
import { DurableState } from './state.js';
import { VaultStore } from './store.js';

export type { TrustedIssuer } from './attestation-verifier.js';
export { KEY_PERMISSIONS, KEY_VAULT_RESOURCE, type KeyPermission, type PrincipalConfig } from './auth.js';
export { type ClockTask, VirtualClock, type VirtualClockOptions } from './clock.js';
export {
  type EventGridEvent,
  type EventListener,
  KEY_VAULT_EVENT_TYPES,
  type KeyVaultCloudEvent,
  type KeyVaultEventData,
  type KeyVaultEventType,
  toCloudEvent,
  VaultEvents,
  type WebhookOptions,
  type WebhookStats,
} from './events.js';
export {
  type FlavourFacts,
  flavourFacts,
  isVaultFlavour,
  VAULT_FLAVOURS,
  type VaultFlavour,
} from './flavour.js';
export type { ReleaseDecision } from './release.js';

/** The principal every emulator has unless told otherwise: all key permissions. */
export const DEFAULT_PRINCIPAL_ID = '00000000-0000-0000-0000-00000000e001';
export const DEFAULT_TENANT_ID = '00000000-0000-0000-0000-00000000e0e0';

export interface KeyVaultEmulatorOptions {
  /** Loopback address to listen on. Default 127.0.0.1. */
  host?: string;
  /** Vault port; default a free port. */
  port?: number;
  /** Token endpoint port; default a free port. */
  tokenPort?: number;
  /** Serve the vault over plain http (clients then need `allowInsecureConnection`). Default false. */
  insecureHttp?: boolean;
  /** CA to use (share one with the attestation emulator). Default: from the state file, else a new one. */
  ca?: EmulatorCa;
  /**
   * Persist vault state to this file. Every change is in its journal (`<file>.journal`), fsynced, before the
   * HTTP answer for it is sent; `<file>.lock` keeps a second emulator off the same file. Default: memory only.
   */
  statePath?: string;
  /**
   * Called with an `EmulatorStateError` whenever writing the state file fails (the change stays in memory, the
   * request that made it is answered 500; `flush()` and `close()` also reject). Default: a warning on stderr.
   */
  onStateError?: (error: EmulatorStateError) => void;
  /** Start-up notices about the state file (a torn journal record dropped, a stale lock taken over). Default: stderr. */
  onStateWarning?: (message: string) => void;
  /** A clock to share, or options for a new one. */
  clock?: VirtualClock | VirtualClockOptions;
  /** Vault name in events and messages. Default `emulator`. */
  vaultName?: string;
  tenantId?: string;
  /** Principals and their key permissions. Default: one principal with every permission. */
  principals?: PrincipalConfig[];
  /** Principal a token request without `client_id` gets. Default: the first principal. */
  defaultPrincipalId?: string;
  /** The `IDENTITY_HEADER` secret. Default: random. */
  identityHeader?: string;
  /** Attestation issuers whose tokens release keys (e.g. the emulated MAA). */
  trustedIssuers?: TrustedIssuer[];
  /**
   * A regular vault (`'vault'`: RSA/EC keys, HSM-protected or not) or a Managed HSM (`'managedhsm'`: RSA-HSM,
   * EC-HSM and oct-HSM keys, `POST /rng`, challenge resource `https://managedhsm.azure.net`). Default: a
   * vault that also accepts oct-HSM keys, as the emulator did before it had flavours. Release answers are
   * shaped like the flavour's real ones (a flavourless vault answers like a regular vault).
   */
  flavour?: VaultFlavour;
  /**
   * Identity secret (base64url, at least 16 bytes): key backups restore only into an emulator with the same
   * secret. Default: from the state file, else a new one (kept in the state file when there is one).
   */
  identitySecret?: string;
  /**
   * Share another emulator's identities: its principals, its token endpoint (no own one is started) and its
   * tokens, so one `IDENTITY_ENDPOINT` serves a vault and a Managed HSM as one Entra ID tenant would.
   */
  shareIdentityWith?: KeyVaultEmulator;
  /**
   * Resource in the 401 challenge and required token audience. Default the flavour's:
   * `https://vault.azure.net` or `https://managedhsm.azure.net`.
   */
  challengeResource?: string;
  /** Webhooks receiving Event Grid events. */
  webhooks?: (string | ({ url: string } & WebhookOptions))[];
  /**
   * How often a running (not frozen) clock checks for due lifetime actions in real time, in ms. Default
   * 1000; 0 disables (then only `clock.advance`/`clock.tick` run them).
   */
  tickIntervalMs?: number;
  /**
   * Opt-in: answer 429 with `Retry-After` once more than `limit` release or cryptographic requests arrive in a
   * `windowMs` window (e.g. Key Vault's published HSM-key limit, `{ limit: 2000, windowMs: 10_000 }` for RSA
   * 2048-bit HSM keys). Default: no throttle.
   */
  throttle?: ThrottleOptions;
}

export interface KeyVaultEmulator {
  /** `https://127.0.0.1:<port>` (no trailing slash). */
  readonly vaultUrl: string;
  /** What kind of vault this is (key types, challenge resource, `/rng`). */
  readonly flavour: FlavourFacts;
  /** Managed identity token endpoint (`IDENTITY_ENDPOINT`). */
  readonly tokenUrl: string;
  /** Secret for the token endpoint (`IDENTITY_HEADER`). */
  readonly identityHeader: string;
  readonly tenantId: string;
  /** PEM of the emulator CA that issued the vault's TLS and signing certificates. */
  readonly caPem: string;
  readonly ca: EmulatorCa;
  /** Credential of the default principal. */
  readonly credential: EmulatorCredential;
  readonly clock: VirtualClock;
  readonly events: VaultEvents;
  /** An SDK client for this vault, as the default principal or `clientId`. */
  keyClient(options?: KeyClientOptions & { clientId?: string }): KeyClient;
  /** Credential acting as another principal. */
  credentialFor(clientId: string): EmulatorCredential;
  addPrincipal(config: PrincipalConfig): Principal;
  trustIssuer(issuer: TrustedIssuer): void;
  untrustIssuer(issuer: string): void;
  /** Release decisions so far (most recent last, at most 1000), with reasons and clause results. */
  releaseDecisions(): ReleaseDecision[];
  /** Environment a separate client process needs (managed identity endpoint and secret). */
  environment(): Record<string, string>;
  /** Waits for pending state writes and webhook deliveries. */
  flush(): Promise<void>;
  close(): Promise<void>;
}

/** The identity (principals, token signing key, token endpoint) behind each emulator, for `shareIdentityWith`. */
const IDENTITIES = new WeakMap<KeyVaultEmulator, { auth: VaultAuth; tokenUrl: string }>();

function listen(server: Server, port: number, host: string): Promise<number> {
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => {
      server.off('error', reject);
      resolve((server.address() as AddressInfo).port);
    });
  });
}

function closeServer(server: Server): Promise<void> {
  return new Promise((resolve) => {
    server.close(() => resolve());
    server.closeAllConnections();
  });
}

function urlHost(host: string): string {
  return host.includes(':') ? `[${host}]` : host;
}

export async function startKeyVaultEmulator(
  options: KeyVaultEmulatorOptions = {},
): Promise<KeyVaultEmulator> {
  if (!options.statePath) return startVault(options, undefined);
  const statePath = options.statePath;
  const onStateError =
    options.onStateError ??
    ((e: EmulatorStateError) => {
      process.stderr.write(`cvm-skr emulator: warning: ${e.message}: ${String((e.cause as Error)?.message ?? '')}\n`);
    });
  const durable = await DurableState.open(statePath, {
    warn: options.onStateWarning ?? ((m) => process.stderr.write(`cvm-skr emulator: warning: ${m}\n`)),
    onError: (e) =>
      onStateError(
        e instanceof EmulatorStateError
          ? e
          : new EmulatorStateError(`state file ${statePath} could not be written`, statePath, { cause: e }),
      ),
  });
  try {
    return await startVault(options, durable);
  } catch (e) {
    await durable.close().catch(() => {});
    throw e;
  }
}

async function startVault(
  options: KeyVaultEmulatorOptions,
  durable: DurableState | undefined,
): Promise<KeyVaultEmulator> {
  const host = options.host ?? '127.0.0.1';
  const vaultName = options.vaultName ?? 'emulator';
  const tenantId = options.tenantId ?? DEFAULT_TENANT_ID;
  const facts = flavourFacts(options.flavour);
  const resource = (options.challengeResource ?? facts.resource).replace(/\/+$/, '');

  const saved = durable?.loaded;
  let ca = options.ca;
  if (!ca) {
    if (saved?.ca) {
      try {
        ca = await EmulatorCa.load(saved.ca);
      } catch (cause) {
        throw new EmulatorStateError(
          `state file ${options.statePath} has an unusable CA`,
          options.statePath!,
          { cause },
        );
      }
    } else {
      ca = await EmulatorCa.create();
    }
  }
  const clock = options.clock instanceof VirtualClock ? options.clock : new VirtualClock(options.clock ?? {});
  const events = new VaultEvents(
    `/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/emulator/providers/Microsoft.KeyVault/vaults/${vaultName}`,
  );
  for (const hook of options.webhooks ?? []) {
    if (typeof hook === 'string') events.addWebhook(hook);
    else events.addWebhook(hook.url, hook);
  }
  const shared = options.shareIdentityWith ? IDENTITIES.get(options.shareIdentityWith) : undefined;
  if (options.shareIdentityWith && !shared) {
    throw new EmulatorError('shareIdentityWith must be an emulator returned by startKeyVaultEmulator');
  }
  const auth =
    shared?.auth ??
    new VaultAuth({
      tenantId,
      vaultName,
      principals: options.principals ?? [{ id: DEFAULT_PRINCIPAL_ID, name: 'emulator default identity' }],
      ...(options.defaultPrincipalId ? { defaultPrincipalId: options.defaultPrincipalId } : {}),
      ...(options.identityHeader ? { identityHeader: options.identityHeader } : {}),
    });
  const verifier = new AttestationVerifier(options.trustedIssuers ?? [], () => clock.now());

  const tls = options.insecureHttp ? undefined : await ca.issueServerCertificate();
  const vaultServer = tls ? createHttpsServer({ cert: tls.certPem, key: tls.keyPem }) : createHttpServer();
  const tokenServer = shared ? undefined : createHttpServer();
  const servers: Server[] = [];
  let vaultPort: number;
  let tokenPort = 0;
  try {
    vaultPort = await listen(vaultServer as Server, options.port ?? 0, host);
    servers.push(vaultServer as Server);
    if (tokenServer) {
      tokenPort = await listen(tokenServer, options.tokenPort ?? 0, host);
      servers.push(tokenServer);
    }
  } catch (cause) {
    await Promise.all(servers.map(closeServer));
    throw listenError('Key Vault', host, cause);
  }
  const vaultUrl = `${tls ? 'https' : 'http'}://${urlHost(host)}:${vaultPort}`;
  const tokenUrl = shared?.tokenUrl ?? `http://${urlHost(host)}:${tokenPort}/msi/token`;

  const store = new VaultStore({
    vaultUrl,
    vaultName,
    clock,
    events,
    keys: saved?.keys ?? [],
    ...(durable ? { onChange: (name: string) => durable.changed(name) } : {}),
    flavour: facts,
  });
  const identitySecret = options.identitySecret ?? saved?.secret ?? newIdentitySecret();
  let sealer: BackupSealer;
  try {
    sealer = new BackupSealer(identitySecret, options.flavour);
  } catch (cause) {
    throw new EmulatorError('identitySecret must be base64url of at least 16 bytes', { cause });
  }
  const removeTask = clock.addTask(store);

  // The release signer lives on the vault's clock: issued at its now, and issued again once that clock comes
  // within 30 days of its notAfter (or is before its notBefore), as the service rolls its signing certificate,
  // so releases verify at the same (virtual) time as tokens and key dates.
  let signing: Promise<{ issued: IssuedCertificate; from: number; until: number }> | undefined;
  const signer = async (): Promise<IssuedCertificate> => {
    const now = clock.nowMs();
    const current = await signing?.catch(() => undefined);
    if (current && (now < current.from || now > current.until - 30 * 86_400_000)) signing = undefined;
    signing ??= ca
      .issueReleaseSigningCertificate({
        commonName: `key vault ${vaultName} release signing`,
        // Clients check that the release signer names the vault host they asked.
        ...(isIP(host) ? { ipAddresses: [host] } : { dnsNames: [host] }),
        now: new Date(now),
      })
      .then((issued) => {
        const cert = new X509Certificate(issued.certDer);
        return { issued, from: new Date(cert.validFrom).getTime(), until: new Date(cert.validTo).getTime() };
      })
      .catch((e: unknown) => {
        signing = undefined;
        throw e;
      });
    return (await signing).issued;
  };
  const decisions: ReleaseDecision[] = [];
  const record = (d: ReleaseDecision) => {
    decisions.push(d);
    if (decisions.length > 1000) decisions.shift();
  };

  vaultServer.on(
    'request',
    createVaultHandler({
      store,
      auth,
      resource,
      release: {
        store,
        verifier,
        signer,
        now: () => clock.now(),
        record,
        flavour: options.flavour ?? 'vault',
      },
      dataPlane: { store, flavour: facts, sealer, nowSeconds: () => clock.nowSeconds() },
      ...(options.throttle ? { throttle: new FixedWindowThrottle(options.throttle) } : {}),
      ...(durable ? { commit: () => durable.commit() } : {}),
    }),
  );
  tokenServer?.on('request', createTokenHandler(auth));
  if (durable) {
    const caSaved = ca.toJSON();
    // Start-up compaction (requests that came in meanwhile wait for it): the CA and identity secret are on disk before anyone is told to trust them, and a
    // version 1 file is rewritten in the current format.
    try {
      await durable.attach({
        key: (name) => store.keyForState(name),
        full: () => ({ ca: caSaved, keys: store.snapshot(), secret: identitySecret }),
      });
    } catch (e) {
      removeTask();
      await Promise.all(servers.map(closeServer));
      throw e;
    }
    // Webhooks hear of a change only once it is on disk.
    events.setDeliveryGate(() => durable.commit());
  }

  const tickMs = options.tickIntervalMs ?? 1000;
  const ticker =
    !clock.frozen && tickMs > 0
      ? setInterval(() => {
          void clock.tick().catch(() => {});
        }, tickMs).unref()
      : undefined;

  const credentialFor = (clientId?: string) =>
    new EmulatorCredential({
      tokenUrl,
      identityHeader: auth.identityHeader,
      ...(clientId ? { clientId } : {}),
    });
  const credential = credentialFor();
  let closed = false;

  const emulator: KeyVaultEmulator = {
    vaultUrl,
    flavour: facts,
    tokenUrl,
    identityHeader: auth.identityHeader,
    tenantId: auth.tenantId,
    caPem: ca.certPem,
    ca,
    credential,
    clock,
    events,
    keyClient(clientOptions = {}) {
      const { clientId, ...rest } = clientOptions;
      return new KeyClient(vaultUrl, clientId ? credentialFor(clientId) : credential, {
        disableChallengeResourceVerification: true,
        ...(tls ? { tlsOptions: { ca: ca.certPem } } : { allowInsecureConnection: true }),
        ...rest,
      });
    },
    credentialFor: (clientId) => credentialFor(clientId),
    addPrincipal: (config) => auth.addPrincipal(config),
    trustIssuer: (issuer) => verifier.trust(issuer),
    untrustIssuer: (issuer) => verifier.untrust(issuer),
    releaseDecisions: () => structuredClone(decisions),
    environment: () => ({ IDENTITY_ENDPOINT: tokenUrl, IDENTITY_HEADER: auth.identityHeader }),
    async flush() {
      await events.flush();
      await durable?.flush();
    },
    async close() {
      if (closed) return;
      closed = true;
      if (ticker) clearInterval(ticker);
      removeTask();
      await Promise.all(servers.map(closeServer));
      await events.close();
      await durable?.close();
    },
  };
  IDENTITIES.set(emulator, { auth, tokenUrl });
  return emulator;
}

/**
 * Key Vault Event Grid events of the emulated vault (`KeyNewVersionCreated`, `KeyNearExpiry`,
 * `KeyExpired`), in the Event Grid schema, delivered to in-process listeners and to webhook URLs. A webhook
 * gets a POST with a JSON array of one event and `aeg-event-type: Notification` (or, with
 * `schema: 'CloudEvents'`, one CloudEvents 1.0 event as `application/cloudevents+json`); failures
 * (non-2xx or network) are retried a bounded number of times with exponential backoff, then counted as
 * dropped. Event Grid's subscription validation handshake is not emulated: every webhook is live at once.
 */
import { randomUUID } from 'node:crypto';
import { InvalidArgumentError } from '../../errors.js';
import { httpFetch } from '../http-client.js';

export const KEY_VAULT_EVENT_TYPES = {
  newVersionCreated: 'Microsoft.KeyVault.KeyNewVersionCreated',
  nearExpiry: 'Microsoft.KeyVault.KeyNearExpiry',
  expired: 'Microsoft.KeyVault.KeyExpired',
} as const;
export type KeyVaultEventType = (typeof KEY_VAULT_EVENT_TYPES)[keyof typeof KEY_VAULT_EVENT_TYPES];

export interface KeyVaultEventData {
  /** Versioned key id. */
  Id: string;
  VaultName: string;
  ObjectType: 'Key';
  ObjectName: string;
  Version: string;
  /** Not-before, seconds since the epoch, or null. */
  NBF: number | null;
  /** Expiry, seconds since the epoch, or null. */
  EXP: number | null;
}

export interface EventGridEvent {
  id: string;
  topic: string;
  subject: string;
  eventType: KeyVaultEventType;
  eventTime: string;
  data: KeyVaultEventData;
  dataVersion: string;
  metadataVersion: string;
}

export type EventListener = (event: EventGridEvent) => void;

/** The CloudEvents 1.0 form of an event (Event Grid's other delivery schema). */
export interface KeyVaultCloudEvent {
  id: string;
  source: string;
  subject: string;
  type: KeyVaultEventType;
  time: string;
  data: KeyVaultEventData;
  specversion: '1.0';
}

export function toCloudEvent(e: EventGridEvent): KeyVaultCloudEvent {
  return {
    id: e.id,
    source: e.topic,
    subject: e.subject,
    type: e.eventType,
    time: e.eventTime,
    data: e.data,
    specversion: '1.0',
  };
}

export interface WebhookOptions {
  /** PEM CA(s) to trust for an https webhook. */
  ca?: string | string[];
  /** Attempts in total (first try included). Default 4, at most 10. */
  maxAttempts?: number;
  /** First retry delay; doubles each retry. Default 100 ms. */
  retryDelayMs?: number;
  /** Delivery schema. Default `EventGrid`. */
  schema?: 'EventGrid' | 'CloudEvents';
}

export interface WebhookStats {
  url: string;
  delivered: number;
  retries: number;
  dropped: number;
}

interface Webhook extends WebhookStats {
  options: Required<Pick<WebhookOptions, 'maxAttempts' | 'retryDelayMs' | 'schema'>> &
    Pick<WebhookOptions, 'ca'>;
}

const HISTORY_LIMIT = 10_000;

export class VaultEvents {
  readonly topic: string;
  readonly #listeners = new Set<EventListener>();
  #gate: (() => Promise<void>) | undefined;
  readonly #webhooks = new Map<string, Webhook>();
  readonly #pending = new Set<Promise<void>>();
  readonly #history: EventGridEvent[] = [];
  readonly #abort = new AbortController();

  constructor(topic: string) {
    this.topic = topic;
  }

  /** Subscribes a listener; returns the unsubscribe function. A throwing listener does not affect others. */
  on(listener: EventListener): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  /** Events emitted so far (most recent last, the last 10,000). */
  history(type?: KeyVaultEventType): EventGridEvent[] {
    return type ? this.#history.filter((e) => e.eventType === type) : [...this.#history];
  }

  addWebhook(url: string, options: WebhookOptions = {}): void {
    const parsed = new URL(url);
    if (parsed.protocol !== 'https:' && parsed.protocol !== 'http:') {
      throw new InvalidArgumentError('a webhook URL must be http(s)');
    }
    const maxAttempts = options.maxAttempts ?? 4;
    if (!Number.isInteger(maxAttempts) || maxAttempts < 1 || maxAttempts > 10) {
      throw new InvalidArgumentError('webhook maxAttempts must be 1..10');
    }
    this.#webhooks.set(parsed.href, {
      url: parsed.href,
      delivered: 0,
      retries: 0,
      dropped: 0,
      options: {
        maxAttempts,
        retryDelayMs: options.retryDelayMs ?? 100,
        schema: options.schema ?? 'EventGrid',
        ...(options.ca ? { ca: options.ca } : {}),
      },
    });
  }

  removeWebhook(url: string): boolean {
    return this.#webhooks.delete(new URL(url).href);
  }

  webhookStats(): WebhookStats[] {
    return [...this.#webhooks.values()].map(({ url, delivered, retries, dropped }) => ({
      url,
      delivered,
      retries,
      dropped,
    }));
  }

  /** Builds and publishes one event. */
  emit(type: KeyVaultEventType, data: KeyVaultEventData, at: Date): EventGridEvent {
    const event: EventGridEvent = {
      id: randomUUID(),
      topic: this.topic,
      subject: data.ObjectName,
      eventType: type,
      eventTime: at.toISOString(),
      data,
      dataVersion: '1',
      metadataVersion: '1',
    };
    this.#history.push(event);
    if (this.#history.length > HISTORY_LIMIT) this.#history.shift();
    for (const listener of this.#listeners) {
      try {
        listener(event);
      } catch {
        // A listener's failure is its own business; delivery to the others goes on.
      }
    }
    for (const hook of this.#webhooks.values()) {
      const p = this.#deliver(hook, event).finally(() => this.#pending.delete(p));
      this.#pending.add(p);
    }
    return event;
  }

  async #deliver(hook: Webhook, event: EventGridEvent): Promise<void> {
    if (this.#gate) {
      try {
        await this.#gate();
      } catch {
        hook.dropped++;
        return;
      }
    }
    const cloud = hook.options.schema === 'CloudEvents';
    const body = JSON.stringify(cloud ? toCloudEvent(event) : [event]);
    const headers: Record<string, string> = cloud
      ? { 'content-type': 'application/cloudevents+json; charset=utf-8' }
      : { 'content-type': 'application/json', 'aeg-event-type': 'Notification' };
    for (let attempt = 1; attempt <= hook.options.maxAttempts; attempt++) {
      if (this.#abort.signal.aborted) break;
      try {
        const res = await httpFetch(hook.url, {
          method: 'POST',
          headers,
          body,
          timeoutMs: 5_000,
          signal: this.#abort.signal,
          ...(hook.options.ca ? { ca: hook.options.ca } : {}),
        });
        if (res.status >= 200 && res.status < 300) {
          hook.delivered++;
          return;
        }
      } catch {
        // Network failure: retried like a non-2xx answer.
      }
      if (attempt < hook.options.maxAttempts) {
        hook.retries++;
        await delay(hook.options.retryDelayMs * 2 ** (attempt - 1), this.#abort.signal);
      }
    }
    hook.dropped++;
  }

  /**
   * Webhook deliveries wait for `gate` first (the emulator's state commit): a subscriber never hears of a
   * change a crash could still undo. A failing gate drops the delivery.
   */
  setDeliveryGate(gate: () => Promise<void>): void {
    this.#gate = gate;
  }

  /** Waits until every webhook delivery in flight has finished (delivered or dropped). */
  async flush(): Promise<void> {
    while (this.#pending.size > 0) await Promise.allSettled([...this.#pending]);
  }

  /** Stops retries and cancels deliveries in flight. */
  async close(): Promise<void> {
    this.#abort.abort();
    await this.flush();
    this.#listeners.clear();
  }
}

function delay(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal.aborted) return resolve();
    const timer = setTimeout(done, ms);
    function done() {
      clearTimeout(timer);
      signal.removeEventListener('abort', done);
      resolve();
    }
    signal.addEventListener('abort', done, { once: true });
  });
}

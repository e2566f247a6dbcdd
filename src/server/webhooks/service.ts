/**
 * The webhook service of one app: manages endpoints (admin API, UI), turns server events into queued deliveries,
 * and owns the delivery worker. One per app, kept in its services' `webhooks` field (webhookService(s) makes it on
 * first use), so the API routes, the UI and the module's start() share it.
 */
import { DropkeyError, ErrorCodes } from '../../errors.js';
import type { DeliveryAttempt, DeliveryRecord, DeliveryStatus, WebhookEndpoint, WebhookStore } from '../../store/webhook-types.js';
import type { ServerDeps } from '../deps.js';
import type { ServerEvent, ServerEventType } from '../events.js';
import type { Timers } from '../jobs/timers.js';
import { realTimers } from '../jobs/timers.js';
import type { AuditLog } from '../services/audit.js';
import { DeliveryWorker, type DeliveryWorkerOptions } from './delivery.js';
import { generateWebhookSecret } from './signing.js';

/** What the service is built from: the app's services (structurally, so this file need not import them). */
export type WebhookServiceDeps = Pick<ServerDeps, 'webhookStore' | 'clock' | 'events' | 'metrics' | 'logger'> & {
  audit: AuditLog;
  randomBytes: NonNullable<ServerDeps['randomBytes']>;
  /** webhookPollMs: the worker's poll for deliveries queued elsewhere, unless WebhookOptions.pollMs says otherwise. */
  config?: Pick<ServerDeps['config'], 'webhookPollMs'>;
};

/** Every event type an endpoint can subscribe to (docs/webhooks.md), plus the admin's test event. */
export const WEBHOOK_EVENT_TYPES: readonly (ServerEventType | 'webhook.test')[] = [
  'connection.created',
  'connection.reconnected',
  'connection.refresh_failed',
  'connection.needs_reauth',
  'connection.revoked',
  'webhook.test',
];

export interface WebhookOptions {
  timers?: Timers;
  fetch?: typeof fetch;
  retryScheduleMs?: readonly number[];
  timeoutMs?: number;
  pollMs?: number;
  onAttempt?: DeliveryWorkerOptions['onAttempt'];
}

export function webhookStoreOf(s: Pick<ServerDeps, 'webhookStore'>): WebhookStore {
  if (!s.webhookStore) {
    throw new DropkeyError(ErrorCodes.INTERNAL, 'Webhooks are not available: the server was started without a webhook store.', {
      hint: 'Pass webhookStore in the server deps (main.ts hands it stores.webhooks from openStores).',
    });
  }
  return s.webhookStore;
}

/** Checks a receiver URL: http(s), no credentials, no fragment. Returns it normalized. */
export function validateWebhookUrl(value: unknown): string {
  const text = typeof value === 'string' ? value.trim() : '';
  let u: URL;
  try {
    u = new URL(text);
  } catch {
    throw new DropkeyError(ErrorCodes.BAD_INPUT, 'Give the receiver as an absolute URL, e.g. https://hooks.example.com/dropkey.');
  }
  if (u.protocol !== 'https:' && u.protocol !== 'http:') throw new DropkeyError(ErrorCodes.BAD_INPUT, 'A webhook URL must start with https:// (or http://).');
  if (u.username || u.password) {
    throw new DropkeyError(ErrorCodes.BAD_INPUT, 'A webhook URL must not contain a user name or password.', {
      hint: 'Receivers authenticate dropkey by the Dropkey-Signature header; see docs/webhooks.md.',
    });
  }
  if (u.hash) throw new DropkeyError(ErrorCodes.BAD_INPUT, 'A webhook URL must not have a #fragment.');
  if (text.length > 2000) throw new DropkeyError(ErrorCodes.BAD_INPUT, 'The webhook URL is longer than 2000 characters.');
  return u.href;
}

export function validateEventTypes(value: unknown): string[] {
  if (value === undefined || value === null) return ['*'];
  const list = Array.isArray(value) ? value.map(String) : typeof value === 'string' ? value.split(/[\s,]+/) : null;
  if (!list) throw new DropkeyError(ErrorCodes.BAD_INPUT, 'events must be a list of event types.');
  const out: string[] = [];
  for (const t of list.filter(Boolean)) {
    if (t !== '*' && !(WEBHOOK_EVENT_TYPES as readonly string[]).includes(t)) {
      throw new DropkeyError(ErrorCodes.BAD_INPUT, `Unknown event type "${t.slice(0, 60)}".`, { hint: `Choose from: *, ${WEBHOOK_EVENT_TYPES.join(', ')}.` });
    }
    if (!out.includes(t)) out.push(t);
  }
  if (out.length === 0) throw new DropkeyError(ErrorCodes.BAD_INPUT, 'Subscribe the endpoint to at least one event type (or "*").');
  return out.includes('*') ? ['*'] : out;
}

/** The JSON body a receiver gets: stable field names, never a token. */
export function eventBody(id: string, type: string, at: number, connection: string | null, data: Record<string, unknown>): string {
  return JSON.stringify({ id, type, created_at: new Date(at).toISOString(), connection, data });
}

/**
 * Writes a connection event to the outbox: one pending delivery per subscribed endpoint (none, and nothing written,
 * when no endpoint wants it). The server's service and the CLI (which shares the store, not the process) both queue
 * through here, so every receiver gets the same body whoever caused the event; a running server's delivery worker
 * sends what the CLI queued at its next poll.
 */
export async function queueEvent(
  store: Pick<WebhookStore, 'enqueueEvent'>,
  e: ServerEvent,
  now: number,
  randomBytes: (n: number) => Buffer,
): Promise<string[]> {
  const id = `evt_${randomBytes(16).toString('hex')}`;
  return store.enqueueEvent({ id, type: e.type, connection: e.connection, at: e.at, body: eventBody(id, e.type, e.at, e.connection, e.data) }, now);
}

export class WebhookService {
  readonly worker: DeliveryWorker;
  readonly #s: WebhookServiceDeps;
  readonly #store: WebhookStore;
  readonly #timers: Timers;
  #unsubscribe: (() => void) | undefined;

  constructor(s: WebhookServiceDeps, options: WebhookOptions = {}) {
    this.#s = s;
    this.#store = webhookStoreOf(s);
    this.#timers = options.timers ?? realTimers;
    this.worker = new DeliveryWorker({
      store: this.#store,
      timers: this.#timers,
      logger: s.logger,
      ...(options.fetch ? { fetch: options.fetch } : {}),
      ...(options.retryScheduleMs ? { retryScheduleMs: options.retryScheduleMs } : {}),
      ...(options.timeoutMs !== undefined ? { timeoutMs: options.timeoutMs } : {}),
      ...(options.pollMs !== undefined ? { pollMs: options.pollMs } : s.config?.webhookPollMs !== undefined ? { pollMs: s.config.webhookPollMs } : {}),
      onAttempt: (delivery, outcome) => {
        s.metrics.webhookAttempts.inc({ result: outcome.result });
        options.onAttempt?.(delivery, outcome);
      },
    });
  }

  /**
   * Queues every server event for delivery. Subscribed at once (not in start()) so events from requests served
   * before the listener starts its background work are still recorded; delivery itself waits for start().
   */
  subscribe(): void {
    this.#unsubscribe ??= this.#s.events.on(async (e) => {
      this.#s.metrics.connectionEvents.inc({ type: e.type });
      await this.enqueue(e);
    });
  }

  start(): void {
    this.subscribe();
    this.worker.start();
  }

  async stop(): Promise<void> {
    this.#unsubscribe?.();
    this.#unsubscribe = undefined;
    await this.worker.stop();
  }

  #newEventId(): string {
    return `evt_${this.#s.randomBytes(16).toString('hex')}`;
  }

  /** Writes the event to the outbox (one delivery per subscribed endpoint) and wakes the worker. */
  async enqueue(e: ServerEvent): Promise<string[]> {
    const ids = await queueEvent(this.#store, e, this.#s.clock(), this.#s.randomBytes);
    if (ids.length > 0) this.worker.kick();
    return ids;
  }

  async create(input: { url: unknown; events?: unknown; description?: unknown; actor: string }): Promise<{ endpoint: WebhookEndpoint; secret: string }> {
    const url = validateWebhookUrl(input.url);
    const events = validateEventTypes(input.events);
    const description = typeof input.description === 'string' ? input.description.trim().slice(0, 200) : '';
    const secret = generateWebhookSecret(this.#s.randomBytes);
    const endpoint = await this.#store.createEndpoint({ url, description, events, secret, createdBy: input.actor }, this.#s.clock());
    // The URL is not audited in full: a receiver URL may carry its own access key in the query.
    await this.#s.audit.write(input.actor, 'webhook.created', endpoint.id, { host: new URL(url).host, events });
    return { endpoint, secret };
  }

  list(): Promise<WebhookEndpoint[]> {
    return this.#store.listEndpoints();
  }

  async get(id: string): Promise<WebhookEndpoint> {
    const e = await this.#store.getEndpoint(id);
    if (!e) throw new DropkeyError(ErrorCodes.NOT_FOUND, `No webhook endpoint with id "${id.slice(0, 80)}".`, { hint: 'List them with GET /api/v1/webhooks.' });
    return e;
  }

  async remove(id: string, actor: string): Promise<void> {
    const e = await this.get(id);
    await this.#store.deleteEndpoint(e.id);
    await this.#s.audit.write(actor, 'webhook.deleted', e.id, { host: new URL(e.url).host });
  }

  /** Queues a webhook.test event for this endpoint only and makes its first attempt now. */
  async test(id: string, actor: string): Promise<DeliveryRecord & { attemptLog: DeliveryAttempt[] }> {
    const e = await this.get(id);
    const eventId = this.#newEventId();
    const at = this.#s.clock();
    const [deliveryId] = await this.#store.enqueueEvent(
      { id: eventId, type: 'webhook.test', connection: null, at, body: eventBody(eventId, 'webhook.test', at, null, { endpoint: e.id, requested_by: actor }) },
      at,
      e.id,
    );
    await this.worker.deliverNow([deliveryId!]);
    return (await this.#store.getDelivery(deliveryId!))!;
  }

  deliveries(query: { endpointId?: string; status?: DeliveryStatus; limit?: number } = {}): Promise<DeliveryRecord[]> {
    return this.#store.listDeliveries(query);
  }

  delivery(id: string) {
    return this.#store.getDelivery(id);
  }

  async redeliver(id: string, actor: string): Promise<boolean> {
    const ok = await this.#store.redeliver(id, this.#s.clock());
    if (ok) {
      await this.#s.audit.write(actor, 'webhook.redelivered', id);
      this.worker.kick();
    }
    return ok;
  }
}

/** The app's webhook service (created on first use with `options`). */
export function webhookService(s: WebhookServiceDeps & { webhooks: WebhookService | undefined }, options?: WebhookOptions): WebhookService {
  s.webhooks ??= new WebhookService(s, options);
  return s.webhooks;
}

/**
 * The webhooks module (docs/webhooks.md): the admin API under /api/v1/webhooks and the background delivery worker.
 *
 *   GET    /api/v1/webhooks                                   list endpoints (never their secrets)
 *   POST   /api/v1/webhooks                 {url, events?, description?}  → the endpoint and its signing secret, shown once
 *   GET    /api/v1/webhooks/{id}                              one endpoint
 *   DELETE /api/v1/webhooks/{id}                              delete it (its pending deliveries go too)
 *   POST   /api/v1/webhooks/{id}/test                         send a webhook.test event now; answers with the attempt
 *   GET    /api/v1/webhooks/{id}/deliveries?status=&limit=    the delivery log, newest first
 *   GET    /api/v1/webhooks/{id}/deliveries/{delivery}        one delivery with every attempt
 *   POST   /api/v1/webhooks/{id}/deliveries/{delivery}/redeliver
 *
 * Every route needs an admin API key for all connections ('*'): webhooks see events of every connection.
 * Described in ./openapi.ts (merged into /api/openapi.json).
 */
import { Hono } from 'hono';
import { DropkeyError, ErrorCodes } from '../../errors.js';
import type { ApiKeyRecord, ApiPermission } from '../../store/server-types.js';
import type { DeliveryAttempt, DeliveryRecord, DeliveryStatus, WebhookEndpoint } from '../../store/webhook-types.js';
import { type AppEnv, readJsonObject, type ServerModule } from '../context.js';
import { HttpError, ServerErrorCodes } from '../errors.js';
import { authorize, type ServerServices } from '../services.js';
import { webhookService, type WebhookOptions } from './service.js';

const iso = (t: number | null) => (t === null ? null : new Date(t).toISOString());

export function endpointView(e: WebhookEndpoint) {
  return {
    id: e.id,
    url: e.url,
    description: e.description,
    events: e.events,
    enabled: e.enabled,
    created_at: iso(e.createdAt),
    created_by: e.createdBy,
  };
}

export function deliveryView(d: DeliveryRecord & { attemptLog?: DeliveryAttempt[] }) {
  return {
    id: d.id,
    event_id: d.eventId,
    event_type: d.eventType,
    connection: d.connection,
    endpoint_id: d.endpointId,
    status: d.status,
    attempts: d.attempts,
    next_attempt_at: iso(d.nextAttemptAt),
    last_attempt_at: iso(d.lastAttemptAt),
    last_status_code: d.lastStatusCode,
    last_error: d.lastError,
    last_duration_ms: d.lastDurationMs,
    created_at: iso(d.createdAt),
    completed_at: iso(d.completedAt),
    ...(d.attemptLog
      ? {
          attempt_log: d.attemptLog.map((a) => ({ attempt: a.attempt, at: iso(a.at), status_code: a.statusCode, error: a.error, duration_ms: a.durationMs })),
        }
      : {}),
  };
}

function requireGlobalAdmin(key: ApiKeyRecord): void {
  authorize(key, 'admin' satisfies ApiPermission);
  if (key.connections !== '*') {
    throw new HttpError(ServerErrorCodes.FORBIDDEN, 'Only an admin key for all connections may manage webhooks.', {
      hint: 'Use an admin API key that may use every connection.',
      fix: { action: 'apikey-create', permission: 'admin', connection: '*' },
    });
  }
}

const actorOf = (key: ApiKeyRecord) => `apikey:${key.name}`;

function parseLimit(text: string | undefined): number {
  if (text === undefined) return 100;
  const n = Number(text);
  if (!Number.isInteger(n) || n < 1 || n > 1000) throw new DropkeyError(ErrorCodes.BAD_INPUT, 'limit must be a whole number from 1 to 1000.');
  return n;
}

function parseStatus(text: string | undefined): DeliveryStatus | undefined {
  if (text === undefined || text === '') return undefined;
  if (text === 'pending' || text === 'succeeded' || text === 'failed') return text;
  throw new DropkeyError(ErrorCodes.BAD_INPUT, 'status must be pending, succeeded or failed.');
}

export function createWebhooksModule(options: WebhookOptions = {}): ServerModule {
  return {
    name: 'webhooks',
    mount: '/api/v1/webhooks',
    routes(s: ServerServices): Hono<AppEnv> {
      const r = new Hono<AppEnv>();
      // Without a webhook store (an embedding that did not open one) the routes answer, the server still starts.
      const svc = s.webhookStore ? webhookService(s, options) : undefined;
      svc?.subscribe();
      const service = () => {
        if (!svc) throw new DropkeyError(ErrorCodes.STORE, 'Webhooks are not available: this server was started without a webhook store.');
        return svc;
      };

      r.use('*', async (c, next) => {
        // The API module's middleware may already have authenticated this request (same /api/v1 prefix).
        const key = c.get('apiKey') ?? (await s.apiKeys.authenticate(c.req.header('authorization')));
        c.set('apiKey', key);
        requireGlobalAdmin(key);
        s.usage.used(key);
        await next();
        c.header('Cache-Control', 'no-store');
      });

      r.get('/', async (c) => c.json({ webhooks: (await service().list()).map(endpointView) }));

      r.post('/', async (c) => {
        const body = await readJsonObject(c);
        const { endpoint, secret } = await service().create({
          url: body['url'],
          events: body['events'],
          description: body['description'],
          actor: actorOf(c.get('apiKey')),
        });
        return c.json({ webhook: endpointView(endpoint), secret }, 201);
      });

      r.get('/:id', async (c) => c.json({ webhook: endpointView(await service().get(c.req.param('id'))) }));

      r.delete('/:id', async (c) => {
        await service().remove(c.req.param('id'), actorOf(c.get('apiKey')));
        return c.json({ deleted: c.req.param('id') });
      });

      r.post('/:id/test', async (c) => {
        const d = await service().test(c.req.param('id'), actorOf(c.get('apiKey')));
        return c.json({ delivery: deliveryView(d) });
      });

      r.get('/:id/deliveries', async (c) => {
        const endpoint = await service().get(c.req.param('id'));
        const status = parseStatus(c.req.query('status'));
        const list = await service().deliveries({ endpointId: endpoint.id, limit: parseLimit(c.req.query('limit')), ...(status ? { status } : {}) });
        return c.json({ deliveries: list.map((d) => deliveryView(d)) });
      });

      const delivery = async (id: string, deliveryId: string) => {
        const d = await service().delivery(deliveryId);
        if (!d || d.endpointId !== id) throw new DropkeyError(ErrorCodes.NOT_FOUND, `No delivery "${deliveryId.slice(0, 80)}" for this webhook.`);
        return d;
      };

      r.get('/:id/deliveries/:delivery', async (c) => c.json({ delivery: deliveryView(await delivery(c.req.param('id'), c.req.param('delivery'))) }));

      r.post('/:id/deliveries/:delivery/redeliver', async (c) => {
        const d = await delivery(c.req.param('id'), c.req.param('delivery'));
        if (!(await service().redeliver(d.id, actorOf(c.get('apiKey'))))) {
          throw new DropkeyError(ErrorCodes.BAD_INPUT, 'This delivery is still pending; it will be attempted again on its own.');
        }
        return c.json({ delivery: deliveryView((await service().delivery(d.id))!) }, 202);
      });

      return r;
    },
    start(s: ServerServices) {
      if (!s.webhookStore) {
        s.logger.warn({}, 'webhooks disabled: no webhook store');
        return { stop: async () => {} };
      }
      const svc = webhookService(s, options);
      svc.start();
      return { stop: () => svc.stop() };
    },
  };
}

/** The module with production settings (real timers, global fetch). */
export const webhooksModule: ServerModule = createWebhooksModule();

export { verifyWebhookSignature, signWebhook, webhookSignatureProblem } from './signing.js';
export { webhookService, WebhookService } from './service.js';

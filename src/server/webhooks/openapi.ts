/**
 * OpenAPI 3.1 description of the webhook admin routes (./index.ts) and GET /jobs (../jobs/index.ts), merged into
 * /api/openapi.json by api/openapi.ts (paths relative to the /api/v1 server URL).
 */

type Schema = Record<string, unknown>;

const ref = (name: string): Schema => ({ $ref: `#/components/schemas/${name}` });
const json = (schema: Schema) => ({ 'application/json': { schema } });
const err = (description: string) => ({ description, content: json(ref('Error')) });
const keyAuth = [{ apiKey: [] }];
const common = {
  '401': err('No API key, or an unknown or revoked one (DROPKEY_UNAUTHORIZED).'),
  '403': err('The key is not an admin key for all connections (DROPKEY_FORBIDDEN).'),
};
const idParam = { name: 'id', in: 'path' as const, required: true, schema: { type: 'string' }, description: 'Webhook endpoint id (whe_...).' };
const deliveryParam = { name: 'delivery', in: 'path' as const, required: true, schema: { type: 'string' }, description: 'Delivery id (whd_...).' };
const notFound = { '404': err('No such webhook endpoint or delivery (DROPKEY_NOT_FOUND).') };
const isoOrNull = { type: ['string', 'null'], format: 'date-time' };
const tags = ['webhooks'];
const adminOnly = 'Needs an admin API key for all connections ("*").';

export const webhookOpenApiPaths = {
  '/webhooks': {
    get: {
      operationId: 'listWebhooks',
      summary: 'List webhook endpoints',
      description: `${adminOnly} Signing secrets are never listed.`,
      tags,
      security: keyAuth,
      responses: { '200': { description: 'The endpoints.', content: json({ type: 'object', required: ['webhooks'], properties: { webhooks: { type: 'array', items: ref('Webhook') } } }) }, ...common },
    },
    post: {
      operationId: 'createWebhook',
      summary: 'Add a webhook endpoint',
      description:
        `${adminOnly} The answer holds the endpoint's signing secret (whsec_...): the only time it is shown. ` +
        'Deliveries carry `Dropkey-Signature: t=<unix>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>` and `Dropkey-Event-Id` (see docs/webhooks.md).',
      tags,
      security: keyAuth,
      requestBody: {
        required: true,
        content: json({
          type: 'object',
          required: ['url'],
          properties: {
            url: { type: 'string', format: 'uri', description: 'http(s) URL of the receiver; redirects are not followed.' },
            events: { type: 'array', items: { enum: ['*', 'connection.created', 'connection.reconnected', 'connection.refresh_failed', 'connection.needs_reauth', 'connection.revoked', 'webhook.test'] }, description: 'Default ["*"] (all).' },
            description: { type: 'string', maxLength: 200 },
          },
        }),
      },
      responses: {
        '201': { description: 'Created.', content: json({ type: 'object', required: ['webhook', 'secret'], properties: { webhook: ref('Webhook'), secret: { type: 'string', description: 'Shown once.' } } }) },
        '400': err('Bad URL or event type (DROPKEY_BAD_INPUT).'),
        ...common,
      },
    },
  },
  '/webhooks/{id}': {
    get: {
      operationId: 'getWebhook',
      summary: 'One webhook endpoint',
      tags,
      security: keyAuth,
      parameters: [idParam],
      responses: { '200': { description: 'The endpoint.', content: json({ type: 'object', properties: { webhook: ref('Webhook') } }) }, ...common, ...notFound },
    },
    delete: {
      operationId: 'deleteWebhook',
      summary: 'Delete a webhook endpoint and its pending deliveries',
      tags,
      security: keyAuth,
      parameters: [idParam],
      responses: { '200': { description: 'Deleted.', content: json({ type: 'object', properties: { deleted: { type: 'string' } } }) }, ...common, ...notFound },
    },
  },
  '/webhooks/{id}/test': {
    post: {
      operationId: 'testWebhook',
      summary: 'Send a webhook.test event now',
      description: 'Makes the first attempt before answering; a failed attempt is retried like any delivery.',
      tags,
      security: keyAuth,
      parameters: [idParam],
      responses: { '200': { description: 'The delivery after its first attempt.', content: json({ type: 'object', properties: { delivery: ref('WebhookDelivery') } }) }, ...common, ...notFound },
    },
  },
  '/webhooks/{id}/deliveries': {
    get: {
      operationId: 'listWebhookDeliveries',
      summary: 'The delivery log of an endpoint, newest first',
      tags,
      security: keyAuth,
      parameters: [
        idParam,
        { name: 'status', in: 'query' as const, required: false, schema: { enum: ['pending', 'succeeded', 'failed'] } },
        { name: 'limit', in: 'query' as const, required: false, schema: { type: 'integer', minimum: 1, maximum: 1000, default: 100 } },
      ],
      responses: { '200': { description: 'Deliveries.', content: json({ type: 'object', properties: { deliveries: { type: 'array', items: ref('WebhookDelivery') } } }) }, ...common, ...notFound },
    },
  },
  '/webhooks/{id}/deliveries/{delivery}': {
    get: {
      operationId: 'getWebhookDelivery',
      summary: 'One delivery with every attempt',
      tags,
      security: keyAuth,
      parameters: [idParam, deliveryParam],
      responses: { '200': { description: 'The delivery and its attempt_log.', content: json({ type: 'object', properties: { delivery: ref('WebhookDelivery') } }) }, ...common, ...notFound },
    },
  },
  '/webhooks/{id}/deliveries/{delivery}/redeliver': {
    post: {
      operationId: 'redeliverWebhook',
      summary: 'Send a finished delivery again',
      tags,
      security: keyAuth,
      parameters: [idParam, deliveryParam],
      responses: {
        '202': { description: 'Queued again, due now.', content: json({ type: 'object', properties: { delivery: ref('WebhookDelivery') } }) },
        '400': err('The delivery is still pending (DROPKEY_BAD_INPUT).'),
        ...common,
        ...notFound,
      },
    },
  },
  '/jobs': {
    get: {
      operationId: 'listJobs',
      summary: 'Background jobs and when they last ran (on any instance)',
      description: adminOnly,
      tags: ['operations'],
      security: keyAuth,
      responses: {
        '200': {
          description: 'Jobs.',
          content: json({
            type: 'object',
            properties: {
              jobs: {
                type: 'array',
                items: {
                  type: 'object',
                  properties: {
                    name: { type: 'string' },
                    last_started_at: isoOrNull,
                    last_finished_at: isoOrNull,
                    last_outcome: { type: ['string', 'null'], enum: ['ok', 'failed', 'running', null] },
                    last_error: { type: ['string', 'null'] },
                    runs: { type: 'integer' },
                  },
                },
              },
            },
          }),
        },
        ...common,
      },
    },
  },
};

export const webhookOpenApiSchemas: Record<string, Schema> = {
  Webhook: {
    type: 'object',
    properties: {
      id: { type: 'string' },
      url: { type: 'string' },
      description: { type: 'string' },
      events: { type: 'array', items: { type: 'string' } },
      enabled: { type: 'boolean' },
      created_at: isoOrNull,
      created_by: { type: 'string' },
    },
  },
  WebhookDelivery: {
    type: 'object',
    properties: {
      id: { type: 'string' },
      event_id: { type: 'string', description: 'Also sent as Dropkey-Event-Id; receivers dedupe on it.' },
      event_type: { type: 'string' },
      connection: { type: ['string', 'null'] },
      endpoint_id: { type: 'string' },
      status: { enum: ['pending', 'succeeded', 'failed'] },
      attempts: { type: 'integer' },
      next_attempt_at: isoOrNull,
      last_attempt_at: isoOrNull,
      last_status_code: { type: ['integer', 'null'] },
      last_error: { type: ['string', 'null'] },
      last_duration_ms: { type: ['integer', 'null'] },
      created_at: isoOrNull,
      completed_at: isoOrNull,
      attempt_log: {
        type: 'array',
        items: {
          type: 'object',
          properties: { attempt: { type: 'integer' }, at: isoOrNull, status_code: { type: ['integer', 'null'] }, error: { type: ['string', 'null'] }, duration_ms: { type: 'integer' } },
        },
      },
    },
  },
};

/**
 * The OpenAPI 3.1 description of /api/v1, served at /api/openapi.json. Written as a typed object so a route
 * without a description, or a typo in a method, fails the build or the completeness test
 * (test/server/openapi.test.ts compares it with the routes hono registered).
 */

import { webhookOpenApiPaths, webhookOpenApiSchemas } from '../webhooks/openapi.js';
import { FIX_ACTIONS, type FixAction } from '../../errors.js';

type Method = 'get' | 'post' | 'delete';
type Schema = Record<string, unknown>;

interface Operation {
  operationId: string;
  summary: string;
  description?: string;
  tags: string[];
  security?: Record<string, string[]>[];
  parameters?: { name: string; in: 'path' | 'query'; required: boolean; schema: Schema; description?: string }[];
  requestBody?: { required: boolean; content: { 'application/json': { schema: Schema } } };
  responses: Record<string, { description: string; content?: { 'application/json': { schema: Schema } }; headers?: Record<string, { schema: Schema; description: string }> }>;
}

export interface OpenApiDocument {
  openapi: '3.1.0';
  info: { title: string; version: string; description: string };
  servers: { url: string }[];
  paths: Record<string, Partial<Record<Method, Operation>>>;
  components: { securitySchemes: Record<string, Schema>; schemas: Record<string, Schema> };
}

const ref = (name: string): Schema => ({ $ref: `#/components/schemas/${name}` });
const json = (schema: Schema) => ({ 'application/json': { schema } });
const err = (description: string) => ({ description, content: json(ref('Error')) });
const nameParam = { name: 'name', in: 'path' as const, required: true, schema: { type: 'string', pattern: '^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$' }, description: 'Connection name.' };
const keyAuth = [{ apiKey: [] }];
const common = {
  '401': err('No API key, or an unknown or revoked one (DROPKEY_UNAUTHORIZED).'),
  '403': err('The key lacks the permission or is not scoped to the connection (DROPKEY_FORBIDDEN).'),
};
const isoOrNull = { type: ['string', 'null'], format: 'date-time' };

const nameProp = { type: 'string', pattern: '^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$' };

/** One object per action: what fixes an error, as data (src/errors.ts Fix). Absent names are the caller's to pick. */
const FIX_PROPERTIES: Record<FixAction, { properties: Record<string, unknown>; required?: string[]; description: string }> = {
  login: {
    description: 'Authorize the connection (again) with a browser login; in the web UI, its reconnect page.',
    properties: { connection: nameProp, app: nameProp, addScopes: { type: 'array', items: { type: 'string' } } },
  },
  import: {
    description: 'Store a refresh or access token held elsewhere for the connection.',
    properties: { connection: nameProp, app: nameProp, token: { enum: ['refresh', 'access'] } },
    required: ['token'],
  },
  token: { description: 'Get a valid access token of the connection.', properties: { connection: nameProp } },
  doctor: { description: 'Diagnose the connection, or (token: true) a pasted token.', properties: { connection: nameProp, token: { type: 'boolean' } } },
  'list-connections': { description: 'See the connections.', properties: {} },
  revoke: {
    description: 'Revoke and delete these connections (force: delete them here when Dropbox cannot be reached).',
    properties: { connections: { type: 'array', items: nameProp }, force: { type: 'boolean' } },
    required: ['connections'],
  },
  'app-add': { description: 'Register a Dropbox app (team: as a team app).', properties: { app: nameProp, team: { type: 'boolean' } } },
  'app-update': {
    description: "Change one setting of the app: its secret, its key, or whether it is a team ('team') or user ('user') app.",
    properties: { app: nameProp, field: { enum: ['secret', 'key', 'team', 'user'] } },
    required: ['app', 'field'],
  },
  'app-remove': { description: 'Remove the app.', properties: { app: nameProp }, required: ['app'] },
  'list-apps': { description: 'See the registered apps.', properties: {} },
  'apikey-create': {
    description: 'Create an API key (with this permission, for this connection or "*" for all).',
    properties: { permission: { type: 'string' }, connection: { type: 'string' } },
  },
  'apikey-revoke': { description: 'Revoke the API key.', properties: { name: nameProp }, required: ['name'] },
  'list-apikeys': { description: 'See the API keys.', properties: {} },
};

function fixSchema(): Record<string, unknown> {
  return {
    description: 'What fixes the error, as data. The CLI shows it as a command line and the web UI as a link.',
    oneOf: FIX_ACTIONS.map((action) => {
      const p = FIX_PROPERTIES[action];
      return {
        type: 'object',
        description: p.description,
        required: ['action', ...(p.required ?? [])],
        properties: { action: { const: action }, ...p.properties },
        additionalProperties: false,
      };
    }),
    discriminator: { propertyName: 'action' },
  };
}

export function openApiDocument(publicUrl: string): OpenApiDocument {
  return {
    openapi: '3.1.0',
    info: {
      title: 'dropkey API',
      version: '1',
      description:
        'Valid Dropbox access tokens and connection management for services. Authenticate with an API key ' +
        '(`Authorization: Bearer dk_...`, created by an admin in the web UI or with the command line). Every error is ' +
        '`{"error": {"code", "message"}}` with a stable DROPKEY_* code, and, when known, a `hint` in plain words and a ' +
        '`fix` saying what to do as data (for example `{"action": "login", "connection": "alpha"}`). ' +
        'The refresh token and the app secret are never returned.',
    },
    servers: [{ url: `${publicUrl}/api/v1` }],
    paths: {
      ...webhookOpenApiPaths, // /webhooks*, /jobs: src/server/webhooks/openapi.ts
      '/connections': {
        get: {
          operationId: 'listConnections',
          summary: 'List the connections the key may see, a page at a time',
          description:
            'In name order, at most `limit` per page. When more follow, `next_cursor` is set: pass it as `cursor` (with the same `q` and `state`) for the next page; it is null on the last page.',
          tags: ['connections'],
          security: keyAuth,
          parameters: [
            { name: 'limit', in: 'query', required: false, description: 'Connections per page (default 100).', schema: { type: 'integer', minimum: 1, maximum: 1000, default: 100 } },
            { name: 'cursor', in: 'query', required: false, description: 'The `next_cursor` of the previous page (opaque).', schema: { type: 'string' } },
            { name: 'q', in: 'query', required: false, description: 'Case-insensitive text found in the name, account email, display name, account id, team name or team id.', schema: { type: 'string', maxLength: 200 } },
            { name: 'state', in: 'query', required: false, description: 'Only connections in this state.', schema: { type: 'string', enum: ['active', 'needs_reauth', 'revoked'] } },
            { name: 'app', in: 'query', required: false, description: 'Only the connections of this app.', schema: { type: 'string' } },
          ],
          responses: {
            '200': {
              description: 'A page of connections (metadata, never tokens).',
              content: json({ type: 'object', required: ['connections', 'next_cursor'], properties: { connections: { type: 'array', items: ref('Connection') }, next_cursor: { type: ['string', 'null'], description: 'The cursor of the next page; null on the last page.' } } }),
            },
            ...common,
            '400': err('A parameter is out of range or the cursor is not one this server gave out (DROPKEY_BAD_INPUT).'),
          },
        },
      },
      '/connections/{name}': {
        get: {
          operationId: 'getConnection',
          summary: 'One connection',
          tags: ['connections'],
          security: keyAuth,
          parameters: [nameParam],
          responses: { '200': { description: 'The connection.', content: json({ type: 'object', properties: { connection: ref('Connection') } }) }, ...common, '404': err('No such connection (DROPKEY_NOT_FOUND).') },
        },
        delete: {
          operationId: 'revokeConnection',
          summary: 'Revoke the connection at Dropbox, then delete it',
          description: 'Needs the admin permission. If Dropbox cannot be reached nothing is deleted (503).',
          tags: ['connections'],
          security: keyAuth,
          parameters: [nameParam],
          responses: {
            '200': { description: 'Revoked.', content: json({ type: 'object', required: ['connection', 'revoked_at_dropbox', 'message'], properties: { connection: { type: 'string' }, revoked_at_dropbox: { type: 'boolean' }, message: { type: 'string' } } }) },
            ...common,
            '404': err('No such connection.'),
            '503': err('Dropbox unreachable; the connection was kept (DROPKEY_DROPBOX_UNAVAILABLE).'),
          },
        },
      },
      '/connections/{name}/token': {
        get: {
          operationId: 'getToken',
          summary: 'A valid access token for the connection',
          description:
            'Needs token:read. Refreshed first when it expires within 5 minutes, or within `min_valid` seconds when given. Never returns the refresh token or the app secret.',
          tags: ['tokens'],
          security: keyAuth,
          parameters: [
            nameParam,
            {
              name: 'min_valid',
              in: 'query',
              required: false,
              description: 'The token must stay valid at least this many seconds (0 to 10800; `dropkey agent` sends its margin).',
              schema: { type: 'integer', minimum: 0, maximum: 10800 },
            },
          ],
          responses: {
            '200': { description: 'The token.', content: json(ref('Token')) },
            ...common,
            '404': err('No such connection.'),
            '409': err('DROPKEY_REAUTH_REQUIRED: Dropbox no longer accepts the refresh token; `error.details.reconnect_url` is the page where an admin reconnects it. DROPKEY_TOKEN_EXPIRED: an imported access token expired.'),
            '503': err('Dropbox unreachable and the token expired (DROPKEY_DROPBOX_UNAVAILABLE).'),
          },
        },
      },
      '/connections/{name}/refresh': {
        post: {
          operationId: 'refreshConnection',
          summary: 'Refresh the access token now',
          tags: ['connections'],
          security: keyAuth,
          parameters: [nameParam],
          description:
            'Needs admin. Asks Dropbox for a new access token now, even if the current one is still fresh. A refresh that fails is never a 2xx, ' +
            'even while the old access token still works (then `error.details.refreshed` is false and `error.details.access_token_expires_at` says until when it works; ' +
            'token requests keep receiving it). Failures emit connection.refresh_failed or connection.needs_reauth (webhooks).',
          responses: {
            '200': { description: 'Refreshed: a new access token is stored.', content: json({ type: 'object', properties: { connection: ref('Connection') } }) },
            ...common,
            '404': err('No such connection (DROPKEY_NOT_FOUND).'),
            '409': err('DROPKEY_REAUTH_REQUIRED: Dropbox rejected the refresh token; `error.details.reconnect_url` is the page where an admin reconnects it. DROPKEY_TOKEN_EXPIRED: an imported access token cannot be refreshed.'),
            '502': err('Dropbox refused the refresh: DROPKEY_INVALID_CLIENT (the app key or secret) or DROPKEY_DROPBOX_API.'),
            '503': err('Dropbox unreachable or failing (DROPKEY_DROPBOX_UNAVAILABLE, after retries), or the store is busy (DROPKEY_STORE, DROPKEY_LOCK_TIMEOUT).'),
          },
        },
      },
      '/connections/{name}/test': {
        post: {
          operationId: 'testConnection',
          summary: 'Ask Dropbox whose connection this is',
          tags: ['connections'],
          security: keyAuth,
          parameters: [nameParam],
          description:
            'Needs admin. Calls users/get_current_account (team/get_info for a team app) with the connection\'s token, refreshed first when needed, ' +
            'and says who Dropbox sees, in plain words. The same check as the web UI\'s Test button; both are audited as connection.tested.',
          responses: {
            '200': {
              description: 'Dropbox accepted the token.',
              content: json({ type: 'object', properties: { connection: { type: 'string' }, ok: { const: true }, message: { type: 'string' } } }),
            },
            ...common,
            '404': err('No such connection (DROPKEY_NOT_FOUND).'),
            '409': err('DROPKEY_REAUTH_REQUIRED or DROPKEY_TOKEN_EXPIRED: there is no valid token to test with.'),
            '502': err('Dropbox refused the token or the call (DROPKEY_DROPBOX_API; `error.message` says why).'),
            '503': err('Dropbox unreachable or failing (DROPKEY_DROPBOX_UNAVAILABLE, after retries).'),
          },
        },
      },
      '/connect-links': {
        post: {
          operationId: 'createConnectLink',
          summary: 'A single-use link that lets an account owner connect their Dropbox',
          description: 'Needs admin (scoped to the connection). The owner opens the URL, clicks Connect, approves at Dropbox; the connection is created or reconnected.',
          tags: ['connections'],
          security: keyAuth,
          requestBody: {
            required: true,
            content: json({
              type: 'object',
              required: ['connection'],
              properties: {
                connection: { type: 'string' },
                app: { type: 'string', description: 'App name; optional when the connection exists or exactly one app is registered.' },
                expires_in: { type: 'integer', minimum: 60, maximum: 604800, default: 1800, description: 'Seconds.' },
              },
            }),
          },
          responses: {
            '201': { description: 'The link.', content: json({ type: 'object', required: ['url', 'expires_at'], properties: { url: { type: 'string', format: 'uri' }, expires_at: { type: 'string', format: 'date-time' }, connection: { type: 'string' }, app: { type: 'string' } } }) },
            '400': err('Bad input (DROPKEY_BAD_INPUT).'),
            ...common,
            '404': err('No such app.'),
          },
        },
      },
      '/api-keys': {
        get: {
          operationId: 'listApiKeys',
          summary: 'List API keys (never the keys themselves)',
          tags: ['api-keys'],
          security: keyAuth,
          responses: { '200': { description: 'Keys.', content: json({ type: 'object', properties: { api_keys: { type: 'array', items: ref('ApiKey') } } }) }, ...common },
        },
        post: {
          operationId: 'createApiKey',
          summary: 'Create an API key; the answer is the only time it is shown',
          description: 'Needs an admin key for all connections.',
          tags: ['api-keys'],
          security: keyAuth,
          requestBody: {
            required: true,
            content: json({
              type: 'object',
              required: ['name', 'permissions', 'connections'],
              properties: {
                name: { type: 'string' },
                permissions: { type: 'array', items: { type: 'string', enum: ['token:read', 'proxy', 'admin'] } },
                connections: { oneOf: [{ type: 'array', items: { type: 'string' } }, { const: '*' }] },
              },
            }),
          },
          responses: { '201': { description: 'Created.', content: json({ type: 'object', properties: { key: { type: 'string', description: 'dk_...' }, api_key: ref('ApiKey') } }) }, '400': err('Bad input.'), ...common, '409': err('Name taken.') },
        },
      },
      '/api-keys/{name}': {
        delete: {
          operationId: 'revokeApiKey',
          summary: 'Revoke an API key',
          tags: ['api-keys'],
          security: keyAuth,
          parameters: [{ ...nameParam, description: 'API key name.' }],
          responses: { '200': { description: 'Revoked.', content: json({ type: 'object', properties: { api_key: ref('ApiKey') } }) }, ...common, '404': err('No live key with that name.') },
        },
      },
      '/audit': {
        get: {
          operationId: 'listAudit',
          summary: 'The audit log, newest first',
          tags: ['audit'],
          security: keyAuth,
          parameters: [
            { name: 'limit', in: 'query', required: false, schema: { type: 'integer', minimum: 1, maximum: 1000, default: 100 } },
            { name: 'before', in: 'query', required: false, schema: { type: 'integer' }, description: 'Entries with an id below this (paging).' },
            { name: 'action', in: 'query', required: false, schema: { type: 'string' } },
            { name: 'target', in: 'query', required: false, schema: { type: 'string' } },
          ],
          responses: { '200': { description: 'Entries.', content: json({ type: 'object', properties: { entries: { type: 'array', items: ref('AuditEntry') } } }) }, ...common },
        },
      },
      '/setup': {
        post: {
          operationId: 'createFirstAdmin',
          summary: 'Create the first admin with the one-time setup token that `dropkey serve` printed',
          tags: ['setup'],
          security: [],
          requestBody: {
            required: true,
            content: json({ type: 'object', required: ['token', 'email', 'password'], properties: { token: { type: 'string' }, email: { type: 'string', format: 'email' }, password: { type: 'string', minLength: 12 } } }),
          },
          responses: {
            '201': { description: 'Created.', content: json({ type: 'object', properties: { admin: { type: 'object', properties: { id: { type: 'string' }, email: { type: 'string' } } } } }) },
            '400': err('Bad email or password.'),
            '401': err('Wrong or expired setup token.'),
            '409': err('An admin already exists.'),
            '429': err('Too many attempts (DROPKEY_RATE_LIMITED).'),
          },
        },
      },
    },
    components: {
      securitySchemes: { apiKey: { type: 'http', scheme: 'bearer', description: 'A dropkey API key, dk_...' } },
      schemas: {
        ...webhookOpenApiSchemas,
        Error: {
          type: 'object',
          required: ['error'],
          properties: {
            error: {
              type: 'object',
              required: ['code', 'message'],
              properties: {
                code: { type: 'string', pattern: '^DROPKEY_[A-Z_]+$' },
                message: { type: 'string' },
                hint: { type: 'string', description: 'What to do next, in plain words.' },
                fix: { $ref: '#/components/schemas/Fix' },
                details: { type: 'object' },
              },
            },
          },
        },
        Fix: fixSchema(),
        // The shapes below are also the CLI's --json output (src/connections/json.ts): every property listed,
        // every one required (null when unknown), so a client can rely on the key being there.
        Token: {
          type: 'object',
          description: 'An access token as handed out; the CLI\'s `token --json` prints the same object.',
          required: ['access_token', 'token_type', 'expires_at', 'expires_in', 'scope', 'scopes', 'account_id', 'team_id', 'email', 'connection'],
          additionalProperties: false,
          properties: {
            access_token: { type: 'string' },
            token_type: { const: 'bearer' },
            expires_at: { ...isoOrNull, description: 'null for long-lived tokens.' },
            expires_in: { type: ['integer', 'null'], minimum: 0, description: 'Seconds left when the answer was made (the server may reuse an answer for up to 5 s: use expires_at for exact arithmetic).' },
            scope: { type: 'string', description: 'Granted scopes, space-separated (as the Dropbox token endpoint says them).' },
            scopes: { type: 'array', items: { type: 'string' }, description: 'The same scopes as a list.' },
            account_id: { type: ['string', 'null'] },
            team_id: { type: ['string', 'null'] },
            email: { type: ['string', 'null'] },
            connection: { type: 'string' },
          },
        },
        Connection: {
          type: 'object',
          description: 'A connection (never a token); the CLI\'s `list --json` and `refresh --json` print the same object, `login/import --json` its fields.',
          required: [
            'name', 'app', 'account_id', 'email', 'display_name', 'team_id', 'team_name', 'linked_by', 'scopes', 'expires_at', 'expires_in',
            'state', 'refreshable', 'last_error', 'last_refresh_at', 'created_at', 'updated_at',
          ],
          additionalProperties: false,
          properties: {
            name: { type: 'string' },
            app: { type: 'string' },
            account_id: { type: ['string', 'null'] },
            email: { type: ['string', 'null'] },
            display_name: { type: ['string', 'null'] },
            team_id: { type: ['string', 'null'] },
            team_name: { type: ['string', 'null'] },
            linked_by: {
              description: 'Team apps: the admin who linked the app, as Dropbox names them (team/token/get_authenticated_admin); null when unknown or for a user app.',
              oneOf: [
                { type: 'object', required: ['name', 'email'], additionalProperties: false, properties: { name: { type: ['string', 'null'] }, email: { type: ['string', 'null'] } } },
                { type: 'null' },
              ],
            },
            scopes: { type: 'array', items: { type: 'string' } },
            expires_at: isoOrNull,
            expires_in: { type: ['integer', 'null'], minimum: 0, description: 'Seconds until expires_at, when the answer was made.' },
            state: { enum: ['active', 'needs_reauth', 'revoked'] },
            refreshable: { type: 'boolean' },
            last_error: { type: ['string', 'null'] },
            last_refresh_at: isoOrNull,
            created_at: isoOrNull,
            updated_at: isoOrNull,
          },
        },
        ApiKey: {
          type: 'object',
          description: 'An API key (never the key or its hash); the CLI\'s `apikey list --json` prints the same objects, `apikey create --json` one as `api_key`.',
          required: ['name', 'prefix', 'permissions', 'connections', 'created_at', 'created_by', 'last_used_at', 'revoked_at', 'token_handouts'],
          additionalProperties: false,
          properties: {
            name: { type: 'string' },
            prefix: { type: 'string' },
            permissions: { type: 'array', items: { type: 'string' } },
            connections: { oneOf: [{ type: 'array', items: { type: 'string' } }, { const: '*' }] },
            created_at: isoOrNull,
            created_by: { type: 'string' },
            last_used_at: isoOrNull,
            revoked_at: isoOrNull,
            token_handouts: { type: 'integer' },
          },
        },
        KeyStatus: {
          type: 'object',
          description: 'The master keys and the stored secrets under each, as the CLI\'s `keys status --json` prints them (no API route; the web UI shows it on the master key page).',
          required: ['source', 'active_key_id', 'key_ids', 'secrets_by_key_id', 'not_under_active_key', 'columns'],
          additionalProperties: false,
          properties: {
            source: { enum: ['env', 'file'], description: 'DROPKEY_MASTER_KEY, or the key file in the data directory.' },
            active_key_id: { type: 'string' },
            key_ids: { type: 'array', items: { type: 'string' } },
            secrets_by_key_id: { type: 'object', additionalProperties: { type: 'integer' } },
            not_under_active_key: { type: 'integer', description: 'Secrets a rotation still has to re-encrypt.' },
            columns: {
              type: 'array',
              items: {
                type: 'object',
                required: ['table', 'column', 'secrets_by_key_id'],
                additionalProperties: false,
                properties: { table: { type: 'string' }, column: { type: 'string' }, secrets_by_key_id: { type: 'object', additionalProperties: { type: 'integer' } } },
              },
            },
          },
        },
        AuditEntry: {
          type: 'object',
          properties: { id: { type: 'integer' }, at: { type: 'string', format: 'date-time' }, actor: { type: 'string' }, action: { type: 'string' }, target: { type: ['string', 'null'] }, details: { type: 'object' } },
        },
      },
    },
  };
}

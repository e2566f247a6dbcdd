/**
 * The JSON API under /api/v1 (docs/api.md). Every route authenticates an API key (except POST /setup, which takes
 * the one-time setup token), checks its permission and connection scope, and throws on failure: the error
 * boundary in app.ts writes every error as {"error": {"code", "message"}}.
 *
 * Permissions: token:read → the token endpoint; admin → refresh, test, delete, connect links, API keys, audit;
 * any permission → listing and reading connections (metadata only, filtered to the key's scope).
 * Managing API keys and reading the audit log needs an admin key for ALL connections ('*'), so a scoped admin key
 * cannot mint itself a wider one.
 */
import { Hono } from 'hono';
import { validateName } from '../../connections/names.js';
import { DropkeyError, ErrorCodes } from '../../errors.js';
import type { ApiKeyRecord } from '../../store/server-types.js';
import { type AppContext, type AppEnv, clientIp, readJsonObject, type ServerModule } from '../context.js';
import { HttpError, ServerErrorCodes } from '../errors.js';
import { createConnectLink } from '../oauth/flow.js';
import { answer, authorize, type ServerServices } from '../services.js';
import { createFirstAdmin } from '../setup.js';
import { apiKeyJson as apiKeyView, connectionJson } from '../../connections/json.js';
import type { ConnectionInfo } from '../../connections/types.js';
import { encodeCursor, listingQuery } from '../listing.js';

/** The shapes the CLI's --json shares (connections/json.ts). */
export { apiKeyView };

const actorOf = (key: ApiKeyRecord) => `apikey:${key.name}`;

function connectionParam(c: AppContext): string {
  return validateName('connection', c.req.param('name') ?? '');
}

function requireGlobalAdmin(key: ApiKeyRecord): void {
  authorize(key, 'admin');
  if (key.connections !== '*') {
    throw new HttpError(ServerErrorCodes.FORBIDDEN, 'Only an admin key for all connections may do this.', {
      hint: 'Use an admin API key that may use every connection.',
      fix: { action: 'apikey-create', permission: 'admin', connection: '*' },
    });
  }
}

export function apiRoutes(s: ServerServices): Hono<AppEnv> {
  const api = new Hono<AppEnv>();
  const connectionView = (c: ConnectionInfo) => connectionJson(c, s.clock());

  // First-run setup: no API key exists yet, so this route takes the setup token printed by `dropkey serve`.
  api.post('/setup', async (c) => {
    s.limits.check('setup', clientIp(c, s.config.trustProxy));
    const body = await readJsonObject(c);
    const admin = await createFirstAdmin(s, body);
    return c.json({ admin: { id: admin.id, email: admin.email } }, 201);
  });

  // Every route below needs a key. (POST /setup above answers before this middleware: hono runs handlers in
  // registration order and the setup handler never calls next().)
  api.use('*', async (c, next) => {
    const key = await s.apiKeys.authenticate(c.req.header('authorization'));
    c.set('apiKey', key);
    await next();
    // res.headers, not c.header(): the latter would make @hono/node-server drop its fast path.
    if (!s.preSecured.has(c.res)) c.res.headers.set('Cache-Control', 'no-store');
  });

  // The hot path (bench/serve-token.mjs): a memory lookup for the key, one for the token, a counter increment.
  api.get('/connections/:name/token', async (c) => {
    const key = c.get('apiKey');
    const name = c.req.param('name');
    authorize(key, 'token:read', name);
    const t = await s.tokens.get(validateName('connection', name), minValidParam(c.req.query('min_valid')));
    s.usage.handout(key, name, t);
    // Built by hand with a plain header object (security headers included) so the node adapter writes it as is.
    const res = new Response(answer(t, s.clock()).body, { status: 200, headers: { ...s.securityHeaders, 'Content-Type': 'application/json', 'Cache-Control': 'no-store' } });
    s.preSecured.add(res);
    return res;
  });

  api.get('/connections', async (c) => {
    const key = c.get('apiKey');
    authorize(key, ['token:read', 'proxy', 'admin']);
    s.usage.used(key);
    // One page (at most `limit`, default 100), filtered in the store to what the key may see.
    const query = listingQuery({ limit: c.req.query('limit'), cursor: c.req.query('cursor'), q: c.req.query('q'), state: c.req.query('state'), app: c.req.query('app') }, 100);
    const page = await s.dropkey.listPage(key.connections === '*' ? query : { ...query, names: key.connections });
    return c.json({ connections: page.connections.map(connectionView), next_cursor: page.next === null ? null : encodeCursor(page.next) });
  });

  api.get('/connections/:name', async (c) => {
    const key = c.get('apiKey');
    const name = connectionParam(c);
    authorize(key, ['token:read', 'proxy', 'admin'], name);
    s.usage.used(key);
    return c.json({ connection: connectionView(await s.dropkey.get(name)) });
  });

  api.post('/connections/:name/refresh', async (c) => {
    const key = c.get('apiKey');
    const name = connectionParam(c);
    authorize(key, 'admin', name);
    s.usage.used(key);
    // Never a 2xx on failure: the facade throws even when the old token still works (details.refreshed = false).
    const info = await s.connections.refresh(name, { actor: actorOf(key), detectedBy: 'refresh_request', signal: c.req.raw.signal });
    return c.json({ connection: connectionView(info) });
  });

  api.post('/connections/:name/test', async (c) => {
    const key = c.get('apiKey');
    const name = connectionParam(c);
    authorize(key, 'admin', name);
    s.usage.used(key);
    const result = await s.connections.test(name, { actor: actorOf(key), signal: c.req.raw.signal });
    if (!result.ok) throw result.error;
    return c.json({ connection: name, ok: true, message: result.message });
  });

  api.delete('/connections/:name', async (c) => {
    const key = c.get('apiKey');
    const name = connectionParam(c);
    authorize(key, 'admin', name);
    s.usage.used(key);
    const result = await s.connections.revoke(name, { actor: actorOf(key) });
    return c.json({ connection: name, revoked_at_dropbox: result.revokedAtDropbox, message: result.message });
  });

  api.post('/connect-links', async (c) => {
    const key = c.get('apiKey');
    const body = await readJsonObject(c);
    const connection = validateName('connection', typeof body['connection'] === 'string' ? body['connection'] : '');
    authorize(key, 'admin', connection);
    s.usage.used(key);
    const link = await createConnectLink(s, {
      connection,
      app: body['app'],
      expiresIn: body['expires_in'],
      actor: actorOf(key),
    });
    return c.json({ url: link.url, expires_at: new Date(link.expiresAt).toISOString(), connection: link.connection, app: link.app }, 201);
  });

  api.get('/api-keys', async (c) => {
    const key = c.get('apiKey');
    requireGlobalAdmin(key);
    s.usage.used(key);
    return c.json({ api_keys: (await s.apiKeys.list()).map(apiKeyView) });
  });

  api.post('/api-keys', async (c) => {
    const key = c.get('apiKey');
    requireGlobalAdmin(key);
    s.usage.used(key);
    const body = await readJsonObject(c);
    const conns = body['connections'];
    const created = await s.apiKeys.create({
      name: typeof body['name'] === 'string' ? body['name'] : '',
      permissions: Array.isArray(body['permissions']) ? body['permissions'].map(String) : [],
      connections: conns === '*' ? '*' : Array.isArray(conns) ? conns.map(String) : [],
      actor: actorOf(key),
    });
    return c.json({ key: created.key, api_key: apiKeyView(created.record) }, 201);
  });

  api.delete('/api-keys/:name', async (c) => {
    const key = c.get('apiKey');
    requireGlobalAdmin(key);
    s.usage.used(key);
    const rec = await s.apiKeys.revoke(c.req.param('name'), actorOf(key));
    return c.json({ api_key: apiKeyView(rec) });
  });

  api.get('/audit', async (c) => {
    const key = c.get('apiKey');
    requireGlobalAdmin(key);
    s.usage.used(key);
    const limitText = c.req.query('limit');
    const beforeText = c.req.query('before');
    const limit = limitText === undefined ? 100 : Number(limitText);
    const before = beforeText === undefined ? undefined : Number(beforeText);
    if (!Number.isInteger(limit) || limit < 1 || limit > 1000) throw new DropkeyError(ErrorCodes.BAD_INPUT, 'limit must be a whole number from 1 to 1000.');
    if (before !== undefined && (!Number.isInteger(before) || before < 1)) throw new DropkeyError(ErrorCodes.BAD_INPUT, 'before must be an audit entry id.');
    await s.usage.flush();
    const action = c.req.query('action');
    const target = c.req.query('target');
    const entries = await s.serverStore.listAudit({
      limit,
      ...(before === undefined ? {} : { beforeId: before }),
      ...(action ? { action } : {}),
      ...(target ? { target } : {}),
    });
    return c.json({
      entries: entries.map((e) => ({ id: e.id, at: new Date(e.at).toISOString(), actor: e.actor, action: e.action, target: e.target, details: e.details })),
    });
  });

  return api;
}

export const apiModule: ServerModule = { name: 'api', mount: '/api/v1', routes: apiRoutes };

/**
 * `?min_valid=SECONDS`: the token must stay valid that long (dropkey agent asks for its margin). Capped at 3 hours
 * so that no caller can make every request a refresh (a fresh token lives 4 hours).
 */
export const MAX_MIN_VALID_SECONDS = 3 * 3600;

function minValidParam(v: string | undefined): number | undefined {
  if (v === undefined) return undefined;
  if (!/^\d{1,6}$/.test(v) || Number(v) > MAX_MIN_VALID_SECONDS) {
    throw new DropkeyError(ErrorCodes.BAD_INPUT, `min_valid must be a whole number of seconds from 0 to ${MAX_MIN_VALID_SECONDS}, got ${JSON.stringify(v.slice(0, 20))}.`, {
      hint: 'Ask for at most 3 hours (10800): a fresh Dropbox token lives 4 hours.',
    });
  }
  return Number(v);
}

/**
 * The JSON API (docs/api.md): every endpoint, every permission, connection scoping, error shapes, and that the
 * token endpoint never returns a refresh token or a secret.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { makeServerRig, PUBLIC_URL, type ServerRig } from './rig.js';

let rig: ServerRig;
let conn: { accountId: string; email: string; refreshToken: string };
let app: { name: string; key: string; secret: string };

before(async () => {
  rig = await makeServerRig();
  app = await rig.dropboxApp('main');
  conn = await rig.connection('alpha');
  await rig.connection('beta');
});
after(async () => rig.close());

async function json(res: Response): Promise<any> {
  const text = await res.text();
  try {
    return JSON.parse(text);
  } catch {
    throw new Error(`not JSON (HTTP ${res.status}): ${text.slice(0, 300)}`);
  }
}

function assertError(body: any, code: string): void {
  assert.equal(typeof body?.error?.message, 'string', JSON.stringify(body));
  assert.equal(body.error.code, code, JSON.stringify(body));
}

describe('authentication', () => {
  test('no key, a malformed key, an unknown key and a revoked key get 401 with a JSON error', async () => {
    let res = await rig.call('GET', '/api/v1/connections');
    assert.equal(res.status, 401);
    assert.match(res.headers.get('www-authenticate') ?? '', /Bearer/);
    assertError(await json(res), 'DROPKEY_UNAUTHORIZED');

    // Paths that merely end like the key-less setup route still need a key.
    assert.equal((await rig.call('GET', '/api/v1/connections/setup')).status, 401);
    assert.equal((await rig.call('POST', '/api/v1/connections/setup/refresh')).status, 401);
    assert.equal((await rig.call('GET', '/api/v1/setup')).status, 401);
    res = await rig.call('GET', '/api/v1/connections', { headers: { Authorization: 'Basic abc' } });
    assert.equal(res.status, 401);
    res = await rig.call('GET', '/api/v1/connections', { key: 'dk_short' });
    assert.equal(res.status, 401);
    res = await rig.call('GET', '/api/v1/connections', { key: `dk_${'A'.repeat(43)}` });
    assert.equal(res.status, 401);
    assertError(await json(res), 'DROPKEY_UNAUTHORIZED');

    const key = await rig.key(['token:read'], '*', 'soon-revoked');
    res = await rig.call('GET', '/api/v1/connections/alpha/token', { key });
    assert.equal(res.status, 200);
    await rig.app.services.apiKeys.revoke('soon-revoked', 'test');
    res = await rig.call('GET', '/api/v1/connections/alpha/token', { key });
    assert.equal(res.status, 401);
    assertError(await json(res), 'DROPKEY_UNAUTHORIZED');
  });

  test('a key revoked directly in the store (another process) stops working once the key cache expires', async () => {
    const key = await rig.key(['token:read'], '*', 'cli-revoked');
    assert.equal((await rig.call('GET', '/api/v1/connections/alpha/token', { key })).status, 200);
    await rig.serverStore.revokeApiKey('cli-revoked', rig.clock.now);
    rig.clock.now += rig.app.services.config.apiKeyCacheMs + 1;
    assert.equal((await rig.call('GET', '/api/v1/connections/alpha/token', { key })).status, 401);
  });
});

describe('token endpoint', () => {
  test('returns a working access token with the documented fields, never a refresh token or secret', async () => {
    const key = await rig.key(['token:read'], ['alpha']);
    const res = await rig.call('GET', '/api/v1/connections/alpha/token', { key });
    assert.equal(res.status, 200);
    assert.equal(res.headers.get('cache-control'), 'no-store');
    const text = await res.text();
    const body = JSON.parse(text);
    assert.deepEqual(Object.keys(body).sort(), ['access_token', 'account_id', 'connection', 'email', 'expires_at', 'expires_in', 'scope', 'scopes', 'team_id', 'token_type']);
    assert.equal(body.token_type, 'bearer');
    assert.equal(body.account_id, conn.accountId);
    assert.ok(new Date(body.expires_at).getTime() > rig.clock.now, 'expires in the future');
    assert.match(body.scope, /files\.content\.read/);
    assert.ok(!text.includes(conn.refreshToken), 'no refresh token in the body');
    assert.ok(!text.includes(app.secret), 'no app secret in the body');
    assert.ok(!/refresh/i.test(text), 'no refresh-anything field');
    // The token works at Dropbox (the emulator).
    const me = await rig.emu.rpc('users/get_current_account', undefined, body.access_token);
    assert.equal(me.status, 200);
    assert.equal(me.json.account_id, conn.accountId);
  });

  test('an expired token is refreshed before it is handed out; a cached one is not refreshed again', async () => {
    const key = await rig.key(['token:read'], ['beta']);
    const first = await json(await rig.call('GET', '/api/v1/connections/beta/token', { key }));
    const grantsBefore = (await rig.emu.control.requests()).filter((r) => r.path.startsWith('/oauth2/token')).length;
    const again = await json(await rig.call('GET', '/api/v1/connections/beta/token', { key }));
    assert.equal(again.access_token, first.access_token);
    await rig.advance(4 * 3600);
    const later = await json(await rig.call('GET', '/api/v1/connections/beta/token', { key }));
    assert.notEqual(later.access_token, first.access_token);
    const grantsAfter = (await rig.emu.control.requests()).filter((r) => r.path.startsWith('/oauth2/token')).length;
    assert.equal(grantsAfter - grantsBefore, 1, 'exactly one refresh');
    assert.equal(rig.app.services.metrics.refreshes.get({ outcome: 'ok' }) >= 1, true);
  });

  test('?min_valid=SECONDS: a token that would not last that long is refreshed first (dropkey agent); bounded', async () => {
    await rig.connection('minvalid');
    const key = await rig.key(['token:read'], ['minvalid']);
    const first = await json(await rig.call('GET', '/api/v1/connections/minvalid/token', { key }));
    // 3 hours later the cached token still has an hour: served as is without min_valid, refreshed with 2 hours asked.
    await rig.advance(3 * 3600);
    const grantsBefore = (await rig.emu.control.requests()).filter((r) => r.path.startsWith('/oauth2/token')).length;
    const plain = await json(await rig.call('GET', '/api/v1/connections/minvalid/token', { key }));
    assert.equal(plain.access_token, first.access_token);
    const longer = await json(await rig.call('GET', '/api/v1/connections/minvalid/token?min_valid=7200', { key }));
    assert.notEqual(longer.access_token, first.access_token);
    assert.ok(Date.parse(longer.expires_at) - rig.clock.now >= 7200_000);
    const again = await json(await rig.call('GET', '/api/v1/connections/minvalid/token?min_valid=7200', { key }));
    assert.equal(again.access_token, longer.access_token, 'the new token lasts long enough: no second refresh');
    const grantsAfter = (await rig.emu.control.requests()).filter((r) => r.path.startsWith('/oauth2/token')).length;
    assert.equal(grantsAfter - grantsBefore, 1);
    for (const bad of ['10801', '-1', 'soon']) {
      const res = await rig.call('GET', `/api/v1/connections/minvalid/token?min_valid=${bad}`, { key });
      assert.equal(res.status, 400, bad);
      assert.equal((await res.json()).error.code, 'DROPKEY_BAD_INPUT');
    }
  });

  test('permissions: proxy-only and admin-only keys cannot read tokens; scoped keys get 403 on other connections', async () => {
    const proxyKey = await rig.key(['proxy'], '*');
    let res = await rig.call('GET', '/api/v1/connections/alpha/token', { key: proxyKey });
    assert.equal(res.status, 403);
    assertError(await json(res), 'DROPKEY_FORBIDDEN');
    const adminKey = await rig.key(['admin'], '*');
    assert.equal((await rig.call('GET', '/api/v1/connections/alpha/token', { key: adminKey })).status, 403);
    const scoped = await rig.key(['token:read'], ['alpha']);
    assert.equal((await rig.call('GET', '/api/v1/connections/alpha/token', { key: scoped })).status, 200);
    res = await rig.call('GET', '/api/v1/connections/beta/token', { key: scoped });
    assert.equal(res.status, 403);
    assertError(await json(res), 'DROPKEY_FORBIDDEN');
    // Scope is checked before existence: a scoped key cannot probe which connections exist.
    assert.equal((await rig.call('GET', '/api/v1/connections/nope/token', { key: scoped })).status, 403);
  });

  test('unknown connection → 404 DROPKEY_NOT_FOUND; invalid name → 400', async () => {
    const key = await rig.key(['token:read'], '*');
    let res = await rig.call('GET', '/api/v1/connections/nope/token', { key });
    assert.equal(res.status, 404);
    assertError(await json(res), 'DROPKEY_NOT_FOUND');
    res = await rig.call('GET', `/api/v1/connections/${encodeURIComponent('bad name!')}/token`, { key });
    assert.equal(res.status, 400);
    assertError(await json(res), 'DROPKEY_BAD_INPUT');
  });

  test('a connection whose refresh token Dropbox rejects → 409 DROPKEY_REAUTH_REQUIRED with the reconnect URL', async () => {
    const c = await rig.connection('gamma');
    const key = await rig.key(['token:read'], ['gamma']);
    // The owner disconnects the app at Dropbox: revoke the refresh token's grant through the API.
    const t = await json(await rig.call('GET', '/api/v1/connections/gamma/token', { key }));
    const revoked = await rig.emu.rpc('auth/token/revoke', undefined, t.access_token);
    assert.equal(revoked.status, 200);
    await rig.advance(4 * 3600);
    const res = await rig.call('GET', '/api/v1/connections/gamma/token', { key });
    assert.equal(res.status, 409);
    const body = await json(res);
    assertError(body, 'DROPKEY_REAUTH_REQUIRED');
    assert.equal(body.error.details.reconnect_url, `${PUBLIC_URL}/connections/gamma/reconnect`);
    assert.ok(!JSON.stringify(body).includes(c.refreshToken));
    // Fails fast afterwards (state needs_reauth), still 409.
    assert.equal((await rig.call('GET', '/api/v1/connections/gamma/token', { key })).status, 409);
    const info = await json(await rig.call('GET', '/api/v1/connections/gamma', { key }));
    assert.equal(info.connection.state, 'needs_reauth');
  });
});

describe('connections', () => {
  test('list is filtered by the key scope and never carries tokens', async () => {
    const all = await rig.key(['token:read'], '*');
    const body = await json(await rig.call('GET', '/api/v1/connections', { key: all }));
    const names = body.connections.map((c: any) => c.name);
    assert.ok(names.includes('alpha') && names.includes('beta'));
    const text = JSON.stringify(body);
    assert.ok(!/access_token|refresh_token|secret/.test(text));
    const scoped = await rig.key(['proxy'], ['alpha']);
    const only = await json(await rig.call('GET', '/api/v1/connections', { key: scoped }));
    assert.deepEqual(only.connections.map((c: any) => c.name), ['alpha']);
  });

  test('get one connection: fields, 403 out of scope, 404 unknown', async () => {
    const key = await rig.key(['token:read'], ['alpha']);
    const body = await json(await rig.call('GET', '/api/v1/connections/alpha', { key }));
    assert.equal(body.connection.name, 'alpha');
    assert.equal(body.connection.account_id, conn.accountId);
    assert.equal(body.connection.email, conn.email);
    assert.equal(body.connection.state, 'active');
    assert.equal(body.connection.refreshable, true);
    assert.equal((await rig.call('GET', '/api/v1/connections/beta', { key })).status, 403);
    const all = await rig.key(['admin'], '*');
    assert.equal((await rig.call('GET', '/api/v1/connections/nope', { key: all })).status, 404);
  });

  test('refresh needs admin; token:read cannot refresh; admin refresh gets a new token', async () => {
    const reader = await rig.key(['token:read'], '*');
    let res = await rig.call('POST', '/api/v1/connections/alpha/refresh', { key: reader });
    assert.equal(res.status, 403);
    const before = await json(await rig.call('GET', '/api/v1/connections/alpha/token', { key: reader }));
    const admin = await rig.key(['admin'], ['alpha']);
    res = await rig.call('POST', '/api/v1/connections/alpha/refresh', { key: admin });
    assert.equal(res.status, 200);
    const body = await json(res);
    assert.equal(body.connection.name, 'alpha');
    assert.ok(!JSON.stringify(body).includes('access_token'));
    const afterTok = await json(await rig.call('GET', '/api/v1/connections/alpha/token', { key: reader }));
    assert.notEqual(afterTok.access_token, before.access_token, 'the cache was dropped after a refresh');
    assert.equal((await rig.call('POST', '/api/v1/connections/beta/refresh', { key: admin })).status, 403);
  });

  test('delete needs admin, revokes at Dropbox, deletes, audits and emits connection.revoked', async () => {
    await rig.connection('doomed');
    const reader = await rig.key(['token:read'], '*');
    const tok = await json(await rig.call('GET', '/api/v1/connections/doomed/token', { key: reader }));
    assert.equal((await rig.call('DELETE', '/api/v1/connections/doomed', { key: reader })).status, 403);
    const admin = await rig.key(['admin'], '*');
    const res = await rig.call('DELETE', '/api/v1/connections/doomed', { key: admin });
    assert.equal(res.status, 200);
    const body = await json(res);
    assert.equal(body.revoked_at_dropbox, true);
    // Dropbox no longer accepts the token; dropkey no longer has the connection.
    assert.equal((await rig.emu.rpc('users/get_current_account', undefined, tok.access_token)).status, 401);
    assert.equal((await rig.call('GET', '/api/v1/connections/doomed/token', { key: reader })).status, 404);
    assert.ok(rig.events.some((e) => e.type === 'connection.revoked' && e.connection === 'doomed'));
    const audit = await rig.serverStore.listAudit({ action: 'connection.revoked', target: 'doomed' });
    assert.equal(audit.length, 1);
  });
  test('test needs admin, says who Dropbox sees, audits both outcomes; a refused token is an error, never a 2xx', async () => {
    await rig.connection('probed');
    const reader = await rig.key(['token:read'], '*');
    assert.equal((await rig.call('POST', '/api/v1/connections/probed/test', { key: reader })).status, 403);
    const admin = await rig.key(['admin'], '*', 'tester');
    const res = await rig.call('POST', '/api/v1/connections/probed/test', { key: admin });
    assert.equal(res.status, 200);
    const body = await json(res);
    assert.equal(body.ok, true);
    assert.match(body.message, /^Dropbox answered: /);
    const tok = await json(await rig.call('GET', '/api/v1/connections/probed/token', { key: reader }));
    // Dropbox revokes the token behind dropkey's back: the test says so, through the error boundary.
    await rig.emu.rpc('auth/token/revoke', undefined, tok.access_token);
    rig.app.services.tokens.invalidate('probed');
    const bad = await rig.call('POST', '/api/v1/connections/probed/test', { key: admin });
    assert.ok(bad.status >= 400, `status ${bad.status}`);
    assertError(await json(bad), 'DROPKEY_DROPBOX_API');
    const audit = await rig.serverStore.listAudit({ action: 'connection.tested', target: 'probed' });
    assert.deepEqual(audit.map((e) => [e.actor, e.details['ok']]).reverse(), [['apikey:tester', true], ['apikey:tester', false]]);
    assert.equal((await rig.call('POST', '/api/v1/connections/nobody/test', { key: admin })).status, 404);
  });
});

describe('connect links, API keys, audit', () => {
  test('POST /connect-links: admin only, scoped, validated; returns url and expires_at (30 min default)', async () => {
    const reader = await rig.key(['token:read'], '*');
    assert.equal((await rig.call('POST', '/api/v1/connect-links', { key: reader, body: { connection: 'newone', app: 'main' } })).status, 403);
    const scopedAdmin = await rig.key(['admin'], ['alpha']);
    assert.equal((await rig.call('POST', '/api/v1/connect-links', { key: scopedAdmin, body: { connection: 'newone', app: 'main' } })).status, 403);
    const admin = await rig.key(['admin'], '*');
    const res = await rig.call('POST', '/api/v1/connect-links', { key: admin, body: { connection: 'newone', app: 'main' } });
    assert.equal(res.status, 201);
    const body = await json(res);
    assert.match(body.url, new RegExp(`^${PUBLIC_URL}/connect/[A-Za-z0-9_-]{43}$`));
    assert.equal(new Date(body.expires_at).getTime(), rig.clock.now + 30 * 60_000);
    const bad = await rig.call('POST', '/api/v1/connect-links', { key: admin, body: { connection: 'newone', app: 'main', expires_in: 5 } });
    assert.equal(bad.status, 400);
    assertError(await json(bad), 'DROPKEY_BAD_INPUT');
    const noApp = await rig.call('POST', '/api/v1/connect-links', { key: admin, body: { connection: 'newone', app: 'ghost' } });
    assert.equal(noApp.status, 404);
    const notJson = await rig.call('POST', '/api/v1/connect-links', { key: admin, body: 'connection=x', headers: { 'Content-Type': 'text/plain' } });
    assert.equal(notJson.status, 400);
  });

  test('API keys over the API: only a global admin key; the key is shown once; revoke works at once', async () => {
    const scopedAdmin = await rig.key(['admin'], ['alpha']);
    assert.equal((await rig.call('GET', '/api/v1/api-keys', { key: scopedAdmin })).status, 403);
    const admin = await rig.key(['admin'], '*');
    const res = await rig.call('POST', '/api/v1/api-keys', { key: admin, body: { name: 'svc', permissions: ['token:read'], connections: ['alpha'] } });
    assert.equal(res.status, 201);
    const created = await json(res);
    assert.match(created.key, /^dk_[A-Za-z0-9_-]{43}$/);
    const list = await json(await rig.call('GET', '/api/v1/api-keys', { key: admin }));
    const svc = list.api_keys.find((k: any) => k.name === 'svc');
    assert.ok(svc);
    assert.ok(!JSON.stringify(list).includes(created.key), 'the list never shows a key');
    assert.equal(svc.prefix, created.key.slice(0, 11));
    assert.equal((await rig.call('GET', '/api/v1/connections/alpha/token', { key: created.key })).status, 200);
    assert.equal((await rig.call('POST', '/api/v1/api-keys', { key: admin, body: { name: 'svc', permissions: ['token:read'], connections: '*' } })).status, 409);
    assert.equal((await rig.call('POST', '/api/v1/api-keys', { key: admin, body: { name: 'x', permissions: ['root'], connections: '*' } })).status, 400);
    assert.equal((await rig.call('DELETE', '/api/v1/api-keys/svc', { key: admin })).status, 200);
    assert.equal((await rig.call('GET', '/api/v1/connections/alpha/token', { key: created.key })).status, 401);
    assert.equal((await rig.call('DELETE', '/api/v1/api-keys/svc', { key: admin })).status, 404);
  });

  test('token hand-outs are counted per key in memory and written to the audit log and key counters on flush', async () => {
    const key = await rig.key(['token:read'], ['alpha'], 'counter');
    for (let i = 0; i < 5; i++) assert.equal((await rig.call('GET', '/api/v1/connections/alpha/token', { key })).status, 200);
    const before = (await rig.serverStore.listApiKeys()).find((k) => k.name === 'counter')!;
    assert.equal(before.tokenHandouts, 0, 'not written on the hot path');
    await rig.app.services.usage.flush();
    const afterKey = (await rig.serverStore.listApiKeys()).find((k) => k.name === 'counter')!;
    assert.equal(afterKey.tokenHandouts, 5);
    assert.equal(afterKey.lastUsedAt, rig.clock.now);
    const admin = await rig.key(['admin'], '*');
    const audit = await json(await rig.call('GET', '/api/v1/audit?action=token.handout', { key: admin }));
    const mine = audit.entries.filter((e: any) => e.actor === 'apikey:counter');
    assert.equal(mine.reduce((n: number, e: any) => n + e.details.count, 0), 5);
    assert.equal((await rig.call('GET', '/api/v1/audit?limit=0', { key: admin })).status, 400);
    assert.equal((await rig.call('GET', '/api/v1/audit', { key: await rig.key(['token:read'], '*') })).status, 403);
  });

  test('unknown API routes answer a JSON 404 (401 first without a key: nothing is revealed)', async () => {
    assert.equal((await rig.call('GET', '/api/v1/nothing')).status, 401);
    const res = await rig.call('GET', '/api/v1/nothing', { key: await rig.key(['token:read'], '*') });
    assert.equal(res.status, 404);
    assertError(await json(res), 'DROPKEY_ROUTE_NOT_FOUND');
  });
});

describe('logs', () => {
  test('the logs of this whole file contain no token, key or secret', async () => {
    await rig.app.services.usage.flush();
    const tokens = await rig.issuedTokens();
    assert.ok(tokens.length >= 5, `saw ${tokens.length} tokens`);
    const all = rig.logs.join('');
    assert.ok(all.length > 0, 'something was logged');
    for (const t of tokens) assert.ok(!all.includes(t), `a token leaked into the logs: ${t.slice(0, 6)}...`);
    assert.ok(!all.includes(app.secret));
    assert.ok(!/dk_[A-Za-z0-9_-]{43}/.test(all), 'no API key in the logs');
  });
});

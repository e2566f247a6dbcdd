/**
 * OAuth through the emulator's own `fetch` (no socket): the authorize page's validation, consent over plain HTTP,
 * the token endpoint's client-authentication forms, codes, refresh and revocation (https://developers.dropbox.com/oauth-guide).
 */
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { test } from 'node:test';
import { createEmulator, DEMO_APP_KEY, DEMO_APP_SECRET, DEMO_ACCOUNT_EMAIL, type Emulator } from './index.js';

const BASE = 'http://127.0.0.1:9';
const REDIRECT = 'http://127.0.0.1:53682/callback';

function setup(opts: Parameters<typeof createEmulator>[0] = {}) {
  let now = Date.parse('2026-01-01T00:00:00Z');
  const emu = createEmulator({ clock: () => now, ...opts });
  const call = (path: string, init?: RequestInit) => emu.fetch(new Request(BASE + path, { redirect: 'manual', ...init }));
  return { emu, call, tick: (ms: number) => (now += ms) };
}

function authorizePath(params: Record<string, string>): string {
  return `/oauth2/authorize?${new URLSearchParams(params).toString()}`;
}

/** GET the page, then post its form as a browser without JavaScript would. */
async function consent(call: ReturnType<typeof setup>['call'], path: string, decision: 'allow' | 'cancel' = 'allow', account?: string) {
  const page = await call(path);
  const html = await page.text();
  assert.equal(page.status, 200, html);
  const id = /name="consent_id" value="([^"]+)"/.exec(html)?.[1];
  assert.ok(id, 'the page carries a consent id');
  const firstAccount = /name="account" value="([^"]+)"/.exec(html)?.[1];
  const form = new URLSearchParams({ consent_id: id, decision, account: account ?? firstAccount! });
  return call('/oauth2/authorize', { method: 'POST', headers: { 'Content-Type': 'application/x-www-form-urlencoded' }, body: form.toString() });
}

async function codeFor(call: ReturnType<typeof setup>['call'], extra: Record<string, string> = {}): Promise<string> {
  const res = await consent(call, authorizePath({ client_id: DEMO_APP_KEY, response_type: 'code', redirect_uri: REDIRECT, token_access_type: 'offline', ...extra }));
  assert.equal(res.status, 302);
  const code = new URL(res.headers.get('location')!).searchParams.get('code');
  assert.ok(code);
  return code;
}

const form = (p: Record<string, string>) => ({
  method: 'POST',
  headers: { 'Content-Type': 'application/x-www-form-urlencoded' },
  body: new URLSearchParams(p).toString(),
});

const basic = (key: string, secret: string) => `Basic ${Buffer.from(`${key}:${secret}`).toString('base64')}`;

async function json(res: Response): Promise<any> {
  assert.equal(res.headers.get('content-type'), 'application/json');
  return res.json();
}

test('authorize: bad client_id or redirect_uri is a 400 HTML page, never a redirect', async () => {
  const { call } = setup();
  const cases: Record<string, string>[] = [
    { response_type: 'code' },
    { client_id: 'nope', response_type: 'code', redirect_uri: REDIRECT },
    { client_id: DEMO_APP_KEY, response_type: 'code', redirect_uri: 'https://evil.example/cb' },
    { client_id: DEMO_APP_KEY, response_type: 'code', redirect_uri: 'http://example.com/cb' },
    { client_id: DEMO_APP_KEY, response_type: 'code', redirect_uri: 'http://127.0.0.1.evil.example/cb' },
    { client_id: DEMO_APP_KEY, response_type: 'code', redirect_uri: 'https://127.0.0.1/cb' },
    { client_id: DEMO_APP_KEY, response_type: 'bogus', redirect_uri: REDIRECT },
    { client_id: DEMO_APP_KEY, response_type: 'token' },
    { client_id: DEMO_APP_KEY, response_type: 'code', token_access_type: 'forever' },
    { client_id: DEMO_APP_KEY, response_type: 'code', state: 'x'.repeat(501) },
    { client_id: DEMO_APP_KEY, response_type: 'code', code_challenge: 'a'.repeat(43), code_challenge_method: 'plain' },
    { client_id: DEMO_APP_KEY, response_type: 'code', code_challenge: 'short', code_challenge_method: 'S256' },
    { client_id: DEMO_APP_KEY, response_type: 'code', code_challenge: 'a'.repeat(43) },
    { client_id: DEMO_APP_KEY, response_type: 'code', approval_prompt: 'force' },
    { client_id: DEMO_APP_KEY, response_type: 'code', force_reapprove: 'yes' },
    { client_id: DEMO_APP_KEY, response_type: 'code', require_role: 'boss' },
    { client_id: DEMO_APP_KEY, response_type: 'code', include_granted_scopes: 'all' },
    { client_id: DEMO_APP_KEY, response_type: 'code', scope: 'files.content.read team_info.read' },
  ];
  for (const params of cases) {
    const res = await call(authorizePath(params));
    const body = await res.text();
    assert.equal(res.status, 400, `${JSON.stringify(params)} → ${res.status}`);
    assert.equal(res.headers.get('location'), null);
    assert.match(res.headers.get('content-type') ?? '', /^text\/html/);
    assert.match(body, /Error \(400\)/);
  }
  const badClient = await (await call(authorizePath({ client_id: '<script>', response_type: 'code' }))).text();
  assert.ok(badClient.includes('Invalid client_id: &#34;&#60;script&#62;&#34;'), 'the client id is escaped in the page');
});

test('authorize: redirect URI matching (exact, loopback any port, demo wildcard)', async () => {
  const { emu, call } = setup();
  await emu.control.createApp({ key: 'exact', name: 'Exact', redirect_uris: ['https://app.example/cb', 'http://localhost/cb'] });
  const ok = async (uri: string) => (await call(authorizePath({ client_id: 'exact', response_type: 'code', redirect_uri: uri }))).status;
  assert.equal(await ok('https://app.example/cb'), 200);
  assert.equal(await ok('https://app.example/cb/'), 400, 'the path must match exactly');
  assert.equal(await ok('https://app.example:8443/cb'), 400, 'a non-loopback port must match');
  assert.equal(await ok('http://localhost:4321/cb'), 200, 'loopback without port matches any port (RFC 8252 §7.3)');
  assert.equal(await ok('http://localhost:4321/other'), 400);
  assert.equal(await ok('https://app.example/cb#frag'), 400);
  const demo = async (uri: string) => (await call(authorizePath({ client_id: DEMO_APP_KEY, response_type: 'code', redirect_uri: uri }))).status;
  assert.equal(await demo('http://127.0.0.1:8765/any/path?x=1'), 200);
  assert.equal(await demo('http://localhost/'), 200);
  assert.equal(await demo('http://127.0.0.2/'), 400);
});

test('consent: Allow redirects with code and state; Cancel with access_denied; the consent id is single-use', async () => {
  const { call } = setup();
  const path = authorizePath({ client_id: DEMO_APP_KEY, response_type: 'code', redirect_uri: `${REDIRECT}?keep=1`, state: 'st&=ä' });
  const page = await (await call(path)).text();
  assert.match(page, /dropkey demo/);
  assert.match(page, /data-scope="files\.content\.read"/);
  assert.match(page, new RegExp(DEMO_ACCOUNT_EMAIL.replace('.', '\\.')));
  const allowed = await consent(call, path);
  const loc = new URL(allowed.headers.get('location')!);
  assert.equal(loc.searchParams.get('keep'), '1');
  assert.equal(loc.searchParams.get('state'), 'st&=ä');
  assert.ok(loc.searchParams.get('code'));

  const cancelled = await consent(call, path, 'cancel');
  const c = new URL(cancelled.headers.get('location')!);
  assert.equal(c.searchParams.get('error'), 'access_denied');
  assert.equal(c.searchParams.get('state'), 'st&=ä');
  assert.equal(c.searchParams.get('code'), null);

  const html = await (await call(path)).text();
  const id = /name="consent_id" value="([^"]+)"/.exec(html)![1]!;
  const post = () => call('/oauth2/authorize', form({ consent_id: id, decision: 'allow' }));
  assert.equal((await post()).status, 302);
  assert.equal((await post()).status, 400, 'a consent id answers once');
  assert.equal((await call('/oauth2/authorize', form({ consent_id: 'forged', decision: 'allow' }))).status, 400);
});

test('code exchange: form body with secret, query string, HTTP Basic, PKCE without secret; codes are single-use', async () => {
  const { call } = setup();
  // Form body with client_id + client_secret.
  const a = await json(await call('/oauth2/token', form({ grant_type: 'authorization_code', code: await codeFor(call), client_id: DEMO_APP_KEY, client_secret: DEMO_APP_SECRET, redirect_uri: REDIRECT })));
  assert.match(a.access_token, /^sl\./);
  assert.equal(a.token_type, 'bearer');
  assert.equal(a.expires_in, 14400);
  assert.equal(typeof a.refresh_token, 'string');
  assert.match(a.account_id, /^dbid:.{35}$/);
  assert.equal(typeof a.uid, 'string');
  assert.match(a.scope, /files\.content\.read/);

  // Query string, empty body, Content-Type application/json (what the JS SDK sends).
  const q = new URLSearchParams({ grant_type: 'authorization_code', code: await codeFor(call), client_id: DEMO_APP_KEY, client_secret: DEMO_APP_SECRET, redirect_uri: REDIRECT });
  const b = await call(`/oauth2/token?${q}`, { method: 'POST', headers: { 'Content-Type': 'application/json' } });
  assert.equal(b.status, 200);

  // HTTP Basic; client_id in the body as well is refused.
  const code = await codeFor(call);
  const both = await call('/oauth2/token', { ...form({ grant_type: 'authorization_code', code, client_id: DEMO_APP_KEY, redirect_uri: REDIRECT }), headers: { 'Content-Type': 'application/x-www-form-urlencoded', Authorization: basic(DEMO_APP_KEY, DEMO_APP_SECRET) } });
  assert.equal((await json(both)).error, 'invalid_request');
  const viaBasic = await call('/1/oauth2/token', { ...form({ grant_type: 'authorization_code', code, redirect_uri: REDIRECT }), headers: { 'Content-Type': 'application/x-www-form-urlencoded', Authorization: basic(DEMO_APP_KEY, DEMO_APP_SECRET) } });
  assert.equal(viaBasic.status, 200);
  // Second use of the same code fails, and revokes what the first use produced.
  const token = (await viaBasic.json()).access_token;
  const again = await call('/oauth2/token', { ...form({ grant_type: 'authorization_code', code, redirect_uri: REDIRECT }), headers: { 'Content-Type': 'application/x-www-form-urlencoded', Authorization: basic(DEMO_APP_KEY, DEMO_APP_SECRET) } });
  assert.deepEqual(await json(again), { error: 'invalid_grant', error_description: "code doesn't exist or has expired" });
  const me = await call('/2/users/get_current_account', { method: 'POST', headers: { Authorization: `Bearer ${token}` } });
  assert.equal(me.status, 401);

  // PKCE: client_id + code_verifier, no secret; a wrong verifier is invalid_grant.
  const verifier = randomBytes(64).toString('base64url');
  const challenge = createHash('sha256').update(verifier).digest('base64url');
  const pkceCode = await codeFor(call, { code_challenge: challenge, code_challenge_method: 'S256' });
  const wrong = await call('/oauth2/token', form({ grant_type: 'authorization_code', code: pkceCode, client_id: DEMO_APP_KEY, code_verifier: 'x'.repeat(64), redirect_uri: REDIRECT }));
  assert.equal((await json(wrong)).error, 'invalid_grant');
  const pkce = await call('/oauth2/token', form({ grant_type: 'authorization_code', code: await codeFor(call, { code_challenge: challenge, code_challenge_method: 'S256' }), client_id: DEMO_APP_KEY, code_verifier: verifier, redirect_uri: REDIRECT }));
  const p = await json(pkce);
  assert.equal(pkce.status, 200, JSON.stringify(p));
  // Without a secret and without PKCE there is no client authentication.
  const noAuth = await call('/oauth2/token', form({ grant_type: 'authorization_code', code: await codeFor(call), client_id: DEMO_APP_KEY, redirect_uri: REDIRECT }));
  assert.equal((await json(noAuth)).error, 'invalid_request');
  // A PKCE refresh needs only client_id.
  const refreshed = await call('/oauth2/token', form({ grant_type: 'refresh_token', refresh_token: p.refresh_token, client_id: DEMO_APP_KEY }));
  assert.equal(refreshed.status, 200);
});

test('HTTP Basic: a secret with "+" or "%" works sent raw (as most clients do) and form-encoded (RFC 6749 §2.3.1)', async () => {
  const { emu, call } = setup();
  const secret = 'se+cr%41t';
  await emu.control.createApp({ key: 'plusapp', secret, name: 'Plus', redirect_uris: [REDIRECT], scopes: ['account_info.read'] });
  await emu.control.grant({ app: 'plusapp', account: DEMO_ACCOUNT_EMAIL });
  for (const sent of [secret, encodeURIComponent(secret)]) {
    const code = await codeFor(call, { client_id: 'plusapp' });
    const res = await call('/oauth2/token', {
      ...form({ grant_type: 'authorization_code', code, redirect_uri: REDIRECT }),
      headers: { 'Content-Type': 'application/x-www-form-urlencoded', Authorization: basic('plusapp', sent) },
    });
    const body = await json(res);
    assert.equal(res.status, 200, `${sent}: ${JSON.stringify(body)}`);
    assert.match(body.access_token, /^sl\./);
  }
  const wrong = await call('/oauth2/token', {
    ...form({ grant_type: 'authorization_code', code: await codeFor(call, { client_id: 'plusapp' }), redirect_uri: REDIRECT }),
    headers: { 'Content-Type': 'application/x-www-form-urlencoded', Authorization: basic('plusapp', 'se cr%41t') },
  });
  assert.equal((await json(wrong)).error, 'invalid_client');
});

test('an app with no scopes (a legacy, non-scoped app) gets no "scope" field, not an empty one (Dropbox docs: oauth2/token)', async () => {
  const { emu } = setup();
  await emu.control.createApp({ key: 'noscopes', secret: 'noscopessecret', name: 'Unscoped', redirect_uris: [REDIRECT], scopes: [] });
  const g: any = await emu.control.grant({ app: 'noscopes', account: DEMO_ACCOUNT_EMAIL, token_access_type: 'offline' });
  assert.equal('scope' in g, false, JSON.stringify(Object.keys(g)));
  assert.match(g.access_token, /^sl\./);
});

test('token endpoint errors in Dropbox wording', async () => {
  const { call, tick } = setup();
  const t = async (p: Record<string, string>) => {
    const r = await call('/oauth2/token', form(p));
    assert.equal(r.status, 400);
    return json(r);
  };
  const base = { client_id: DEMO_APP_KEY, client_secret: DEMO_APP_SECRET };
  assert.deepEqual(await t({ ...base, grant_type: 'authorization_code', code: await codeFor(call), redirect_uri: 'http://127.0.0.1:1/x' }), { error: 'invalid_grant', error_description: 'redirect_uri mismatch' });
  assert.deepEqual(await t({ ...base, grant_type: 'authorization_code', code: await codeFor(call) }), { error: 'invalid_grant', error_description: 'redirect_uri mismatch' });
  assert.deepEqual(await t({ ...base, grant_type: 'authorization_code', redirect_uri: REDIRECT }), { error: 'invalid_request', error_description: 'missing required field "code"' });
  assert.deepEqual(await t({ ...base, grant_type: 'authorization_code', code: 'x', foo: 'bar' }), { error: 'invalid_request', error_description: 'unknown field "foo"' });
  assert.equal((await t({ ...base, grant_type: 'password' })).error, 'unsupported_grant_type');
  assert.equal((await t({ client_id: DEMO_APP_KEY, client_secret: 'wrong', grant_type: 'refresh_token', refresh_token: 'x' })).error, 'invalid_client');
  assert.equal((await t({ client_id: 'unknown', client_secret: 'x', grant_type: 'refresh_token', refresh_token: 'x' })).error, 'invalid_client');
  assert.deepEqual(await t({ ...base, grant_type: 'refresh_token', refresh_token: 'nope' }), { error: 'invalid_grant', error_description: 'refresh token is invalid or revoked' });
  const stale = await codeFor(call);
  tick(10 * 60 * 1000 + 1);
  assert.deepEqual(await t({ ...base, grant_type: 'authorization_code', code: stale, redirect_uri: REDIRECT }), { error: 'invalid_grant', error_description: "code doesn't exist or has expired" });
  const huge = await call('/oauth2/token', form({ grant_type: 'x'.repeat(70_000) }));
  assert.equal(huge.status, 400);
  const wrongType = await call('/oauth2/token', { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: '{"grant_type":"refresh_token"}' });
  assert.equal((await json(wrongType)).error, 'invalid_request');
  // The same parameter in the query string and in the body is ambiguous: refused, never silently picked.
  const twice = await call(`/oauth2/token?grant_type=refresh_token`, form({ ...base, grant_type: 'authorization_code', code: 'x' }));
  assert.deepEqual(await json(twice), { error: 'invalid_request', error_description: 'duplicate field "grant_type"' });
  const notUtf8 = await call('/oauth2/token', { method: 'POST', headers: { 'Content-Type': 'application/x-www-form-urlencoded' }, body: new Uint8Array([0x61, 0x3d, 0xff]) });
  assert.deepEqual(await json(notUtf8), { error: 'invalid_request', error_description: 'request body is not valid UTF-8' });
});

test('refresh keeps the refresh token; scope narrowing; clock expiry; revoke cascades', async () => {
  const { emu, call, tick } = setup({ tokenLifetimeSeconds: 600 });
  const g: any = await emu.control.grant({ app: DEMO_APP_KEY, account: DEMO_ACCOUNT_EMAIL });
  assert.equal(g.expires_in, 600);
  const me = (token: string) => call('/2/users/get_current_account', { method: 'POST', headers: { Authorization: `Bearer ${token}` } });
  assert.equal((await me(g.access_token)).status, 200);
  const refresh = async (extra: Record<string, string> = {}) =>
    call(`/oauth2/token?${new URLSearchParams({ grant_type: 'refresh_token', refresh_token: g.refresh_token, client_id: DEMO_APP_KEY, client_secret: DEMO_APP_SECRET, ...extra })}`, {
      method: 'POST',
      headers: { 'Content-Type': 'application/json' },
    });
  const r1 = await json(await refresh());
  assert.deepEqual(Object.keys(r1).sort(), ['access_token', 'expires_in', 'token_type']);
  const narrow = await json(await refresh({ scope: 'account_info.read' }));
  assert.equal(narrow.scope, 'account_info.read');
  const narrowed = await call('/2/files/list_folder', { method: 'POST', headers: { Authorization: `Bearer ${narrow.access_token}`, 'Content-Type': 'application/json' }, body: '{"path":""}' });
  assert.equal(narrowed.status, 401);
  assert.deepEqual((await narrowed.json()).error, { '.tag': 'missing_scope', required_scope: 'files.metadata.read' });
  assert.equal((await json(await refresh({ scope: 'team_info.read' }))).error, 'invalid_scope');

  tick(601 * 1000);
  const expired = await me(r1.access_token);
  assert.equal(expired.status, 401);
  assert.equal((await expired.json()).error['.tag'], 'expired_access_token');
  const fresh = await json(await refresh());
  assert.equal((await me(fresh.access_token)).status, 200);

  // Revoking one access token disables the refresh token and every token minted from it.
  const other = await json(await refresh());
  const revoke = await call('/2/auth/token/revoke', { method: 'POST', headers: { Authorization: `Bearer ${fresh.access_token}` } });
  assert.equal(revoke.status, 200);
  assert.equal(await revoke.text(), 'null');
  assert.equal((await me(other.access_token)).status, 401);
  assert.equal((await json(await refresh())).error, 'invalid_grant');
});

test('auto-approve redirects at once as the first account; legacy tokens never expire', async () => {
  const { call, tick } = setup({ autoApprove: true });
  const res = await call(authorizePath({ client_id: DEMO_APP_KEY, response_type: 'code', redirect_uri: REDIRECT, token_access_type: 'legacy' }));
  assert.equal(res.status, 302);
  const code = new URL(res.headers.get('location')!).searchParams.get('code')!;
  const tok = await json(await call('/oauth2/token', form({ grant_type: 'authorization_code', code, client_id: DEMO_APP_KEY, client_secret: DEMO_APP_SECRET, redirect_uri: REDIRECT })));
  assert.equal(tok.expires_in, undefined);
  assert.equal(tok.refresh_token, undefined);
  tick(365 * 86400 * 1000);
  const me = await call('/2/users/get_current_account', { method: 'POST', headers: { Authorization: `Bearer ${tok.access_token}` } });
  assert.equal((await me.json()).email, DEMO_ACCOUNT_EMAIL);
});

test('no redirect_uri: the code is shown in #auth-code and exchanges without redirect_uri', async () => {
  const { call } = setup();
  const res = await consent(call, authorizePath({ client_id: DEMO_APP_KEY, response_type: 'code' }));
  assert.equal(res.status, 200);
  const code = /<code id="auth-code">([^<]+)<\/code>/.exec(await res.text())?.[1];
  assert.ok(code);
  const tok = await call('/oauth2/token', form({ grant_type: 'authorization_code', code, client_id: DEMO_APP_KEY, client_secret: DEMO_APP_SECRET }));
  assert.equal(tok.status, 200);
});

test('implicit flow: token in the fragment; team app: team_id and only team admins may approve', async () => {
  const { call } = setup();
  const res = await consent(call, authorizePath({ client_id: DEMO_APP_KEY, response_type: 'token', redirect_uri: REDIRECT, state: 's1' }));
  const frag = new URLSearchParams(new URL(res.headers.get('location')!).hash.slice(1));
  assert.match(frag.get('access_token')!, /^sl\./);
  assert.equal(frag.get('token_type'), 'bearer');
  assert.equal(frag.get('state'), 's1');
  const teamPage = await (await call(authorizePath({ client_id: 'dropkey-demo-team-app', response_type: 'code', redirect_uri: REDIRECT }))).text();
  assert.match(teamPage, /admin@team\.example\.com/);
  assert.doesNotMatch(teamPage, /ana@team\.example\.com/);
  const teamRes = await consent(call, authorizePath({ client_id: 'dropkey-demo-team-app', response_type: 'code', redirect_uri: REDIRECT }));
  const code = new URL(teamRes.headers.get('location')!).searchParams.get('code')!;
  const tok = await json(await call('/oauth2/token', form({ grant_type: 'authorization_code', code, client_id: 'dropkey-demo-team-app', client_secret: 'dropkey-demo-team-secret', redirect_uri: REDIRECT })));
  assert.match(tok.team_id, /^dbtid:/);
  assert.equal(tok.account_id, undefined);
});

test('consent by a team member is recorded in the team audit log', async () => {
  const { call, emu } = setup();
  const admin = (await emu.control.accounts()).find((a) => a.email === 'admin@team.example.com')!;
  await consent(call, authorizePath({ client_id: DEMO_APP_KEY, response_type: 'code', redirect_uri: REDIRECT, require_role: 'work' }), 'allow', admin['account_id']);
  const team: any = await emu.control.grant({ app: 'dropkey-demo-team-app', account: admin['email'] });
  const ev = await call('/2/team_log/get_events', { method: 'POST', headers: { Authorization: `Bearer ${team.access_token}`, 'Content-Type': 'application/json' }, body: '{"category":"apps"}' });
  const body = await ev.json();
  assert.equal(ev.status, 200);
  assert.equal(body.events.length, 1);
  assert.deepEqual(body.events[0].event_type, { '.tag': 'app_link_user', description: '(apps) Linked app for member' });
  assert.equal(body.events[0].details.app_info.display_name, 'dropkey demo');
});

export type { Emulator };

test('include_granted_scopes: team adds what the team granted (whoever linked it), user adds only this user\'s own grants', async () => {
  const { call } = setup();
  const post = async (path: string, body: unknown) => {
    const res = await call(path, { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify(body) });
    assert.ok(res.status < 300, `${path}: ${res.status} ${await res.clone().text()}`);
    return res.json() as Promise<any>;
  };
  const teamApp = { key: 'teamappkey', secret: 'teamappsecret', name: 'Team app', redirect_uris: [REDIRECT], scopes: ['team_info.read', 'members.read', 'sessions.list', 'events.read'], access: 'full', team: true };
  const userApp = { key: 'userappkey', secret: 'userappsecret', name: 'User app', redirect_uris: [REDIRECT], scopes: ['account_info.read', 'files.metadata.read', 'files.content.read'], access: 'full', team: false };
  await post('/_emulator/apps', teamApp);
  await post('/_emulator/apps', userApp);
  const first = await post('/_emulator/accounts', { email: 'first-admin@t.example.com', team: { name: 'Acme' }, team_admin: true });
  const second = await post('/_emulator/accounts', { email: 'second-admin@t.example.com', team: { name: 'Acme' }, team_admin: true });
  assert.equal(first.team_id, second.team_id);
  await post('/_emulator/grants', { app: teamApp.key, account: first.account_id, scopes: ['team_info.read', 'members.read', 'sessions.list'], token_access_type: 'offline' });

  const scopesAfter = async (app: typeof teamApp, account: string, extra: Record<string, string>) => {
    const res = await consent(call, authorizePath({ client_id: app.key, response_type: 'code', redirect_uri: REDIRECT, token_access_type: 'offline', ...extra }), 'allow', account);
    assert.equal(res.status, 302);
    const code = new URL(res.headers.get('location')!).searchParams.get('code')!;
    const tok = await json(await call('/oauth2/token', { ...form({ grant_type: 'authorization_code', code, redirect_uri: REDIRECT }), headers: { 'Content-Type': 'application/x-www-form-urlencoded', Authorization: basic(app.key, app.secret) } }));
    return (tok.scope as string).split(' ').sort();
  };
  // Another admin of the same team adds events.read: the team's link keeps its three scopes.
  assert.deepEqual(await scopesAfter(teamApp, second.account_id, { scope: 'events.read', include_granted_scopes: 'team' }), ['events.read', 'members.read', 'sessions.list', 'team_info.read']);
  // "user" does not reach a team link's scopes.
  assert.deepEqual(await scopesAfter(teamApp, second.account_id, { scope: 'events.read', include_granted_scopes: 'user' }), ['events.read']);
  // Without the parameter: exactly what was asked.
  assert.deepEqual(await scopesAfter(teamApp, first.account_id, { scope: 'events.read' }), ['events.read']);

  const me = await post('/_emulator/accounts', { email: 'me@u.example.com' });
  const other = await post('/_emulator/accounts', { email: 'other@u.example.com' });
  await post('/_emulator/grants', { app: userApp.key, account: other.account_id, scopes: ['files.content.read'], token_access_type: 'offline' });
  await post('/_emulator/grants', { app: userApp.key, account: me.account_id, scopes: ['account_info.read'], token_access_type: 'offline' });
  // Mine are added; the other user's files.content.read is not.
  assert.deepEqual(await scopesAfter(userApp, me.account_id, { scope: 'files.metadata.read', include_granted_scopes: 'user' }), ['account_info.read', 'files.metadata.read']);
});

/**
 * The authorize page and token endpoint, request by request, against Dropbox's documentation
 * (https://www.dropbox.com/developers/documentation/http/documentation#oauth2-authorize, #oauth2-token) and docs/emulator.md. Client libraries are covered by sdk-lifecycle and oauth4webapi; this file pins the edges.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startEmulator, readRaw, type StartedEmulator, type AppSpec, type CreatedAccount, type RawResponse } from '../helpers/emulator.js';
import { driveConsent, parseForms } from '../helpers/consent.js';

const REDIRECT = 'http://127.0.0.1:53682/callback';

let emu: StartedEmulator;
let app: AppSpec;
let account: CreatedAccount;

before(async () => {
  emu = await startEmulator();
  app = await emu.control.createApp({ name: 'OAuth Edge App', redirect_uris: [REDIRECT, 'http://localhost:8080/other'] });
  account = await emu.control.createAccount({ email: 'edge@example.com', given_name: 'Edge', surname: 'Case' });
});
after(async () => {
  await emu?.close();
});

function authorizeUrl(params: Record<string, string>): string {
  return `${emu.url}/oauth2/authorize?${new URLSearchParams(params)}`;
}

async function getCode(params: Record<string, string> = {}): Promise<string> {
  const c = await driveConsent(authorizeUrl({ client_id: app.key, response_type: 'code', redirect_uri: REDIRECT, ...params }), { account: account.account_id });
  const code = c.location ? new URL(c.location).searchParams.get('code') : null;
  assert.ok(code, `a code was issued (status ${c.status}, location ${c.location})`);
  return code;
}

async function token(params: Record<string, string>, init: { basic?: [string, string]; path?: string; inQuery?: boolean } = {}): Promise<RawResponse> {
  const headers: Record<string, string> = { 'Content-Type': 'application/x-www-form-urlencoded' };
  if (init.basic) headers['Authorization'] = `Basic ${Buffer.from(`${init.basic[0]}:${init.basic[1]}`).toString('base64')}`;
  const qs = new URLSearchParams(params).toString();
  const path = init.path ?? '/oauth2/token';
  const res = init.inQuery
    ? await fetch(`${emu.url}${path}?${qs}`, { method: 'POST', headers })
    : await fetch(`${emu.url}${path}`, { method: 'POST', headers, body: qs });
  return readRaw(res);
}

/** Dropbox docs: oauth2/token: token errors are 400 JSON `{error, error_description}`. */
function assertTokenError(r: RawResponse, error: string, description?: RegExp): void {
  assert.equal(r.status, 400, `${r.status} ${r.text}`);
  assert.equal(r.headers.get('content-type'), 'application/json');
  assert.equal(r.json?.error, error, r.text);
  assert.equal(typeof r.json.error_description, 'string');
  if (description) assert.match(r.json.error_description, description);
}

async function assertErrorPage(url: string, mention: RegExp): Promise<void> {
  const res = await fetch(url, { redirect: 'manual' });
  const html = await res.text();
  assert.equal(res.status, 400, `an HTML error page, got ${res.status}`);
  assert.equal(res.headers.get('location'), null, 'never a redirect');
  assert.match(res.headers.get('content-type') ?? '', /^text\/html/);
  assert.match(html, mention);
  assert.equal(parseForms(html).length, 0, 'no consent form on an error page');
}

test('authorize: unknown client_id and unregistered redirect_uri are 400 HTML pages, never redirects', async () => {
  await assertErrorPage(authorizeUrl({ client_id: 'nope-not-an-app', response_type: 'code', redirect_uri: REDIRECT }), /client_id/);
  await assertErrorPage(authorizeUrl({ client_id: app.key, response_type: 'code', redirect_uri: 'http://127.0.0.1:53682/evil' }), /redirect_uri/);
  await assertErrorPage(authorizeUrl({ client_id: app.key, response_type: 'code', redirect_uri: `${REDIRECT}/` }), /redirect_uri/);
});

test('authorize: Cancel redirects with error=access_denied and the state', async () => {
  const c = await driveConsent(authorizeUrl({ client_id: app.key, response_type: 'code', redirect_uri: REDIRECT, state: 's-cancel' }), { button: /cancel/i });
  assert.ok(c.location, `Cancel redirects (status ${c.status})`);
  const u = new URL(c.location);
  assert.equal(`${u.origin}${u.pathname}`, REDIRECT);
  assert.equal(u.searchParams.get('error'), 'access_denied');
  assert.equal(u.searchParams.get('state'), 's-cancel');
  assert.equal(u.searchParams.get('code'), null);
});

test('authorize: a state over 500 bytes issues no code', async () => {
  const res = await fetch(authorizeUrl({ client_id: app.key, response_type: 'code', redirect_uri: REDIRECT, state: 'x'.repeat(501) }), { redirect: 'manual' });
  const loc = res.headers.get('location');
  if (loc) {
    assert.equal(new URL(loc).searchParams.get('code'), null);
    assert.ok(new URL(loc).searchParams.get('error'), 'an error redirect');
  } else {
    assert.equal(res.status, 400, 'an error page');
    assert.equal(parseForms(await res.text()).length, 0, 'no consent form');
  }
});

test('code flow without redirect_uri shows the code in #auth-code; it exchanges without redirect_uri', async () => {
  const c = await driveConsent(authorizeUrl({ client_id: app.key, response_type: 'code' }), { account: account.account_id });
  assert.equal(c.location, undefined, 'no redirect');
  assert.equal(c.status, 200);
  const m = /<[^>]*\bid\s*=\s*["']?auth-code["']?[^>]*>\s*([^<\s]+)\s*</i.exec(c.finalHtml);
  assert.ok(m, 'the page shows the code in #auth-code');
  const r = await token({ grant_type: 'authorization_code', code: m[1]!, client_id: app.key, client_secret: app.secret! });
  assert.equal(r.status, 200, r.text);
  assert.equal(r.json.account_id, account.account_id);
});

test('token endpoint: parameters in the query string or the body, client auth by params or HTTP Basic, /1/ alias', async () => {
  const inQuery = await token({ grant_type: 'authorization_code', code: await getCode(), client_id: app.key, client_secret: app.secret!, redirect_uri: REDIRECT }, { inQuery: true });
  assert.equal(inQuery.status, 200, inQuery.text);
  const basic = await token({ grant_type: 'authorization_code', code: await getCode(), redirect_uri: REDIRECT }, { basic: [app.key, app.secret!] });
  assert.equal(basic.status, 200, basic.text);
  const legacy = await token({ grant_type: 'authorization_code', code: await getCode(), client_id: app.key, client_secret: app.secret!, redirect_uri: REDIRECT }, { path: '/1/oauth2/token' });
  assert.equal(legacy.status, 200, legacy.text);
  for (const r of [inQuery, basic, legacy]) {
    assert.equal(r.headers.get('content-type'), 'application/json');
    assert.match(r.json.access_token, /^sl\./);
    assert.equal(r.json.token_type, 'bearer');
    assert.equal(r.json.account_id, account.account_id);
    assert.equal(typeof r.json.uid, 'string');
  }
});

test('token endpoint: token_access_type online gives no refresh token; offline does; refresh keeps the refresh token', async () => {
  const online = await token({ grant_type: 'authorization_code', code: await getCode({ token_access_type: 'online' }), client_id: app.key, client_secret: app.secret!, redirect_uri: REDIRECT });
  assert.equal(online.status, 200, online.text);
  assert.equal(online.json.refresh_token, undefined);
  assert.equal(online.json.expires_in, 14400, 'Dropbox short-lived tokens last 4 h (Dropbox OAuth guide: token lifetimes)');

  const offline = await token({ grant_type: 'authorization_code', code: await getCode({ token_access_type: 'offline', scope: 'account_info.read files.metadata.read' }), client_id: app.key, client_secret: app.secret!, redirect_uri: REDIRECT });
  assert.equal(offline.status, 200, offline.text);
  assert.equal(typeof offline.json.refresh_token, 'string');
  assert.deepEqual(offline.json.scope.split(' ').sort(), ['account_info.read', 'files.metadata.read'], 'scope is the requested subset');

  const narrowed = await token({ grant_type: 'refresh_token', refresh_token: offline.json.refresh_token, client_id: app.key, client_secret: app.secret!, scope: 'account_info.read' });
  assert.equal(narrowed.status, 200, narrowed.text);
  assert.equal(narrowed.json.refresh_token, undefined, 'no new refresh token on refresh (Dropbox docs: oauth2/token)');
  assert.equal(narrowed.json.token_type, 'bearer');
  assert.equal(narrowed.json.scope, 'account_info.read');
  const list = await emu.rpc('files/list_folder', { path: '' }, narrowed.json.access_token);
  assert.equal(list.status, 401, 'the narrowed token lacks files.metadata.read');
  assert.equal(list.json.error['.tag'], 'missing_scope');

  const widened = await token({ grant_type: 'refresh_token', refresh_token: offline.json.refresh_token, client_id: app.key, client_secret: app.secret!, scope: 'files.content.write' });
  assert.equal(widened.status, 400, `a refresh cannot widen the grant: ${widened.text}`);
});

test('token endpoint errors: redirect_uri mismatch, used/expired code, missing field, bad secret, unsupported grant', async () => {
  const code = await getCode();
  assertTokenError(await token({ grant_type: 'authorization_code', code, client_id: app.key, client_secret: app.secret!, redirect_uri: 'http://localhost:8080/other' }), 'invalid_grant', /redirect_uri mismatch/);

  assertTokenError(await token({ grant_type: 'authorization_code', code: 'made-up-code-1234567890', client_id: app.key, client_secret: app.secret!, redirect_uri: REDIRECT }), 'invalid_grant', /code doesn't exist or has expired/);

  assertTokenError(await token({ grant_type: 'authorization_code', client_id: app.key, client_secret: app.secret!, redirect_uri: REDIRECT }), 'invalid_request', /code/);

  const wrongSecret = await token({ grant_type: 'authorization_code', code: await getCode(), client_id: app.key, client_secret: 'wrong-secret', redirect_uri: REDIRECT });
  assert.ok(wrongSecret.status === 400 || wrongSecret.status === 401, `bad secret: ${wrongSecret.status}`);
  assert.equal(wrongSecret.json?.error, 'invalid_client');

  assertTokenError(await token({ grant_type: 'client_credentials', client_id: app.key, client_secret: app.secret! }), 'unsupported_grant_type');

  // Codes are short-lived: after an hour of emulator time the code is gone (exact lifetime unknown, Dropbox OAuth guide: token lifetimes).
  const stale = await getCode();
  await emu.control.advanceClock(3600);
  assertTokenError(await token({ grant_type: 'authorization_code', code: stale, client_id: app.key, client_secret: app.secret!, redirect_uri: REDIRECT }), 'invalid_grant');
});

test('implicit grant (response_type=token) returns the token in the fragment', async () => {
  const c = await driveConsent(authorizeUrl({ client_id: app.key, response_type: 'token', redirect_uri: REDIRECT, state: 'frag' }), { account: account.account_id });
  assert.ok(c.location, `redirects (status ${c.status})`);
  const u = new URL(c.location);
  assert.equal(u.search, '', 'nothing in the query string');
  const f = new URLSearchParams(u.hash.slice(1));
  assert.match(f.get('access_token') ?? '', /^sl\./);
  assert.equal(f.get('token_type'), 'bearer');
  assert.equal(f.get('account_id'), account.account_id);
  assert.ok(f.get('uid'));
  assert.equal(f.get('state'), 'frag');
  const me = await emu.rpc('users/get_current_account', undefined, f.get('access_token'));
  assert.equal(me.status, 200, me.text);
});

test('a team app linked through the consent page gets team_id instead of account_id', async () => {
  const teamApp = await emu.control.createApp({ team: true, redirect_uris: [REDIRECT], scopes: ['team_info.read', 'members.read'] });
  const admin = await emu.control.createAccount({ email: 'oauth-admin@edge.example', team: { name: 'Edge Team' }, team_admin: true });
  const c = await driveConsent(authorizeUrl({ client_id: teamApp.key, response_type: 'code', redirect_uri: REDIRECT }), { account: admin.account_id });
  const code = new URL(c.location!).searchParams.get('code')!;
  const r = await token({ grant_type: 'authorization_code', code, client_id: teamApp.key, client_secret: teamApp.secret!, redirect_uri: REDIRECT });
  assert.equal(r.status, 200, r.text);
  assert.equal(r.json.team_id, admin.team_id);
  assert.equal(r.json.account_id, undefined);
  assert.equal(typeof r.json.uid, 'string');
  const info = await emu.rpc('team/get_info', undefined, r.json.access_token);
  assert.equal(info.status, 200, info.text);
  assert.equal(info.json.name, 'Edge Team');
});

test('revoke disables the token, its refresh token and every access token minted from it (Dropbox docs: auth/token/revoke)', async () => {
  const r = await token({ grant_type: 'authorization_code', code: await getCode({ token_access_type: 'offline' }), client_id: app.key, client_secret: app.secret!, redirect_uri: REDIRECT });
  assert.equal(r.status, 200, r.text);
  const refresh = () => token({ grant_type: 'refresh_token', refresh_token: r.json.refresh_token, client_id: app.key, client_secret: app.secret! });
  const a2 = (await refresh()).json.access_token as string;
  const a3 = (await refresh()).json.access_token as string;
  const unrelated = await emu.control.grant({ app: app.key, account: account.account_id });
  for (const t of [r.json.access_token, a2, a3]) assert.equal((await emu.rpc('users/get_current_account', undefined, t)).status, 200);

  const revoke = await emu.rpc('auth/token/revoke', undefined, a2);
  assert.equal(revoke.status, 200, revoke.text);
  assert.equal(revoke.headers.get('content-type'), 'application/json');
  assert.equal(revoke.json, null, 'Void result is JSON null');
  for (const t of [r.json.access_token, a2, a3]) {
    const me = await emu.rpc('users/get_current_account', undefined, t);
    assert.equal(me.status, 401, me.text);
    assert.equal(me.json.error['.tag'], 'invalid_access_token');
  }
  assertTokenError(await refresh(), 'invalid_grant', /refresh token is invalid or revoked/);
  assert.equal((await emu.rpc('users/get_current_account', undefined, unrelated.access_token)).status, 200, 'other grants are untouched');
});

test('revoke with a team token needs Dropbox-API-Select-User (auth "user", Dropbox docs: auth/token/revoke)', async () => {
  const teamApp = await emu.control.createApp({ team: true, scopes: ['team_info.read', 'members.read', 'team_data.member'] });
  const admin = await emu.control.createAccount({ team: { name: 'Revoke Team' }, team_admin: true });
  const g = await emu.control.grant({ app: teamApp.key, account: admin.account_id });
  const r = await emu.rpc('auth/token/revoke', undefined, g.access_token);
  assert.equal(r.status, 400, r.text);
  assert.match(r.text, /^Error in call to API function "auth\/token\/revoke": This API function operates on a single Dropbox account/);
  assert.equal((await emu.rpc('team/get_info', undefined, g.access_token)).status, 200, 'the team token still works');
});

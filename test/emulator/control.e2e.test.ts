/**
 * The control API under /_emulator/ (docs/emulator.md). Other tools depend on these shapes.
 * Token-shaped bodies are checked against the token endpoint's documented response (https://www.dropbox.com/developers/documentation/http/documentation#oauth2-token).
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startEmulator, readRaw, type StartedEmulator, type TokenResponse } from '../helpers/emulator.js';

let emu: StartedEmulator;

before(async () => {
  emu = await startEmulator();
});
after(async () => {
  await emu?.close();
});

async function control(method: string, path: string, body?: unknown) {
  const init: RequestInit = { method };
  if (body !== undefined) {
    init.body = JSON.stringify(body);
    init.headers = { 'Content-Type': 'application/json' };
  }
  return readRaw(await emu.fetch(`${emu.url}/_emulator/${path}`, init));
}

function assertTokenShape(t: TokenResponse, opts: { refresh: boolean; team: boolean }): void {
  assert.match(t.access_token, /^sl\./);
  assert.equal(t.token_type, 'bearer');
  assert.equal(typeof t.expires_in, 'number');
  assert.equal(typeof t.scope, 'string');
  assert.equal(typeof t.uid, 'string', 'uid is always present (Python and Java need it, Dropbox docs: oauth2/token)');
  if (opts.refresh) assert.equal(typeof t.refresh_token, 'string');
  else assert.equal(t.refresh_token, undefined, 'refresh_token only for offline access');
  if (opts.team) {
    assert.match(String(t.team_id), /^dbtid:/);
    assert.equal(t.account_id, undefined, 'team-linked grants carry team_id instead of account_id');
  } else {
    assert.match(String(t.account_id), /^dbid:/);
    assert.equal(String(t.account_id).length, 40);
  }
}

test('POST /_emulator/apps creates an app (201) and rejects a bad one', async () => {
  const spec = {
    key: 'ctlappkey1', secret: 'ctlappsecret1', name: 'Control App', redirect_uris: ['http://127.0.0.1:9999/cb'],
    scopes: ['account_info.read', 'files.metadata.read'], access: 'app_folder', team: false,
  };
  const r = await control('POST', 'apps', spec);
  assert.equal(r.status, 201, r.text);
  assert.equal(r.headers.get('content-type'), 'application/json');
  assert.equal(r.json.key, 'ctlappkey1');
  assert.equal(r.json.name, 'Control App');
  assert.deepEqual(r.json.redirect_uris, spec.redirect_uris);
  assert.deepEqual([...r.json.scopes].sort(), [...spec.scopes].sort());
  assert.equal(r.json.access, 'app_folder');
  assert.equal(r.json.team, false);

  const bad = await control('POST', 'apps', { name: 'no key' });
  assert.ok(bad.status >= 400 && bad.status < 500, `missing key is a client error, got ${bad.status}`);
  const notJson = await readRaw(await emu.fetch(`${emu.url}/_emulator/apps`, { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: '{' }));
  assert.ok(notJson.status >= 400 && notJson.status < 500, `malformed JSON is a client error, got ${notJson.status}`);
});

test('POST /_emulator/accounts: personal, team member and team admin accounts', async () => {
  const personal = await control('POST', 'accounts', { email: 'pat@example.com', given_name: 'Pat', surname: 'Personal' });
  assert.equal(personal.status, 201, personal.text);
  assert.match(personal.json.account_id, /^dbid:/);
  assert.equal(personal.json.account_id.length, 40);
  assert.equal(personal.json.team_id, undefined);
  assert.equal(personal.json.team_member_id, undefined);

  const admin = await control('POST', 'accounts', { email: 'boss@acme.example', team: { name: 'Acme' }, team_admin: true });
  assert.equal(admin.status, 201, admin.text);
  assert.match(admin.json.team_id, /^dbtid:/);
  assert.match(admin.json.team_member_id, /^dbmid:/);
  const member = await control('POST', 'accounts', { email: 'worker@acme.example', team: { name: 'Acme' } });
  assert.equal(member.status, 201, member.text);
  assert.equal(member.json.team_id, admin.json.team_id, 'same team name joins the same team');
  assert.notEqual(member.json.team_member_id, admin.json.team_member_id);
  assert.notEqual(member.json.account_id, admin.json.account_id);
});

test('POST /_emulator/grants returns a token-endpoint-shaped body; account by id or email', async () => {
  const grantApp = await emu.control.createApp({ key: 'grantapp', scopes: ['account_info.read', 'files.metadata.read'] });
  const acct = await emu.control.createAccount({ email: 'granted@example.com' });

  const offline = await control('POST', 'grants', { app: 'grantapp', account: acct.account_id, token_access_type: 'offline' });
  assert.equal(offline.status, 201, offline.text);
  assert.equal(offline.headers.get('content-type'), 'application/json');
  assertTokenShape(offline.json, { refresh: true, team: false });
  assert.equal(offline.json.account_id, acct.account_id);
  assert.deepEqual(offline.json.scope.split(' ').sort(), ['account_info.read', 'files.metadata.read']);

  const byEmail = await emu.control.grant({ app: 'grantapp', account: 'granted@example.com', token_access_type: 'online', scopes: ['account_info.read'] });
  assertTokenShape(byEmail, { refresh: false, team: false });
  assert.equal(byEmail.account_id, acct.account_id);
  assert.equal(byEmail.scope, 'account_info.read');

  // The minted tokens are real: they call the API, and the refresh token works at the token endpoint.
  const me = await emu.rpc('users/get_current_account', undefined, byEmail.access_token);
  assert.equal(me.status, 200, me.text);
  assert.equal(me.json.email, 'granted@example.com');
  const form = new URLSearchParams({ grant_type: 'refresh_token', refresh_token: offline.json.refresh_token, client_id: 'grantapp', client_secret: grantApp.secret! });
  const refreshed = await readRaw(await emu.fetch(`${emu.url}/oauth2/token`, { method: 'POST', headers: { 'Content-Type': 'application/x-www-form-urlencoded' }, body: form.toString() }));
  assert.equal(refreshed.status, 200, refreshed.text);
  assert.match(refreshed.json.access_token, /^sl\./);

  const teamApp = await emu.control.createApp({ key: 'teamgrantapp', team: true, scopes: ['team_info.read', 'members.read'] });
  const admin = await emu.control.createAccount({ team: { name: 'Grant Team' }, team_admin: true });
  const teamTok = await emu.control.grant({ app: teamApp.key, account: admin.account_id, token_access_type: 'offline' });
  assertTokenShape(teamTok, { refresh: true, team: true });
  assert.equal(teamTok.team_id, admin.team_id);

  const unknownApp = await control('POST', 'grants', { app: 'no-such-app', account: acct.account_id });
  assert.ok(unknownApp.status >= 400 && unknownApp.status < 500, `unknown app is a client error, got ${unknownApp.status}`);
  const unknownAccount = await control('POST', 'grants', { app: 'grantapp', account: 'nobody@example.com' });
  assert.ok(unknownAccount.status >= 400 && unknownAccount.status < 500, `unknown account is a client error, got ${unknownAccount.status}`);
});

/** The secret createApp sent for each app key, for confidential-client calls. */
const secrets = new Map<string, string>();

test('faults: count, "*" route, delay_ms, body, reset_connection, DELETE', async () => {
  const { token } = await userToken();
  const me = () => emu.rpc('users/get_current_account', undefined, token);

  assert.equal((await control('POST', 'faults', { route: 'users/get_current_account', status: 503, count: 2 })).status < 300, true);
  assert.equal((await me()).status, 503);
  assert.equal((await me()).status, 503);
  assert.equal((await me()).status, 200, 'count: 2 → the third call is served');

  await emu.control.fault({ route: '*', status: 500, count: 1 });
  assert.equal((await emu.rpc('files/list_folder', { path: '' }, token)).status, 500, '"*" matches any route');
  assert.equal((await me()).status, 200);

  const body = { error_summary: 'too_many_write_operations/..', error: { reason: { '.tag': 'too_many_write_operations' }, retry_after: 3 } };
  await emu.control.fault({ route: 'users/get_current_account', status: 429, retry_after: 3, body, count: 1 });
  const limited = await me();
  assert.equal(limited.status, 429);
  assert.equal(limited.headers.get('retry-after'), '3');
  assert.deepEqual(limited.json, body);

  await emu.control.fault({ route: 'users/get_current_account', status: 200, delay_ms: 300, count: 1 });
  const t0 = performance.now();
  const delayed = await me();
  const elapsed = performance.now() - t0;
  assert.ok(elapsed >= 280, `delay_ms: 300 delays the answer (took ${elapsed.toFixed(0)} ms)`);
  assert.equal(delayed.status, 200, 'a fault with status 200 and delay_ms only delays the real answer');
  assert.equal(delayed.json.account_id.length, 40);

  await emu.control.fault({ route: 'users/get_current_account', status: 500, reset_connection: true, count: 1 });
  await assert.rejects(me(), 'reset_connection drops the connection without an HTTP answer');
  assert.equal((await me()).status, 200);

  await emu.control.fault({ route: '*', status: 500, count: 100 });
  const cleared = await control('DELETE', 'faults');
  assert.ok(cleared.status < 300, `DELETE /_emulator/faults: ${cleared.status}`);
  assert.equal((await me()).status, 200, 'DELETE clears pending faults');
});

test('clock: advancing past expires_in expires access tokens; refresh still works', async () => {
  const { token, grant } = await userToken();
  assert.equal((await emu.rpc('users/get_current_account', undefined, token)).status, 200);
  const r = await control('POST', 'clock', { advance_seconds: grant.expires_in! + 1 });
  assert.ok(r.status < 300, `POST /_emulator/clock: ${r.status} ${r.text}`);
  const expired = await emu.rpc('users/get_current_account', undefined, token);
  assert.equal(expired.status, 401);
  assert.equal(expired.json.error['.tag'], 'expired_access_token');
  const bad = await control('POST', 'clock', { advance_seconds: 'soon' });
  assert.ok(bad.status >= 400 && bad.status < 500, `a non-numeric advance is a client error, got ${bad.status}`);
});

test('requests log: oldest first, method/path/status/time, DELETE clears, never a raw token', async () => {
  const { token, grant } = await userToken();
  const cleared = await control('DELETE', 'requests');
  assert.ok(cleared.status < 300);
  await emu.rpc('users/get_current_account', undefined, token);
  await emu.rpc('files/get_metadata', { path: '/nothing-here' }, token);
  await emu.rpc('users/get_current_account', undefined, 'sl.definitely-not-valid-' + 'x'.repeat(40));
  // A refresh with every parameter in the query string, as the JS SDK sends it (docs/emulator.md).
  const secret = secrets.get(grant.appKey)!;
  await emu.fetch(`${emu.url}/oauth2/token?grant_type=refresh_token&refresh_token=${grant.refresh_token}&client_id=${grant.appKey}&client_secret=${secret}`, {
    method: 'POST', headers: { 'Content-Type': 'application/json' },
  });

  const r = await control('GET', 'requests');
  assert.equal(r.status, 200);
  assert.equal(r.headers.get('content-type'), 'application/json');
  const log = (Array.isArray(r.json) ? r.json : r.json.requests) as any[];
  const api = log.filter((e) => !String(e.path).startsWith('/_emulator'));
  assert.deepEqual(
    api.map((e) => [e.method, String(e.path).split('?')[0], e.status]),
    [
      ['POST', '/2/users/get_current_account', 200],
      ['POST', '/2/files/get_metadata', 409],
      ['POST', '/2/users/get_current_account', 401],
      ['POST', '/oauth2/token', 200],
    ],
  );
  for (const e of api) assert.ok(e.time !== undefined && e.time !== null, 'each entry has a time');
  const text = r.text;
  assert.ok(!text.includes(token), 'no raw access token in the log');
  assert.ok(!text.includes('definitely-not-valid'), 'not even an invalid bearer token');
  assert.ok(!text.includes(grant.refresh_token!), 'no raw refresh token in the log');
  assert.ok(!text.includes(secret), 'no app secret in the log');

  await control('DELETE', 'requests');
  const after = await emu.control.requests();
  assert.ok(after.every((e) => String(e.path).startsWith('/_emulator')), 'DELETE cleared the log');
});

test('reset: drops apps, accounts and tokens', async () => {
  const { token, grant } = await userToken();
  const r = await control('POST', 'reset');
  assert.ok(r.status < 300, `POST /_emulator/reset: ${r.status}`);
  const after = await emu.rpc('users/get_current_account', undefined, token);
  assert.equal(after.status, 401);
  assert.equal(after.json.error['.tag'], 'invalid_access_token');
  const regrant = await control('POST', 'grants', { app: grant.appKey, account: grant.accountId });
  assert.ok(regrant.status >= 400 && regrant.status < 500, `the app is gone after reset, got ${regrant.status}`);
  // The emulator is usable again right away.
  const again = await userToken();
  assert.equal((await emu.rpc('users/get_current_account', undefined, again.token)).status, 200);
});

async function userToken(): Promise<{ token: string; grant: TokenResponse & { appKey: string; accountId: string } }> {
  const app = await emu.control.createApp();
  secrets.set(app.key, app.secret!);
  const acct = await emu.control.createAccount();
  const grant = await emu.control.grant({ app: app.key, account: acct.account_id, token_access_type: 'offline' });
  return { token: grant.access_token, grant: { ...grant, appKey: app.key, accountId: acct.account_id } };
}

test('library surface: createEmulator({control: false}) serves fetch with no port; control helpers still work', async () => {
  const lib = await startEmulator({ control: false }, { listen: false });
  try {
    const blocked = await lib.fetch(`${lib.url}/_emulator/requests`);
    assert.equal(blocked.status, 404, 'no HTTP control API when control: false');
    const c = lib.emulator.control;
    await c.createApp({ key: 'libapp', secret: 'libsecret', name: 'Lib', redirect_uris: [], scopes: ['account_info.read'], access: 'full', team: false });
    const acct = await c.createAccount({ email: 'lib@example.com' });
    const g = await c.grant({ app: 'libapp', account: 'lib@example.com' });
    assert.equal(g.account_id, acct.account_id);
    const me = await lib.rpc('users/get_current_account', undefined, g.access_token);
    assert.equal(me.status, 200, me.text);
    await c.advanceClock(g.expires_in + 1);
    assert.equal((await lib.rpc('users/get_current_account', undefined, g.access_token)).status, 401);
    const log = await c.requests();
    assert.ok(log.some((e: any) => e.path === '/2/users/get_current_account' && e.status === 401));
  } finally {
    await lib.close();
  }
});

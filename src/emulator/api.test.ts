/**
 * The /2 dispatcher through `emulator.fetch`: authentication families, Select-User, argument decoding, content
 * types, bad input, downloads with Range (https://www.dropbox.com/developers/documentation/http/documentation).
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { createEmulator, DEMO_APP_KEY, DEMO_APP_SECRET, DEMO_ACCOUNT_EMAIL, DEMO_TEAM_APP_KEY } from './index.js';
import { errorSummary, headerSafeJson, rateLimitResponse } from './wire.js';
import { parseRange } from './api.js';

const BASE = 'http://127.0.0.1:9';

async function setup() {
  let now = Date.parse('2026-03-01T12:00:00Z');
  const emu = createEmulator({ clock: () => now });
  const call = (path: string, init?: RequestInit) => emu.fetch(new Request(BASE + path, init));
  const user: any = await emu.control.grant({ app: DEMO_APP_KEY, account: DEMO_ACCOUNT_EMAIL });
  const team: any = await emu.control.grant({ app: DEMO_TEAM_APP_KEY, account: 'admin@team.example.com' });
  const rpc = (route: string, token: string | null, body?: string, headers: Record<string, string> = {}) =>
    call(`/2/${route}`, {
      method: 'POST',
      headers: { ...(token ? { Authorization: `Bearer ${token}` } : {}), ...(body !== undefined ? { 'Content-Type': 'application/json' } : {}), ...headers },
      ...(body !== undefined ? { body } : {}),
    });
  return { emu, call, rpc, user, team, tick: (ms: number) => (now += ms) };
}

test('authentication families: 400 text for missing/malformed, 401 JSON for unknown/expired/missing scope', async () => {
  const { rpc, call, user, tick, emu } = await setup();
  const missing = await rpc('users/get_current_account', null);
  assert.equal(missing.status, 400);
  assert.equal(missing.headers.get('content-type'), 'text/plain; charset=utf-8');
  assert.equal(await missing.text(), 'Error in call to API function "users/get_current_account": Must provide HTTP header "Authorization" or URL parameter "authorization".');
  const noScheme = await call('/2/users/get_current_account', { method: 'POST', headers: { Authorization: user.access_token } });
  const text = await noScheme.text();
  assert.equal(noScheme.status, 400);
  assert.match(text, /Expecting "Bearer <oauth2-access-token>"/);
  assert.ok(!text.includes(user.access_token.slice(0, 12)), 'never echoes the whole token');
  const malformed = await rpc('users/get_current_account', 'bad\\token\"');
  assert.equal(malformed.status, 400);
  assert.match(await malformed.text(), /The given OAuth 2 access token is malformed\./);
  const unknown = await rpc('users/get_current_account', `sl.u.${'A'.repeat(60)}`);
  assert.equal(unknown.status, 401);
  assert.equal(unknown.headers.get('content-type'), 'application/json');
  const u = await unknown.json();
  assert.equal(u.error['.tag'], 'invalid_access_token');
  assert.match(u.error_summary, /^invalid_access_token\/\.{0,3}$/);
  // ?authorization= works like the header (CORS form, Dropbox HTTP docs: request styles and headers).
  const viaParam = await call(`/2/users/get_current_account?authorization=${encodeURIComponent(`Bearer ${user.access_token}`)}`, { method: 'POST' });
  assert.equal(viaParam.status, 200);
  const narrow: any = await emu.control.grant({ app: DEMO_APP_KEY, account: DEMO_ACCOUNT_EMAIL, scopes: ['files.metadata.read'] });
  const noScope = await rpc('users/get_current_account', narrow.access_token);
  assert.equal(noScope.status, 401);
  const ns = await noScope.json();
  assert.deepEqual(ns.error, { '.tag': 'missing_scope', required_scope: 'account_info.read' });
  assert.match(ns.error_summary, /^missing_scope\//);
  tick(14400 * 1000);
  const expired = await rpc('users/get_current_account', user.access_token);
  assert.equal(expired.status, 401);
  assert.equal((await expired.json()).error['.tag'], 'expired_access_token');
});

test('team tokens: Select-User acts as the member, a user route without it is 400, a user token on a team route is 400', async () => {
  const { rpc, user, team, emu } = await setup();
  const ana = (await emu.control.accounts()).find((a) => a.email === 'ana@team.example.com')!;
  const without = await rpc('users/get_current_account', team.access_token);
  assert.equal(without.status, 400);
  assert.match(await without.text(), /operates on a single Dropbox account.*Dropbox-API-Select-User/);
  const asAna = await rpc('users/get_current_account', team.access_token, undefined, { 'Dropbox-API-Select-User': ana['team_member_id'] });
  const body = await asAna.json();
  assert.equal(asAna.status, 200, JSON.stringify(body));
  assert.equal(body.email, 'ana@team.example.com');
  assert.equal(body.team_member_id, ana['team_member_id']);
  assert.equal(body.account_type['.tag'], 'business');
  const badMember = await rpc('users/get_current_account', team.access_token, undefined, { 'Dropbox-API-Select-User': 'dbmid:nobody' });
  assert.equal((await badMember.json()).error['.tag'], 'invalid_select_user');
  const notAdmin = await rpc('users/get_current_account', team.access_token, undefined, { 'Dropbox-API-Select-Admin': ana['team_member_id'] });
  assert.equal((await notAdmin.json()).error['.tag'], 'invalid_select_admin');
  const userOnTeam = await rpc('team/get_info', user.access_token);
  assert.equal(userOnTeam.status, 400);
  assert.match(await userOnTeam.text(), /This is a DfB team management function/);
  const info = await rpc('team/get_info', team.access_token);
  assert.equal((await info.json()).name, 'Example Team');
});

test('rpc content types and bodies: no body or null for Void, JSON otherwise, wrong types are 400 text', async () => {
  const { rpc, call, user } = await setup();
  assert.equal((await rpc('users/get_current_account', user.access_token)).status, 200, 'no body, no Content-Type');
  assert.equal((await rpc('users/get_current_account', user.access_token, 'null')).status, 200, 'null body');
  const notNull = await rpc('users/get_current_account', user.access_token, '{"x":1}');
  assert.equal(notNull.status, 400);
  const form = await call('/2/check/user', { method: 'POST', headers: { Authorization: `Bearer ${user.access_token}`, 'Content-Type': 'application/x-www-form-urlencoded' }, body: 'query=x' });
  assert.equal(form.status, 400);
  assert.match(await form.text(), /Bad HTTP "Content-Type" header: "application\/x-www-form-urlencoded"/);
  const bad = await rpc('check/user', user.access_token, '{"query":');
  assert.equal(await bad.text(), 'Error in call to API function "check/user": request body: could not decode input as JSON');
  const invalidUtf8 = await call('/2/check/user', { method: 'POST', headers: { Authorization: `Bearer ${user.access_token}`, 'Content-Type': 'application/json' }, body: new Uint8Array([0x7b, 0xff, 0x7d]) });
  assert.equal(invalidUtf8.status, 400);
  const echo = await rpc('check/user', user.access_token, JSON.stringify({ query: 'héllo' }));
  assert.deepEqual(await echo.json(), { result: 'héllo' });
  const tooLong = await rpc('check/user', user.access_token, JSON.stringify({ query: 'x'.repeat(501) }));
  assert.equal(tooLong.status, 400);
  const huge = await rpc('check/user', user.access_token, JSON.stringify({ query: 'x'.repeat(2 * 1024 * 1024) }));
  assert.equal(huge.status, 400);
  assert.match(await huge.text(), /too large/);
  const cors = await call('/2/check/user', { method: 'POST', headers: { Authorization: `Bearer ${user.access_token}`, 'Content-Type': 'text/plain; charset=dropbox-cors-hack' }, body: '{"query":"c"}' });
  assert.equal(cors.status, 200);
  const routeErr = await rpc('check/user', user.access_token, '{"query":"user_requested"}');
  assert.equal(routeErr.status, 409);
  assert.match((await routeErr.json()).error_summary, /^user_requested\//);
  const unknownRoute = await rpc('files/nope', user.access_token, '{}');
  assert.equal(unknownRoute.status, 400);
  assert.equal(await unknownRoute.text(), 'Error in call to API function "files/nope": Unknown API function: /2/files/nope');
  const get = await call('/2/users/get_current_account', { headers: { Authorization: `Bearer ${user.access_token}` } });
  assert.equal(get.status, 400);
  assert.ok(get.headers.get('x-dropbox-request-id'));
});

test('check/app takes HTTP Basic with the app key and secret', async () => {
  const { call, user, emu } = await setup();
  const ok = await call('/2/check/app', { method: 'POST', headers: { Authorization: `Basic ${Buffer.from(`${DEMO_APP_KEY}:${DEMO_APP_SECRET}`).toString('base64')}`, 'Content-Type': 'application/json' }, body: '{"query":"a"}' });
  assert.deepEqual(await ok.json(), { result: 'a' });
  const wrong = await call('/2/check/app', { method: 'POST', headers: { Authorization: `Basic ${Buffer.from(`${DEMO_APP_KEY}:nope`).toString('base64')}`, 'Content-Type': 'application/json' }, body: '{}' });
  assert.equal(wrong.status, 401);
  const bearer = await call('/2/check/app', { method: 'POST', headers: { Authorization: `Bearer ${user.access_token}`, 'Content-Type': 'application/json' }, body: '{}' });
  assert.equal(bearer.status, 400);
  // Like the token endpoint: a secret with "+" works raw and form-encoded (RFC 6749 §2.3.1).
  await emu.control.createApp({ key: 'plusapp', secret: 'se+cr%41t', name: 'Plus', redirect_uris: ['http://127.0.0.1/cb'], scopes: ['account_info.read'] });
  for (const secret of ['se+cr%41t', encodeURIComponent('se+cr%41t')]) {
    const r = await call('/2/check/app', { method: 'POST', headers: { Authorization: `Basic ${Buffer.from(`plusapp:${secret}`).toString('base64')}`, 'Content-Type': 'application/json' }, body: '{"query":"p"}' });
    assert.deepEqual(await r.json(), { result: 'p' }, secret);
  }
});

test('content routes: Dropbox-API-Arg with \\u escapes or ?arg=, result header, Range, bad headers', async () => {
  const { call, user } = await setup();
  const auth = { Authorization: `Bearer ${user.access_token}` };
  const name = '/Ünïcødé 😀.txt';
  const up = await call('/2/files/upload', { method: 'POST', headers: { ...auth, 'Content-Type': 'application/octet-stream', 'Dropbox-API-Arg': headerSafeJson({ path: name }) }, body: 'hello world' });
  assert.equal(up.status, 200, await up.clone().text());
  assert.equal((await up.json()).path_display, name);
  const down = await call('/2/files/download', { method: 'POST', headers: { ...auth, 'Dropbox-API-Arg': headerSafeJson({ path: name }) } });
  assert.equal(down.status, 200);
  const result = down.headers.get('dropbox-api-result')!;
  assert.match(result, /^[\x20-\x7e]+$/, 'header-safe');
  assert.equal(JSON.parse(result).name, 'Ünïcødé 😀.txt');
  assert.equal(await down.text(), 'hello world');
  const ranged = await call(`/2/files/download?arg=${encodeURIComponent(JSON.stringify({ path: name }))}`, { headers: { ...auth, Range: 'bytes=6-' } });
  assert.equal(ranged.status, 206);
  assert.equal(ranged.headers.get('content-range'), 'bytes 6-10/11');
  assert.equal(await ranged.text(), 'world');
  const head = await call(`/2/files/download?arg=${encodeURIComponent(JSON.stringify({ path: name }))}`, { method: 'HEAD', headers: auth });
  assert.equal(head.status, 200);
  assert.equal(head.headers.get('content-length'), '11');
  assert.equal(await head.text(), '');
  const beyond = await call('/2/files/download', { method: 'POST', headers: { ...auth, 'Dropbox-API-Arg': headerSafeJson({ path: name }), Range: 'bytes=50-60' } });
  assert.equal(beyond.status, 416);
  const badArg = await call('/2/files/download', { method: 'POST', headers: { ...auth, 'Dropbox-API-Arg': '{path' } });
  assert.equal(await badArg.text(), 'Error in call to API function "files/download": HTTP header "Dropbox-API-Arg": could not decode input as JSON');
  const noArg = await call('/2/files/download', { method: 'POST', headers: auth });
  assert.equal(noArg.status, 400);
  const wrongType = await call('/2/files/upload', { method: 'POST', headers: { ...auth, 'Content-Type': 'application/json; charset=UTF-8', 'Dropbox-API-Arg': '{"path":"/x"}' }, body: 'x' });
  assert.equal(await wrongType.text(), 'Error in call to API function "files/upload": Bad HTTP "Content-Type" header: "application/json; charset=UTF-8".  Expecting one of "application/octet-stream", "text/plain; charset=dropbox-cors-hack".');
});

test('path root header: home, matching root, and a 422 for another namespace', async () => {
  const { rpc, user } = await setup();
  const me = await (await rpc('users/get_current_account', user.access_token)).json();
  const ns = me.root_info.root_namespace_id;
  assert.equal((await rpc('users/get_current_account', user.access_token, undefined, { 'Dropbox-API-Path-Root': '{".tag":"home"}' })).status, 200);
  assert.equal((await rpc('users/get_current_account', user.access_token, undefined, { 'Dropbox-API-Path-Root': JSON.stringify({ '.tag': 'root', root: ns }) })).status, 200);
  const other = await rpc('users/get_current_account', user.access_token, undefined, { 'Dropbox-API-Path-Root': '{".tag":"root","root":"1"}' });
  assert.equal(other.status, 422);
  assert.equal((await other.json()).error.invalid_root.root_namespace_id, ns);
  const bad = await rpc('users/get_current_account', user.access_token, undefined, { 'Dropbox-API-Path-Root': 'nope' });
  assert.equal(bad.status, 400);
});

test('429: RateLimitError body and an integer Retry-After header, even for a fractional wait', async () => {
  const r = rateLimitResponse('too_many_write_operations', 2.4, 1);
  assert.equal(r.status, 429);
  assert.equal(r.headers.get('content-type'), 'application/json');
  assert.equal(r.headers.get('retry-after'), '3');
  assert.deepEqual(await r.json(), {
    error_summary: 'too_many_write_operations/.',
    error: { reason: { '.tag': 'too_many_write_operations' }, retry_after: 3 },
  });
});

test('wire helpers: error_summary, header-safe JSON, Range parsing', () => {
  assert.equal(errorSummary({ '.tag': 'path', path: { '.tag': 'not_found' } }, 0), 'path/not_found/');
  assert.equal(errorSummary({ '.tag': 'incorrect_offset', correct_offset: 3 }, 2), 'incorrect_offset/..');
  // A member carrying a flattened struct: the summary continues through the struct's union field.
  assert.equal(errorSummary({ '.tag': 'path', reason: { '.tag': 'insufficient_space' }, upload_session_id: 'pid_upload_session:x' }, 0), 'path/insufficient_space/');
  assert.equal(errorSummary({ '.tag': 'missing_scope', required_scope: 'files.content.write' }, 0), 'missing_scope/');
  assert.equal(headerSafeJson({ p: 'é\u007f😀' }), '{"p":"\\u00e9\\u007f\\ud83d\\ude00"}');
  assert.deepEqual(parseRange('bytes=0-0', 10), { start: 0, end: 0 });
  assert.deepEqual(parseRange('bytes=-3', 10), { start: 7, end: 9 });
  assert.deepEqual(parseRange('bytes=5-100', 10), { start: 5, end: 9 });
  assert.equal(parseRange('bytes=10-', 10), 'unsatisfiable');
  assert.equal(parseRange('bytes=0-1,3-4', 10), null);
  assert.equal(parseRange('bytes=5-3', 10), 'unsatisfiable', 'an inverted range');
  assert.equal(parseRange('bytes=-0', 10), 'unsatisfiable', 'an empty suffix');
  assert.deepEqual(parseRange('bytes=-20', 10), { start: 0, end: 9 }, 'a suffix longer than the file is the whole file');
  assert.equal(parseRange('bytes=0-0', 0), 'unsatisfiable', 'nothing to serve from an empty file');
  assert.equal(parseRange('items=0-1', 10), null, 'another unit: ignored');
  assert.equal(parseRange('bytes=abc', 10), null, 'malformed: ignored');
  assert.equal(parseRange(null, 10), null);
});

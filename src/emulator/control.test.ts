/** The control API, faults, the request log, reset and persistence (docs/emulator.md). */
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { createEmulator, DEMO_APP_KEY, DEMO_APP_SECRET, DEMO_ACCOUNT_EMAIL } from './index.js';

const BASE = 'http://127.0.0.1:9';

function setup(opts: Parameters<typeof createEmulator>[0] = {}) {
  const emu = createEmulator(opts);
  const call = (path: string, init?: RequestInit) => emu.fetch(new Request(BASE + path, init));
  const post = (path: string, body: unknown) => call(path, { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify(body) });
  return { emu, call, post };
}

test('apps, accounts, grants: shapes and validation', async () => {
  const { call, post } = setup();
  const app = await post('/_emulator/apps', { key: 'k1', secret: 's1', name: 'My App', redirect_uris: ['https://x.example/cb'], scopes: ['account_info.read'], access: 'app_folder', team: false });
  assert.equal(app.status, 201);
  assert.deepEqual(await app.json(), { key: 'k1', secret: 's1', name: 'My App', redirect_uris: ['https://x.example/cb'], scopes: ['account_info.read'], access: 'app_folder', team: false });
  assert.equal((await post('/_emulator/apps', { key: 'k1', name: 'Renamed' })).status, 200, 'upsert by key');
  for (const bad of [{ name: 'no key' }, { key: 'k 2', name: 'x' }, { key: 'k2', name: 'x', redirect_uris: ['http://example.com/cb'] }, { key: 'k2', name: 'x', access: 'some' }, { key: 'k2', name: 'x', scopes: 'all' }]) {
    const r = await post('/_emulator/apps', bad);
    assert.equal(r.status, 400, JSON.stringify(bad));
    assert.equal(typeof (await r.json()).error_description, 'string');
  }
  const notJson = await call('/_emulator/apps', { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: '{' });
  assert.equal(notJson.status, 400);

  const personal = await (await post('/_emulator/accounts', { email: 'p@example.com', given_name: 'Pat' })).json();
  assert.match(personal.account_id, /^dbid:.{35}$/);
  assert.equal(personal.team_id, undefined);
  const admin = await post('/_emulator/accounts', { email: 'boss@corp.example', team: { name: 'Corp' }, team_admin: true });
  assert.equal(admin.status, 201);
  const a = await admin.json();
  assert.match(a.team_id, /^dbtid:/);
  assert.match(a.team_member_id, /^dbmid:/);
  assert.equal(a.team_admin, true);
  const member = await (await post('/_emulator/accounts', { email: 'm@corp.example', team: { name: 'Corp' } })).json();
  assert.equal(member.team_id, a.team_id, 'same team by name');
  assert.equal((await post('/_emulator/accounts', { email: 'not-an-email' })).status, 400);

  const g = await post('/_emulator/grants', { app: 'k1', account: 'p@example.com', token_access_type: 'online' });
  assert.equal(g.status, 201);
  const tok = await g.json();
  assert.deepEqual(Object.keys(tok).sort(), ['access_token', 'account_id', 'expires_in', 'scope', 'token_type', 'uid']);
  assert.equal(tok.account_id, personal.account_id);
  assert.equal((await post('/_emulator/grants', { app: 'nope', account: 'p@example.com' })).status, 404);
  assert.equal((await post('/_emulator/grants', { app: 'k1', account: 'nobody@example.com' })).status, 404);
  assert.equal((await post('/_emulator/grants', { app: 'k1', account: 'p@example.com', scopes: ['team_info.read'] })).status, 400, 'scopes beyond the app');
  assert.equal((await call('/_emulator/nothing')).status, 404);
});

test('faults: 429 with Retry-After, 500, count, "*", delay, reset_connection, DELETE', async () => {
  const { emu, call, post } = setup();
  const g: any = await emu.control.grant({ app: DEMO_APP_KEY, account: DEMO_ACCOUNT_EMAIL });
  const me = () => call('/2/users/get_current_account', { method: 'POST', headers: { Authorization: `Bearer ${g.access_token}` } });
  assert.equal((await post('/_emulator/faults', { route: 'users/get_current_account', status: 429, retry_after: 7, count: 2 })).status, 201);
  for (let i = 0; i < 2; i++) {
    const r = await me();
    assert.equal(r.status, 429);
    assert.equal(r.headers.get('retry-after'), '7');
    const body = await r.json();
    assert.deepEqual(body.error, { reason: { '.tag': 'too_many_requests' }, retry_after: 7 });
  }
  assert.equal((await me()).status, 200);
  await emu.control.fault({ route: 'oauth2/token', status: 500 });
  const tok = await call(`/oauth2/token?grant_type=refresh_token&refresh_token=${g.refresh_token}&client_id=${DEMO_APP_KEY}&client_secret=${DEMO_APP_SECRET}`, { method: 'POST' });
  assert.equal(tok.status, 500);
  assert.match((await tok.json()).error, /erred/);
  await emu.control.fault({ route: '*', status: 503, body: 'down' });
  const any = await call('/2/check/user', { method: 'POST' });
  assert.equal(any.status, 503);
  assert.equal(await any.text(), 'down');
  await emu.control.fault({ route: 'users/get_current_account', delay_ms: 50 });
  const t0 = performance.now();
  assert.equal((await me()).status, 200);
  assert.ok(performance.now() - t0 >= 45);
  await emu.control.fault({ route: 'users/get_current_account', status: 500, reset_connection: true });
  await assert.rejects(me(), (err: Error) => err instanceof TypeError && /fetch failed/.test(err.message));
  assert.equal((await me()).status, 200);
  await emu.control.fault({ route: '*', status: 500, count: 5 });
  assert.deepEqual(await (await call('/_emulator/faults', { method: 'DELETE' })).json(), { cleared: 1 });
  assert.equal((await me()).status, 200);
  assert.equal((await post('/_emulator/faults', { route: 'x', status: 99 })).status, 400);
  assert.equal((await post('/_emulator/faults', { route: 'Files Upload', status: 500 })).status, 400);
});

test('request log: entries oldest first, secrets replaced by fingerprints, DELETE clears', async () => {
  const { emu, call } = setup();
  const g: any = await emu.control.grant({ app: DEMO_APP_KEY, account: DEMO_ACCOUNT_EMAIL });
  await call('/2/users/get_current_account', { method: 'POST', headers: { Authorization: `Bearer ${g.access_token}` } });
  await call(`/oauth2/token?grant_type=refresh_token&refresh_token=${g.refresh_token}&client_id=${DEMO_APP_KEY}&client_secret=${DEMO_APP_SECRET}`, { method: 'POST', headers: { 'Content-Type': 'application/json' } });
  await call(`/2/check/app`, { method: 'POST', headers: { Authorization: `Basic ${Buffer.from(`${DEMO_APP_KEY}:${DEMO_APP_SECRET}`).toString('base64')}` } });
  const res = await call('/_emulator/requests');
  const text = await res.text();
  const log = JSON.parse(text).requests;
  assert.deepEqual(log.map((e: any) => [e.method, e.path, e.status]), [
    ['POST', '/2/users/get_current_account', 200],
    ['POST', '/oauth2/token', 200],
    ['POST', '/2/check/app', 400],
  ]);
  assert.match(log[0].authorization, /^Bearer sha256:[0-9a-f]{12}$/);
  assert.equal(log[2].authorization, `Basic ${DEMO_APP_KEY}`);
  assert.equal(typeof log[0].time, 'string');
  for (const secret of [g.access_token, g.refresh_token, DEMO_APP_SECRET]) assert.ok(!text.includes(secret));
  await call('/_emulator/requests', { method: 'DELETE' });
  assert.deepEqual(await emu.control.requests(), []);
});

test('clock: advance moves token expiry; bad input refused', async () => {
  const { emu, call, post } = setup({ clock: () => Date.parse('2026-05-05T00:00:00Z') });
  const g: any = await emu.control.grant({ app: DEMO_APP_KEY, account: DEMO_ACCOUNT_EMAIL });
  const r = await post('/_emulator/clock', { advance_seconds: 14400 });
  assert.deepEqual(await r.json(), { now: '2026-05-05T04:00:00.000Z', offset_seconds: 14400 });
  const me = await call('/2/users/get_current_account', { method: 'POST', headers: { Authorization: `Bearer ${g.access_token}` } });
  assert.equal((await me.json()).error['.tag'], 'expired_access_token');
  assert.equal(me.headers.get('date'), 'Tue, 05 May 2026 04:00:00 GMT', 'Date follows the emulator clock');
  assert.equal((await post('/_emulator/clock', { advance_seconds: -1 })).status, 400);
  assert.equal((await post('/_emulator/clock', { advance_seconds: 'soon' })).status, 400);
});

test('reset restores the seed and drops tokens; control: false hides the HTTP API but keeps the helpers', async () => {
  const { emu, call } = setup();
  await emu.control.createApp({ key: 'temp', name: 'Temp' });
  const g: any = await emu.control.grant({ app: DEMO_APP_KEY, account: DEMO_ACCOUNT_EMAIL });
  await emu.control.reset();
  assert.deepEqual((await emu.control.apps()).map((a) => a['key']).sort(), [DEMO_APP_KEY, 'dropkey-demo-team-app']);
  const me = await call('/2/users/get_current_account', { method: 'POST', headers: { Authorization: `Bearer ${g.access_token}` } });
  assert.equal(me.status, 401);

  const hidden = setup({ control: false });
  assert.equal((await hidden.call('/_emulator/apps')).status, 404);
  assert.ok((await hidden.emu.control.grant({ app: DEMO_APP_KEY, account: DEMO_ACCOUNT_EMAIL })).access_token);
});

test('persistence: apps, accounts, tokens and files survive a restart with dataDir; no raw token on disk', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'dropkey-emu-'));
  try {
    const first = setup({ dataDir: dir });
    await first.emu.control.createApp({ key: 'kept', name: 'Kept', scopes: ['account_info.read', 'files.content.write', 'files.content.read'] });
    const acct = await first.emu.control.createAccount({ email: 'kept@example.com' });
    const g: any = await first.emu.control.grant({ app: 'kept', account: 'kept@example.com' });
    const up = await first.call('/2/files/upload', { method: 'POST', headers: { Authorization: `Bearer ${g.access_token}`, 'Content-Type': 'application/octet-stream', 'Dropbox-API-Arg': '{"path":"/kept.txt"}' }, body: 'still here' });
    assert.equal(up.status, 200);
    await first.emu.close();
    const raw = readFileSync(join(dir, 'state.json'), 'utf8');
    assert.ok(!raw.includes(g.access_token) && !raw.includes(g.refresh_token), 'only token hashes are stored');

    const second = setup({ dataDir: dir, seed: { apps: [], accounts: [] } });
    const me = await second.call('/2/users/get_current_account', { method: 'POST', headers: { Authorization: `Bearer ${g.access_token}` } });
    assert.equal((await me.json()).account_id, acct['account_id']);
    const down = await second.call('/2/files/download', { method: 'POST', headers: { Authorization: `Bearer ${g.access_token}`, 'Dropbox-API-Arg': '{"path":"/kept.txt"}' } });
    assert.equal(await down.text(), 'still here');
    const refreshed = await second.call(`/oauth2/token?grant_type=refresh_token&refresh_token=${g.refresh_token}&client_id=kept&client_secret=${(await second.emu.control.apps()).find((a) => a['key'] === 'kept')!['secret']}`, { method: 'POST' });
    assert.equal(refreshed.status, 200);
    await second.emu.close();

    writeFileSync(join(dir, 'state.json'), '{broken');
    assert.throws(() => createEmulator({ dataDir: dir }), /not valid JSON/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('seed validation: a bad seed is refused with the reason', () => {
  assert.throws(() => createEmulator({ seed: { apps: [{ key: 'x', name: 'X', redirect_uris: ['ftp://nope'] }] } }), /invalid emulator seed: redirect_uris/);
});

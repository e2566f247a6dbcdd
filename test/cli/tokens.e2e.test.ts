/**
 * import, token (fresh and after the clock passes expiry), exec, export (each format parsed back), list, refresh,
 * revoke: the built CLI against the emulator.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import ini from 'ini';
import { assertNoSecrets, CliEnv, collect, waitForOutput } from './cli-helpers.js';

let t: CliEnv;
before(async () => {
  t = await CliEnv.create();
});
after(async () => {
  await t?.close();
});

async function whoAmI(token: string): Promise<number> {
  return (await t.emu.rpc('users/get_current_account', undefined, token)).status;
}

test('import --refresh-token -: validated at once; token prints only the token', async () => {
  const app = await t.addApp('imp');
  const g = await t.grant(app.key);
  const r = await t.run(['import', '--connection', 'dropbox_default', '--app', 'imp', '--refresh-token', '-', '--json'], { stdin: `${g.token.refresh_token}\n` });
  assert.equal(r.code, 0, r.stderr);
  const c = JSON.parse(r.stdout);
  assert.equal(c.name, 'dropbox_default');
  assert.equal(c.email, g.email);
  assert.equal(c.account_id, g.accountId);
  assert.equal(c.refreshable, true);
  // Dropbox's refresh answer may omit `scope` (https://www.dropbox.com/developers/documentation/http/documentation#oauth2-token), so an imported connection may list none.
  assert.ok(Array.isArray(c.scopes));
  assertNoSecrets(r.stdout + r.stderr, [g.token.refresh_token, app.secret]);

  const tok = await t.run(['token', '--connection', 'dropbox_default']);
  assert.equal(tok.code, 0, tok.stderr);
  assert.equal(tok.stderr, '');
  assert.match(tok.stdout, /^sl\.[A-Za-z0-9._-]+\n$/);
  assert.equal(await whoAmI(tok.stdout.trim()), 200);

  const json = await t.run(['token', '--connection', 'dropbox_default', '--json']);
  const j = JSON.parse(json.stdout);
  assert.equal(j.access_token, tok.stdout.trim(), 'a fresh token is reused, not refreshed again');
  assert.equal(j.account_id, g.accountId);
  assert.equal(j.email, g.email);
  assert.ok(j.expires_in > 3 * 3600 && j.expires_in <= 4 * 3600, String(j.expires_in));
  assert.ok(Array.isArray(j.scopes));
});

test('import --access-token: accepted with the 4-hour warning and the login command that upgrades it', async () => {
  const app = await t.addApp('pasted');
  const g = await t.grant(app.key, { offline: false });
  const r = await t.run(['import', '--connection', 'short', '--app', 'pasted', '--access-token', '-'], { stdin: `${g.token.access_token}\n` });
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stderr, /4 hours/);
  assert.match(r.stderr, /dropkey login --connection short --app pasted/);
  assert.match(r.stdout, /NOT refreshable/);
  assertNoSecrets(r.stdout + r.stderr, [g.token.access_token, app.secret]);
  const tok = await t.run(['token', '--connection', 'short']);
  assert.equal(tok.stdout.trim(), g.token.access_token);
});

test('token after the clock passes expiry: refreshed first, the new token works, the old one is expired', async () => {
  const { token: g } = await t.connect('expiring');
  const first = (await t.run(['token', '--connection', 'expiring'])).stdout.trim();
  await t.advanceClock(4 * 3600 + 60);
  assert.equal(await whoAmI(first), 401, 'the emulator now considers the first token expired');
  const r = await t.run(['token', '--connection', 'expiring']);
  assert.equal(r.code, 0, r.stderr);
  const second = r.stdout.trim();
  assert.notEqual(second, first);
  assert.equal(await whoAmI(second), 200);
  assertNoSecrets(r.stderr, [g.refresh_token]);
  // --min-valid forces a refresh when the token would not last that long.
  const again = await t.run(['token', '--connection', 'expiring', '--min-valid', '14400']);
  assert.equal(again.code, 0, again.stderr);
  assert.notEqual(again.stdout.trim(), second);
});

test('exec: the child sees DROPBOX_ACCESS_TOKEN; its exit code is returned', async () => {
  await t.connect('ex');
  const token = (await t.run(['token', '--connection', 'ex'])).stdout.trim();
  const r = await t.run(['exec', '--connection', 'ex', '--', process.execPath, '-e', 'process.stdout.write(process.env.DROPBOX_ACCESS_TOKEN)']);
  assert.equal(r.code, 0, r.stderr);
  assert.equal(r.stdout, token);
  const failing = await t.run(['exec', '--connection', 'ex', '--', process.execPath, '-e', 'process.exit(7)']);
  assert.equal(failing.code, 7);
  const missing = await t.run(['exec', '--connection', 'ex']);
  assert.equal(missing.code, 2);
  assert.match(missing.stderr, /put it after "--"/);
  const notFound = await t.run(['exec', '--connection', 'ex', '--', 'no-such-command-dropkey-test']);
  assert.equal(notFound.code, 127);
  assert.match(notFound.stderr, /command not found: no-such-command-dropkey-test/);
});

test('exec forwards SIGTERM to the child and returns its exit code', async () => {
  await t.connect('sig');
  const script = "process.on('SIGTERM', () => { process.stdout.write('got SIGTERM\\n'); process.exit(3); }); process.stdout.write('ready\\n'); setInterval(() => {}, 1000);";
  const child = t.spawn(['exec', '--connection', 'sig', '--', process.execPath, '-e', script]);
  child.stdin.end();
  const done = collect(child);
  await waitForOutput(child.stdout, /ready\n/);
  child.kill('SIGTERM');
  const r = await done;
  assert.match(r.stdout, /got SIGTERM/);
  assert.equal(r.code, 3);
});

test('export: env, json, rclone (INI + JSON token) and airflow (URI + JSON) parse back', async () => {
  const { app, token: g } = await t.connect('exp');
  const access = (await t.run(['token', '--connection', 'exp'])).stdout.trim();

  const env = await t.run(['export', '--connection', 'exp', '--format', 'env']);
  assert.equal(env.code, 0, env.stderr);
  const vars = Object.fromEntries(env.stdout.trim().split('\n').map((l) => [l.slice(0, l.indexOf('=')), l.slice(l.indexOf('=') + 1)]));
  assert.equal(vars['DROPBOX_ACCESS_TOKEN'], access);
  assert.equal(vars['DROPBOX_REFRESH_TOKEN'], g.refresh_token);
  assert.equal(vars['DROPBOX_APP_KEY'], app.key);
  assert.equal(vars['DROPBOX_APP_SECRET'], app.secret);

  const json = JSON.parse((await t.run(['export', '--connection', 'exp', '--format', 'json'])).stdout);
  assert.equal(json.access_token, access);
  assert.equal(json.refresh_token, g.refresh_token);
  assert.ok(Date.parse(json.expires_at) > Date.now());

  const rc = await t.run(['export', '--connection', 'exp', '--format', 'rclone', '--name', 'mydropbox']);
  assert.equal(rc.code, 0, rc.stderr);
  const conf = ini.parse(rc.stdout);
  assert.equal(conf['mydropbox'].type, 'dropbox');
  assert.equal(conf['mydropbox'].client_id, app.key);
  assert.equal(conf['mydropbox'].client_secret, app.secret);
  const rtoken = JSON.parse(conf['mydropbox'].token);
  assert.equal(rtoken.access_token, access);
  assert.equal(rtoken.refresh_token, g.refresh_token);
  assert.equal(rtoken.token_type, 'bearer');
  assert.match(rtoken.expiry, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$/);
  assert.ok(Date.parse(rtoken.expiry) > Date.now());

  const af = await t.run(['export', '--connection', 'exp', '--format', 'airflow']);
  const u = new URL(af.stdout.trim());
  assert.equal(u.protocol, 'dropbox:');
  assert.equal(decodeURIComponent(u.password), access);
  assert.equal(u.searchParams.get('refresh_token'), g.refresh_token);
  assert.equal(u.searchParams.get('app_key'), app.key);
  assert.equal(u.searchParams.get('app_secret'), app.secret);
  assert.equal(`${u.hostname}:${u.port}`, new URL(t.emu.url).host);

  const afj = JSON.parse((await t.run(['export', '--connection', 'exp', '--format', 'airflow-json', '--name', 'dropbox_default'])).stdout);
  assert.equal(afj.dropbox_default.conn_type, 'dropbox');
  assert.equal(afj.dropbox_default.password, access);
  assert.equal(afj.dropbox_default.extra.refresh_token, g.refresh_token);

  const bad = await t.run(['export', '--connection', 'exp', '--format', 'yaml']);
  assert.equal(bad.code, 2);
  assert.match(bad.stderr, /unknown format "yaml"/);
  assertNoSecrets(bad.stderr, [access, g.refresh_token, app.secret]);
});

test('list, refresh and revoke (at Dropbox, then locally)', async () => {
  const { app, token: g, email } = await t.connect('lr');
  const list = await t.run(['list']);
  assert.equal(list.code, 0, list.stderr);
  const row = list.stdout.split('\n').find((l) => l.startsWith('lr '));
  assert.ok(row, list.stdout);
  assert.match(row, new RegExp(email.replace('.', '\\.')));
  assert.match(row, /active/);
  assert.match(row, /\dh \d+m/);
  assertNoSecrets(list.stdout, [g.refresh_token, g.access_token]);

  const before = (await t.run(['token', '--connection', 'lr'])).stdout.trim();
  const ref = await t.run(['refresh', '--connection', 'lr']);
  assert.equal(ref.code, 0, ref.stderr);
  assert.match(ref.stdout, /Refreshed "lr"/);
  const after = (await t.run(['token', '--connection', 'lr'])).stdout.trim();
  assert.notEqual(after, before);

  const rev = await t.run(['revoke', '--connection', 'lr', '--yes']);
  assert.equal(rev.code, 0, rev.stderr);
  assert.match(rev.stdout, /Revoked "lr" at Dropbox/);
  assert.equal(await whoAmI(after), 401, 'the access token no longer works at Dropbox');
  const refreshAtDropbox = await fetch(`${t.emu.url}/oauth2/token`, {
    method: 'POST',
    headers: { 'Content-Type': 'application/x-www-form-urlencoded' },
    body: new URLSearchParams({ grant_type: 'refresh_token', refresh_token: g.refresh_token!, client_id: app.key, client_secret: app.secret! }).toString(),
  });
  assert.equal(refreshAtDropbox.status, 400, 'the refresh token is dead too');
  const gone = await t.run(['token', '--connection', 'lr']);
  assert.equal(gone.code, 1);
  assert.match(gone.stderr, /No connection named "lr"/);
  assert.match(gone.stderr, /dropkey login --connection lr/);
});

/**
 * `dropkey import --from rclone|airflow|dotenv|dbxcli`, the built CLI against the emulator.
 * Each source is written in its own format (by `dropkey export` from another data directory, among other
 * entries), imported into a fresh data directory, checked to work, recognised when imported again, exported back
 * (the round trip), and found byte-identical afterwards.
 */
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import ini from 'ini';
import { CliEnv, assertNoSecrets } from './cli-helpers.js';

const src = await CliEnv.create();
after(() => src.close());

/** A fresh data directory on the same emulator: where the import goes. */
async function fresh(): Promise<CliEnv> {
  const t = await CliEnv.create(src.emu);
  after(() => import('node:fs/promises').then((fs) => fs.rm(t.home, { recursive: true, force: true })));
  return t;
}

function snapshot(path: string): { bytes: Buffer; mtimeMs: number; mode: number } {
  const st = statSync(path);
  return { bytes: readFileSync(path), mtimeMs: st.mtimeMs, mode: st.mode };
}

function assertUnchanged(path: string, before: ReturnType<typeof snapshot>): void {
  const now = snapshot(path);
  assert.ok(now.bytes.equals(before.bytes), `${path} is byte-identical`);
  assert.equal(now.mtimeMs, before.mtimeMs, `${path} was not rewritten`);
  assert.equal(now.mode, before.mode);
}

async function works(t: CliEnv, connection: string): Promise<string> {
  const r = await t.run(['token', '--connection', connection]);
  assert.equal(r.code, 0, r.stderr);
  const token = r.stdout.trim();
  const res = await fetch(`${src.emu.url}/2/users/get_current_account`, { method: 'POST', headers: { authorization: `Bearer ${token}` } });
  assert.equal(res.status, 200);
  return ((await res.json()) as { account_id: string }).account_id;
}

test('rclone: a remote among others; the app registered from client_id/secret; recognised again; exported back', async () => {
  const { app, token: g, accountId } = await src.connect('rc', 'rc-app');
  const section = (await src.run(['export', '--connection', 'rc', '--format', 'rclone', '--name', 'my dropbox'])).stdout;
  const conf = join(src.home, 'rclone.conf');
  writeFileSync(conf, `# rclone config\n[s3]\ntype = s3\nprovider = AWS\n\n${section}\n[local]\ntype = local\n`, { mode: 0o600 });
  const before = snapshot(conf);

  const t = await fresh();
  const r = await t.run(['import', '--from', 'rclone', '--file', conf, '--name', 'my dropbox', '--connection', 'backup', '--json']);
  assert.equal(r.code, 0, r.stderr);
  const out = JSON.parse(r.stdout);
  assert.equal(out.imported, true);
  assert.equal(out.app_created, true);
  assert.equal(out.imported_as, 'refresh token');
  assert.match(r.stderr, /Registered app "rclone-my-dropbox" \(key /);
  assertNoSecrets(r.stdout + r.stderr, [g.refresh_token, app.secret]);
  assert.equal(await works(t, 'backup'), accountId);

  const again = await t.run(['import', '--from', 'rclone', '--file', conf]);
  assert.equal(again.code, 0, again.stderr);
  assert.match(again.stdout, /Already connected as "backup"/);
  assert.equal(JSON.parse((await t.run(['list', '--json'])).stdout).length, 1);

  const back = ini.parse((await t.run(['export', '--connection', 'backup', '--format', 'rclone'])).stdout)['backup'];
  assert.equal(back.client_id, app.key);
  assert.equal(back.client_secret, app.secret);
  assert.equal(JSON.parse(back.token).refresh_token, g.refresh_token);
  assertUnchanged(conf, before);
});

test('rclone: without client_secret the secret is asked for on standard input', async () => {
  const { app, accountId } = await src.connect('rc2', 'rc2-app');
  const section = (await src.run(['export', '--connection', 'rc2', '--format', 'rclone', '--name', 'dbx'])).stdout.replace(/^client_secret = .*\n/m, '');
  const conf = join(src.home, 'rclone-nosecret.conf');
  writeFileSync(conf, section);
  const before = snapshot(conf);
  const t = await fresh();
  const noSecret = await t.run(['import', '--from', 'rclone', '--file', conf], { stdin: '' });
  assert.equal(noSecret.code, 2);
  assert.match(noSecret.stderr, /no app secret of app key/);
  const r = await t.run(['import', '--from', 'rclone', '--file', conf], { stdin: `${app.secret}\n` });
  assert.equal(r.code, 0, r.stderr);
  assert.equal(await works(t, 'default'), accountId);
  assertUnchanged(conf, before);
});

test('airflow: JSON file, YAML file, .env file, URI on stdin and AIRFLOW_CONN_* all import; the login case', async () => {
  const { app, token: g, accountId } = await src.connect('af', 'af-app');
  const uri = (await src.run(['export', '--connection', 'af', '--format', 'airflow'])).stdout.trim();
  const json = JSON.parse((await src.run(['export', '--connection', 'af', '--format', 'airflow-json', '--name', 'dropbox_default'])).stdout);
  const files = {
    json: [join(src.home, 'conn.json'), `{\n  "CONN_A": "mysql://host_a",\n  "dropbox_default": ${JSON.stringify(json.dropbox_default)}\n}\n`],
    yaml: [join(src.home, 'conn.yaml'), `CONN_A: 'mysql://host_a'\ndropbox_default: '${uri}'\nCONN_C:\n  conn_type: scheme\n  port: 1234\n`],
    env: [join(src.home, 'conn.env'), `# conns\nCONN_A=mysql://host_a\ndropbox_default=${uri}\n`],
  } as const;
  for (const [form, [path, text]] of Object.entries(files)) {
    writeFileSync(path, text);
    const before = snapshot(path);
    const t = await fresh();
    const r = await t.run(['import', '--from', 'airflow', '--file', path, '--connection', 'dag']);
    assert.equal(r.code, 0, `${form}: ${r.stderr}`);
    assert.match(r.stdout, /Imported "dag" from Airflow connection "dropbox_default"/);
    assert.equal(await works(t, 'dag'), accountId);
    const back = new URL((await t.run(['export', '--connection', 'dag', '--format', 'airflow'])).stdout.trim());
    assert.equal(back.searchParams.get('refresh_token'), g.refresh_token, `${form}: round trip`);
    assert.equal(back.searchParams.get('app_key'), app.key);
    assertUnchanged(path, before);
  }
  const t = await fresh();
  const viaStdin = await t.run(['import', '--from', 'airflow', '--uri', '-'], { stdin: `${uri}\n` });
  assert.equal(viaStdin.code, 0, viaStdin.stderr);
  // The URI round trip: exported back, the long-lived parts are the ones imported (the access token is a new one).
  const uriBack = new URL((await t.run(['export', '--format', 'airflow'])).stdout.trim());
  const uriFrom = new URL(uri);
  for (const k of ['refresh_token', 'app_key', 'app_secret']) assert.equal(uriBack.searchParams.get(k), uriFrom.searchParams.get(k), `URI: round trip of ${k}`);
  assert.ok(uriFrom.searchParams.get('refresh_token'));
  const te = await fresh();
  const viaEnv = await te.run(['import', '--from', 'airflow'], { env: { AIRFLOW_CONN_DROPBOX_DEFAULT: JSON.stringify(json.dropbox_default) } });
  assert.equal(viaEnv.code, 0, viaEnv.stderr);
  const envBack = JSON.parse((await te.run(['export', '--format', 'airflow-json', '--name', 'dropbox_default'])).stdout).dropbox_default;
  const extraOf = (c: { extra: string | Record<string, unknown> }): Record<string, unknown> => (typeof c.extra === 'string' ? JSON.parse(c.extra) : c.extra);
  for (const k of ['refresh_token', 'app_key', 'app_secret']) assert.equal(extraOf(envBack)[k], extraOf(json.dropbox_default)[k], `AIRFLOW_CONN_* (JSON): round trip of ${k}`);
  assert.equal(envBack.conn_type, json.dropbox_default.conn_type);
  assert.equal(extraOf(json.dropbox_default)['refresh_token'], g.refresh_token, 'the imported connection held the refresh token');

  // The backup pipeline's connection: an App Console access token in `login`, nothing else.
  const grant = await src.grant(app.key, { offline: false });
  const loginFile = join(src.home, 'login.yaml');
  writeFileSync(loginFile, `dropbox_default:\n  conn_type: dropbox\n  login: ${grant.token.access_token}\n`);
  const lt = await fresh();
  await lt.addApp('pipeline');
  const login = await lt.run(['import', '--from', 'airflow', '--file', loginFile, '--app-key', app.key, '--connection', 'pipeline'], {});
  // The fresh home has an app of another key only: the key given registers a new app, no secret needed.
  assert.equal(login.code, 0, login.stderr);
  assert.match(login.stderr, /expires within 4 hours and cannot be renewed/);
  assert.equal(await works(lt, 'pipeline'), grant.accountId);
});

test('dotenv: a file among other variables; recognised when imported again', async () => {
  const { token: g, accountId } = await src.connect('de', 'de-app');
  const env = (await src.run(['export', '--connection', 'de', '--format', 'env'])).stdout;
  const path = join(src.home, 'app.env');
  writeFileSync(path, `# service settings\nLOG_LEVEL=debug\n${env.split('\n').map((l) => (l.startsWith('DROPBOX_REFRESH') ? `export ${l}` : l)).join('\n')}OTHER="x y"\n`);
  const before = snapshot(path);
  const t = await fresh();
  const r = await t.run(['import', '--from', 'dotenv', '--file', path]);
  assert.equal(r.code, 0, r.stderr);
  assert.equal(await works(t, 'default'), accountId);
  const again = await t.run(['import', '--from', 'dotenv', '--file', path, '--json']);
  assert.equal(JSON.parse(again.stdout).imported, false);
  const back = (await t.run(['export', '--format', 'env'])).stdout;
  assert.match(back, new RegExp(`^DROPBOX_REFRESH_TOKEN=${g.refresh_token}$`, 'm'));
  assertUnchanged(path, before);
});

test('dbxcli: auth.json\'s personal access token, with the warning; recognised when imported again', async () => {
  const app = await src.addApp('dbx-app');
  const grant = await src.grant(app.key, { offline: false });
  const path = join(src.home, 'auth.json');
  // dbxcli writes json.Marshal of map[domain]map[type]token.
  writeFileSync(path, JSON.stringify({ '': { personal: grant.token.access_token } }), { mode: 0o600 });
  const before = snapshot(path);
  const t = await fresh();
  // dbxcli's tokens come from its own app key, which registers as app "dbxcli" (no secret: nothing to refresh).
  const r = await t.run(['import', '--from', 'dbxcli', '--file', path, '--json']);
  assert.equal(r.code, 0, r.stderr);
  assert.equal(JSON.parse(r.stdout).imported_as, 'access token');
  assert.match(r.stderr, /Registered app "dbxcli" \(key mvhz183vwqibe7q\)/);
  assert.match(r.stderr, /cannot be renewed/);
  assert.equal(await works(t, 'default'), grant.accountId);
  // The round trip of an access token: dropkey hands out the very token auth.json holds.
  assert.equal((await t.run(['token'])).stdout.trim(), grant.token.access_token, 'dbxcli: round trip');
  const again = await t.run(['import', '--from', 'dbxcli', '--file', path]);
  assert.match(again.stdout, /Already connected as "default"/);
  // With --app-key, the app dropkey already knows under that key is used.
  const t2 = await fresh();
  await t2.run(['app', 'add', '--name', 'mine', '--key', app.key, '--secret', '-'], { stdin: `${app.secret}\n` });
  const mine = await t2.run(['import', '--from', 'dbxcli', '--file', path, '--app-key', app.key, '--json']);
  assert.equal(mine.code, 0, mine.stderr);
  assert.equal(JSON.parse(mine.stdout).app, 'mine');
  assertUnchanged(path, before);
});

test('import --from: bad sources say what is wrong', async () => {
  const t = await fresh();
  const missing = await t.run(['import', '--from', 'rclone', '--file', join(t.home, 'nope.conf')]);
  assert.equal(missing.code, 2);
  assert.match(missing.stderr, /does not exist/);
  writeFileSync(join(t.home, 'other.conf'), '[s3]\ntype = s3\n');
  const none = await t.run(['import', '--from', 'rclone', '--file', join(t.home, 'other.conf')]);
  assert.match(none.stderr, /no remote of type dropbox/);
  const unknown = await t.run(['import', '--from', 'bitwarden']);
  assert.match(unknown.stderr, /unknown source "bitwarden"/);
  const stray = await t.run(['import', '--from', 'dotenv', '--uri', 'x']);
  assert.match(stray.stderr, /--uri does not go with --from dotenv/);
});

/**
 * What the CLI does on a terminal and off it: revoke's confirmation, app registration checked against Dropbox,
 * progress while login waits for the browser. The CLI runs in-process (src/cli/index.ts run) with its own
 * streams, so a test decides whether stdin and stderr are terminals; the emulator listens on 127.0.0.1:0.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PassThrough } from 'node:stream';
import { run } from '../../src/cli/index.js';
import { startEmulator, type StartedEmulator } from '../helpers/emulator.js';

let emu: StartedEmulator;
let home: string;
let env: Record<string, string>;

before(async () => {
  emu = await startEmulator();
  home = await mkdtemp(join(tmpdir(), 'dropkey-interactive-'));
  env = { DROPKEY_HOME: home, DROPKEY_MASTER_KEY: randomBytes(32).toString('base64'), DROPKEY_DROPBOX_URL: emu.url };
});
after(async () => {
  await emu?.close();
  if (home) await rm(home, { recursive: true, force: true });
});

interface RunResult {
  code: number;
  out: string;
  err: string;
}

interface RunOptions {
  /** Text on standard input, ended (undefined: an open, empty input). */
  stdin?: string;
  stdinTTY?: boolean;
  stderrTTY?: boolean;
  /** Called with the live stdin and the stderr text so far whenever stderr grows. */
  onStderr?: (text: string, stdin: PassThrough) => void;
  extraEnv?: Record<string, string>;
}

async function cli(args: string[], o: RunOptions = {}): Promise<RunResult> {
  let out = '';
  let err = '';
  const stdin = Object.assign(new PassThrough(), { isTTY: o.stdinTTY === true });
  const stdout = Object.assign(new PassThrough(), { isTTY: false });
  const stderr = Object.assign(new PassThrough(), { isTTY: o.stderrTTY === true });
  stdout.on('data', (d) => (out += d));
  stderr.on('data', (d) => {
    err += d;
    o.onStderr?.(err, stdin);
  });
  if (o.stdin !== undefined) stdin.end(o.stdin);
  const code = await run(args, { env: { ...env, ...o.extraEnv }, cwd: home, stdin, stdout, stderr, signal: new AbortController().signal });
  return { code, out, err };
}

/** An emulator app registered as `name`, and a connection `connection` imported with a fresh grant. */
async function connect(name: string, connection: string): Promise<void> {
  const app = await emu.control.createApp({ redirect_uris: ['http://127.0.0.1/*'] });
  const added = await cli(['app', 'add', '--name', name, '--key', app.key, '--secret', '-'], { stdin: `${app.secret}\n` });
  assert.equal(added.code, 0, added.err);
  const account = await emu.control.createAccount({ email: `${connection}@example.com` });
  const g = await emu.control.grant({ app: app.key, account: account.account_id, token_access_type: 'offline' });
  const imported = await cli(['import', '--connection', connection, '--app', name, '--refresh-token', '-'], { stdin: `${g.refresh_token}\n` });
  assert.equal(imported.code, 0, imported.err);
}

async function names(): Promise<string[]> {
  const r = await cli(['list', '--json']);
  return (JSON.parse(r.out) as Array<{ name: string }>).map((c) => c.name);
}

test('revoke: without a terminal and without --yes it refuses at once, saying to pass --yes, and keeps the connection', async () => {
  await connect('rv-app', 'rv-pipe');
  const r = await cli(['revoke', '--connection', 'rv-pipe']); // stdin open and silent: a hang would time the test out
  assert.equal(r.code, 2, r.err);
  assert.match(r.err, /not a terminal/);
  assert.match(r.err, /--yes/);
  assert.deepEqual((await names()).includes('rv-pipe'), true);
  const yes = await cli(['revoke', '--connection', 'rv-pipe', '--yes']);
  assert.equal(yes.code, 0, yes.err);
  assert.match(yes.out, /Revoked "rv-pipe" at Dropbox/);
  assert.equal((await names()).includes('rv-pipe'), false);
});

test('revoke on a terminal asks "Revoke NAME at Dropbox and delete it locally? [y/N]": no keeps it, y revokes', async () => {
  await connect('rv-app2', 'rv-tty');
  const answer = (text: string) => (t: string, stdin: PassThrough) => {
    if (t.includes('[y/N]') && !stdin.writableEnded) stdin.end(text);
  };
  const no = await cli(['revoke', '--connection', 'rv-tty'], { stdinTTY: true, onStderr: answer('n\n') });
  assert.equal(no.code, 1, no.err);
  assert.match(no.err, /Revoke "rv-tty" at Dropbox and delete it locally\? \[y\/N\]/);
  assert.match(no.err, /Not revoked/);
  assert.equal(no.out, '');
  assert.equal((await names()).includes('rv-tty'), true);
  const enter = await cli(['revoke', '--connection', 'rv-tty'], { stdinTTY: true, onStderr: answer('\n') });
  assert.equal(enter.code, 1, 'Enter alone is the default, No');
  assert.equal((await names()).includes('rv-tty'), true);
  const yes = await cli(['revoke', '--connection', 'rv-tty'], { stdinTTY: true, onStderr: answer('y\n') });
  assert.equal(yes.code, 0, yes.err);
  assert.match(yes.out, /Revoked "rv-tty" at Dropbox/);
  assert.equal((await names()).includes('rv-tty'), false);
  const unknown = await cli(['revoke', '--connection', 'rv-none'], { stdinTTY: true, onStderr: answer('y\n') });
  assert.equal(unknown.code, 1);
  assert.doesNotMatch(unknown.err, /\[y\/N\]/, 'an unknown name is reported before any question');
});

async function appNames(): Promise<string[]> {
  const r = await cli(['app', 'list', '--json']);
  return (JSON.parse(r.out) as Array<{ name: string }>).map((a) => a.name);
}

test('app add checks the key and secret with Dropbox (check/app) before storing them; a wrong pair stores nothing', async () => {
  const app = await emu.control.createApp({ redirect_uris: ['http://127.0.0.1/*'] });
  const wrong = await cli(['app', 'add', '--name', 'chk-wrong', '--key', app.key, '--secret', '-'], { stdin: 'not-the-secret\n' });
  assert.equal(wrong.code, 1, wrong.err);
  assert.match(wrong.err, /Dropbox does not accept the app key and secret of "chk-wrong"/);
  assert.match(wrong.err, /nothing was stored/);
  assert.match(wrong.err, /Settings tab/);
  assert.doesNotMatch(wrong.err, /not-the-secret/);
  const unknownKey = await cli(['app', 'add', '--name', 'chk-wrong', '--key', 'nosuchkey123', '--secret', '-'], { stdin: `${app.secret}\n` });
  assert.equal(unknownKey.code, 1, unknownKey.err);
  assert.match(unknownKey.err, /does not accept the app key and secret/);
  assert.equal((await appNames()).includes('chk-wrong'), false, 'nothing stored');

  const ok = await cli(['app', 'add', '--name', 'chk-ok', '--key', app.key, '--secret', '-'], { stdin: `${app.secret}\n` });
  assert.equal(ok.code, 0, ok.err);
  assert.match(ok.out, /Dropbox accepted the key and secret/);
  const requests = await emu.control.requests();
  assert.ok(requests.some((r) => r.path === '/2/check/app'), 'asked check/app');
});

test('app add when Dropbox cannot be reached: refuses, stores nothing, and names --no-check; --no-check stores it unchecked', async () => {
  const offline = { DROPKEY_DROPBOX_URL: 'http://127.0.0.1:1' };
  const r = await cli(['app', 'add', '--name', 'chk-off', '--key', 'somekey123', '--secret', '-'], { stdin: 'somesecret\n', extraEnv: offline });
  assert.equal(r.code, 1, r.err);
  assert.match(r.err, /could not be checked with Dropbox/);
  assert.match(r.err, /nothing was stored/);
  assert.match(r.err, /--no-check/);
  assert.equal((await appNames()).includes('chk-off'), false);
  const skipped = await cli(['app', 'add', '--name', 'chk-off', '--key', 'somekey123', '--secret', '-', '--no-check'], { stdin: 'somesecret\n', extraEnv: offline });
  assert.equal(skipped.code, 0, skipped.err);
  assert.match(skipped.out, /Not checked with Dropbox \(--no-check\)/);
  assert.equal((await appNames()).includes('chk-off'), true);
});

test('app add of a PKCE-only app (no secret) skips the check and says so; app check says it cannot check it', async () => {
  const app = await emu.control.createApp({ redirect_uris: ['http://127.0.0.1/*'] });
  await emu.control.clearRequests();
  const r = await cli(['app', 'add', '--name', 'chk-pkce', '--key', app.key]);
  assert.equal(r.code, 0, r.err);
  assert.match(r.out, /Not checked with Dropbox: its check needs the app secret/);
  assert.equal((await emu.control.requests()).some((q) => q.path === '/2/check/app'), false);
  const c = await cli(['app', 'check', 'chk-pkce']);
  assert.equal(c.code, 0, c.err);
  assert.match(c.out, /has no secret, so Dropbox cannot check it/);
});

test('app update checks a new secret before storing it (a wrong one leaves the app as it was) and points to app check', async () => {
  const app = await emu.control.createApp({ redirect_uris: ['http://127.0.0.1/*'] });
  assert.equal((await cli(['app', 'add', '--name', 'chk-up', '--key', app.key, '--secret', '-'], { stdin: `${app.secret}\n` })).code, 0);
  const wrong = await cli(['app', 'update', '--name', 'chk-up', '--secret', '-'], { stdin: 'wrong-secret\n' });
  assert.equal(wrong.code, 1, wrong.err);
  assert.match(wrong.err, /does not accept the app key and secret of "chk-up"/);
  assert.match(wrong.err, /the app was left as it was/);
  const still = await cli(['app', 'check', 'chk-up']);
  assert.equal(still.code, 0, still.err);
  assert.match(still.out, /Dropbox accepts the key and secret of app "chk-up"/);

  const right = await cli(['app', 'update', '--name', 'chk-up', '--secret', '-'], { stdin: `${app.secret}\n` });
  assert.equal(right.code, 0, right.err);
  assert.match(right.out, /Dropbox accepted the key and secret/);
  assert.doesNotMatch(right.out, /dropkey doctor/, 'doctor cannot check an app');
  const scopes = await cli(['app', 'update', '--name', 'chk-up', '--scope', 'account_info.read']);
  assert.equal(scopes.code, 0, scopes.err);
  assert.match(scopes.out, /dropkey app check chk-up/);
  assert.doesNotMatch(scopes.out, /dropkey doctor/);

  // A secret stored unchecked that Dropbox refuses: app check says so and exits 1.
  assert.equal((await cli(['app', 'update', '--name', 'chk-up', '--secret', 'bad-one', '--no-check'])).code, 0);
  const refused = await cli(['app', 'check', '--name', 'chk-up']);
  assert.equal(refused.code, 1);
  assert.match(refused.err, /does not accept the app key and secret of "chk-up"/);
});

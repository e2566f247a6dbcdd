/**
 * `dropkey exec` for long jobs, the built CLI against the emulator: --env names, the exported
 * expiry, and --renew across a simulated expiry (the CLI's clock follows the emulator's while it runs, and its
 * renewal timer fires when the clock passes it: test/cli/fake-clock.mjs).
 */
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { CliEnv, collect, waitForOutput } from './cli-helpers.js';

const t = await CliEnv.create();
// A failed wait leaves its `dropkey exec` (and the child under it) running: end them so the file can finish.
const children: { exitCode: number | null; signalCode: NodeJS.Signals | null; kill(sig?: NodeJS.Signals): boolean }[] = [];
after(() => {
  for (const p of children) if (p.exitCode === null && p.signalCode === null) p.kill('SIGKILL');
  return t.close();
});

test('exec --env DPBX_ACCESS_TOKEN: the token under that name too, with its expiry; no token file without --renew', async () => {
  await t.connect('dup');
  const script = 'const e = process.env; process.stdout.write(JSON.stringify({ a: e.DROPBOX_ACCESS_TOKEN, d: e.DPBX_ACCESS_TOKEN, o: e.OTHER_TOKEN, x: e.DROPBOX_ACCESS_TOKEN_EXPIRES_AT, f: e.DROPBOX_ACCESS_TOKEN_FILE ?? null }))';
  const r = await t.run(['exec', '--connection', 'dup', '--env', 'DPBX_ACCESS_TOKEN', '--env', 'OTHER_TOKEN', '--', process.execPath, '-e', script], {
    env: { DROPBOX_ACCESS_TOKEN_FILE: '/inherited/from/an/outer/exec' },
  });
  assert.equal(r.code, 0, r.stderr);
  const seen = JSON.parse(r.stdout);
  assert.match(seen.a, /\S{10,}/);
  assert.equal(seen.d, seen.a);
  assert.equal(seen.o, seen.a);
  assert.equal(seen.f, null, 'an inherited token file path is not passed on');
  const list = JSON.parse((await t.run(['list', '--json'])).stdout) as Array<{ name: string; expires_at: string }>;
  const expiresAt = Date.parse(list.find((c) => c.name === 'dup')!.expires_at);
  assert.match(seen.x, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$/);
  assert.equal(Date.parse(seen.x), expiresAt - (expiresAt % 1000), 'DROPBOX_ACCESS_TOKEN_EXPIRES_AT is the token\'s expiry');
  const bad = await t.run(['exec', '--connection', 'dup', '--env', '1BAD', '--', 'true']);
  assert.equal(bad.code, 2);
  assert.match(bad.stderr, /not a variable name/);
  const lone = await t.run(['exec', '--connection', 'dup', '--renew-signal', 'HUP', '--', 'true']);
  assert.equal(lone.code, 2);
  assert.match(lone.stderr, /go with --renew/);
});

test('exec --renew: across a simulated expiry the child reads a fresh token from the file, gets SIGHUP, and its exit code comes back', { timeout: 60_000 }, async () => {
  await t.connect('long');
  const child = join(t.home, 'long-job.cjs');
  await writeFile(child, `
const fs = require('node:fs');
const file = process.env.DROPBOX_ACCESS_TOKEN_FILE;
const first = fs.readFileSync(file, 'utf8').trim();
const check = (token) => fetch(process.env.DROPKEY_DROPBOX_URL + '/2/users/get_current_account', { method: 'POST', headers: { authorization: 'Bearer ' + token } }).then((r) => r.status);
process.on('SIGHUP', async () => {
  const fresh = fs.readFileSync(file, 'utf8').trim();
  const out = { event: 'hup', fresh, freshStatus: await check(fresh), firstStatus: await check(first), mode: fs.statSync(file).mode & 0o777 };
  process.stdout.write(JSON.stringify(out) + '\\n', () => process.exit(42));
});
process.stdout.write(JSON.stringify({ event: 'ready', file, first, env: process.env.DROPBOX_ACCESS_TOKEN, mode: fs.statSync(file).mode & 0o777, dirMode: fs.statSync(require('node:path').dirname(file)).mode & 0o777 }) + '\\n');
setInterval(() => {}, 1000);
`);
  const p = t.spawn(['exec', '--connection', 'long', '--renew', '--renew-signal', 'HUP', '--', process.execPath, child], { liveClock: true });
  children.push(p);
  p.stdin.end();
  const done = collect(p);
  const ready = JSON.parse((await waitForOutput(p.stdout, /\{"event":"ready".*\}\n/))[0]);
  assert.equal(ready.first, ready.env, 'the file starts with the token in DROPBOX_ACCESS_TOKEN');
  assert.equal(ready.mode, 0o600);
  assert.equal(ready.dirMode, 0o700);

  // Past the first token's expiry: the renewal timer is due, the file is rewritten, the child is signalled.
  await t.advanceClock(4 * 3600 + 60);
  const r = await done;
  assert.equal(r.code, 42, r.stderr);
  const hup = JSON.parse(/\{"event":"hup".*\}/.exec(r.stdout)![0]);
  assert.notEqual(hup.fresh, ready.first);
  assert.equal(hup.freshStatus, 200, 'the renewed token works');
  assert.equal(hup.firstStatus, 401, 'the first token has expired in the emulator');
  assert.equal(hup.mode, 0o600, 'the renewed file keeps mode 0600');
  assert.equal(existsSync(ready.file), false, 'the token file is removed when the child exits');
  assert.doesNotMatch(r.stderr, /failed|cannot/);
});

test('exec --renew: signals are forwarded, a death by signal comes back as 128+N, the file is removed', { timeout: 60_000 }, async () => {
  await t.connect('sigs');
  const script = "process.on('SIGUSR1', () => process.stdout.write('usr1\\n')); process.stdout.write(process.env.DROPBOX_ACCESS_TOKEN_FILE + '\\n'); setInterval(() => {}, 1000);";
  const p = t.spawn(['exec', '--connection', 'sigs', '--renew', '--', process.execPath, '-e', script], { liveClock: true });
  children.push(p);
  p.stdin.end();
  const done = collect(p);
  const file = (await waitForOutput(p.stdout, /^(\/\S+)\n/))[1]!;
  assert.ok(existsSync(file));
  p.kill('SIGUSR1');
  await waitForOutput(p.stdout, /usr1\n/);
  p.kill('SIGTERM');
  const r = await done;
  assert.equal(r.code, 143, 'SIGTERM reached the child, which died of it: 128 + 15');
  assert.equal(existsSync(file), false);
});

/** A child that reports the token file on start and after each SIGHUP, then keeps running until SIGTERM (exit 5). */
const WATCHER = `
const fs = require('node:fs');
const file = process.env.DROPBOX_ACCESS_TOKEN_FILE;
const report = (event) => process.stdout.write(JSON.stringify({ event, file, token: fs.readFileSync(file, 'utf8').trim() }) + '\\n');
process.on('SIGHUP', () => report('hup'));
process.on('SIGTERM', () => process.exit(5));
report('ready');
setInterval(() => {}, 1000);
`;

test('exec --renew: a connection that needs a new login keeps its last token in the file, with one error naming the fix', { timeout: 60_000 }, async () => {
  await t.connect('revoked');
  const p = t.spawn(['exec', '--connection', 'revoked', '--renew', '--renew-signal', 'HUP', '--', process.execPath, '-e', WATCHER], { liveClock: true });
  children.push(p);
  p.stdin.end();
  const done = collect(p);
  const ready = JSON.parse((await waitForOutput(p.stdout, /\{"event":"ready".*\}\n/))[0]);
  // Revoking the access token revokes the refresh token it came from
  // (https://www.dropbox.com/developers/documentation/http/documentation#auth-token-revoke).
  const revoke = await fetch(`${t.emu.url}/2/auth/token/revoke`, { method: 'POST', headers: { authorization: `Bearer ${ready.token}` } });
  assert.equal(revoke.status, 200);
  await t.advanceClock(4 * 3600);
  await waitForOutput(p.stderr, /cannot renew the token of "revoked"[\s\S]*dropkey login[\s\S]*keeps the last token/);
  assert.equal(readFileSync(ready.file, 'utf8').trim(), ready.token, 'the file still holds the last token');
  p.kill('SIGTERM');
  const r = await done;
  assert.equal(r.code, 5);
  assert.doesNotMatch(r.stdout, /"event":"hup"/, 'no renewal, no signal');
  assert.equal((r.stderr.match(/cannot renew/g) ?? []).length, 1, 'one error line');
});

test('exec --renew: a failing token endpoint is retried with back-off until it answers', { timeout: 60_000 }, async () => {
  await t.connect('flaky');
  const p = t.spawn(['exec', '--connection', 'flaky', '--renew', '--renew-signal', 'HUP', '--', process.execPath, '-e', WATCHER], { liveClock: true });
  children.push(p);
  p.stdin.end();
  const done = collect(p);
  const ready = JSON.parse((await waitForOutput(p.stdout, /\{"event":"ready".*\}\n/))[0]);
  await t.emu.control.fault({ route: 'oauth2/token', status: 503, count: 1000 });
  await t.advanceClock(4 * 3600 - 1500); // inside the 30-minute margin: renewal due, the old token still valid
  await waitForOutput(p.stderr, /renewing the token of "flaky" failed/);
  await t.emu.control.clearFaults();
  await t.advanceClock(120); // past the first back-off (30 s with jitter)
  const hup = JSON.parse((await waitForOutput(p.stdout, /\{"event":"hup".*\}\n/))[0]);
  assert.notEqual(hup.token, ready.token);
  const ok = await fetch(`${t.emu.url}/2/users/get_current_account`, { method: 'POST', headers: { authorization: `Bearer ${hup.token}` } });
  assert.equal(ok.status, 200);
  p.kill('SIGTERM');
  assert.equal((await done).code, 5);
});

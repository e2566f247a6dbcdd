/** `dropkey demo`: the README's one-command demo, run as a user would (built CLI, nothing configured). */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { collect, MAIN, waitForOutput } from './cli-helpers.js';

function demo(args: string[], env: Record<string, string> = {}) {
  return spawn(process.execPath, [MAIN, 'demo', ...args], { env: { PATH: process.env['PATH'] ?? '', ...env }, stdio: 'pipe' });
}

test('demo --exit: emulator, app add, loopback login, token, API calls, list; then cleans up', async () => {
  const child = demo(['--exit']);
  child.stdin.end();
  const r = await collect(child);
  assert.equal(r.code, 0, r.stdout + r.stderr);
  assert.match(r.stdout, /a Dropbox emulator is listening on http:\/\/127\.0\.0\.1:\d+/);
  assert.match(r.stdout, /\$ dropkey app add --name demo/);
  assert.match(r.stdout, /Connected "default": demo@example\.com/);
  assert.match(r.stdout, /\$ dropkey token\nsl\.\S+\n/);
  assert.match(r.stdout, /uploaded \/dropkey-demo\/hello\.txt/);
  assert.match(r.stdout, /file {2}\/dropkey-demo\/hello\.txt/);
  assert.match(r.stdout, /\ndefault +demo +demo@example\.com/);
  assert.match(r.stdout, /Healthy/);
  const home = /export DROPKEY_HOME=(\S+)/.exec(r.stdout)?.[1];
  assert.ok(home);
  assert.match(r.stdout, /export DROPKEY_DROPBOX_URL=http:\/\/127\.0\.0\.1:\d+/);
  assert.equal(existsSync(home.replace(/^'|'$/g, '')), false, 'the temporary data directory is deleted');
});

test('demo keeps the emulator and dropkey serve running for another shell until Ctrl-C', async () => {
  const home = await mkdtemp(join(tmpdir(), 'dropkey-demo-test-'));
  try {
    const child = demo(['--home', home]);
    child.stdin.end();
    const done = collect(child);
    const shown = await waitForOutput(child.stdout, /export DROPKEY_DROPBOX_URL=(\S+)[\s\S]*press Ctrl-C to stop/);
    const url = shown[1];
    // Another shell: the printed environment lines work with the running emulator.
    const other = spawn(process.execPath, [MAIN, 'token'], { env: { PATH: process.env['PATH'] ?? '', DROPKEY_HOME: home, DROPKEY_DROPBOX_URL: url! } });
    other.stdin.end();
    const tok = await collect(other);
    assert.equal(tok.code, 0, tok.stderr);
    assert.match(tok.stdout, /^sl\.\S+\n$/);
    await theExpiryHintHolds(shown.input, home, url!, tok.stdout.trim());
    // dropkey serve on the same data directory: up, with a one-time setup link for the first admin, and showing
    // the demo's connection once an admin exists.
    const serveUrl = /dropkey serve listening on (http:\/\/127\.0\.0\.1:\d+)/.exec(shown.input)?.[1];
    assert.ok(serveUrl, shown.input);
    assert.equal((await fetch(`${serveUrl}/healthz`)).status, 200);
    const setupUrl = /http:\/\/127\.0\.0\.1:\d+\/setup\?token=\S+/.exec(shown.input)?.[0];
    assert.ok(setupUrl, shown.input);
    assert.equal((await fetch(setupUrl)).status, 200);
    child.kill('SIGINT');
    const r = await done;
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /Stopping the emulator/);
    assert.ok(existsSync(home), 'a --home directory is kept');
  } finally {
    await rm(home, { recursive: true, force: true });
  }
});

/** Runs the closing hint's lines as a user would, and checks each thing it says happens. */
async function theExpiryHintHolds(output: string, home: string, emulatorUrl: string, token: string): Promise<void> {
  const curl = /^ {2}curl -X POST (\S+\/_emulator\/clock) -H 'Content-Type: application\/json' -d '(\{[^']*\})'$/m.exec(output);
  assert.ok(curl, `the hint shows the clock command: ${output}`);
  assert.ok(curl[1]!.startsWith(emulatorUrl));
  assert.match(output, /^ {2}dropkey refresh$/m, 'the hint names the command that gets a new token');
  const me = (t: string) => fetch(`${emulatorUrl}/2/users/get_current_account`, { method: 'POST', headers: { Authorization: `Bearer ${t}` } });
  assert.equal((await me(token)).status, 200, 'the token works before the clock moves');
  const moved = await fetch(curl[1]!, { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: curl[2]! });
  assert.equal(moved.status, 200);
  // "The emulator then refuses the current token as expired (HTTP 401 expired_access_token)"
  const refused = await me(token);
  assert.equal(refused.status, 401);
  assert.equal((await refused.json()).error['.tag'], 'expired_access_token');
  const cli = async (args: string[]) => {
    const c = spawn(process.execPath, [MAIN, ...args], { env: { PATH: process.env['PATH'] ?? '', DROPKEY_HOME: home, DROPKEY_DROPBOX_URL: emulatorUrl } });
    c.stdin.end();
    return collect(c);
  };
  // "dropkey token keeps printing the same token until its recorded expiry"
  const same = await cli(['token']);
  assert.equal(same.code, 0, same.stderr);
  assert.equal(same.stdout.trim(), token);
  // "Get a new one, which the emulator accepts, with: dropkey refresh"
  const refreshed = await cli(['refresh']);
  assert.equal(refreshed.code, 0, refreshed.stderr);
  const fresh = await cli(['token']);
  assert.equal(fresh.code, 0, fresh.stderr);
  assert.notEqual(fresh.stdout.trim(), token);
  assert.equal((await me(fresh.stdout.trim())).status, 200, 'the refreshed token is accepted');
}

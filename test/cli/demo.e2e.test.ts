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

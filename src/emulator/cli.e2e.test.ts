/** `dropkey emulator` run in-process through the CLI's error boundary (src/cli/index.ts), on port 0. */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PassThrough } from 'node:stream';
import { test } from 'node:test';
import { run } from '../cli/index.js';

function streams() {
  const stdout = new PassThrough();
  const stderr = new PassThrough();
  let out = '';
  let err = '';
  stdout.on('data', (d) => (out += d));
  stderr.on('data', (d) => (err += d));
  return { stdout, stderr, out: () => out, err: () => err };
}

async function firstLine(s: ReturnType<typeof streams>): Promise<string> {
  for (;;) {
    const nl = s.out().indexOf('\n');
    if (nl >= 0) return s.out().slice(0, nl);
    await new Promise((r) => s.stdout.once('data', r));
  }
}

test('prints the listening line first, serves a seeded app, stops cleanly on abort', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'dropkey-cli-'));
  try {
    writeFileSync(join(dir, 'seed.json'), JSON.stringify({ apps: [{ key: 'ci', secret: 'ci-secret', name: 'CI', redirect_uris: ['http://127.0.0.1/*'] }], accounts: [{ email: 'ci@example.com' }] }));
    const s = streams();
    const ac = new AbortController();
    const done = run(['emulator', '--port', '0', '--seed', 'seed.json', '--token-lifetime', '60', '--auto-approve'], { env: {}, cwd: dir, stdin: new PassThrough(), stdout: s.stdout, stderr: s.stderr, signal: ac.signal });
    const line = await firstLine(s);
    const m = /^dropkey emulator listening on (http:\/\/127\.0\.0\.1:\d+)$/.exec(line);
    assert.ok(m, line);
    const url = m[1]!;
    const auth = await fetch(`${url}/oauth2/authorize?client_id=ci&response_type=code&redirect_uri=${encodeURIComponent('http://127.0.0.1:5000/cb')}`, { redirect: 'manual' });
    assert.equal(auth.status, 302, 'auto-approve');
    const code = new URL(auth.headers.get('location')!).searchParams.get('code')!;
    const tok = await (await fetch(`${url}/oauth2/token`, { method: 'POST', body: new URLSearchParams({ grant_type: 'authorization_code', code, client_id: 'ci', client_secret: 'ci-secret', redirect_uri: 'http://127.0.0.1:5000/cb' }) })).json();
    assert.equal(tok.expires_in, 60);
    assert.match(s.out(), /app CI: key ci secret ci-secret/);
    assert.match(s.out(), /account ci@example\.com: dbid:/);
    ac.abort();
    assert.equal(await done, 0);
    await assert.rejects(fetch(`${url}/`), 'the port is closed');
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('bad options are usage errors (exit 2) with a clear message', async () => {
  for (const [args, msg] of [
    [['--port', 'abc'], /--port must be a whole number/],
    [['--tls-cert', 'x.pem'], /--tls-cert and --tls-key go together/],
    [['--seed', 'missing.json'], /cannot read seed file missing\.json/],
    [['--bogus'], /Unknown option/],
  ] as const) {
    const s = streams();
    const code = await run(['emulator', ...args], { env: {}, cwd: tmpdir(), stdin: new PassThrough(), stdout: s.stdout, stderr: s.stderr, signal: new AbortController().signal });
    assert.equal(code, 2, `${args.join(' ')}: ${s.err()}`);
    assert.match(s.err(), msg);
    assert.equal(s.out(), '');
  }
});

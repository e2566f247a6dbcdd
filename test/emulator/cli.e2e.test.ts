/**
 * `dropkey emulator` as users run it: the built CLI (dist/) in a child process on port 0 (issue #2 "What it must
 * do" §6). Needs `npm run build` first; skipped with a clear reason otherwise.
 */
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { createInterface } from 'node:readline';
import { controlClient, readRaw, headerSafeJson } from '../helpers/emulator.js';
import { patternBytes, dropboxContentHash } from '../helpers/content-hash.js';

const ROOT = resolve(import.meta.dirname, '..', '..');
const MAIN = join(ROOT, 'dist', 'cli', 'main.js');
const EMULATOR_CMD = join(ROOT, 'dist', 'cli', 'commands', 'emulator.js');
const skip = !existsSync(MAIN) || !existsSync(EMULATOR_CMD) ? `${existsSync(MAIN) ? EMULATOR_CMD : MAIN} is missing: run "npm run build" first` : false;

const LISTENING = /^dropkey emulator listening on (http:\/\/127\.0\.0\.1:(\d+))$/;
const children = new Set<ChildProcess>();
const tmpDirs: string[] = [];

after(() => {
  for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
  for (const d of tmpDirs) rmSync(d, { recursive: true, force: true });
});

interface Running {
  child: ChildProcess;
  url: string;
  lines: string[];
  stderr: () => string;
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

/** Starts the CLI and resolves once its first stdout line announces the URL (fails if it exits or takes > 20 s). */
async function startCli(args: string[]): Promise<Running> {
  const child = spawn(process.execPath, [MAIN, 'emulator', '--port', '0', ...args], { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, NO_COLOR: '1' } });
  children.add(child);
  let err = '';
  child.stderr!.setEncoding('utf8').on('data', (d: string) => (err += d));
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((res) => child.once('exit', (code, signal) => res({ code, signal })));
  const lines: string[] = [];
  const rl = createInterface({ input: child.stdout! });
  const first = await new Promise<string>((res, rej) => {
    const timer = setTimeout(() => rej(new Error(`no first line within 20 s; stderr: ${err}`)), 20_000);
    rl.on('line', (l) => {
      lines.push(l);
      if (lines.length === 1) {
        clearTimeout(timer);
        res(l);
      }
    });
    void exited.then(({ code }) => {
      clearTimeout(timer);
      rej(new Error(`emulator exited (${code}) before printing its URL; stderr: ${err}`));
    });
  });
  const m = LISTENING.exec(first);
  assert.ok(m, `first stdout line announces the URL: ${JSON.stringify(first)}`);
  assert.notEqual(m[2], '0', 'the real port is printed, not 0');
  return { child, url: m[1]!, lines, stderr: () => err, exited };
}

/** SIGTERM, then the process must exit 0 within 5 s. */
async function stopCli(r: Running): Promise<void> {
  const t0 = performance.now();
  r.child.kill('SIGTERM');
  let timer: NodeJS.Timeout | undefined;
  const res = await Promise.race([
    r.exited,
    new Promise<never>((_, rej) => (timer = setTimeout(() => rej(new Error('did not exit within 5 s of SIGTERM')), 5_000))),
  ]);
  clearTimeout(timer);
  assert.equal(res.code, 0, `exit code after SIGTERM (signal ${res.signal}); stderr: ${r.stderr()}`);
  assert.ok(performance.now() - t0 < 5_000);
}

async function userGrant(url: string) {
  const ctl = controlClient(url);
  const app = await ctl.createApp({ redirect_uris: ['http://127.0.0.1:53682/callback'] });
  const acct = await ctl.createAccount({ email: 'cli@example.com' });
  const grant = await ctl.grant({ app: app.key, account: acct.account_id, token_access_type: 'offline' });
  return { ctl, app, acct, grant };
}

test('dropkey emulator --port 0: announces its URL, serves the API, exits 0 on SIGTERM', { skip }, async () => {
  const r = await startCli([]);
  const { grant, acct } = await userGrant(r.url);
  const me = await readRaw(await fetch(`${r.url}/2/users/get_current_account`, { method: 'POST', headers: { Authorization: `Bearer ${grant.access_token}` } }));
  assert.equal(me.status, 200, me.text);
  assert.equal(me.json.account_id, acct.account_id);
  assert.equal(me.headers.get('content-type'), 'application/json');
  await stopCli(r);
  // Nothing listens any more.
  await assert.rejects(fetch(`${r.url}/2/users/get_current_account`, { method: 'POST' }));
});

test('--data DIR: an uploaded file is still downloadable after a restart', { skip }, async () => {
  const dir = mkdtempSync(join(tmpdir(), 'dropkey-emu-data-'));
  tmpDirs.push(dir);
  const data = patternBytes(5 * 1024 * 1024 + 123, 99);
  const first = await startCli(['--data', dir]);
  const { grant } = await userGrant(first.url);
  const up = await readRaw(
    await fetch(`${first.url}/2/files/upload`, {
      method: 'POST',
      headers: { Authorization: `Bearer ${grant.access_token}`, 'Content-Type': 'application/octet-stream', 'Dropbox-API-Arg': headerSafeJson({ path: '/Persisted/keep.bin' }) },
      body: data as BodyInit,
    }),
  );
  assert.equal(up.status, 200, up.text);
  await stopCli(first);

  const second = await startCli(['--data', dir]);
  const res = await fetch(`${second.url}/2/files/download`, {
    method: 'POST',
    headers: { Authorization: `Bearer ${grant.access_token}`, 'Dropbox-API-Arg': headerSafeJson({ path: '/persisted/KEEP.bin' }) },
  });
  const bytes = Buffer.from(await res.arrayBuffer());
  assert.equal(res.status, 200, bytes.toString('utf8').slice(0, 300));
  assert.ok(bytes.equals(data), 'same bytes after restart');
  const result = JSON.parse(res.headers.get('dropbox-api-result') ?? 'null');
  assert.equal(result.content_hash, dropboxContentHash(data));
  assert.equal(result.path_display, '/Persisted/keep.bin');
  await stopCli(second);
});

test('--auto-approve: authorize redirects at once with a code that exchanges for tokens', { skip }, async () => {
  const r = await startCli(['--auto-approve']);
  const ctl = controlClient(r.url);
  const redirect = 'http://127.0.0.1:53682/callback';
  const app = await ctl.createApp({ redirect_uris: [redirect] });
  const q = new URLSearchParams({ client_id: app.key, response_type: 'code', redirect_uri: redirect, state: 'auto123', token_access_type: 'offline' });
  const res = await fetch(`${r.url}/oauth2/authorize?${q}`, { redirect: 'manual' });
  assert.ok(res.status >= 300 && res.status < 400, `authorize redirects at once, got ${res.status}`);
  const loc = new URL(res.headers.get('location')!);
  assert.equal(`${loc.origin}${loc.pathname}`, redirect);
  assert.equal(loc.searchParams.get('state'), 'auto123');
  const code = loc.searchParams.get('code');
  assert.ok(code);
  const tok = await readRaw(
    await fetch(`${r.url}/oauth2/token`, {
      method: 'POST',
      headers: { 'Content-Type': 'application/x-www-form-urlencoded' },
      body: new URLSearchParams({ grant_type: 'authorization_code', code, redirect_uri: redirect, client_id: app.key, client_secret: app.secret! }).toString(),
    }),
  );
  assert.equal(tok.status, 200, tok.text);
  assert.match(tok.json.access_token, /^sl\./);
  assert.equal(typeof tok.json.refresh_token, 'string');
  assert.match(tok.json.account_id, /^dbid:/);
  await stopCli(r);
});

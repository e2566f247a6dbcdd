/**
 * `dropkey emulator` as users run it: the built CLI (dist/) in a child process on port 0 (docs/emulator.md,
 * "Running it"). Needs `npm run build` first; skipped with a clear reason otherwise.
 */
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { request as httpsRequest } from 'node:https';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { createInterface } from 'node:readline';
import { controlClient, readRaw, headerSafeJson } from '../helpers/emulator.js';
import { patternBytes, dropboxContentHash } from '../helpers/content-hash.js';

const ROOT = resolve(import.meta.dirname, '..', '..');
const MAIN = join(ROOT, 'dist', 'cli', 'main.js');
const EMULATOR_CMD = join(ROOT, 'dist', 'cli', 'commands', 'emulator.js');
const skip = !existsSync(MAIN) || !existsSync(EMULATOR_CMD) ? `${existsSync(MAIN) ? EMULATOR_CMD : MAIN} is missing: run "npm run build" first` : false;

const LISTENING = /^dropkey emulator listening on (https?:\/\/127\.0\.0\.1:(\d+))$/;
const children = new Set<ChildProcess>();
const tmpDirs: string[] = [];

after(() => {
  for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
  for (const d of tmpDirs) rmSync(d, { recursive: true, force: true });
});

interface Running {
  child: ChildProcess;
  /** Resolves with the first stdout line (already printed or not) matching `re`; rejects after 10 s. */
  waitForLine(re: RegExp): Promise<string>;
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
  const waitForLine = (re: RegExp) =>
    new Promise<string>((res, rej) => {
      const hit = lines.find((l) => re.test(l));
      if (hit !== undefined) return res(hit);
      const timer = setTimeout(() => rej(new Error(`no stdout line matching ${re} within 10 s: ${lines.join(' | ')}`)), 10_000);
      const onLine = (l: string) => {
        if (!re.test(l)) return;
        clearTimeout(timer);
        rl.off('line', onLine);
        res(l);
      };
      rl.on('line', onLine);
    });
  return { child, url: m[1]!, lines, waitForLine, stderr: () => err, exited };
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

/** Authorize with --auto-approve and exchange the code: tokens without the control API. */
async function autoApprovedToken(url: string, key: string, secret: string, redirect: string) {
  const q = new URLSearchParams({ client_id: key, response_type: 'code', redirect_uri: redirect, token_access_type: 'offline' });
  const res = await fetch(`${url}/oauth2/authorize?${q}`, { redirect: 'manual' });
  const loc = res.headers.get('location');
  assert.ok(loc, `authorize redirected at once (status ${res.status})`);
  const code = new URL(loc).searchParams.get('code')!;
  const tok = await readRaw(await fetch(`${url}/oauth2/token`, {
    method: 'POST',
    headers: { 'Content-Type': 'application/x-www-form-urlencoded' },
    body: new URLSearchParams({ grant_type: 'authorization_code', code, redirect_uri: redirect, client_id: key, client_secret: secret }).toString(),
  }));
  assert.equal(tok.status, 200, tok.text);
  return tok.json;
}

test('default seed: the demo app and account are printed and usable on any loopback port; --no-control hides /_emulator/', { skip }, async () => {
  const r = await startCli(['--no-control', '--auto-approve']);
  // Lines after the first name the demo app's key and secret (docs/emulator.md); read them instead of assuming.
  const appLine = await r.waitForLine(/key \S+ secret \S+/);
  const m = /key (\S+) secret (\S+)/.exec(appLine)!;
  const [, key, secret] = m;
  await r.waitForLine(/demo@example\.com/);
  const ctl = await fetch(`${r.url}/_emulator/requests`);
  assert.equal(ctl.status, 404, '--no-control disables the control API');
  // Any port and path on 127.0.0.1 is a registered redirect for the demo app.
  const tok = await autoApprovedToken(r.url, key!, secret!, 'http://127.0.0.1:61234/any/path');
  assert.equal(tok.expires_in, 14400);
  const me = await readRaw(await fetch(`${r.url}/2/users/get_current_account`, { method: 'POST', headers: { Authorization: `Bearer ${tok.access_token}` } }));
  assert.equal(me.status, 200, me.text);
  assert.equal(me.json.account_id, tok.account_id);
  await stopCli(r);
});

test('--seed FILE replaces the demo seed; --token-lifetime sets expires_in', { skip }, async () => {
  const dir = mkdtempSync(join(tmpdir(), 'dropkey-emu-seed-'));
  tmpDirs.push(dir);
  const seedFile = join(dir, 'seed.json');
  writeFileSync(seedFile, JSON.stringify({
    apps: [{ key: 'ci-app', secret: 'ci-secret', name: 'CI', redirect_uris: ['http://127.0.0.1:7777/cb'], scopes: ['account_info.read'], access: 'full', team: false }],
    accounts: [{ email: 'ci@example.com', given_name: 'C', surname: 'I' }],
  }));
  const r = await startCli(['--seed', seedFile, '--token-lifetime', '120', '--auto-approve']);
  const tok = await autoApprovedToken(r.url, 'ci-app', 'ci-secret', 'http://127.0.0.1:7777/cb');
  assert.equal(tok.expires_in, 120);
  const me = await readRaw(await fetch(`${r.url}/2/users/get_current_account`, { method: 'POST', headers: { Authorization: `Bearer ${tok.access_token}` } }));
  assert.equal(me.json.email, 'ci@example.com');
  const demo = await fetch(`${r.url}/oauth2/authorize?${new URLSearchParams({ client_id: 'dropkey-demo-app', response_type: 'code', redirect_uri: 'http://127.0.0.1:7777/cb' })}`, { redirect: 'manual' });
  assert.equal(demo.status, 400, 'the demo app is not there when a seed replaces it');
  await stopCli(r);

  const bad = spawnSync(process.execPath, [MAIN, 'emulator', '--port', '0', '--seed', join(dir, 'missing.json')], { cwd: ROOT, encoding: 'utf8', timeout: 20_000 });
  assert.notEqual(bad.status, 0, 'a missing seed file is an error');
  assert.match(bad.stderr, /missing\.json/, `the error names the file: ${bad.stderr}`);
});

const haveOpenssl = spawnSync('openssl', ['version']).status === 0;
test('--tls-cert/--tls-key serve HTTPS', { skip: skip || (!haveOpenssl && 'openssl is not installed (needed to make a test certificate)') }, async () => {
  const dir = mkdtempSync(join(tmpdir(), 'dropkey-emu-tls-'));
  tmpDirs.push(dir);
  const cert = join(dir, 'cert.pem');
  const key = join(dir, 'key.pem');
  const gen = spawnSync('openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', key, '-out', cert, '-days', '1', '-subj', '/CN=127.0.0.1', '-addext', 'subjectAltName=IP:127.0.0.1'], { encoding: 'utf8' });
  assert.equal(gen.status, 0, gen.stderr);
  const r = await startCli(['--tls-cert', cert, '--tls-key', key]);
  assert.match(r.url, /^https:\/\//, 'the announced URL is https');
  const ca = readFileSync(cert);
  const u = new URL(`${r.url}/2/users/get_current_account`);
  const res = await new Promise<{ status: number; body: string }>((resolve, reject) => {
    const req = httpsRequest({ host: u.hostname, port: u.port, path: u.pathname, method: 'POST', ca }, (s) => {
      let body = '';
      s.setEncoding('utf8').on('data', (d: string) => (body += d)).on('end', () => resolve({ status: s.statusCode ?? 0, body }));
    });
    req.on('error', reject);
    req.end();
  });
  assert.equal(res.status, 400, 'an API answer over TLS (no Authorization → 400)');
  assert.match(res.body, /Authorization/);
  await stopCli(r);
});

/**
 * `dropkey serve` as a process would run it: startServer() (server/main.ts, on the configuration readConfig read from
 * the environment) on a real port, the
 * `apikey` commands in-process, graceful shutdown with a request in flight, and the built binary's first line
 * and SIGTERM handling.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { request } from 'node:http';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { PassThrough } from 'node:stream';
import { createInterface } from 'node:readline';
import { run } from '../../src/cli/index.js';
import { Dropkey } from '../../src/connections/dropkey.js';
import { dropboxUrlsFromBase } from '../../src/dropbox/hosts.js';
import { startServer } from '../../src/server/main.js';
import { readConfig } from '../../src/config.js';
import { startEmulator, type StartedEmulator } from '../helpers/emulator.js';

const ROOT = resolve(import.meta.dirname, '../..');
const MAIN = process.env['DROPKEY_CLI_MAIN'] ? resolve(process.env['DROPKEY_CLI_MAIN']) : join(ROOT, 'dist/cli/main.js');

let emu: StartedEmulator;
let home: string;
let env: Record<string, string>;
const issued = new Set<string>();

function capture() {
  const stream = new PassThrough();
  let text = '';
  stream.on('data', (d) => (text += d));
  return { stream, text: () => text };
}

async function cli(args: string[]): Promise<{ code: number; out: string; err: string }> {
  const out = capture();
  const err = capture();
  const code = await run(args, { env, cwd: ROOT, stdin: new PassThrough(), stdout: out.stream, stderr: err.stream, signal: new AbortController().signal });
  return { code, out: out.text(), err: err.text() };
}

before(async () => {
  emu = await startEmulator({});
  home = mkdtempSync(join(tmpdir(), 'dropkey-serve-e2e-'));
  env = { DROPKEY_HOME: home, DROPKEY_MASTER_KEY: randomBytes(32).toString('base64'), DROPKEY_DROPBOX_URL: emu.url, DROPKEY_LOG_LEVEL: 'debug' };
  const app = await emu.control.createApp({ redirect_uris: ['http://127.0.0.1/*'] });
  const account = await emu.control.createAccount();
  const grant = await emu.control.grant({ app: app.key, account: account.account_id, token_access_type: 'offline' });
  issued.add(grant.access_token).add(grant.refresh_token!);
  const dk = await Dropkey.open({ home, masterKey: env['DROPKEY_MASTER_KEY']!, urls: dropboxUrlsFromBase(emu.url) });
  await dk.addApp({ name: 'main', key: app.key, secret: app.secret! });
  await dk.import({ connection: 'alpha', app: 'main', refreshToken: grant.refresh_token! });
  await dk.close();
});
after(async () => {
  await emu.close();
  rmSync(home, { recursive: true, force: true });
});

describe('apikey command', () => {
  test('create prints the key once; list shows no key; revoke; bad input is a usage error', async () => {
    const made = await cli(['apikey', 'create', '--name', 'svc', '--permission', 'token:read', '--connection', 'alpha']);
    assert.equal(made.code, 0, made.err);
    assert.match(made.out, /^dk_[A-Za-z0-9_-]{43}\n$/);
    assert.match(made.err, /only time the key is shown/);
    const key = made.out.trim();
    const list = await cli(['apikey', 'list']);
    assert.match(list.out, /^svc {2}dk_/m);
    assert.ok(!list.out.includes(key));
    const json = JSON.parse((await cli(['apikey', 'list', '--json'])).out);
    assert.deepEqual(json[0].connections, ['alpha']);
    assert.equal((await cli(['apikey', 'create', '--name', 'svc', '--permission', 'token:read', '--connection', 'alpha'])).code, 1, 'name taken');
    assert.equal((await cli(['apikey', 'create', '--name', 'x', '--permission', 'root', '--connection', 'alpha'])).code, 2);
    assert.equal((await cli(['apikey', 'create', '--name', 'x', '--permission', 'proxy'])).code, 2, 'needs a connection scope');
    assert.equal((await cli(['apikey', 'frobnicate'])).code, 2);
    assert.equal((await cli(['apikey', 'revoke', 'svc'])).code, 0);
    assert.equal((await cli(['apikey', 'revoke', 'svc'])).code, 1);
    const admin = await cli(['apikey', 'create', '--name', 'ops', '--permission', 'admin', '--permission', 'token:read', '--all-connections', '--json']);
    assert.equal(JSON.parse(admin.out).api_key.connections, '*');
  });
});

describe('startServer', () => {
  test('prints the address first, serves, and shuts down gracefully: in-flight finishes, new connections refused, store closed', async () => {
    const key = (await cli(['apikey', 'create', '--name', 'graceful', '--permission', 'admin', '--permission', 'token:read', '--connection', 'alpha'])).out.trim();
    let entered!: () => void;
    const upstreamEntered = new Promise<void>((r) => (entered = r));
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    let holdRefresh = false;
    // The upstream fetch: records issued tokens; holds the next refresh until the test releases it.
    const upstream = (async (input: string | URL | Request, init?: RequestInit) => {
      const url = String(input instanceof Request ? input.url : input);
      if (url.endsWith('/oauth2/token') && holdRefresh) {
        holdRefresh = false;
        entered();
        await gate;
      }
      const res = await fetch(input, init);
      if (url.endsWith('/oauth2/token')) {
        const b = (await res.clone().json().catch(() => ({}))) as { access_token?: string };
        if (b.access_token) issued.add(b.access_token);
      }
      return res;
    }) as typeof fetch;
    const out = capture();
    const logs = capture();
    const ac = new AbortController();
    const server = await startServer({ config: await readConfig(env), port: 0, stdout: out.stream, logStream: logs.stream, signal: ac.signal, fetch: upstream });
    const lines = out.text().split('\n');
    assert.match(lines[0]!, /^dropkey serve listening on http:\/\/127\.0\.0\.1:\d+$/);
    assert.match(lines[1]!, /^No admin exists yet\. Create one within 24 hours at: http:\/\/127\.0\.0\.1:\d+\/setup\?token=[A-Za-z0-9_-]{43}$/);
    const base = server.url;
    const headers = { Authorization: `Bearer ${key}` };
    const t1 = (await (await fetch(`${base}/api/v1/connections/alpha/token`, { headers })).json()) as { access_token: string };
    assert.ok(t1.access_token);

    holdRefresh = true;
    const inflight = fetch(`${base}/api/v1/connections/alpha/refresh`, { method: 'POST', headers });
    await upstreamEntered;
    ac.abort();
    // A new connection is refused while the in-flight request is still running.
    const refused = await new Promise<string>((res) => {
      const req = request({ host: '127.0.0.1', port: server.listener.port, path: '/healthz', agent: false }, () => res('answered'));
      req.on('error', (e: NodeJS.ErrnoException) => res(e.code ?? 'error'));
      req.end();
    });
    assert.equal(refused, 'ECONNREFUSED');
    release();
    const res = await inflight;
    assert.equal(res.status, 200, 'the in-flight request finished');
    await server.done;
    assert.match(logs.text(), /"msg":"stopped"/);
    // The store was closed cleanly and the refresh persisted: a new process reads the new token.
    const dk = await Dropkey.open({ home, masterKey: env['DROPKEY_MASTER_KEY']!, urls: dropboxUrlsFromBase(emu.url) });
    const t2 = await dk.getToken('alpha');
    await dk.close();
    assert.notEqual(t2.accessToken, t1.access_token);

    const all = logs.text();
    assert.ok(all.includes('"msg":"request"'), 'request logs were written at debug level');
    for (const t of issued) assert.ok(!all.includes(t), 'no token in the logs');
    assert.ok(!all.includes(key) && !/dk_[A-Za-z0-9_-]{43}/.test(all), 'no API key in the logs');
    assert.ok(!all.includes(env['DROPKEY_MASTER_KEY']!));
  });

  test('bad options are refused before binding: a public URL with a path, or plain http on a non-loopback host', async () => {
    const ac = new AbortController();
    const o = { config: await readConfig(env), port: 0, stdout: new PassThrough(), logStream: new PassThrough(), signal: ac.signal };
    await assert.rejects(startServer({ ...o, publicUrl: 'https://example.com/dropkey' }), { code: 'DROPKEY_BAD_INPUT' });
    await assert.rejects(startServer({ ...o, publicUrl: 'http://dropkey.example.com' }), { code: 'DROPKEY_BAD_INPUT' });
    await assert.rejects(startServer({ ...o, publicUrl: 'not a url' }), { code: 'DROPKEY_BAD_INPUT' });
  });

  test('a port in use or a foreign host address is a clear error, and the store is closed again', async () => {
    const { createServer } = await import('node:http');
    const busy = createServer();
    await new Promise<void>((r) => busy.listen(0, '127.0.0.1', r));
    const port = (busy.address() as { port: number }).port;
    const o = { config: await readConfig(env), stdout: new PassThrough(), logStream: new PassThrough(), signal: new AbortController().signal };
    try {
      await assert.rejects(startServer({ ...o, port }), (err: any) => err.code === 'DROPKEY_BAD_INPUT' && /already in use/.test(err.message));
      await assert.rejects(startServer({ ...o, port: 0, host: '192.0.2.1' }), (err: any) => err.code === 'DROPKEY_BAD_INPUT' && /not an address/.test(err.message));
    } finally {
      busy.close();
    }
  });
});

describe('the built binary', () => {
  test('`dropkey serve --port 0` prints its address first, answers /healthz, exits 0 on SIGTERM', async (t) => {
    assert.ok(existsSync(MAIN), `run npm run build first (${MAIN} is missing)`);
    const child = spawn(process.execPath, [MAIN, 'serve', '--port', '0'], { env: { ...process.env, ...env, DROPKEY_LOG_LEVEL: 'info' }, stdio: ['ignore', 'pipe', 'pipe'] });
    t.after(() => {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL'); // a failed assertion must not leave it running
    });
    let stderr = '';
    child.stderr.on('data', (d) => (stderr += d));
    const first = await new Promise<string>((res) => createInterface({ input: child.stdout! }).once('line', res));
    const m = /^dropkey serve listening on (http:\/\/127\.0\.0\.1:\d+)$/.exec(first);
    assert.ok(m, first);
    const health = await fetch(`${m[1]}/healthz`);
    assert.equal(health.status, 200);
    assert.equal(health.headers.get('x-content-type-options'), 'nosniff');
    child.kill('SIGTERM');
    const [code] = await once(child, 'exit');
    assert.equal(code, 0, stderr);
    assert.match(stderr, /"msg":"stopped"/);
  });
});

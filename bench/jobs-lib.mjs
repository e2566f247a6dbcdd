/**
 * Shared by bench/jobs-stall.mjs and bench/expiry-storm.mjs: an emulator, N connections written straight into
 * the store (real grants from the emulator, so refreshes and checks work; the stored expiry is chosen by the
 * benchmark), an API key, and the server (bench/jobs-server.mjs) forked with IPC.
 */
import { fork, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { fileURLToPath } from 'node:url';
import { log, startChild } from './lib.mjs';

export const root = fileURLToPath(new URL('..', import.meta.url));

export async function startEmulator() {
  const emu = await startChild(root, ['dist/cli/main.js', 'emulator', '--port', '0'], {}, /(http:\/\/127\.0\.0\.1:\d+)/);
  const url = emu.match[1];
  const control = async (path, body, method = 'POST') => {
    const r = await fetch(`${url}/_emulator/${path}`, { method, headers: { 'Content-Type': 'application/json' }, ...(body === undefined ? {} : { body: JSON.stringify(body) }) });
    if (!r.ok) throw new Error(`emulator ${path}: ${r.status} ${await r.text()}`);
    return r.json();
  };
  return { child: emu.child, url, control };
}

/**
 * Seeds `count` connections c0..c{count-1} whose stored expiry is expiresAt(i) (epoch ms), plus `valid` more
 * (v0..) valid for 4 h. Returns the env for the server and a token:read API key.
 */
export async function seed({ home, masterKey, emu, count, valid = 0, expiresAt }) {
  const { DEMO_ACCOUNT_EMAIL } = await import(`${root}dist/emulator/index.js`);
  const { Dropkey, dropboxUrlsFromBase } = await import(`${root}dist/index.js`);
  const appKey = `bench${randomBytes(6).toString('hex')}`;
  const appSecret = randomBytes(12).toString('hex');
  await emu.control('apps', { key: appKey, secret: appSecret, name: 'bench', redirect_uris: ['http://127.0.0.1/*'], scopes: ['account_info.read'], access: 'full', team: false });
  const dk = await Dropkey.open({ home, masterKey, urls: dropboxUrlsFromBase(emu.url) });
  await dk.addApp({ name: 'demo', key: appKey, secret: appSecret });
  const t0 = performance.now();
  const names = [...Array.from({ length: count }, (_, i) => `c${i}`), ...Array.from({ length: valid }, (_, i) => `v${i}`)];
  let next = 0;
  await Promise.all(
    Array.from({ length: 16 }, async () => {
      for (let i = next++; i < names.length; i = next++) {
        const g = await emu.control('grants', { app: appKey, account: DEMO_ACCOUNT_EMAIL, token_access_type: 'offline' });
        await dk.store.createConnection({
          name: names[i],
          app: 'demo',
          accountId: g.account_id,
          teamId: null,
          email: DEMO_ACCOUNT_EMAIL,
          displayName: null,
          teamName: null,
          scopes: ['account_info.read'],
          accessToken: g.access_token,
          accessTokenExpiresAt: i < count ? expiresAt(i) : Date.now() + g.expires_in * 1000,
          refreshToken: g.refresh_token,
          state: 'active',
          lastError: null,
          lastRefreshAt: null,
        });
      }
    }),
  );
  await dk.close();
  log(`${names.length} connections seeded in ${((performance.now() - t0) / 1000).toFixed(1)} s`);
  const env = { DROPKEY_HOME: home, DROPKEY_MASTER_KEY: masterKey, DROPKEY_DROPBOX_URL: emu.url, DROPKEY_LOG_LEVEL: 'warn' };
  const keyProc = spawn(process.execPath, ['dist/cli/main.js', 'apikey', 'create', '--name', `bench${randomBytes(3).toString('hex')}`, '--permission', 'token:read', '--connection', '*'], {
    cwd: root,
    env: { ...process.env, ...env },
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  let key = '';
  keyProc.stdout.on('data', (d) => (key += d));
  await once(keyProc, 'exit');
  key = key.trim();
  if (!/^dk_/.test(key)) throw new Error('apikey create printed no key');
  return { env, authorization: `Bearer ${key}` };
}

/** Forks bench/jobs-server.mjs; `call(cmd, extra)` sends a message and resolves with its answer. */
export async function startServer(env) {
  const child = fork(`${root}bench/jobs-server.mjs`, [], { cwd: root, env: { ...process.env, ...env }, stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
  const waiting = new Map();
  let seq = 0;
  const ready = new Promise((resolve, reject) => {
    child.once('exit', (code) => reject(new Error(`server exited with ${code}`)));
    child.on('message', (msg) => {
      if (msg.ready) return resolve(msg);
      const w = waiting.get(msg.id);
      if (!w) return;
      waiting.delete(msg.id);
      if (msg.error) w.reject(new Error(msg.error));
      else w.resolve(msg);
    });
  });
  const { url } = await ready;
  const call = (cmd, extra = {}) =>
    new Promise((resolve, reject) => {
      const id = ++seq;
      waiting.set(id, { resolve, reject });
      child.send({ id, cmd, ...extra });
    });
  const stop = async () => {
    const exited = once(child, 'exit');
    await call('stop').catch(() => undefined);
    await exited;
  };
  return { child, url, call, stop };
}

/** `clients` closed loops of GETs over `paths` for `ms`; every latency in ms, plus errors. */
export async function handoutLoad({ url, authorization, paths, clients, ms, onSample }) {
  const { rawGet } = await import('./lib.mjs');
  const lat = [];
  let errors = 0;
  const end = performance.now() + ms;
  await Promise.all(
    Array.from({ length: clients }, async (_, c) => {
      for (let i = c; performance.now() < end; i += clients) {
        const p = paths[Math.floor(Math.random() * paths.length)];
        const t = performance.now();
        const r = await rawGet(`${url}${p}`, authorization).catch(() => ({ status: 0 }));
        const d = performance.now() - t;
        lat.push(d);
        onSample?.(d);
        if (r.status !== 200) errors++;
      }
    }),
  );
  return { lat, errors };
}

export function latencyStats(lat) {
  const s = [...lat].sort((a, b) => a - b);
  const q = (p) => (s.length ? s[Math.min(s.length - 1, Math.floor(p * s.length))] : NaN);
  const r = (x) => Math.round(x * 100) / 100;
  return { requests: s.length, p50_ms: r(q(0.5)), p99_ms: r(q(0.99)), max_ms: r(s.at(-1) ?? NaN) };
}

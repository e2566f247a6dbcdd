#!/usr/bin/env node
// Proxy download benchmark (docs/proxy.md ("Throughput")): download throughput of a large file through
// `dropkey serve`'s proxy (/proxy/{connection}/2/files/download) versus straight from the emulator.
//
//   npm run build && node bench/serve-proxy.mjs [--size-mib 256] [--runs 3] [--serve-node-flags=--initial-old-space-size=64]
//
// Starts `dropkey emulator --data DIR` and `dropkey serve --port 0` (both the built CLI, as child processes, on
// 127.0.0.1), connects a connection from an emulator offline grant, creates a `proxy` API key, uploads the file
// once straight to the emulator, checks its content_hash both ways, then times downloads alternating direct /
// proxied / bare (so drift on the machine hits all alike). The client only counts bytes in the timed runs.
//
// "bare" is the floor for any Node proxy on the machine: a ~10-line node:http server that pipes the same request
// to the emulator and the answer back (no auth, no checks), in its own process like dropkey. Reports the medians,
// the ratio proxy/direct (goal ≥ 0.8), proxy/bare, and the server's peak RSS (VmHWM, Linux). Last line: JSON.
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const { values } = parseArgs({
  options: {
    'size-mib': { type: 'string', default: '256' },
    runs: { type: 'string', default: '3' },
    // Node/V8 flags for the server process, e.g. "--initial-old-space-size=64" (see bench/README.md).
    'serve-node-flags': { type: 'string', default: '' },
  },
});
const SERVE_FLAGS = values['serve-node-flags'].split(/\s+/).filter(Boolean);
const MiB = 1024 * 1024;
const SIZE = Number(values['size-mib']) * MiB;
const RUNS = Number(values.runs);
const CHUNK = 8 * MiB;
const GOAL = 0.8;
if (!(SIZE > 0 && RUNS > 0)) {
  console.error('usage: node bench/serve-proxy.mjs [--size-mib N] [--runs N]');
  process.exit(2);
}

const dist = (p) => import(join(root, 'dist', p));
const { ContentHasher } = await dist('dropbox/content-hash.js').catch(() => {
  console.error('dist/ is missing: run `npm run build` first');
  process.exit(2);
});
const { DEMO_ACCOUNT_EMAIL } = await dist('emulator/index.js');
const { Dropkey } = await dist('connections/dropkey.js');
const { dropboxUrlsFromBase } = await dist('dropbox/hosts.js');
const { openServerStores } = await dist('server/main.js');
const { readConfig } = await dist('config.js');
const { generateApiKey } = await dist('server/security/secrets.js');

/** Starts the built CLI and resolves with the URL from its "... listening on URL" line. */
function startCli(args, env, nodeFlags = []) {
  const child = spawn(process.execPath, [...nodeFlags, join(root, 'dist/cli/main.js'), ...args], {
    stdio: ['ignore', 'pipe', 'inherit'],
    env: { ...process.env, ...env },
  });
  const url = new Promise((resolve, reject) => {
    const lines = createInterface({ input: child.stdout });
    lines.on('line', (line) => {
      const m = /listening on (http\S+)/.exec(line);
      if (m) resolve(m[1]);
    });
    child.once('exit', (code) => reject(new Error(`${args[0]} exited early (code ${code})`)));
  });
  return { child, url };
}

/** The floor: a bare node:http pipe proxy to the emulator, injecting the token like dropkey does. */
const BARE_PROXY = `
import http from 'node:http';
const [target, token] = process.argv.slice(1);
const t = new URL(target);
const agent = new http.Agent({ keepAlive: true });
const server = http.createServer((req, res) => {
  const headers = { ...req.headers, host: t.host, authorization: 'Bearer ' + token };
  const up = http.request({ host: t.hostname, port: t.port, path: req.url.replace(/^\\/proxy\\/[^/]+/, ''), method: req.method, headers, agent }, (r) => {
    res.writeHead(r.statusCode, r.headers);
    r.pipe(res);
  });
  req.pipe(up);
});
server.listen(0, '127.0.0.1', () => console.log('bare proxy listening on http://127.0.0.1:' + server.address().port));
`;

function startBare(target, token) {
  const child = spawn(process.execPath, ['--input-type=module', '-e', BARE_PROXY, target, token], { stdio: ['ignore', 'pipe', 'inherit'] });
  const url = new Promise((resolve, reject) => {
    createInterface({ input: child.stdout }).on('line', (line) => {
      const m = /listening on (http\S+)/.exec(line);
      if (m) resolve(m[1]);
    });
    child.once('exit', (code) => reject(new Error(`bare proxy exited early (code ${code})`)));
  });
  return { child, url };
}

async function stop(child) {
  if (child.exitCode !== null) return;
  child.kill('SIGTERM');
  await new Promise((r) => (child.exitCode !== null ? r() : child.once('exit', r)));
}

/** CPU seconds (user + system) a process has used so far, from /proc/<pid>/stat (Linux). */
function cpuSeconds(pid) {
  const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1].split(' ');
  return (Number(fields[11]) + Number(fields[12])) / 100; // utime, stime in clock ticks (USER_HZ = 100)
}

function peakRssMB(pid) {
  const kb = Number(/VmHWM:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1]);
  return kb / 1024;
}

async function check(res, what) {
  if (res.ok) return res;
  throw new Error(`${what}: HTTP ${res.status} ${await res.text()}`);
}

async function uploadDirect(base, token) {
  const call = async (route, arg, body) =>
    (await check(
      await fetch(`${base}/2/${route}`, {
        method: 'POST',
        headers: { Authorization: `Bearer ${token}`, 'Content-Type': 'application/octet-stream', 'Dropbox-API-Arg': JSON.stringify(arg) },
        body,
      }),
      route,
    )).json();
  const hasher = new ContentHasher();
  const chunk = Buffer.alloc(CHUNK);
  for (let i = 0; i < CHUNK; i += 4) chunk.writeUInt32LE((Math.imul(i, 2654435761) ^ (i >>> 7)) >>> 0, i);
  const { session_id } = await call('files/upload_session/start', {}, Buffer.alloc(0));
  let offset = 0;
  for (let n = 0; offset < SIZE; n++) {
    const part = chunk.subarray(0, Math.min(CHUNK, SIZE - offset));
    part.writeUInt32LE(n, 0);
    hasher.update(part);
    await call('files/upload_session/append_v2', { cursor: { session_id, offset } }, part);
    offset += part.length;
  }
  const meta = await call('files/upload_session/finish', { cursor: { session_id, offset }, commit: { path: '/bench/proxy.bin', mode: 'overwrite' } }, Buffer.alloc(0));
  const hash = hasher.digest();
  if (meta.content_hash !== hash || meta.size !== SIZE) throw new Error(`upload mismatch: ${JSON.stringify(meta)}`);
  return hash;
}

/** One download; returns MB/s. With `hash`, also checks the bytes against it (untimed verification runs). */
async function download(url, authorization, hash) {
  const t0 = performance.now();
  const res = await check(
    await fetch(url, { method: 'POST', headers: { Authorization: authorization, 'Dropbox-API-Arg': JSON.stringify({ path: '/bench/proxy.bin' }) } }),
    url,
  );
  const hasher = hash ? new ContentHasher() : undefined;
  let received = 0;
  for await (const chunk of res.body) {
    received += chunk.length;
    hasher?.update(chunk);
  }
  const seconds = (performance.now() - t0) / 1000;
  if (received !== SIZE) throw new Error(`${url}: got ${received} bytes, expected ${SIZE}`);
  if (hasher && hasher.digest() !== hash) throw new Error(`${url}: content_hash mismatch`);
  return SIZE / 1e6 / seconds;
}

const median = (xs) => {
  const s = [...xs].sort((a, b) => a - b);
  const mid = s.length >> 1;
  return s.length % 2 ? s[mid] : (s[mid - 1] + s[mid]) / 2;
};
const round = (x) => Math.round(x * 100) / 100;

const dataDir = mkdtempSync(join(tmpdir(), 'dropkey-bench-emu-'));
const home = mkdtempSync(join(tmpdir(), 'dropkey-bench-home-'));
const masterKey = randomBytes(32).toString('base64');
const emulator = startCli(['emulator', '--port', '0', '--data', dataDir], {});
let server;
let bare;
try {
  const emuUrl = await emulator.url;
  const app = { key: `bench${randomBytes(6).toString('hex')}`, secret: randomBytes(12).toString('hex') };
  await check(
    await fetch(`${emuUrl}/_emulator/apps`, {
      method: 'POST',
      headers: { 'Content-Type': 'application/json' },
      body: JSON.stringify({ ...app, name: 'proxy bench', redirect_uris: ['http://127.0.0.1/*'], scopes: ['account_info.read', 'files.metadata.read', 'files.content.read', 'files.content.write'], access: 'full', team: false }),
    }),
    'create app',
  );
  const grant = await check(
    await fetch(`${emuUrl}/_emulator/grants`, {
      method: 'POST',
      headers: { 'Content-Type': 'application/json' },
      body: JSON.stringify({ app: app.key, account: DEMO_ACCOUNT_EMAIL, token_access_type: 'offline' }),
    }),
    'grant',
  ).then((r) => r.json());

  // The server's store: an app, a connection from the grant's refresh token, and a proxy key.
  const env = { DROPKEY_HOME: home, DROPKEY_MASTER_KEY: masterKey, DROPKEY_DROPBOX_URL: emuUrl, DROPKEY_LOG_LEVEL: 'warn' };
  const stores = await openServerStores(await readConfig(env));
  const dk = await Dropkey.open({ store: stores.core, urls: dropboxUrlsFromBase(emuUrl) });
  await dk.addApp({ name: 'bench', key: app.key, secret: app.secret });
  await dk.import({ connection: 'bench', app: 'bench', refreshToken: grant.refresh_token });
  const { key, prefix, hash: keyHash } = generateApiKey();
  await stores.server.createApiKey({ name: 'bench', prefix, hash: keyHash, permissions: ['proxy'], connections: ['bench'], createdBy: 'bench' }, Date.now());
  await dk.close();
  await stores.close();

  server = startCli(['serve', '--port', '0'], env, SERVE_FLAGS);
  const serverUrl = await server.url;
  bare = startBare(emuUrl, grant.access_token);
  const bareUrl = await bare.url;

  console.log(`uploading ${SIZE / MiB} MiB to the emulator...`);
  const hash = await uploadDirect(emuUrl, grant.access_token);
  const direct = [`${emuUrl}/2/files/download`, `Bearer ${grant.access_token}`];
  const proxied = [`${serverUrl}/proxy/bench/2/files/download`, `Bearer ${key}`];
  const floor = [`${bareUrl}/proxy/bench/2/files/download`, 'Bearer unused'];
  // Verification (and warm-up) runs: every path delivers the same bytes.
  await download(...direct, hash);
  await download(...proxied, hash);
  await download(...floor, hash);

  const results = { direct: [], proxy: [], bare: [] };
  const cpu = { proxy: 0, bare: 0 };
  const timed = async (which, pid, args) => {
    const c0 = cpuSeconds(pid);
    results[which].push(await download(...args));
    cpu[which] += cpuSeconds(pid) - c0;
  };
  for (let i = 1; i <= RUNS; i++) {
    results.direct.push(await download(...direct));
    await timed('proxy', server.child.pid, proxied);
    await timed('bare', bare.child.pid, floor);
    console.log(`run ${i}: direct ${results.direct.at(-1).toFixed(1)} MB/s, dropkey proxy ${results.proxy.at(-1).toFixed(1)} MB/s, bare pipe ${results.bare.at(-1).toFixed(1)} MB/s`);
  }
  const d = median(results.direct);
  const p = median(results.proxy);
  const b = median(results.bare);
  const summary = {
    bench: 'serve-proxy',
    size_bytes: SIZE,
    runs: RUNS,
    direct_MBps: round(d),
    proxy_MBps: round(p),
    bare_proxy_MBps: round(b),
    ratio: round(p / d),
    ratio_vs_bare: round(p / b),
    // CPU the proxy process spends per GiB moved: what decides throughput when the CPUs are shared.
    proxy_cpu_s_per_GiB: round(cpu.proxy / ((RUNS * SIZE) / 2 ** 30)),
    bare_cpu_s_per_GiB: round(cpu.bare / ((RUNS * SIZE) / 2 ** 30)),
    goal_ratio: GOAL,
    ok: p / d >= GOAL,
    server_peak_rss_MB: round(peakRssMB(server.child.pid)),
    serve_node_flags: SERVE_FLAGS.join(' '),
    node: process.version,
  };
  console.log(JSON.stringify(summary));
  process.exitCode = summary.ok ? 0 : 1;
} finally {
  if (bare) await stop(bare.child);
  if (server) await stop(server.child);
  await stop(emulator.child);
  rmSync(dataDir, { recursive: true, force: true });
  rmSync(home, { recursive: true, force: true });
}

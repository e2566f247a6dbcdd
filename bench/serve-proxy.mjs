#!/usr/bin/env node
// The proxy against the usual alternative and against no proxy at all: a large file moved
// through `dropkey serve`'s proxy (/proxy/{connection}/2/...), through nginx `proxy_pass` injecting the same
// Authorization header, through a bare node:http pipe, and straight to the emulator, for download AND upload.
// Goals: dropkey >= 1.0x nginx and >= 0.9x direct, each direction, with the server's memory bounded.
//
//   npm run build && node bench/serve-proxy.mjs [--size-mib 256] [--upload-chunk-mib 64] [--runs 3] [--only upload|download]
//                                             [--nginx PATH | --no-nginx] [--nginx-buffer-kib N] [--serve-node-flags=...]
//
// Every path gets the same requests: downloads with files/download, uploads as one upload session (start,
// append_v2 calls of --upload-chunk-mib, finish). Runs alternate the paths (direct, dropkey, nginx, bare), so
// drift on a shared machine hits all alike; every byte is checked once per path (untimed), and every timed upload
// is checked by the content_hash its finish returns. nginx is Debian's (nginx-light), started here as a
// foreground single process with its own prefix, config and temp directories on a loopback port; without it the
// nginx comparison is skipped and the JSON line says why. Besides each proxy's CPU per GiB it reports its minor
// page faults per GiB (fresh memory touched: Node's HTTP parser copies every body chunk into a new buffer, so this
// moves with the allocator's behaviour and decides much of the CPU) and the emulator's CPU per GiB on each path
// (the same work whatever the path: the direct path is the fair reference only if this stays level).
// Last line: JSON (see bench/README.md, "serve-proxy").
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { request as httpRequest } from 'node:http';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { cpuSeconds, machine, machineTicks, median, peakRssMB, rssMB, stop, which } from './lib.mjs';
import { cpus } from 'node:os';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const { values } = parseArgs({
  options: {
    'size-mib': { type: 'string', default: '256' },
    'upload-chunk-mib': { type: 'string', default: '64' },
    runs: { type: 'string', default: '3' },
    // Which directions to time: both (default), download or upload.
    only: { type: 'string', default: '' },
    nginx: { type: 'string', default: '' },
    // nginx's buffer for each direction in KiB (proxy_buffer_size, client_body_buffer_size); default: nginx's own.
    'nginx-buffer-kib': { type: 'string', default: '' },
    'no-nginx': { type: 'boolean', default: false },
    // Node/V8 flags for the server process, e.g. "--initial-old-space-size=64" (see bench/README.md).
    'serve-node-flags': { type: 'string', default: '' },
  },
});
const SERVE_FLAGS = values['serve-node-flags'].split(/\s+/).filter(Boolean);
const MiB = 1024 * 1024;
const SIZE = Number(values['size-mib']) * MiB;
const UPLOAD_CHUNK = Number(values['upload-chunk-mib']) * MiB;
const RUNS = Number(values.runs);
const DIRS = values.only === '' ? ['download', 'upload'] : [values.only];
if (!DIRS.every((d) => d === 'download' || d === 'upload')) throw new Error('--only takes download or upload');
const GOALS = { vs_nginx_min: 1.0, vs_direct_min: 0.9 };
const BUFFER_KIB = values['nginx-buffer-kib'] === '' ? null : Number(values['nginx-buffer-kib']);
if (BUFFER_KIB !== null && !(Number.isInteger(BUFFER_KIB) && BUFFER_KIB > 0)) throw new Error('--nginx-buffer-kib must be a positive whole number');
if (!(SIZE > 0 && RUNS > 0 && UPLOAD_CHUNK > 0 && UPLOAD_CHUNK <= 150 * MiB)) {
  console.error('usage: node bench/serve-proxy.mjs [--size-mib N] [--upload-chunk-mib 1..150] [--runs N] [--nginx PATH | --no-nginx]');
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

/** Resolves with the URL from a child's "... listening on URL" line. */
function listening(child, what) {
  return new Promise((resolve, reject) => {
    createInterface({ input: child.stdout }).on('line', (line) => {
      const m = /listening on (http\S+)/.exec(line);
      if (m) resolve(m[1]);
    });
    child.once('exit', (code) => reject(new Error(`${what} exited early (code ${code})`)));
  });
}

/** Starts the built CLI and resolves with the URL from its "... listening on URL" line. */
function startCli(args, env, nodeFlags = []) {
  const child = spawn(process.execPath, [...nodeFlags, join(root, 'dist/cli/main.js'), ...args], {
    stdio: ['ignore', 'pipe', 'inherit'],
    env: { ...process.env, ...env },
  });
  return { child, url: listening(child, args[0]) };
}

/** A bare node:http pipe proxy to the emulator, injecting the token like dropkey does: any Node proxy's floor. */
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
  return { child, url: listening(child, 'bare proxy') };
}

/** A free loopback port (nginx cannot listen on port 0 and say which one it got). */
function freePort() {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });
}

/**
 * nginx as a reverse proxy for /proxy/bench/ → the emulator with the access token injected: HTTP/1.1 and
 * keep-alive to the upstream, and streaming both ways (proxy_request_buffering off, proxy_buffering off), which
 * is how nginx is set up in front of a large-file API; with buffering on it spools bodies through temp files.
 */
async function startNginx(bin, target, token) {
  const prefix = mkdtempSync(join(tmpdir(), 'dropkey-bench-nginx-'));
  for (const d of ['client_body', 'proxy', 'fastcgi', 'uwsgi', 'scgi']) mkdirSync(join(prefix, d));
  const t = new URL(target);
  const port = await freePort();
  const conf = `
daemon off;
master_process off;
worker_processes 1;
error_log stderr warn;
pid ${prefix}/nginx.pid;
events { worker_connections 1024; }
http {
  access_log off;
  client_body_temp_path ${prefix}/client_body;
  proxy_temp_path ${prefix}/proxy;
  fastcgi_temp_path ${prefix}/fastcgi;
  uwsgi_temp_path ${prefix}/uwsgi;
  scgi_temp_path ${prefix}/scgi;
  upstream emulator { server ${t.host}; keepalive 16; }
  server {
    listen 127.0.0.1:${port};
    client_max_body_size 0;
    location = /ready { return 204; }
    location /proxy/bench/ {
      proxy_pass http://emulator/;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_set_header Host ${t.host};
      proxy_set_header Authorization "Bearer ${token}";
      proxy_request_buffering off;
      proxy_buffering off;${BUFFER_KIB ? `
      proxy_buffer_size ${BUFFER_KIB}k;
      proxy_buffers 4 ${BUFFER_KIB}k;
      proxy_busy_buffers_size ${BUFFER_KIB}k;
      client_body_buffer_size ${BUFFER_KIB}k;` : ''}
      proxy_read_timeout 300s;
      proxy_send_timeout 300s;
    }
  }
}
`;
  writeFileSync(join(prefix, 'nginx.conf'), conf, { mode: 0o600 });
  const child = spawn(bin, ['-p', prefix, '-c', join(prefix, 'nginx.conf'), '-e', 'stderr'], { stdio: ['ignore', 'inherit', 'inherit'] });
  const url = `http://127.0.0.1:${port}`;
  // Ready when it answers (any status): poll briefly, fail if it exits.
  let exited = null;
  child.once('exit', (code) => (exited = code));
  for (let i = 0; ; i++) {
    const fail = (why) => {
      child.kill('SIGKILL');
      rmSync(prefix, { recursive: true, force: true });
      return new Error(why);
    };
    if (exited !== null) throw fail(`nginx exited (code ${exited}): see its message above`);
    const ok = await fetch(`${url}/ready`).then((r) => r.status === 204, () => false);
    if (ok) break;
    if (i > 100) throw fail('nginx did not start listening within 5 s');
    await new Promise((r) => setTimeout(r, 50));
  }
  return { child, url, prefix, version: await nginxVersion(bin) };
}

function nginxVersion(bin) {
  return new Promise((resolve) => {
    const p = spawn(bin, ['-v'], { stdio: ['ignore', 'ignore', 'pipe'] });
    let out = '';
    p.stderr.on('data', (d) => (out += d));
    p.once('exit', () => resolve(/nginx\/(\S+)/.exec(out)?.[1] ?? 'unknown'));
    p.once('error', () => resolve('unknown'));
  });
}

async function check(res, what) {
  if (res.ok) return res;
  throw new Error(`${what}: HTTP ${res.status} ${await res.text()}`);
}

// The upload content: one chunk-sized pattern buffer, its first 4 bytes set to the chunk's index, so the same
// bytes (and content_hash) go up every time without holding the whole file in memory.
const pattern = Buffer.alloc(Math.min(UPLOAD_CHUNK, SIZE));
for (let i = 0; i + 4 <= pattern.length; i += 4) pattern.writeUInt32LE((Math.imul(i, 2654435761) ^ (i >>> 7)) >>> 0, i);
function* uploadChunks() {
  for (let offset = 0, n = 0; offset < SIZE; n++) {
    const part = pattern.subarray(0, Math.min(UPLOAD_CHUNK, SIZE - offset));
    part.writeUInt32LE(n, 0);
    yield { offset, part };
    offset += part.length;
  }
}
const expectedHash = (() => {
  const h = new ContentHasher();
  for (const { part } of uploadChunks()) h.update(part);
  return h.digest();
})();

/**
 * One POST on a connection of its own (`agent: false`): no keep-alive socket that the server may be closing as a
 * request goes out (Node servers drop idle ones after 5 s, and on a busy machine fetch's pool lost that race, with
 * EPIPE in the middle of a 64 MiB body). A new loopback connection per request costs nothing next to the body.
 * Resolves with the answer (node:http IncomingMessage) once its headers arrive.
 */
function post(url, headers, body) {
  const u = new URL(url);
  return new Promise((resolve, reject) => {
    const req = httpRequest(
      { host: u.hostname, port: u.port, path: `${u.pathname}${u.search}`, method: 'POST', agent: false, headers: { ...headers, 'Content-Length': body.length } },
      resolve,
    );
    req.on('error', reject);
    req.end(body);
  });
}

/** Reads an answer's body whole (small answers: JSON), or throws with its status and text. */
async function readAnswer(res, what) {
  const chunks = [];
  for await (const c of res) chunks.push(c);
  const text = Buffer.concat(chunks).toString();
  if (res.statusCode !== 200) throw new Error(`${what}: HTTP ${res.statusCode} ${text.slice(0, 500)}`);
  return JSON.parse(text);
}

/** One upload session of SIZE bytes through `base` (…/2); returns MB/s; checks the committed size and hash. */
async function upload(base, authorization, path) {
  const t0 = performance.now();
  const call = async (route, arg, body) =>
    readAnswer(
      await post(`${base}/2/${route}`, { Authorization: authorization, 'Content-Type': 'application/octet-stream', 'Dropbox-API-Arg': JSON.stringify(arg) }, body),
      `${base} ${route}`,
    );
  const { session_id } = await call('files/upload_session/start', {}, Buffer.alloc(0));
  for (const { offset, part } of uploadChunks()) await call('files/upload_session/append_v2', { cursor: { session_id, offset } }, part);
  const meta = await call('files/upload_session/finish', { cursor: { session_id, offset: SIZE }, commit: { path, mode: 'overwrite' } }, Buffer.alloc(0));
  const seconds = (performance.now() - t0) / 1000;
  if (meta.content_hash !== expectedHash || meta.size !== SIZE) throw new Error(`${base}: upload mismatch: ${JSON.stringify(meta)}`);
  return SIZE / 1e6 / seconds;
}

/** One download; returns MB/s. With `verify`, also checks the bytes against the upload's content_hash. */
async function download(base, authorization, verify = false) {
  const t0 = performance.now();
  const res = await post(`${base}/2/files/download`, { Authorization: authorization, 'Dropbox-API-Arg': JSON.stringify({ path: '/bench/proxy.bin' }) }, Buffer.alloc(0));
  if (res.statusCode !== 200) await readAnswer(res, `${base} download`);
  const hasher = verify ? new ContentHasher() : undefined;
  let received = 0;
  for await (const chunk of res) {
    received += chunk.length;
    hasher?.update(chunk);
  }
  const seconds = (performance.now() - t0) / 1000;
  if (received !== SIZE) throw new Error(`${base}: got ${received} bytes, expected ${SIZE}`);
  if (hasher && hasher.digest() !== expectedHash) throw new Error(`${base}: content_hash mismatch`);
  return SIZE / 1e6 / seconds;
}

const round = (x) => (Number.isFinite(x) ? Math.round(x * 100) / 100 : null);

const dataDir = mkdtempSync(join(tmpdir(), 'dropkey-bench-emu-'));
const home = mkdtempSync(join(tmpdir(), 'dropkey-bench-home-'));
const masterKey = randomBytes(32).toString('base64');
const emulator = startCli(['emulator', '--port', '0', '--data', dataDir], {});
let server;
let bare;
let nginx;
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
  let nginxSkipped;
  const nginxBin = values['no-nginx'] ? null : values.nginx || which('nginx', ['/usr/sbin', '/usr/local/sbin']);
  if (values['no-nginx']) nginxSkipped = '--no-nginx';
  else if (!nginxBin) nginxSkipped = 'nginx is not installed (apt-get install nginx-light)';
  else nginx = await startNginx(nginxBin, emuUrl, grant.access_token);

  const paths = {
    direct: { base: emuUrl, auth: `Bearer ${grant.access_token}` },
    dropkey: { base: `${serverUrl}/proxy/bench`, auth: `Bearer ${key}`, pid: server.child.pid },
    ...(nginx ? { nginx: { base: `${nginx.url}/proxy/bench`, auth: 'Bearer unused', pid: nginx.child.pid } } : {}),
    bare: { base: `${bareUrl}/proxy/bench`, auth: 'Bearer unused', pid: bare.child.pid },
  };
  const names = Object.keys(paths);

  console.log(`uploading ${SIZE / MiB} MiB to the emulator, then checking every path both ways...`);
  await upload(emuUrl, paths.direct.auth, '/bench/proxy.bin');
  // Verification (and warm-up) runs: every path moves the same bytes both ways.
  for (const n of names) {
    const what = (dir) => (err) => {
      throw new Error(`${dir} through ${n} failed: ${err.message}${err.cause ? ` (${err.cause.message})` : ''}`);
    };
    await download(paths[n].base, paths[n].auth, true).catch(what('download'));
    await upload(paths[n].base, paths[n].auth, `/bench/up-${n}.bin`).catch(what('upload'));
  }

  const results = { download: {}, upload: {} };
  const cpu = { download: {}, upload: {} };
  // The emulator's CPU on each path: it is the same work whichever path the bytes came by, so a difference here
  // means the path changed how the emulator reads or writes (chunk sizes, wake-ups), not what it does.
  const emuCpu = { download: {}, upload: {} };
  const faults = { download: {}, upload: {} };
  // This process's own CPU (the client: it sends and reads every byte) and the cores the whole machine left idle.
  const clientCpu = { download: {}, upload: {} };
  const idleCores = { download: {}, upload: {} };
  const minflt = (pid) => Number(readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1].split(' ')[7]);
  for (const dir of ['download', 'upload']) for (const n of names) ((results[dir][n] = []), (cpu[dir][n] = 0), (emuCpu[dir][n] = 0), (faults[dir][n] = 0), (clientCpu[dir][n] = 0), (idleCores[dir][n] = []));
  const timed = async (dir, n) => {
    const p = paths[n];
    const c0 = p.pid ? cpuSeconds(p.pid) : 0;
    const e0 = cpuSeconds(emulator.child.pid);
    const f0 = p.pid ? minflt(p.pid) : 0;
    const u0 = process.cpuUsage();
    const [idle0, total0] = machineTicks();
    results[dir][n].push(dir === 'download' ? await download(p.base, p.auth) : await upload(p.base, p.auth, `/bench/up-${n}.bin`));
    const u1 = process.cpuUsage(u0);
    clientCpu[dir][n] += (u1.user + u1.system) / 1e6;
    const [idle1, total1] = machineTicks();
    idleCores[dir][n].push(((idle1 - idle0) / (total1 - total0)) * cpus().length);
    if (p.pid) cpu[dir][n] += cpuSeconds(p.pid) - c0;
    emuCpu[dir][n] += cpuSeconds(emulator.child.pid) - e0;
    if (p.pid) faults[dir][n] += minflt(p.pid) - f0;
  };
  for (let i = 1; i <= RUNS; i++) {
    // Rotate the order each run so no path always follows the same one.
    const order = names.map((_, j) => names[(j + i - 1) % names.length]);
    for (const dir of DIRS) {
      for (const n of order) await timed(dir, n);
      console.log(`run ${i} ${dir.padEnd(8)} ${names.map((n) => `${n} ${results[dir][n].at(-1).toFixed(1)}`).join(', ')} MB/s`);
    }
  }
  const gib = (RUNS * SIZE) / 2 ** 30;
  const side = (dir) => {
    const m = Object.fromEntries(names.map((n) => [n, median(results[dir][n])]));
    return {
      MBps: Object.fromEntries(names.map((n) => [n, round(m[n])])),
      ratio_vs_direct: round(m.dropkey / m.direct),
      ratio_vs_nginx: nginx ? round(m.dropkey / m.nginx) : null,
      ratio_vs_bare: round(m.dropkey / m.bare),
      // CPU each proxy process spent per GiB moved: what decides throughput when the CPUs are shared.
      cpu_s_per_GiB: Object.fromEntries(names.filter((n) => paths[n].pid).map((n) => [n, round(cpu[dir][n] / gib)])),
      minor_faults_per_GiB: Object.fromEntries(names.filter((n) => paths[n].pid).map((n) => [n, Math.round(faults[dir][n] / gib)])),
      emulator_cpu_s_per_GiB: Object.fromEntries(names.map((n) => [n, round(emuCpu[dir][n] / gib)])),
      client_cpu_s_per_GiB: Object.fromEntries(names.map((n) => [n, round(clientCpu[dir][n] / gib)])),
      // Cores the machine left idle during each path's runs (median): near 0 on the direct path means the direct
      // path alone kept every core busy, and a proxy can only be as fast as the CPU it adds allows (below).
      idle_cores: Object.fromEntries(names.map((n) => [n, round(median(idleCores[dir][n]))])),
      // When every core is busy, throughput is cores / CPU per GiB: the ratio to direct the CPU budget allows a proxy
      // path, from its own CPU per GiB (proxy + emulator + client) against the direct path's (emulator + client).
      cpu_bound_ratio_vs_direct: Object.fromEntries(
        names.filter((n) => paths[n].pid).map((n) => [n, round((emuCpu[dir].direct + clientCpu[dir].direct) / (cpu[dir][n] + emuCpu[dir][n] + clientCpu[dir][n]))]),
      ),
    };
  };
  const download_ = DIRS.includes('download') ? side('download') : null;
  const upload_ = DIRS.includes('upload') ? side('upload') : null;
  const met = (s) => s.ratio_vs_direct >= GOALS.vs_direct_min && (s.ratio_vs_nginx === null || s.ratio_vs_nginx >= GOALS.vs_nginx_min);
  const summary = {
    bench: 'serve-proxy',
    size_bytes: SIZE,
    upload_chunk_bytes: UPLOAD_CHUNK,
    runs: RUNS,
    download: download_,
    upload: upload_,
    nginx: nginx
      ? { version: nginx.version, buffer_kib: BUFFER_KIB ?? 'default', peak_rss_MB: peakRssMB(nginx.child.pid) }
      : { skipped: nginxSkipped },
    server_peak_rss_MB: peakRssMB(server.child.pid),
    server_rss_MB: rssMB(server.child.pid),
    goals: GOALS,
    ok: [download_, upload_].every((s) => s === null || met(s)),
    serve_node_flags: SERVE_FLAGS.join(' '),
    ...machine(),
    node: process.version,
  };
  console.log(JSON.stringify(summary));
  process.exitCode = summary.ok ? 0 : 1;
} finally {
  if (nginx) {
    await stop(nginx.child);
    rmSync(nginx.prefix, { recursive: true, force: true });
  }
  if (bare) await stop(bare.child);
  if (server) await stop(server.child);
  await stop(emulator.child);
  rmSync(dataDir, { recursive: true, force: true });
  rmSync(home, { recursive: true, force: true });
}

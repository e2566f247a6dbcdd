#!/usr/bin/env node
/**
 * Token hand-out throughput of `dropkey serve` vs a bare node:http server returning the same JSON body (bench/README.md). Goal: dropkey >= 0.7x the bare server's requests/second, and p99 <= 5 ms, at 64 connections.
 *
 *   npm run build && node bench/serve-token.mjs [--duration-s 5] [--connections 64] [--runs 3]
 *
 * See bench/README.md ("serve-token"). The last line of output is a JSON summary.
 */
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { once } from 'node:events';
import { parseArgs } from 'node:util';
import { fileURLToPath } from 'node:url';
import { load as loadWith, log, median, startChild as startChildIn, stop } from './lib.mjs';

const root = fileURLToPath(new URL('..', import.meta.url));
const { values } = parseArgs({
  options: {
    'duration-s': { type: 'string', default: '5' },
    'warmup-s': { type: 'string', default: '2' },
    connections: { type: 'string', default: '64' },
    runs: { type: 'string', default: '3' },
    // The build to run, relative to the repository (default dist/, what `npm run build` makes).
    dist: { type: 'string', default: 'dist' },
  },
});
const DIST = values.dist.replace(/\/+$/, '');
const DURATION_MS = Number(values['duration-s']) * 1000;
const WARMUP_MS = Number(values['warmup-s']) * 1000;
const CONNECTIONS = Number(values.connections);
const RUNS = Number(values.runs);
for (const [k, v] of [['duration-s', DURATION_MS], ['connections', CONNECTIONS], ['runs', RUNS]]) {
  if (!Number.isFinite(v) || v <= 0) throw new Error(`--${k} must be a positive number`);
}

const startChild = (args, env, re) => startChildIn(root, args, env, re);
const load = (url, headers, expectBody) => loadWith(url, headers, expectBody, { connections: CONNECTIONS, warmupMs: WARMUP_MS, durationMs: DURATION_MS });


async function main() {
  const home = mkdtempSync(join(tmpdir(), 'dropkey-bench-serve-'));
  const masterKey = randomBytes(32).toString('base64');
  const { DEMO_ACCOUNT_EMAIL } = await import(`${root}${DIST}/emulator/index.js`);
  const { Dropkey, dropboxUrlsFromBase } = await import(`${root}${DIST}/index.js`);
  // A separate emulator process: it only answers the first refresh, but must not share the generator's CPU.
  const emu = await startChild([`${DIST}/cli/main.js`, 'emulator', '--port', '0'], {}, /(http:\/\/127\.0\.0\.1:\d+)/);
  const emuUrl = emu.match[1];
  const children = [emu.child];
  try {
    const control = (path, body) =>
      fetch(`${emuUrl}/_emulator/${path}`, { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify(body) });
    const appKey = `bench${randomBytes(6).toString('hex')}`;
    const appSecret = randomBytes(12).toString('hex');
    const appRes = await control('apps', { key: appKey, secret: appSecret, name: 'bench', redirect_uris: ['http://127.0.0.1/*'], scopes: ['account_info.read', 'files.metadata.read'], access: 'full', team: false });
    if (!appRes.ok) throw new Error(`emulator app: ${appRes.status} ${await appRes.text()}`);
    const grantRes = await control('grants', { app: appKey, account: DEMO_ACCOUNT_EMAIL, token_access_type: 'offline' });
    if (!grantRes.ok) throw new Error(`grant failed: ${grantRes.status} ${await grantRes.text()}`);
    const grant = await grantRes.json();
    const dk = await Dropkey.open({ home, masterKey, urls: dropboxUrlsFromBase(emuUrl) });
    await dk.addApp({ name: 'demo', key: appKey, secret: appSecret });
    await dk.import({ connection: 'bench', app: 'demo', refreshToken: grant.refresh_token });
    await dk.close();
    const env = { DROPKEY_HOME: home, DROPKEY_MASTER_KEY: masterKey, DROPKEY_DROPBOX_URL: emuUrl, DROPKEY_LOG_LEVEL: 'warn' };
    const keyProc = spawn(process.execPath, [`${DIST}/cli/main.js`, 'apikey', 'create', '--name', 'bench', '--permission', 'token:read', '--connection', 'bench'], { cwd: root, env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'inherit'] });
    let key = '';
    keyProc.stdout.on('data', (d) => (key += d));
    await once(keyProc, 'exit');
    key = key.trim();
    if (!/^dk_/.test(key)) throw new Error('apikey create printed no key');

    // DROPKEY_BENCH_NODE_ARGS: extra node flags for the server only (e.g. "--cpu-prof --cpu-prof-dir=/tmp/prof").
    const nodeArgs = (process.env['DROPKEY_BENCH_NODE_ARGS'] ?? '').split(' ').filter(Boolean);
    const serve = await startChild([...nodeArgs, `${DIST}/cli/main.js`, 'serve', '--port', '0'], env, /^dropkey serve listening on (http:\/\/\S+)$/);
    children.push(serve.child);
    const serveUrl = `${serve.match[1]}/api/v1/connections/bench/token`;
    const headers = { Authorization: `Bearer ${key}` };
    const first = await fetch(serveUrl, { headers });
    const body = await first.text();
    if (first.status !== 200) throw new Error(`token endpoint answered ${first.status}: ${body}`);

    // The floor: a bare node:http server in its own process, answering the same JSON body with the same headers
    // a client needs (type and length), nothing else.
    const floorSrc = `
      const http = require('node:http');
      const body = Buffer.from(process.env.BODY);
      const s = http.createServer((req, res) => { res.writeHead(200, { 'Content-Type': 'application/json', 'Content-Length': body.length }); res.end(body); });
      s.keepAliveTimeout = 65000;
      s.listen(0, '127.0.0.1', () => console.log('floor listening on http://127.0.0.1:' + s.address().port));
      process.on('SIGTERM', () => process.exit(0));`;
    const floor = await startChild(['-e', floorSrc], { BODY: body }, /(http:\/\/127\.0\.0\.1:\d+)/);
    children.push(floor.child);
    const floorUrl = `${floor.match[1]}/api/v1/connections/bench/token`;

    const results = { floor: [], dropkey: [] };
    for (let i = 0; i < RUNS; i++) {
      const f = await load(floorUrl, headers, body);
      log(`run ${i + 1} floor:   ${f.rps} rps, p50 ${f.p50_ms} ms, p99 ${f.p99_ms} ms, errors ${f.errors}`);
      results.floor.push(f);
      const d = await load(serveUrl, headers, body);
      log(`run ${i + 1} dropkey: ${d.rps} rps, p50 ${d.p50_ms} ms, p99 ${d.p99_ms} ms, errors ${d.errors}`);
      results.dropkey.push(d);
    }
    const summarize = (rs) => ({ rps: median(rs.map((r) => r.rps)), p99_ms: median(rs.map((r) => r.p99_ms)), p50_ms: median(rs.map((r) => r.p50_ms)), errors: rs.reduce((a, r) => a + r.errors, 0) });
    const fl = summarize(results.floor);
    const dk2 = summarize(results.dropkey);
    const ratio = +(dk2.rps / fl.rps).toFixed(3);
    const summary = {
      bench: 'serve-token',
      connections: CONNECTIONS,
      duration_s: DURATION_MS / 1000,
      runs: RUNS,
      floor: fl,
      dropkey: dk2,
      ratio,
      goals: { ratio_min: 0.7, p99_max_ms: 5 },
      met: ratio >= 0.7 && dk2.p99_ms <= 5 && dk2.errors === 0,
      node: process.version,
    };
    console.log(JSON.stringify(summary));
    process.exitCode = summary.met ? 0 : 1;
  } finally {
    for (const c of children.reverse()) await stop(c);
    rmSync(home, { recursive: true, force: true });
  }
}

await main();

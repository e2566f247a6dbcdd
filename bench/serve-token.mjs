#!/usr/bin/env node
/**
 * Token hand-out of `dropkey serve` (GET /api/v1/connections/{name}/token) against the floor: a bare node:http
 * server in its own process doing the same bearer check and sending the same answer.
 * Goals: dropkey >= 0.8x the floor's requests/second, and its p99 <= 1.3x the floor's.
 *
 *   npm run build && node bench/serve-token.mjs [--duration-s 5] [--warmup-s 2] [--connections 64] [--runs 5]
 *                                               [--generator auto|wrk|autocannon] [--threads 1] [--pin 0:1]
 *
 * See bench/README.md ("serve-token"). The last line of output is a JSON summary; exit status 1 when a goal is
 * missed, 2 when the generator saturated or held the floor back (no ratio is printed then).
 */
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { once } from 'node:events';
import { parseArgs } from 'node:util';
import { fileURLToPath } from 'node:url';
import { generatorReport, log, machine, measure, paceOf, parsePin, pickGenerator, pin, rawGet, round, startChild as startChildIn, stop, summarize } from './lib.mjs';

const root = fileURLToPath(new URL('..', import.meta.url));
const { values } = parseArgs({
  options: {
    'duration-s': { type: 'string', default: '5' },
    'warmup-s': { type: 'string', default: '2' },
    connections: { type: 'string', default: '64' },
    runs: { type: 'string', default: '5' },
    generator: { type: 'string', default: 'auto' },
    threads: { type: 'string', default: '1' },
    // SERVER_CPUS:GENERATOR_CPUS, e.g. 0:1: both servers on the first, the generator on the second (taskset).
    pin: { type: 'string', default: '' },
    // The build to run, relative to the repository (default dist/, what `npm run build` makes).
    dist: { type: 'string', default: 'dist' },
  },
});
const DIST = values.dist.replace(/\/+$/, '');
const DURATION_S = Number(values['duration-s']);
const WARMUP_S = Number(values['warmup-s']);
const CONNECTIONS = Number(values.connections);
const RUNS = Number(values.runs);
const THREADS = Number(values.threads);
for (const [k, v] of [['duration-s', DURATION_S], ['connections', CONNECTIONS], ['runs', RUNS], ['threads', THREADS]]) {
  if (!Number.isInteger(v) || v <= 0) throw new Error(`--${k} must be a positive whole number`);
}
if (!Number.isInteger(WARMUP_S) || WARMUP_S < 0) throw new Error('--warmup-s must be a whole number');
const GOALS = { ratio_min: 0.8, p99_ratio_max: 1.3 };

const startChild = (args, env, re) => startChildIn(root, args, env, re);

/**
 * The floor: the least any Node service can do to give the same answer. Same bearer check as dropkey's
 * (Authorization: Bearer <key>, the key's shape, SHA-256 of the key compared in constant time with the stored
 * hash), then the same status, headers and body, written with one writeHead/end.
 */
const FLOOR = `
const http = require('node:http');
const { createHash, timingSafeEqual } = require('node:crypto');
const body = Buffer.from(process.env.BODY);
const headers = { ...JSON.parse(process.env.HEADERS), 'Content-Length': body.length };
const want = Buffer.from(process.env.KEY_SHA256, 'hex');
const KEY = /^dk_[A-Za-z0-9_-]{43}$/;
const s = http.createServer((req, res) => {
  const m = /^Bearer[ ]+(\\S+)\\s*$/i.exec(req.headers.authorization ?? '');
  if (!m || !KEY.test(m[1]) || !timingSafeEqual(createHash('sha256').update(m[1]).digest(), want)) {
    res.writeHead(401, { 'Content-Type': 'application/json' });
    return res.end('{"error":{"code":"DROPKEY_UNAUTHORIZED"}}');
  }
  res.writeHead(200, headers);
  res.end(body);
});
s.keepAliveTimeout = 65000;
s.listen(0, '127.0.0.1', () => console.log('floor listening on http://127.0.0.1:' + s.address().port));
process.on('SIGTERM', () => process.exit(0));`;

async function main() {
  const pinning = parsePin(values.pin);
  const gen = pickGenerator(values.generator, THREADS, pinning?.generator);
  const home = mkdtempSync(join(tmpdir(), 'dropkey-bench-serve-'));
  const masterKey = randomBytes(32).toString('base64');
  const { DEMO_ACCOUNT_EMAIL } = await import(`${root}${DIST}/emulator/index.js`);
  const { Dropkey, dropboxUrlsFromBase } = await import(`${root}${DIST}/index.js`);
  // A separate emulator process: it only answers the first refresh, but must not share the benchmark's CPU.
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
    // Background jobs stay on, as in production: with one connection they have next to nothing to do.
    const env = { DROPKEY_HOME: home, DROPKEY_MASTER_KEY: masterKey, DROPKEY_DROPBOX_URL: emuUrl, DROPKEY_LOG_LEVEL: 'warn' };
    const keyProc = spawn(process.execPath, [`${DIST}/cli/main.js`, 'apikey', 'create', '--name', 'bench', '--permission', 'token:read', '--connection', 'bench'], { cwd: root, env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'inherit'] });
    let key = '';
    keyProc.stdout.on('data', (d) => (key += d));
    await once(keyProc, 'exit');
    key = key.trim();
    if (!/^dk_/.test(key)) throw new Error('apikey create printed no key');
    const authorization = `Bearer ${key}`;

    // DROPKEY_BENCH_NODE_ARGS: extra node flags for the server only (e.g. "--cpu-prof --cpu-prof-dir=/tmp/prof").
    const nodeArgs = (process.env['DROPKEY_BENCH_NODE_ARGS'] ?? '').split(' ').filter(Boolean);
    const serve = await startChild([...nodeArgs, `${DIST}/cli/main.js`, 'serve', '--port', '0'], env, /^dropkey serve listening on (http:\/\/\S+)$/);
    children.push(serve.child);
    const serveUrl = `${serve.match[1]}/api/v1/connections/bench/token`;
    const first = await fetch(serveUrl, { headers: { Authorization: authorization } });
    const body = await first.text();
    if (first.status !== 200) throw new Error(`token endpoint answered ${first.status}: ${body}`);
    // The floor answers with dropkey's own headers (security headers, Cache-Control, type): the same answer.
    const transport = new Set(['date', 'connection', 'keep-alive', 'content-length', 'transfer-encoding']);
    const headers = Object.fromEntries([...first.headers].filter(([k]) => !transport.has(k)));
    const { createHash } = await import('node:crypto');
    // DROPKEY_BENCH_FLOOR_NODE_ARGS: the same for the floor, to compare profiles.
    const floorArgs = (process.env['DROPKEY_BENCH_FLOOR_NODE_ARGS'] ?? '').split(' ').filter(Boolean);
    const floor = await startChild([...floorArgs, '-e', FLOOR], { BODY: body, HEADERS: JSON.stringify(headers), KEY_SHA256: createHash('sha256').update(key).digest('hex') }, /(http:\/\/127\.0\.0\.1:\d+)/);
    children.push(floor.child);
    const floorUrl = `${floor.match[1]}/api/v1/connections/bench/token`;

    // Each side's exact answer on the wire; the floor must also refuse a wrong key like dropkey does.
    const expectServe = await rawGet(serveUrl, authorization);
    const expectFloor = await rawGet(floorUrl, authorization);
    // The same answer, but for expires_in, which dropkey counts down each second (same length: 5 digits for hours).
    const masked = (b) => b.replace(/"expires_in":\d+/, '"expires_in":0');
    if (expectServe.size !== expectFloor.size || masked(expectServe.body) !== masked(body) || expectFloor.body !== body) throw new Error('the floor and dropkey do not give the same body');
    const wrong = `Bearer dk_${'A'.repeat(43)}`;
    for (const u of [serveUrl, floorUrl]) if ((await rawGet(u, wrong)).status !== 401) throw new Error(`${u} accepted a wrong key`);
    log(`generator: ${gen.tool}${gen.version ? ` ${gen.version}` : ''}, ${gen.threads} thread(s), ${CONNECTIONS} connections; answers ${expectFloor.size} B (floor), ${expectServe.size} B (dropkey)`);

    if (pinning) for (const c of [serve.child, floor.child]) pin(c.pid, pinning.server);
    const sides = {
      floor: { pid: floor.child.pid, url: floorUrl, expect: expectFloor },
      dropkey: { pid: serve.child.pid, url: serveUrl, expect: expectServe },
    };
    const results = { floor: [], dropkey: [] };
    for (let i = 0; i < RUNS; i++) {
      // Alternate which side goes first, so drift on a shared machine does not always favour the same one.
      for (const side of i % 2 === 0 ? ['floor', 'dropkey'] : ['dropkey', 'floor']) {
        const s = sides[side];
        const r = await measure(gen, { ...s, authorization, connections: CONNECTIONS, durationS: DURATION_S, warmupS: WARMUP_S });
        log(`run ${i + 1} ${side.padEnd(7)} ${r.rps} rps, p50 ${r.p50_ms} ms, p99 ${r.p99_ms} ms, errors ${r.errors}, server ${r.server_cpu_cores} cores (${r.server_cpu_us_per_req} µs/request), generator ${r.gen_cpu_cores} cores${r.gen_saturated ? ' SATURATED' : ''}, idle ${r.idle_cores} cores${side === 'floor' ? `, paced by the ${paceOf(r)}` : ''}`);
        results[side].push(r);
      }
    }
    const fl = summarize(results.floor);
    const dr = summarize(results.dropkey);
    const all = [...results.floor, ...results.dropkey];
    const generator = generatorReport(gen, CONNECTIONS, all);
    // The floor's runs say what the comparison measured: a floor held back by its generator measures the generator.
    const paces = results.floor.map(paceOf);
    generator.limited_floor = paces.filter((p) => p === 'generator').length;
    const bound = generator.saturated || generator.limited_floor > RUNS / 2;
    const ratio = round(dr.rps / fl.rps);
    const p99Ratio = round(dr.p99_ms / fl.p99_ms);
    const summary = {
      bench: 'serve-token',
      generator,
      duration_s: DURATION_S,
      runs: RUNS,
      floor: fl,
      dropkey: dr,
      ratio: bound ? null : ratio,
      p99_ratio: bound ? null : p99Ratio,
      // CPU per request, floor / dropkey: what the ratio would be with a core each and nothing else running.
      cpu_ratio: round(fl.server_cpu_us_per_req / dr.server_cpu_us_per_req),
      goals: GOALS,
      floor_paced_by: paces,
      met: !bound && ratio >= GOALS.ratio_min && p99Ratio <= GOALS.p99_ratio_max && fl.errors + dr.errors === 0,
      ...(bound
        ? {
            verdict: generator.saturated
              ? `the generator saturated (${generator.cpu_cores_max} cores for ${gen.threads} thread(s)): it measured itself, not the servers; try --threads 2 or another generator`
              : `the floor was held back by the generator in ${generator.limited_floor} of ${RUNS} runs (under a core with idle cores left): no ratio; try --threads 2 or more --connections`,
          }
        : paces.includes('machine')
          ? { note: 'other work on the machine took CPU from the floor in some runs: compare cpu_ratio, which depends less on it' }
          : {}),
      ...(pinning ? { server_cpus: pinning.server } : {}),
      ...machine(),
      node: process.version,
    };
    console.log(JSON.stringify(summary));
    process.exitCode = bound ? 2 : summary.met ? 0 : 1;
  } finally {
    for (const c of children.reverse()) await stop(c);
    rmSync(home, { recursive: true, force: true });
  }
}

await main();

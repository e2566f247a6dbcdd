#!/usr/bin/env node
/**
 * Token hand-out with many connections (measured only): `GET /api/v1/connections/{name}/token`
 * for one connection vs a random one of --count, on one `dropkey serve`, plus the server's memory with that many
 * connections. Goal: random >= 0.9x single.
 *
 *   npm run build && node bench/token-many.mjs [--count 1000] [--duration-s 5] [--warmup-s 2] [--runs 3]
 *                                              [--connections 64] [--generator auto|wrk|autocannon]
 *
 * Setup imports --count connections from emulator offline grants through the library (16 at a time), then one
 * `token:read` key for all of them. See bench/README.md ("token-many"). Last line: JSON; exit status 1 when the
 * goal is missed, 2 when the generator saturated.
 */
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { once } from 'node:events';
import { parseArgs } from 'node:util';
import { fileURLToPath } from 'node:url';
import { generatorReport, log, machine, measure, peakRssMB, pickGenerator, rawGet, round, rssMB, startChild as startChildIn, stop, summarize } from './lib.mjs';

const root = fileURLToPath(new URL('..', import.meta.url));
const { values } = parseArgs({
  options: {
    count: { type: 'string', default: '1000' },
    'duration-s': { type: 'string', default: '5' },
    'warmup-s': { type: 'string', default: '2' },
    connections: { type: 'string', default: '64' },
    runs: { type: 'string', default: '3' },
    generator: { type: 'string', default: 'auto' },
  },
});
const COUNT = Number(values.count);
const DURATION_S = Number(values['duration-s']);
const WARMUP_S = Number(values['warmup-s']);
const CONNECTIONS = Number(values.connections);
const RUNS = Number(values.runs);
for (const [k, v] of [['count', COUNT], ['duration-s', DURATION_S], ['connections', CONNECTIONS], ['runs', RUNS]]) {
  if (!Number.isInteger(v) || v <= 0) throw new Error(`--${k} must be a positive whole number`);
}
const GOAL = { ratio_min: 0.9 };

async function main() {
  const gen = pickGenerator(values.generator);
  const home = mkdtempSync(join(tmpdir(), 'dropkey-bench-many-'));
  const masterKey = randomBytes(32).toString('base64');
  const { DEMO_ACCOUNT_EMAIL } = await import(`${root}dist/emulator/index.js`);
  const { Dropkey, dropboxUrlsFromBase } = await import(`${root}dist/index.js`);
  const emu = await startChildIn(root, ['dist/cli/main.js', 'emulator', '--port', '0'], {}, /(http:\/\/127\.0\.0\.1:\d+)/);
  const emuUrl = emu.match[1];
  const children = [emu.child];
  try {
    const control = async (path, body) => {
      const r = await fetch(`${emuUrl}/_emulator/${path}`, { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify(body) });
      if (!r.ok) throw new Error(`emulator ${path}: ${r.status} ${await r.text()}`);
      return r.json();
    };
    const appKey = `bench${randomBytes(6).toString('hex')}`;
    const appSecret = randomBytes(12).toString('hex');
    await control('apps', { key: appKey, secret: appSecret, name: 'bench', redirect_uris: ['http://127.0.0.1/*'], scopes: ['account_info.read'], access: 'full', team: false });
    const dk = await Dropkey.open({ home, masterKey, urls: dropboxUrlsFromBase(emuUrl) });
    await dk.addApp({ name: 'demo', key: appKey, secret: appSecret });
    const t0 = performance.now();
    let next = 0;
    await Promise.all(
      Array.from({ length: 16 }, async () => {
        for (let i = next++; i < COUNT; i = next++) {
          const grant = await control('grants', { app: appKey, account: DEMO_ACCOUNT_EMAIL, token_access_type: 'offline' });
          await dk.import({ connection: `c${i}`, app: 'demo', refreshToken: grant.refresh_token });
        }
      }),
    );
    await dk.close();
    log(`${COUNT} connections imported in ${((performance.now() - t0) / 1000).toFixed(1)} s`);
    const env = { DROPKEY_HOME: home, DROPKEY_MASTER_KEY: masterKey, DROPKEY_DROPBOX_URL: emuUrl, DROPKEY_LOG_LEVEL: 'warn' };
    const keyProc = spawn(process.execPath, ['dist/cli/main.js', 'apikey', 'create', '--name', 'bench', '--permission', 'token:read', '--connection', '*'], { cwd: root, env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'inherit'] });
    let key = '';
    keyProc.stdout.on('data', (d) => (key += d));
    await once(keyProc, 'exit');
    key = key.trim();
    if (!/^dk_/.test(key)) throw new Error('apikey create printed no key');
    const authorization = `Bearer ${key}`;

    const serve = await startChildIn(root, ['dist/cli/main.js', 'serve', '--port', '0'], env, /^dropkey serve listening on (http:\/\/\S+)$/);
    children.push(serve.child);
    const base = serve.match[1];
    const rssIdle = rssMB(serve.child.pid);
    // Every connection answers, once (this also warms the token cache the way any first request would).
    const list = Array.from({ length: COUNT }, (_, i) => `/api/v1/connections/c${i}/token`);
    const sizes = new Set();
    for (const p of list) {
      const r = await rawGet(`${base}${p}`, authorization);
      if (r.status !== 200) throw new Error(`${p}: ${r.status} ${r.body}`);
      sizes.add(r.size);
    }
    // Answers differ by token, not by size (same-length tokens and ids), so wrk's byte count still checks them all.
    const expect = sizes.size === 1 ? await rawGet(`${base}${list[0]}`, authorization) : undefined;
    if (!expect) log(`answers have ${sizes.size} different sizes: checking statuses only`);
    const pathsFile = join(home, 'paths.txt');
    writeFileSync(pathsFile, `${list.join('\n')}\n`);
    const paths = { file: pathsFile, list };

    const results = { single: [], random: [] };
    for (let i = 0; i < RUNS; i++) {
      for (const side of i % 2 === 0 ? ['single', 'random'] : ['random', 'single']) {
        const r = await measure(gen, {
          pid: serve.child.pid,
          url: `${base}${list[0]}`,
          authorization,
          connections: CONNECTIONS,
          durationS: DURATION_S,
          warmupS: WARMUP_S,
          ...(expect ? { expect } : {}),
          ...(side === 'random' ? { paths } : {}),
        });
        log(`run ${i + 1} ${side.padEnd(6)} ${r.rps} rps, p50 ${r.p50_ms} ms, p99 ${r.p99_ms} ms, max ${r.max_ms} ms, errors ${r.errors}, server ${r.server_cpu_cores} cores (${r.server_cpu_us_per_req} µs/request), generator ${r.gen_cpu_cores} cores${r.gen_saturated ? ' SATURATED' : ''}`);
        results[side].push(r);
      }
    }
    const single = summarize(results.single);
    const random = summarize(results.random);
    const generator = generatorReport(gen, CONNECTIONS, [...results.single, ...results.random]);
    const ratio = round(random.rps / single.rps);
    const summary = {
      bench: 'token-many',
      count: COUNT,
      generator,
      duration_s: DURATION_S,
      runs: RUNS,
      single,
      random: { ...random, max_ms: Math.max(...results.random.map((r) => r.max_ms)) },
      ratio: generator.saturated ? null : ratio,
      goal: GOAL,
      met: !generator.saturated && ratio >= GOAL.ratio_min && single.errors + random.errors === 0,
      server_rss_MB: { idle: rssIdle, after: rssMB(serve.child.pid), peak: peakRssMB(serve.child.pid) },
      ...machine(),
      node: process.version,
    };
    console.log(JSON.stringify(summary));
    process.exitCode = generator.saturated ? 2 : summary.met ? 0 : 1;
  } finally {
    for (const c of children.reverse()) await stop(c);
    rmSync(home, { recursive: true, force: true });
  }
}

await main();

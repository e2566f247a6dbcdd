#!/usr/bin/env node
/**
 * Token hand-out throughput of `dropkey serve` on the PostgreSQL store vs the SQLite store, in the same run
 * (docs/decisions/0002-postgres-store.md, "A benchmark ... cached tokens should make them close").
 *
 *   npm run build && DROPKEY_TEST_DATABASE_URL=postgres://postgres@127.0.0.1:5432/test node bench/store-compare.mjs \
 *     [--database-url URL] [--duration-s 3] [--warmup-s 1] [--connections 64] [--runs 3]
 *
 * See bench/README.md ("store-compare"). The last line of output is a JSON summary.
 */
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { once } from 'node:events';
import { parseArgs } from 'node:util';
import { fileURLToPath } from 'node:url';
import { generatorReport, log, machine, measure, pickGenerator, rawGet, round, startChild as startChildIn, stop, summarize } from './lib.mjs';

const root = fileURLToPath(new URL('..', import.meta.url));
const { values } = parseArgs({
  options: {
    'database-url': { type: 'string', default: process.env['DROPKEY_TEST_DATABASE_URL'] ?? '' },
    'duration-s': { type: 'string', default: '3' },
    generator: { type: 'string', default: 'auto' },
    'warmup-s': { type: 'string', default: '1' },
    connections: { type: 'string', default: '64' },
    runs: { type: 'string', default: '3' },
  },
});
const DURATION_MS = Number(values['duration-s']) * 1000;
const WARMUP_MS = Number(values['warmup-s']) * 1000;
const CONNECTIONS = Number(values.connections);
const RUNS = Number(values.runs);
for (const [k, v] of [['duration-s', DURATION_MS], ['connections', CONNECTIONS], ['runs', RUNS]]) {
  if (!Number.isFinite(v) || v <= 0) throw new Error(`--${k} must be a positive number`);
}
if (!values['database-url']) {
  console.error('store-compare needs a PostgreSQL server: pass --database-url postgres://... or set DROPKEY_TEST_DATABASE_URL');
  process.exit(2);
}

const startChild = (args, env, re) => startChildIn(root, args, env, re);

async function cli(args, env) {
  const p = spawn(process.execPath, ['dist/cli/main.js', ...args], { cwd: root, env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'inherit'] });
  let out = '';
  p.stdout.on('data', (d) => (out += d));
  const [code] = await once(p, 'exit');
  if (code !== 0) throw new Error(`dropkey ${args[0]} failed (${code})`);
  return out.trim();
}


async function main() {
  const gen = pickGenerator(values.generator);
  const { DEMO_ACCOUNT_EMAIL } = await import(`${root}dist/emulator/index.js`);
  const { Dropkey, dropboxUrlsFromBase } = await import(`${root}dist/index.js`);
  const pg = (await import('pg')).default;
  const emu = await startChild(['dist/cli/main.js', 'emulator', '--port', '0'], {}, /(http:\/\/127\.0\.0\.1:\d+)/);
  const emuUrl = emu.match[1];
  const children = [emu.child];
  const homes = [];
  const schema = `dropkey_bench_${randomBytes(5).toString('hex')}`;
  const base = values['database-url'];
  try {
    const control = async (path, body) => {
      const r = await fetch(`${emuUrl}/_emulator/${path}`, { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify(body) });
      if (!r.ok) throw new Error(`emulator ${path}: ${r.status} ${await r.text()}`);
      return r.json();
    };
    const appKey = `bench${randomBytes(6).toString('hex')}`;
    const appSecret = randomBytes(12).toString('hex');
    await control('apps', { key: appKey, secret: appSecret, name: 'bench', redirect_uris: ['http://127.0.0.1/*'], scopes: ['account_info.read'], access: 'full', team: false });

    // The same setup on each store: app, connection (imported refresh token), token:read key, one server.
    const setups = {};
    for (const kind of ['sqlite', 'postgres']) {
      const home = mkdtempSync(join(tmpdir(), `dropkey-bench-${kind}-`));
      homes.push(home);
      const masterKey = randomBytes(32).toString('base64');
      const databaseUrl = kind === 'postgres' ? `${base}${base.includes('?') ? '&' : '?'}schema=${schema}` : undefined;
      const env = { DROPKEY_HOME: home, DROPKEY_MASTER_KEY: masterKey, DROPKEY_DROPBOX_URL: emuUrl, DROPKEY_LOG_LEVEL: 'warn', DROPKEY_JOBS: 'off', ...(databaseUrl ? { DROPKEY_DATABASE_URL: databaseUrl } : {}) };
      const grant = await control('grants', { app: appKey, account: DEMO_ACCOUNT_EMAIL, token_access_type: 'offline' });
      const dk = await Dropkey.open({ home, masterKey, ...(databaseUrl ? { databaseUrl } : {}), urls: dropboxUrlsFromBase(emuUrl) });
      await dk.addApp({ name: 'demo', key: appKey, secret: appSecret });
      await dk.import({ connection: 'bench', app: 'demo', refreshToken: grant.refresh_token });
      await dk.close();
      const key = await cli(['apikey', 'create', '--name', 'bench', '--permission', 'token:read', '--connection', 'bench'], env);
      const serve = await startChild(['dist/cli/main.js', 'serve', '--port', '0'], env, /^dropkey serve listening on (http:\/\/\S+)$/);
      children.push(serve.child);
      const url = `${serve.match[1]}/api/v1/connections/bench/token`;
      const authorization = `Bearer ${key}`;
      const expect = await rawGet(url, authorization);
      if (expect.status !== 200) throw new Error(`${kind}: token endpoint answered ${expect.status}: ${expect.body}`);
      setups[kind] = { url, authorization, expect, pid: serve.child.pid };
    }

    const results = { sqlite: [], postgres: [] };
    for (let i = 0; i < RUNS; i++) {
      // Alternate the order so neither store always runs on a warmer machine.
      for (const kind of i % 2 === 0 ? ['sqlite', 'postgres'] : ['postgres', 'sqlite']) {
        const s = setups[kind];
        const r = await measure(gen, { ...s, connections: CONNECTIONS, durationS: DURATION_MS / 1000, warmupS: WARMUP_MS / 1000 });
        log(`run ${i + 1} ${kind.padEnd(8)} ${r.rps} rps, p50 ${r.p50_ms} ms, p99 ${r.p99_ms} ms, errors ${r.errors}, server ${r.server_cpu_cores} cores, generator ${r.gen_cpu_cores} cores${r.gen_saturated ? ' SATURATED' : ''}`);
        results[kind].push(r);
      }
    }
    const sqlite = summarize(results.sqlite);
    const postgres = summarize(results.postgres);
    const generator = generatorReport(gen, CONNECTIONS, [...results.sqlite, ...results.postgres]);
    const ratio = round(postgres.rps / sqlite.rps);
    const summary = {
      bench: 'store-compare',
      generator,
      duration_s: DURATION_MS / 1000,
      runs: RUNS,
      sqlite,
      postgres,
      // A saturated generator measured itself: no ratio then.
      ratio: generator.saturated ? null : ratio,
      goal: { ratio_min: 0.8 },
      met: !generator.saturated && ratio >= 0.8 && sqlite.errors + postgres.errors === 0,
      ...(generator.saturated ? { verdict: `the generator saturated (${generator.cpu_cores_max} cores): no ratio` } : {}),
      ...machine(),
      node: process.version,
    };
    console.log(JSON.stringify(summary));
    process.exitCode = generator.saturated ? 2 : summary.met ? 0 : 1;
  } finally {
    for (const c of children.reverse()) await stop(c);
    for (const h of homes) rmSync(h, { recursive: true, force: true });
    const c = new pg.Client({ connectionString: base });
    c.on('error', () => {});
    await c.connect().then(() => c.query(`DROP SCHEMA IF EXISTS "${schema}" CASCADE`)).catch((err) => log(`could not drop schema ${schema}: ${err.message}`)).finally(() => c.end().catch(() => {}));
  }
}

await main();

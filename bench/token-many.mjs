#!/usr/bin/env node
/**
 * Token hand-out with many connections: `GET /api/v1/connections/{name}/token` for one connection vs a random one of
 * --count, on one `dropkey serve` (SQLite or PostgreSQL), in the same run, plus the server's memory with that many
 * connections and the token cache's bytes per connection. Goal: random >= 0.9x single.
 *
 *   npm run build && node bench/token-many.mjs [--count 10000] [--store sqlite|postgres] [--database-url URL]
 *       [--seed bulk|import] [--duration-s 5] [--warmup-s 2] [--runs 3] [--connections 64] [--generator auto|wrk|autocannon]
 *
 * Seeding: `bulk` (default) writes --count connection rows straight into the store in a few transactions, every
 * secret encrypted with the store's own keyring (so a cache miss decrypts exactly what a real one does), with
 * access tokens valid for 4 hours; Dropbox (the emulator) is never asked, so background jobs are off (DROPKEY_JOBS
 * false: their cost is bench/README.md's jobs section). `import` imports emulator offline grants through the library
 * instead (16 at a time: minutes at 10,000). PostgreSQL runs in a fresh schema of --database-url (default
 * $DROPKEY_TEST_DATABASE_URL, else postgres://postgres@127.0.0.1:5432/test), dropped at the end.
 * See bench/README.md ("token-many"). Last line: JSON; exit status 1 when the goal is missed, 2 when the generator
 * saturated.
 */
import { spawn, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { once } from 'node:events';
import { parseArgs } from 'node:util';
import { fileURLToPath } from 'node:url';
import { fixed, seedBulk, TOKEN_LIFE_MS } from './seed.mjs';
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
    store: { type: 'string', default: 'sqlite' },
    'database-url': { type: 'string' },
    seed: { type: 'string', default: 'bulk' },
    'entry-bytes': { type: 'boolean', default: false },
    // Extra node options for the server (e.g. "--cpu-prof --cpu-prof-dir=/tmp/prof" to profile it).
    'serve-node-args': { type: 'string', default: '' },
  },
});
if (!['sqlite', 'postgres'].includes(values.store)) throw new Error('--store is sqlite or postgres');
if (!['bulk', 'import'].includes(values.seed)) throw new Error('--seed is bulk or import');
const COUNT = Number(values.count);
const DURATION_S = Number(values['duration-s']);
const WARMUP_S = Number(values['warmup-s']);
const CONNECTIONS = Number(values.connections);
const RUNS = Number(values.runs);
for (const [k, v] of [['count', COUNT], ['duration-s', DURATION_S], ['connections', CONNECTIONS], ['runs', RUNS]]) {
  if (!Number.isInteger(v) || v <= 0) throw new Error(`--${k} must be a positive whole number`);
}
const GOAL = { ratio_min: 0.9 };




/**
 * --entry-bytes (run by main() in a child with --expose-gc): the heap one token cache entry costs, measured on the
 * real TokenService filled with N tokens shaped like the bulk seed's, after full collections. Prints one number.
 */
async function entryBytes(n) {
  const { TokenService } = await import(`${root}dist/server/services/tokens.js`);
  const now = Date.now();
  const deps = {
    clock: () => now,
    config: { tokenCacheMs: 5_000, storeOutageGraceMs: 300_000 },
    serverStore: { connectionChanges: async () => ({ now, names: [] }), pruneConnectionChanges: async () => 0 },
    logger: { warn() {} },
    dropkey: {
      refreshMarginSeconds: 300,
      // A fresh copy of every string, as a store read and a decrypt produce.
      getToken: async (name) => ({
        accessToken: `sl.u.${fixed(150)}`,
        expiresAt: now + TOKEN_LIFE_MS,
        scopes: ['account_info.read', 'files.metadata.read'].map((x) => `${x}`.slice(0)),
        accountId: `dbid:${fixed(38)}`,
        teamId: null,
        connection: name,
      }),
    },
  };
  const svc = new TokenService(deps, { reconnect: (x) => x });
  await svc.sync();
  const names = Array.from({ length: n }, (_, i) => `c${i}`);
  globalThis.gc();
  globalThis.gc();
  const before = process.memoryUsage().heapUsed;
  for (const name of names) await svc.get(name);
  globalThis.gc();
  globalThis.gc();
  const after = process.memoryUsage().heapUsed;
  if (svc.size !== n) throw new Error(`cache holds ${svc.size} of ${n}`);
  console.log(Math.round((after - before) / n));
}

/** Imports `count` connections from emulator offline grants through the library (what a user's imports do). */
async function seedImport(home, masterKey, databaseUrl, emuUrl) {
  const { DEMO_ACCOUNT_EMAIL } = await import(`${root}dist/emulator/index.js`);
  const { Dropkey, dropboxUrlsFromBase } = await import(`${root}dist/index.js`);
  const control = async (path, body) => {
    const r = await fetch(`${emuUrl}/_emulator/${path}`, { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify(body) });
    if (!r.ok) throw new Error(`emulator ${path}: ${r.status} ${await r.text()}`);
    return r.json();
  };
  const appKey = `bench${randomBytes(6).toString('hex')}`;
  const appSecret = randomBytes(12).toString('hex');
  await control('apps', { key: appKey, secret: appSecret, name: 'bench', redirect_uris: ['http://127.0.0.1/*'], scopes: ['account_info.read'], access: 'full', team: false });
  const dk = await Dropkey.open({ home, masterKey, ...(databaseUrl ? { databaseUrl } : {}), urls: dropboxUrlsFromBase(emuUrl) });
  try {
    await dk.addApp({ name: 'demo', key: appKey, secret: appSecret });
    let next = 0;
    await Promise.all(
      Array.from({ length: 16 }, async () => {
        for (let i = next++; i < COUNT; i = next++) {
          const grant = await control('grants', { app: appKey, account: DEMO_ACCOUNT_EMAIL, token_access_type: 'offline' });
          await dk.import({ connection: `c${i}`, app: 'demo', refreshToken: grant.refresh_token });
        }
      }),
    );
  } finally {
    await dk.close();
  }
}

/** Asks for every path once, `width` at a time; every answer must be 200. Returns the set of answer sizes. */
async function askAll(base, list, authorization, width = 32) {
  const sizes = new Set();
  let next = 0;
  await Promise.all(
    Array.from({ length: width }, async () => {
      for (let i = next++; i < list.length; i = next++) {
        const r = await rawGet(`${base}${list[i]}`, authorization);
        if (r.status !== 200) throw new Error(`${list[i]}: ${r.status} ${r.body}`);
        sizes.add(r.size);
      }
    }),
  );
  return sizes;
}

async function main() {
  if (values['entry-bytes']) return entryBytes(COUNT);
  const gen = pickGenerator(values.generator);
  const home = mkdtempSync(join(tmpdir(), 'dropkey-bench-many-'));
  const masterKey = randomBytes(32).toString('base64');
  let databaseUrl;
  let dropSchema = async () => {};
  if (values.store === 'postgres') {
    const base = values['database-url'] ?? process.env.DROPKEY_TEST_DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/test';
    const schema = `bench_many_${randomBytes(4).toString('hex')}`;
    databaseUrl = `${base.replace(/\?.*$/, '')}?schema=${schema}`;
    dropSchema = async () => {
      const pg = (await import('pg')).default;
      const c = new pg.Client({ connectionString: base.replace(/\?.*$/, '') });
      await c.connect();
      await c.query(`DROP SCHEMA IF EXISTS "${schema}" CASCADE`).finally(() => c.end());
    };
  }
  const emu = await startChildIn(root, ['dist/cli/main.js', 'emulator', '--port', '0'], {}, /(http:\/\/127\.0\.0\.1:\d+)/);
  const emuUrl = emu.match[1];
  const children = [emu.child];
  try {
    const t0 = performance.now();
    await (values.seed === 'bulk' ? (h, k, d) => seedBulk(root, h, k, d, COUNT) : seedImport)(home, masterKey, databaseUrl, emuUrl);
    const seedS = round((performance.now() - t0) / 1000, 1);
    log(`${COUNT} connections seeded (${values.seed}, ${values.store}) in ${seedS} s`);
    const env = {
      DROPKEY_HOME: home,
      DROPKEY_MASTER_KEY: masterKey,
      DROPKEY_DROPBOX_URL: emuUrl,
      DROPKEY_LOG_LEVEL: 'warn',
      DROPKEY_JOBS: 'false',
      ...(databaseUrl ? { DROPKEY_DATABASE_URL: databaseUrl } : {}),
    };
    const keyProc = spawn(process.execPath, ['dist/cli/main.js', 'apikey', 'create', '--name', 'bench', '--permission', 'token:read', '--connection', '*'], { cwd: root, env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'inherit'] });
    let key = '';
    keyProc.stdout.on('data', (d) => (key += d));
    await once(keyProc, 'exit');
    key = key.trim();
    if (!/^dk_/.test(key)) throw new Error('apikey create printed no key');
    const authorization = `Bearer ${key}`;

    const nodeArgs = values['serve-node-args'].split(' ').filter(Boolean);
    const serve = await startChildIn(root, [...nodeArgs, 'dist/cli/main.js', 'serve', '--port', '0'], env, /^dropkey serve listening on (http:\/\/\S+)$/);
    children.push(serve.child);
    const base = serve.match[1];
    const rssIdle = rssMB(serve.child.pid);
    // Every connection answers, once (this also fills the token cache the way any first request would).
    const list = Array.from({ length: COUNT }, (_, i) => `/api/v1/connections/c${i}/token`);
    const tw = performance.now();
    const sizes = await askAll(base, list, authorization);
    const warmS = round((performance.now() - tw) / 1000, 1);
    const rssWarm = rssMB(serve.child.pid);
    log(`every connection asked once in ${warmS} s; server RSS ${rssIdle} MB idle, ${rssWarm} MB with every token cached`);
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
        log(`run ${i + 1} ${side.padEnd(6)} ${r.rps} rps, p50 ${r.p50_ms} ms, p99 ${r.p99_ms} ms, max ${r.max_ms} ms, errors ${r.errors}, server ${r.server_cpu_cores} cores (${r.server_cpu_us_per_req} µs/request, ${r.server_sys_us_per_req} in the kernel), generator ${r.gen_cpu_cores} cores${r.gen_saturated ? ' SATURATED' : ''}`);
        results[side].push(r);
      }
    }
    const single = summarize(results.single);
    const random = summarize(results.random);
    const generator = generatorReport(gen, CONNECTIONS, [...results.single, ...results.random]);
    const ratio = round(random.rps / single.rps);
    // The cache's own cost per connection, measured apart (heap after full collections; RSS deltas are GC-noisy).
    const probe = spawnSync(process.execPath, ['--expose-gc', fileURLToPath(import.meta.url), '--entry-bytes', '--count', String(Math.min(COUNT, 20_000))], { cwd: root, encoding: 'utf8' });
    const cacheBytes = Number(probe.stdout.trim().split('\n').pop());
    const summary = {
      bench: 'token-many',
      count: COUNT,
      store: values.store,
      seed: values.seed,
      seed_s: seedS,
      jobs: false,
      generator,
      duration_s: DURATION_S,
      runs: RUNS,
      single,
      random: { ...random, max_ms: Math.max(...results.random.map((r) => r.max_ms)) },
      ratio: generator.saturated ? null : ratio,
      // Server CPU per hand-out, single / random: the same comparison, much less sensitive to what else the machine runs.
      cpu_ratio: round(single.server_cpu_us_per_req / random.server_cpu_us_per_req),
      goal: GOAL,
      met: !generator.saturated && ratio >= GOAL.ratio_min && single.errors + random.errors === 0,
      warm_all_s: warmS,
      server_rss_MB: { idle: rssIdle, all_cached: rssWarm, after: rssMB(serve.child.pid), peak: peakRssMB(serve.child.pid) },
      rss_bytes_per_connection: Math.round(((rssWarm - rssIdle) * 1024 * 1024) / COUNT),
      token_cache_bytes_per_connection: Number.isFinite(cacheBytes) ? cacheBytes : null,
      ...machine(),
      node: process.version,
    };
    console.log(JSON.stringify(summary));
    process.exitCode = generator.saturated ? 2 : summary.met ? 0 : 1;
  } finally {
    for (const c of children.reverse()) await stop(c);
    await dropSchema().catch((err) => log(`could not drop the bench schema: ${err.message}`));
    rmSync(home, { recursive: true, force: true });
  }
}

await main();

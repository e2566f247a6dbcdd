#!/usr/bin/env node
// `dropkey list` (and `--json`) at several numbers of connections: how its time, memory and output grow.
//
//   npm run build && node bench/list-many.mjs [--counts 100,1000,10000] [--runs 3] [--store sqlite|postgres] [--database-url URL]
//
// Seeds each count with bench/seed.mjs (bulk, encrypted with the store's keyring), runs the package's bin once to
// warm the file cache, then --runs times each of `list` and `list --json`, and reports per count the median wall
// time, the mean CPU time (user+sys, Linux /proc/self/stat of waited-for children) and the output size. One JSON
// line per count, then the CPU per added connection.
import { spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { machine, median, round } from './lib.mjs';
import { seedBulk } from './seed.mjs';

const root = fileURLToPath(new URL('..', import.meta.url));
const { values } = parseArgs({
  options: { counts: { type: 'string', default: '100,1000,10000' }, runs: { type: 'string', default: '3' }, store: { type: 'string', default: 'sqlite' }, 'database-url': { type: 'string' } },
});
const counts = values.counts.split(',').map(Number);
const runs = Number(values.runs);
const bin = join(root, JSON.parse(readFileSync(join(root, 'package.json'), 'utf8')).bin.dropkey);
const childCpuS = () => {
  const f = readFileSync('/proc/self/stat', 'utf8').split(') ')[1].split(' ');
  return (Number(f[13]) + Number(f[14])) / 100;
};

const lines = [];
for (const count of counts) {
  const home = mkdtempSync(join(tmpdir(), 'dropkey-bench-list-'));
  const masterKey = randomBytes(32).toString('base64');
  let databaseUrl;
  const base = (values['database-url'] ?? process.env.DROPKEY_TEST_DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/test').replace(/\?.*$/, '');
  const schema = `bench_list_${randomBytes(4).toString('hex')}`;
  if (values.store === 'postgres') databaseUrl = `${base}?schema=${schema}`;
  try {
    await seedBulk(root, home, masterKey, databaseUrl, count);
    const env = { PATH: process.env.PATH ?? '', DROPKEY_HOME: home, DROPKEY_MASTER_KEY: masterKey, ...(databaseUrl ? { DROPKEY_DATABASE_URL: databaseUrl } : {}) };
    const run = (args) => {
      const c0 = childCpuS();
      const t0 = performance.now();
      const r = spawnSync(process.execPath, [bin, ...args], { env, maxBuffer: 1 << 30 });
      const ms = performance.now() - t0;
      if (r.status !== 0) throw new Error(`dropkey ${args.join(' ')} failed: ${r.stderr}`);
      return { ms, cpuS: childCpuS() - c0, bytes: r.stdout.length };
    };
    run(['list']);
    const out = { bench: 'list-many', store: values.store, count };
    for (const [label, args] of [['table', ['list']], ['json', ['list', '--json']]]) {
      const rs = Array.from({ length: runs }, () => run(args));
      out[label] = { wall_ms_median: round(median(rs.map((r) => r.ms)), 1), cpu_ms_mean: round((rs.reduce((a, r) => a + r.cpuS, 0) / runs) * 1000, 0), output_bytes: rs[0].bytes };
    }
    console.log(JSON.stringify(out));
    lines.push(out);
  } finally {
    rmSync(home, { recursive: true, force: true });
    if (values.store === 'postgres') {
      const pg = (await import('pg')).default;
      const c = new pg.Client({ connectionString: base });
      await c.connect();
      await c.query(`DROP SCHEMA IF EXISTS "${schema}" CASCADE`).finally(() => c.end());
    }
  }
}
if (lines.length >= 2) {
  const [a, b] = [lines[0], lines[lines.length - 1]];
  const perConn = (k) => round(((b[k].cpu_ms_mean - a[k].cpu_ms_mean) * 1000) / (b.count - a.count), 1);
  console.log(JSON.stringify({ bench: 'list-many', store: values.store, cpu_us_per_connection: { table: perConn('table'), json: perConn('json') }, ...machine(), node: process.version }));
}

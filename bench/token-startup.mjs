// Start-up cost of the CLI's hot path: wall time of `dropkey token` on a fresh (valid) token, against
// `node -e ""` measured in the same run, interleaved so that machine noise hits both alike. Goal: ratio <= 2.0.
//
//   npm run build && node bench/token-startup.mjs [--runs 21] [--main dist/cli/dropkey.cjs] [--store sqlite|postgres]
//       [--database-url URL]
//
// --store postgres: the store is a fresh schema of --database-url (default $DROPKEY_TEST_DATABASE_URL, else
// postgres://postgres@127.0.0.1:5432/test), dropped at the end.
//
// Sets up its own DROPKEY_HOME with a connection made through an in-process emulator (no network). Prints one
// JSON line. A fresh token means no HTTP at all on the measured path: this measures loading and the store read.
import { spawn, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, existsSync, readFileSync } from 'node:fs';
import { loadavg, tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';

const root = resolve(fileURLToPath(new URL('..', import.meta.url)));
const { values } = parseArgs({
  options: { runs: { type: 'string' }, main: { type: 'string' }, warmup: { type: 'string' }, store: { type: 'string', default: 'sqlite' }, 'database-url': { type: 'string' } },
});
if (!['sqlite', 'postgres'].includes(values.store)) throw new Error('--store is sqlite or postgres');
const pgBase = (values['database-url'] ?? process.env.DROPKEY_TEST_DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/test').replace(/\?.*$/, '');
const schema = `bench_startup_${Math.random().toString(16).slice(2, 10)}`;
const runs = Math.max(15, Number(values.runs ?? 21));
const warmup = Number(values.warmup ?? 3);
// What users run: the package's bin (dist/cli/dropkey.cjs).
const main = resolve(values.main ?? join(root, JSON.parse(readFileSync(join(root, 'package.json'), 'utf8')).bin.dropkey));
if (!existsSync(main)) {
  console.error(`${main} is missing: run npm run build first`);
  process.exit(1);
}

// The emulator from the same build as the CLI under test when there is one beside it, else from dist/.
const sibling = resolve(main, '../../emulator/index.js');
const { createEmulator } = await import(pathToFileURL(existsSync(sibling) ? sibling : join(root, 'dist/emulator/index.js')).href);
const emulator = createEmulator();
const { url } = await emulator.listen(0, '127.0.0.1');
const home = mkdtempSync(join(tmpdir(), 'dropkey-bench-'));
const env = {
  PATH: process.env.PATH ?? '',
  DROPKEY_HOME: home,
  DROPKEY_DROPBOX_URL: url,
  ...(values.store === 'postgres' ? { DROPKEY_DATABASE_URL: `${pgBase}?schema=${schema}`, DROPKEY_MASTER_KEY: randomBytes(32).toString('base64') } : {}),
};

// Set-up calls talk to the in-process emulator, so they must not block this event loop (no spawnSync here).
function cli(args, input) {
  return new Promise((res, rej) => {
    const child = spawn(process.execPath, [main, ...args], { env });
    let out = '';
    let err = '';
    child.stdout.on('data', (d) => (out += d));
    child.stderr.on('data', (d) => (err += d));
    child.stdin.end(input ?? '');
    child.on('close', (code) => (code === 0 ? res(out) : rej(new Error(`dropkey ${args.join(' ')} failed (${code}): ${err}`))));
  });
}

try {
  const app = await emulator.control.createApp({
    key: 'benchapp1', secret: 'benchsecret1', name: 'bench', redirect_uris: ['http://127.0.0.1/*'],
    scopes: ['account_info.read', 'files.metadata.read'], access: 'full', team: false,
  });
  const account = await emulator.control.createAccount({ email: 'bench@example.com' });
  const grant = await emulator.control.grant({ app: app.key, account: account.account_id, token_access_type: 'offline' });
  await cli(['app', 'add', '--name', 'bench', '--key', 'benchapp1', '--secret', '-'], 'benchsecret1');
  await cli(['import', '--app', 'bench', '--refresh-token', '-'], grant.refresh_token);
  const token = (await cli(['token'])).trim();

  // CPU time of waited-for children (Linux /proc/self/stat cutime + cstime, in USER_HZ = 100 ticks/s): 10 ms
  // resolution per run, so only the mean over all runs is reported. Wall time on a busy machine grows with the
  // load much faster for the longer process; CPU time shows what the start-up itself costs.
  const childCpuMs = () => {
    try {
      const f = readFileSync('/proc/self/stat', 'utf8');
      const rest = f.slice(f.lastIndexOf(')') + 2).split(' ');
      return (Number(rest[13]) + Number(rest[14])) * 10;
    } catch {
      return NaN;
    }
  };
  const cpu = { baseline: 0, token: 0 };
  const time = (args, which) => {
    const c0 = childCpuMs();
    const t0 = process.hrtime.bigint();
    const r = spawnSync(process.execPath, args, { env, encoding: 'utf8' });
    const ms = Number(process.hrtime.bigint() - t0) / 1e6;
    if (which) cpu[which] += childCpuMs() - c0;
    if (r.status !== 0) throw new Error(`${args.join(' ')} failed: ${r.stderr}`);
    return { ms, out: r.stdout };
  };
  const baseline = [];
  const tok = [];
  for (let i = 0; i < warmup + runs; i++) {
    const measured = i >= warmup;
    const b = time(['-e', ''], measured ? 'baseline' : undefined);
    const t = time([main, 'token'], measured ? 'token' : undefined);
    // The token must be the same fresh one each time: no refresh happened on the measured path.
    if (t.out.trim() !== token) throw new Error('dropkey token printed a different token: a refresh happened during the benchmark');
    if (i >= warmup) {
      baseline.push(b.ms);
      tok.push(t.ms);
    }
  }
  const median = (a) => {
    const s = [...a].sort((x, y) => x - y);
    return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
  };
  const mb = median(baseline);
  const mt = median(tok);
  const ratio = mt / mb;
  console.log(JSON.stringify({
    bench: 'token-startup',
    store: values.store,
    runs,
    node: process.version,
    main: main.startsWith(root) ? main.slice(root.length + 1) : main,
    node_e_median_ms: Number(mb.toFixed(1)),
    dropkey_token_median_ms: Number(mt.toFixed(1)),
    ratio: Number(ratio.toFixed(2)),
    goal: 2.0,
    ok: ratio <= 2.0,
    node_e_mean_cpu_ms: Number((cpu.baseline / runs).toFixed(1)),
    dropkey_token_mean_cpu_ms: Number((cpu.token / runs).toFixed(1)),
    cpu_ratio: Number((cpu.token / cpu.baseline).toFixed(2)),
    load_average_1m: Number(loadavg()[0].toFixed(2)),
  }));
} finally {
  await emulator.close();
  rmSync(home, { recursive: true, force: true });
  if (values.store === 'postgres') {
    const pg = (await import('pg')).default;
    const c = new pg.Client({ connectionString: pgBase });
    await c.connect();
    await c.query(`DROP SCHEMA IF EXISTS "${schema}" CASCADE`).finally(() => c.end());
  }
}

// `dropkey agent`: the time from a refresh to 100 outputs rewritten, and what the agent costs while it waits
// (CPU over a minute, to show there is no busy loop, and resident memory).
//
//   npm run build && node bench/agent.mjs [--outputs 100] [--runs 3] [--idle-s 60]
//
// Sets up its own DROPKEY_HOME with a connection made through an in-process emulator. Each run starts the built
// agent (`node dist/cli/dropkey.cjs agent --config ...`) with its clock (and the emulator's) moved so that the
// connection's token reaches the agent's rewrite point a little over --idle-s seconds after start. The agent writes
// every output at start, then waits for its timer: its CPU time over those --idle-s seconds is read from
// /proc/<pid>/stat (a busy loop would show as ~1000 ms per second), with its resident memory. Then its own timer
// fires, it refreshes through the emulator and rewrites every output: that time is taken from the agent's JSON log,
// from the facade's "access token refreshed" line to the last "wrote" line. Linux only (/proc). Prints one JSON line.
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';
import { log, median } from './lib.mjs';

const root = resolve(fileURLToPath(new URL('..', import.meta.url)));
const { values } = parseArgs({ options: { outputs: { type: 'string' }, runs: { type: 'string' }, 'idle-s': { type: 'string' } } });
const OUTPUTS = Number(values.outputs ?? 100);
const RUNS = Number(values.runs ?? 3);
const IDLE_S = Number(values['idle-s'] ?? 60);
const MARGIN_S = 1800;
/** The agent's timer fires when the token has margin + 60 s left (src/agent/agent.ts WAKE_LEAD_MS). */
const WAKE_LEAD_S = 60;
const GOALS = { idle_cpu_ms_per_min_max: 200, refresh_to_written_ms_max: 2000 };

const main = join(root, 'dist/cli/dropkey.cjs');
const fakeClock = join(root, 'test/cli/fake-clock.mjs');
if (!existsSync(main)) {
  console.error(`${main} is missing: run npm run build first`);
  process.exit(1);
}
const { createEmulator } = await import(pathToFileURL(join(root, 'dist/emulator/index.js')).href);
const emulator = createEmulator();
const { url } = await emulator.listen(0, '127.0.0.1');
const home = mkdtempSync(join(tmpdir(), 'dropkey-bench-agent-'));
const env = { PATH: process.env.PATH ?? '', DROPKEY_HOME: home, DROPKEY_DROPBOX_URL: url };

/** Runs the CLI; with a clock offset, through the same preload the tests use (test/cli/fake-clock.mjs). */
function cli(args, input, offsetS = 0) {
  return new Promise((res, rej) => {
    const pre = offsetS ? ['--import', fakeClock] : [];
    const child = spawn(process.execPath, [...pre, main, ...args], { env: offsetS ? { ...env, FAKE_CLOCK_OFFSET_MS: String(offsetS * 1000) } : env });
    let out = '';
    let err = '';
    child.stdout.on('data', (d) => (out += d));
    child.stderr.on('data', (d) => (err += d));
    child.stdin.end(input ?? '');
    child.on('close', (code) => (code === 0 ? res(out) : rej(new Error(`dropkey ${args.join(' ')} failed (${code}): ${err}`))));
  });
}

/** utime + stime of a process in ms (USER_HZ = 100). */
function cpuMs(pid) {
  const f = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const rest = f.slice(f.lastIndexOf(')') + 2).split(' ');
  return (Number(rest[11]) + Number(rest[12])) * 10;
}

function memMB(pid, field) {
  const m = new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return m ? Math.round((Number(m[1]) / 1024) * 10) / 10 : NaN;
}

/** The outputs: a mix of every format, each in its own file (an rclone.conf and an Airflow file with another entry). */
function writeConfig(dir) {
  const outputs = [];
  for (let i = 0; i < OUTPUTS; i++) {
    const kind = i % 5;
    if (kind === 0) outputs.push(`  - {format: token, path: t${i}}`);
    else if (kind === 1) outputs.push(`  - {format: json, path: t${i}.json}`);
    else if (kind === 2) outputs.push(`  - {format: env, path: t${i}.env, variables: [DROPBOX_ACCESS_TOKEN, DPBX_ACCESS_TOKEN]}`);
    else if (kind === 3) {
      writeFileSync(join(dir, `r${i}.conf`), '[s3]\ntype = s3\nprovider = AWS\n\n');
      outputs.push(`  - {format: rclone, path: r${i}.conf, remote: dropbox}`);
    } else {
      writeFileSync(join(dir, `c${i}.json`), '{"postgres_default": {"conn_type": "postgres", "host": "db"}}\n');
      outputs.push(`  - {format: airflow, path: c${i}.json, conn_id: dropbox_default}`);
    }
  }
  const file = join(dir, 'agent.yaml');
  writeFileSync(file, `connection: bench\nmargin: ${MARGIN_S}\noutputs:\n${outputs.join('\n')}\n`);
  return file;
}

let clockOffsetS = 0;
let agent = null;
try {
  const app = await emulator.control.createApp({
    key: 'benchagent1', secret: 'benchagentsecret1', name: 'bench', redirect_uris: ['http://127.0.0.1/*'],
    scopes: ['account_info.read', 'files.metadata.read'], access: 'full', team: false,
  });
  const account = await emulator.control.createAccount({ email: 'bench-agent@example.com' });
  const grant = await emulator.control.grant({ app: app.key, account: account.account_id, token_access_type: 'offline' });
  await cli(['app', 'add', '--name', 'bench', '--key', app.key, '--secret', '-'], app.secret);
  await cli(['import', '--connection', 'bench', '--app', 'bench', '--refresh-token', '-'], grant.refresh_token);
  const dir = join(home, 'outputs');
  mkdirSync(dir);
  const config = writeConfig(dir);

  const times = [];
  const idle = [];
  const rss = [];
  const peak = [];
  const exitCodes = [];
  for (let run = 0; run < RUNS; run++) {
    const expiresAt = Date.parse(JSON.parse(await cli(['token', '--connection', 'bench', '--json'], '', clockOffsetS)).expires_at);
    // Move both clocks so that the rewrite point (expiry - margin - lead) comes just after the idle measurement. At
    // start the agent asks for margin + 2 leads, so the point must be more than one lead away or it refreshes at once.
    const wakeAfterS = Math.max(IDLE_S, WAKE_LEAD_S + 5) + 6;
    const now = Date.now() + clockOffsetS * 1000;
    const advance = Math.floor((expiresAt - (MARGIN_S + WAKE_LEAD_S) * 1000 - now) / 1000) - wakeAfterS;
    await emulator.control.advanceClock(advance);
    clockOffsetS += advance;
    agent = spawn(process.execPath, ['--import', fakeClock, main, 'agent', '--config', config, '--log-format', 'json'], {
      env: { ...env, FAKE_CLOCK_OFFSET_MS: String(clockOffsetS * 1000) },
      stdio: ['ignore', 'ignore', 'pipe'],
    });
    const pid = agent.pid;
    const lines = createInterface({ input: agent.stderr });
    let refreshedAt = null;
    let written = 0;
    let startWrites = 0;
    let lastWrite = null;
    let onStartDone;
    const startDone = new Promise((r) => (onStartDone = r));
    const rewritten = new Promise((res, rej) => {
      agent.once('exit', (code) => rej(new Error(`the agent exited with ${code}`)));
      lines.on('line', (l) => {
        let o;
        try {
          o = JSON.parse(l);
        } catch {
          return;
        }
        if (o.level >= 50) log(`agent error: ${o.msg}`);
        if (o.msg === 'access token refreshed') refreshedAt = Date.parse(o.time);
        if (typeof o.msg === 'string' && o.msg.startsWith('wrote ')) {
          if (refreshedAt === null) {
            if (++startWrites === OUTPUTS) onStartDone();
          } else {
            written++;
            lastWrite = Date.parse(o.time);
            if (written === OUTPUTS) res();
          }
        }
      });
    });
    rewritten.catch(() => undefined);
    await Promise.race([startDone, rewritten]);
    if (refreshedAt !== null) throw new Error('the agent refreshed at start: the clocks were not placed before its rewrite point');
    // Waiting: nothing to do until the timer fires.
    await new Promise((r) => setTimeout(r, 1000));
    const c0 = cpuMs(pid);
    const t0 = performance.now();
    await new Promise((r) => setTimeout(r, IDLE_S * 1000));
    const cpu = cpuMs(pid) - c0;
    const seconds = (performance.now() - t0) / 1000;
    idle.push(Math.round((cpu / seconds) * 60));
    rss.push(memMB(pid, 'VmRSS'));
    peak.push(memMB(pid, 'VmHWM'));
    if (refreshedAt !== null) throw new Error('the timer fired during the idle measurement: raise the wake-up delay');
    await rewritten;
    agent.removeAllListeners('exit');
    const ms = lastWrite - refreshedAt;
    times.push(ms);
    agent.kill('SIGTERM');
    const [code] = await once(agent, 'exit');
    exitCodes.push(code);
    agent = null;
    log(`run ${run + 1}: ${startWrites} outputs written at start; idle ${Math.round(seconds)} s: ${cpu} ms CPU, RSS ${rss.at(-1)} MB; then the timer fired, refreshed, and ${OUTPUTS} outputs were rewritten in ${ms} ms; SIGTERM -> exit ${code}`);
  }

  const perMin = Math.max(...idle);
  const refreshMs = median(times);
  const summary = {
    bench: 'agent',
    outputs: OUTPUTS,
    runs: RUNS,
    refresh_to_all_written_ms: refreshMs,
    refresh_to_all_written_ms_runs: times,
    idle_s: IDLE_S,
    idle_cpu_ms_per_min: perMin,
    idle_cpu_ms_per_min_runs: idle,
    idle_cpu_percent: Math.round((perMin / 60_000) * 10000) / 100,
    rss_MB: median(rss),
    peak_rss_MB: Math.max(...peak),
    sigterm_exit_codes: exitCodes,
    goals: GOALS,
    ok: perMin <= GOALS.idle_cpu_ms_per_min_max && refreshMs <= GOALS.refresh_to_written_ms_max && exitCodes.every((c) => c === 0),
    node: process.version,
  };
  console.log(JSON.stringify(summary));
  process.exitCode = summary.ok ? 0 : 1;
} finally {
  if (agent) agent.kill('SIGKILL');
  await emulator.close();
  rmSync(home, { recursive: true, force: true });
}

// Shared pieces of the HTTP benchmarks (serve-token.mjs, store-compare.mjs, serve-proxy.mjs).
//
// Load comes from an EXTERNAL generator in its own process: wrk (Debian's package) when installed, otherwise
// autocannon (a devDependency) run through bench/autocannon-child.mjs. Its CPU use is measured for every run
// (the children's CPU time of this process, /proc/self/stat, taken around the generator's life), and a run whose
// generator used about one full core per thread is flagged `saturated`: such a run measures the generator, not
// the server, and the benchmarks print no ratio for it. (The first version had a 60-line generator inside this
// process; it saturated first, and the floor it reported was the generator's own ceiling.)
import { spawn, spawnSync } from 'node:child_process';
import { once } from 'node:events';
import { accessSync, constants, readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { connect } from 'node:net';
import { cpus, loadavg } from 'node:os';
import { delimiter, join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';

export const log = (...a) => process.stderr.write(`${a.join(' ')}\n`);

export const median = (xs) => {
  const s = [...xs].sort((a, b) => a - b);
  const mid = s.length >> 1;
  return s.length === 0 ? NaN : s.length % 2 ? s[mid] : (s[mid - 1] + s[mid]) / 2;
};

export const round = (x, digits = 3) => (Number.isFinite(x) ? +x.toFixed(digits) : null);

/** Spawns a node process in `cwd` and resolves with the first stdout line matching `re` (and the child). */
export async function startChild(cwd, args, env, re) {
  const child = spawn(process.execPath, args, { cwd, env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
  let stderr = '';
  child.stderr.on('data', (d) => {
    if (stderr.length < 20_000) stderr += d;
  });
  const rl = createInterface({ input: child.stdout });
  const match = await new Promise((resolve, reject) => {
    rl.on('line', (l) => {
      const m = re.exec(l);
      if (m) resolve(m);
    });
    child.once('exit', (code) => reject(new Error(`${args.join(' ')} exited with ${code}: ${stderr.slice(0, 2000)}`)));
  });
  return { child, match };
}

export async function stop(child) {
  if (child.exitCode !== null || child.signalCode !== null) return;
  child.kill('SIGTERM');
  await once(child, 'exit');
}

// ---------------------------------------------------------------- /proc (Linux)

const TICKS = 100; // USER_HZ: /proc/<pid>/stat times are in 1/100 s on Linux

function statFields(pid) {
  // Fields after "(comm) ", so that a command name with spaces cannot shift them; [11] is utime (field 14).
  return readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1].split(' ');
}

/** CPU seconds (user + system) a live process has used so far. */
export function cpuSeconds(pid) {
  const f = statFields(pid);
  return (Number(f[11]) + Number(f[12])) / TICKS;
}

/** CPU seconds a live process has spent in the kernel so far (stime). */
export function systemSeconds(pid) {
  return Number(statFields(pid)[12]) / TICKS;
}

/** CPU seconds used by this process's children that have exited and been waited for (cutime + cstime). */
function reapedChildrenCpuSeconds() {
  const f = statFields('self');
  return (Number(f[13]) + Number(f[14])) / TICKS;
}

function statusKB(pid, field) {
  return Number(new RegExp(`${field}:\\s+(\\d+) kB`).exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1]);
}
/** Peak resident memory (VmHWM) of a live process, MB. */
export const peakRssMB = (pid) => round(statusKB(pid, 'VmHWM') / 1024, 1);
/** Current resident memory (VmRSS) of a live process, MB. */
export const rssMB = (pid) => round(statusKB(pid, 'VmRSS') / 1024, 1);

/** Cumulative CPU ticks of the whole machine: [idle (idle + iowait), total] (first line of /proc/stat). */
export function machineTicks() {
  const f = readFileSync('/proc/stat', 'utf8').split('\n', 1)[0].trim().split(/\s+/).slice(1, 9).map(Number);
  return [f[3] + f[4], f.reduce((a, b) => a + b, 0)];
}

/** What the machine was doing: 1-minute load average and CPU count, for every JSON line. */
export const machine = () => ({ loadavg_1m: round(loadavg()[0], 2), cpus: cpus().length });

export function which(cmd, extra = []) {
  for (const dir of [...(process.env.PATH ?? '').split(delimiter), ...extra]) {
    const p = join(dir, cmd);
    try {
      accessSync(p, constants.X_OK);
      return p;
    } catch {}
  }
  return null;
}

// ---------------------------------------------------------------- load generators

const here = fileURLToPath(new URL('.', import.meta.url));
/** A generator at or above this many cores per thread is the bottleneck (one thread cannot use more than one). */
export const SATURATED_CORES_PER_THREAD = 0.9;

/**
 * The load generator to use: `auto` picks wrk when it is on PATH (or in /usr/bin), else autocannon. Throws with
 * what to install when none is available.
 */
export function pickGenerator(requested = 'auto', threads = 1, cpus = null) {
  const base = cpus ? { cpus } : {};
  if (requested === 'auto' || requested === 'wrk') {
    const path = which('wrk', ['/usr/bin', '/usr/local/bin']);
    if (path) return { tool: 'wrk', path, threads, ...base };
    if (requested === 'wrk') throw new Error('wrk is not installed: apt-get install wrk (or use --generator autocannon)');
  }
  if (requested === 'auto' || requested === 'autocannon') {
    try {
      const pkg = createRequire(import.meta.url).resolve('autocannon/package.json');
      return { tool: 'autocannon', version: JSON.parse(readFileSync(pkg, 'utf8')).version, threads: 1, ...base };
    } catch {
      throw new Error('No load generator: install wrk (apt-get install wrk) or run npm install (autocannon is a devDependency).');
    }
  }
  throw new Error(`Unknown generator "${requested}": use auto, wrk or autocannon.`);
}

/**
 * Pins every thread of a process to the CPUs in `list` ("0", "0-1"): `taskset -a -p`. With the generator on
 * other CPUs (pickGenerator's `cpus`), the scheduler cannot put the server and its generator on one CPU, taking
 * turns (it tends to, for two processes that wake each other through loopback sockets).
 */
export function pin(pid, list) {
  const r = spawnSync('taskset', ['-a', '-pc', list, String(pid)], { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`taskset -a -pc ${list} ${pid} failed: ${r.error?.message ?? r.stderr}`);
}

/** Parses --pin SERVER_CPUS:GENERATOR_CPUS ("0:1"), or '' for no pinning. */
export function parsePin(text) {
  if (!text) return null;
  const m = /^([\d,-]+):([\d,-]+)$/.exec(text);
  if (!m) throw new Error('--pin takes SERVER_CPUS:GENERATOR_CPUS, e.g. 0:1');
  if (!which('taskset', ['/usr/bin'])) throw new Error('--pin needs taskset (util-linux)');
  return { server: m[1], generator: m[2] };
}

/**
 * One GET written the way wrk writes it, read back raw: the status, the body and the exact size of the answer on
 * the wire (status line, headers and body). wrk counts bytes, not bodies; comparing its byte count with
 * requests × this size shows that every counted answer was this one.
 */
export function rawGet(url, authorization) {
  const u = new URL(url);
  return new Promise((resolve, reject) => {
    const sock = connect(Number(u.port), u.hostname);
    const chunks = [];
    sock.on('error', reject);
    sock.on('data', (d) => {
      chunks.push(d);
      const all = Buffer.concat(chunks);
      const end = all.indexOf('\r\n\r\n');
      if (end < 0) return;
      const head = all.subarray(0, end).toString('latin1');
      const status = Number(head.split(' ')[1]);
      const length = Number(/\r\ncontent-length:\s*(\d+)/i.exec(head)?.[1] ?? NaN);
      if (!Number.isFinite(length)) {
        // Chunked (error answers): wait for the last chunk, then decode.
        if (!/\r\ntransfer-encoding:\s*chunked/i.test(head)) return reject(new Error(`${url}: no length in ${head.split('\r\n')[0]}`));
        if (!all.subarray(end + 4).toString('latin1').endsWith('0\r\n\r\n')) return;
        sock.destroy();
        let rest = all.subarray(end + 4).toString();
        let body = '';
        for (;;) {
          const nl = rest.indexOf('\r\n');
          const n = parseInt(rest.slice(0, nl), 16);
          if (!(n > 0)) break;
          body += rest.slice(nl + 2, nl + 2 + n);
          rest = rest.slice(nl + 4 + n);
        }
        return resolve({ status, size: all.length, body, head });
      }
      if (all.length < end + 4 + length) return;
      sock.destroy();
      resolve({ status, size: end + 4 + length, body: all.subarray(end + 4, end + 4 + length).toString(), head });
    });
    sock.write(`GET ${u.pathname}${u.search} HTTP/1.1\r\nHost: ${u.host}\r\n${authorization ? `Authorization: ${authorization}\r\n` : ''}\r\n`);
  });
}

function runToEnd(cmd, args, env, cpus) {
  // taskset execs the command in place: same process, so its CPU time is still counted as this child's.
  if (cpus) [cmd, args] = ['taskset', ['-c', cpus, cmd, ...args]];
  const child = spawn(cmd, args, { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  child.stdout.on('data', (d) => (out += d));
  child.stderr.on('data', (d) => {
    if (err.length < 10_000) err += d;
  });
  return new Promise((resolve, reject) => {
    child.once('error', reject);
    child.once('exit', (code) => resolve({ code, out, err }));
  });
}

/**
 * Runs the generator once against `url` for `durationS` seconds and returns its numbers plus its own CPU use.
 * `expect` = { status, size, body } from rawGet: wrk's answers are checked by status and total byte count,
 * autocannon's by status and exact body. `paths` = { file, list }: each request to one of these paths of `url`'s
 * server, at random (all answers must then have expect's size; autocannon checks status only).
 */
export async function generate(gen, { url, authorization, connections, durationS, expect, paths }) {
  const cpu0 = reapedChildrenCpuSeconds();
  const t0 = performance.now();
  let r;
  if (gen.tool === 'wrk') {
    const args = [`-t${gen.threads}`, `-c${connections}`, `-d${durationS}s`, '--timeout', '10s', '-s', join(here, 'wrk-report.lua'), url];
    const { code, out, err } = await runToEnd(gen.path, args, { BENCH_AUTHORIZATION: authorization ?? '', BENCH_PATHS: paths?.file ?? '' }, gen.cpus);
    const line = out.split('\n').find((l) => l.startsWith('WRK_JSON '));
    if (code !== 0 || !line) throw new Error(`wrk failed (exit ${code}): ${err || out}`);
    const w = JSON.parse(line.slice(9));
    const socketErrors = w.connect_errors + w.read_errors + w.write_errors + w.timeouts;
    let sizeErrors = 0;
    if (expect) {
      // Every answer must be exactly `expect.size` bytes. (wrk counts the bytes it reads and the answers it
      // completes; an answer of a few hundred bytes written at once arrives whole, so the two agree exactly,
      // even when the run stops. A difference means some answers were not this one.)
      const extra = w.bytes - w.requests * expect.size;
      if (extra !== 0) sizeErrors = Math.max(1, Math.round(Math.abs(extra) / expect.size));
    }
    r = {
      requests: w.requests,
      seconds: w.duration_us / 1e6,
      errors: socketErrors + w.status_errors + sizeErrors,
      error_detail: { socket: socketErrors, status: w.status_errors, size: sizeErrors },
      p50_ms: w.p50_us / 1000,
      p90_ms: w.p90_us / 1000,
      p99_ms: w.p99_us / 1000,
      max_ms: w.max_us / 1000,
    };
  } else {
    const opts = { url, connections, durationS, ...(expect && !paths ? { expectBody: expect.body } : {}), ...(paths ? { paths: paths.list } : {}) };
    const { code, out, err } = await runToEnd(process.execPath, [join(here, 'autocannon-child.mjs')], {
      BENCH_AUTOCANNON: JSON.stringify(opts),
      BENCH_AUTHORIZATION: authorization ?? '',
    }, gen.cpus);
    const line = out.split('\n').find((l) => l.startsWith('AC_JSON '));
    if (code !== 0 || !line) throw new Error(`autocannon failed (exit ${code}): ${err || out}`);
    const a = JSON.parse(line.slice(8));
    r = {
      requests: a.requests,
      seconds: a.duration_s,
      errors: a.errors + a.timeouts + a.non2xx + a.mismatches,
      error_detail: { socket: a.errors + a.timeouts, status: a.non2xx, body: a.mismatches },
      p50_ms: a.p50_ms,
      p90_ms: a.p90_ms,
      p99_ms: a.p99_ms,
      max_ms: a.max_ms,
    };
  }
  const wall = (performance.now() - t0) / 1000;
  const cpuS = reapedChildrenCpuSeconds() - cpu0;
  const genCores = cpuS / wall;
  return {
    ...r,
    rps: Math.round(r.requests / r.seconds),
    p50_ms: round(r.p50_ms),
    p90_ms: round(r.p90_ms),
    p99_ms: round(r.p99_ms),
    max_ms: round(r.max_ms),
    gen_cpu_cores: round(genCores, 2),
    gen_saturated: genCores >= SATURATED_CORES_PER_THREAD * gen.threads,
  };
}

/**
 * A warm-up run (not counted), then a timed run, with the target process's CPU use over the timed run (so a
 * floor that is not using its core says so: something else, the generator or the machine, set its pace).
 */
export async function measure(gen, { pid, url, authorization, connections, durationS, warmupS, expect, paths }) {
  if (warmupS > 0) await generate(gen, { url, authorization, connections, durationS: warmupS, expect, paths });
  const c0 = pid ? cpuSeconds(pid) : NaN;
  const s0 = pid ? systemSeconds(pid) : NaN;
  const [idle0, total0] = machineTicks();
  const t0 = performance.now();
  const r = await generate(gen, { url, authorization, connections, durationS, expect, paths });
  const serverCpu = pid ? cpuSeconds(pid) - c0 : NaN;
  const serverSys = pid ? systemSeconds(pid) - s0 : NaN;
  const [idle1, total1] = machineTicks();
  return {
    ...r,
    server_cpu_cores: round(serverCpu / ((performance.now() - t0) / 1000), 2),
    // CPU per request depends much less on what else runs on the machine than requests per second do.
    server_cpu_us_per_req: round((serverCpu * 1e6) / r.requests, 1),
    // The part of it spent in the kernel (sockets), which no change to the server's JavaScript can shorten.
    server_sys_us_per_req: round((serverSys * 1e6) / r.requests, 1),
    // Cores left idle during the run: with idle cores and a server below one core, the server was waiting for
    // its client; with none, it was waiting for a CPU.
    idle_cores: round(((idle1 - idle0) / (total1 - total0)) * cpus().length, 2),
  };
}

/**
 * What set the pace of a run of the floor (the fastest server there is, so whatever limits it limits the
 * comparison): 'generator' when the generator used about a core per thread, or when the floor stayed well under
 * one core while cores sat idle (it was waiting for requests); 'machine' when it stayed under a core with no
 * idle core (other work took the CPU); 'floor' when it used its core.
 */
export function paceOf(run) {
  if (run.gen_saturated) return 'generator';
  if (run.server_cpu_cores >= 0.8) return 'floor';
  return run.idle_cores >= 0.5 ? 'generator' : 'machine';
}

/** Medians of a side's runs (rps, p50, p99, CPU) and the errors summed. */
export function summarize(runs) {
  const m = (k, digits = 3) => round(median(runs.map((r) => r[k])), digits);
  return {
    rps: m('rps', 0),
    p50_ms: m('p50_ms'),
    p99_ms: m('p99_ms'),
    errors: runs.reduce((a, r) => a + r.errors, 0),
    server_cpu_cores: m('server_cpu_cores', 2),
    server_cpu_us_per_req: m('server_cpu_us_per_req', 1),
    idle_cores: m('idle_cores', 2),
    gen_cpu_cores_max: Math.max(...runs.map((r) => r.gen_cpu_cores)),
  };
}

/** The generator's part of a JSON line: which tool, how it ran, the most CPU it used, and whether it saturated. */
export function generatorReport(gen, connections, runs) {
  const cores = Math.max(...runs.map((r) => r.gen_cpu_cores));
  return {
    tool: gen.tool,
    ...(gen.version ? { version: gen.version } : {}),
    threads: gen.threads,
    connections,
    cpu_cores_max: cores,
    saturated: runs.some((r) => r.gen_saturated),
    ...(gen.cpus ? { cpus: gen.cpus } : {}),
  };
}

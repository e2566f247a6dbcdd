#!/usr/bin/env node
/**
 * Background jobs vs token hand-outs at scale: --count connections (default 10 000, all valid for 4 h), random
 * hand-outs among them, with the jobs off and on (alternating runs). With jobs on, the refresh job runs every
 * --refresh-interval-s (default 2 s: nothing is due, so each run costs only the due query) and the health check
 * starts at once with its production pace (--health-interval-s, default 900: 10 000 checks spread over 450 s, 4 at
 * a time, at the emulator); usage is flushed every 5 s as counted audit entries. Reports hand-out p50/p99/max per side, the server's event-loop delay
 * (perf_hooks monitorEventLoopDelay: max and p99), and token.handout audit rows written per minute of load.
 * Goal: event-loop delay max < 50 ms with jobs on.
 *
 *   npm run build && node bench/jobs-stall.mjs [--count 10000] [--duration-s 20] [--runs 2] [--connections 32]
 *                                              [--generator auto|wrk|autocannon]
 *
 * Last line: JSON. Exit status 1 when the goal is missed, 2 when the generator saturated.
 */
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { generatorReport, log, machine, measure, pickGenerator, round, stop, summarize } from './lib.mjs';
import { seed, startEmulator, startServer } from './jobs-lib.mjs';

const { values } = parseArgs({
  options: {
    count: { type: 'string', default: '10000' },
    'duration-s': { type: 'string', default: '20' },
    runs: { type: 'string', default: '2' },
    connections: { type: 'string', default: '32' },
    'refresh-interval-s': { type: 'string', default: '2' },
    'health-interval-s': { type: 'string', default: '900' },
    generator: { type: 'string', default: 'auto' },
  },
});
const COUNT = Number(values.count);
const DURATION_S = Number(values['duration-s']);
const RUNS = Number(values.runs);
const CONNECTIONS = Number(values.connections);
const GOAL = { eld_max_ms: 50 };

async function main() {
  const gen = pickGenerator(values.generator);
  const home = mkdtempSync(join(tmpdir(), 'dropkey-bench-jobs-'));
  const emu = await startEmulator();
  const children = [emu.child];
  try {
    const { env, authorization } = await seed({ home, masterKey: randomBytes(32).toString('base64'), emu, count: COUNT, expiresAt: () => Date.now() + 4 * 3600_000 });
    const list = Array.from({ length: COUNT }, (_, i) => `/api/v1/connections/c${i}/token`);
    const pathsFile = join(home, 'paths.txt');
    writeFileSync(pathsFile, `${list.join('\n')}\n`);
    const results = { off: [], on: [] };
    const audit = [];
    for (let i = 0; i < RUNS; i++) {
      for (const side of i % 2 === 0 ? ['off', 'on'] : ['on', 'off']) {
        const server = await startServer({
          ...env,
          BENCH_JOBS: side,
          BENCH_REFRESH_INTERVAL_MS: String(Number(values['refresh-interval-s']) * 1000),
          BENCH_HEALTH_INTERVAL_MS: String(Number(values['health-interval-s']) * 1000),
        });
        try {
          const audit0 = await server.call('audit');
          await server.call('reset');
          const r = await measure(gen, { pid: server.child.pid, url: `${server.url}${list[0]}`, authorization, connections: CONNECTIONS, durationS: DURATION_S, warmupS: 0, paths: { file: pathsFile, list } });
          const st = await server.call('stats');
          const audit1 = await server.call('audit');
          const rows = audit1.handout_audit_rows - audit0.handout_audit_rows;
          // New rows (a (key, connection) pair's first hand-out this hour); later hand-outs update its row.
          audit.push({ side, rows_per_min: round((rows / DURATION_S) * 60, 0), handouts: audit1.handouts_audited - audit0.handouts_audited });
          const run = { ...r, eld_max_ms: round(st.eld_max_ms, 1), eld_p99_ms: round(st.eld_p99_ms, 1), job_runs: st.job_runs, rss_MB: st.rss_MB };
          log(`run ${i + 1} jobs ${side.padEnd(3)} ${r.rps} rps, p50 ${r.p50_ms} ms, p99 ${r.p99_ms} ms, max ${r.max_ms} ms, errors ${r.errors}; event loop max ${run.eld_max_ms} ms p99 ${run.eld_p99_ms} ms; jobs ${JSON.stringify(st.job_runs)}; audit rows/min ${audit.at(-1).rows_per_min}`);
          results[side].push(run);
        } finally {
          await server.stop();
        }
      }
    }
    const side = (k) => ({
      ...summarize(results[k]),
      max_ms: Math.max(...results[k].map((r) => r.max_ms)),
      eld_max_ms: Math.max(...results[k].map((r) => r.eld_max_ms)),
      eld_p99_ms: Math.max(...results[k].map((r) => r.eld_p99_ms)),
      job_runs: results[k].map((r) => r.job_runs),
    });
    const off = side('off');
    const on = side('on');
    const generator = generatorReport(gen, CONNECTIONS, [...results.off, ...results.on]);
    const summary = {
      bench: 'jobs-stall',
      count: COUNT,
      generator,
      duration_s: DURATION_S,
      runs: RUNS,
      jobs_off: off,
      jobs_on: on,
      audit_handout_rows_per_min: Math.max(...audit.map((a) => a.rows_per_min)),
      goal: GOAL,
      met: on.eld_max_ms < GOAL.eld_max_ms && on.errors + off.errors === 0,
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

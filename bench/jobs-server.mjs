#!/usr/bin/env node
/**
 * The `dropkey serve` that bench/jobs-stall.mjs and bench/expiry-storm.mjs measure: the real server (startServer,
 * from dist/), started in this process so that it can watch its own event loop (perf_hooks
 * monitorEventLoopDelay) and run the real background jobs with the benchmark's intervals. Forked by the
 * benchmarks (IPC), configured by the environment like `dropkey serve` plus:
 *
 *   BENCH_JOBS=on|off            the jobs scheduler (createScheduler) with the intervals below, or none
 *   BENCH_REFRESH_INTERVAL_MS    refresh job interval (default 60 000)
 *   BENCH_REFRESH_MARGIN_MS      refresh margin (default 600 000)
 *   BENCH_HEALTH_INTERVAL_MS     health check interval (default 900 000); both jobs start at once
 *
 * Messages: {cmd:'stats'} → counters and event-loop delay since the last {cmd:'reset'}; {cmd:'fresh', marginMs}
 * → how many connections are fresh / due / not active; {cmd:'run', job, force} → runs a job now; {cmd:'stop'}.
 */
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { PassThrough } from 'node:stream';
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('..', import.meta.url));
const { readConfig } = await import(`${root}dist/config.js`);
const { startServer } = await import(`${root}dist/server/main.js`);
const { createScheduler } = await import(`${root}dist/server/jobs/index.js`);

const env = process.env;
const jobs = env.BENCH_JOBS === 'on';
const config = { ...(await readConfig(env)), jobs: false };
const ac = new AbortController();
const sink = new PassThrough();
sink.resume();
const server = await startServer({ config, port: 0, stdout: sink, logStream: sink, signal: ac.signal });
const s = server.app.services;
let scheduler;
if (jobs) {
  scheduler = createScheduler(s, {
    refreshIntervalMs: Number(env.BENCH_REFRESH_INTERVAL_MS ?? 60_000),
    refreshMarginMs: Number(env.BENCH_REFRESH_MARGIN_MS ?? 600_000),
    healthIntervalMs: Number(env.BENCH_HEALTH_INTERVAL_MS ?? 900_000),
    // Both start at once, so a short benchmark sees them at work.
    initialDelayMs: { 'connections.refresh': 0, 'connections.health': 0 },
  });
  s.scheduler = scheduler;
  scheduler.start();
}
let eld = monitorEventLoopDelay({ resolution: 5 });
eld.enable();
const m = s.metrics;

const store = s.dropkey.store;
process.on('message', async (msg) => {
  try {
    if (msg.cmd === 'reset') {
      eld.disable();
      eld = monitorEventLoopDelay({ resolution: 5 });
      eld.enable();
      process.send({ id: msg.id, ok: true });
    } else if (msg.cmd === 'stats') {
      process.send({
        id: msg.id,
        eld_max_ms: eld.max / 1e6,
        eld_p99_ms: eld.percentile(99) / 1e6,
        eld_mean_ms: eld.mean / 1e6,
        refreshed: m.backgroundRefreshes.get({ result: 'refreshed' }),
        failed: m.backgroundRefreshes.get({ result: 'failed' }),
        rate_limited: m.backgroundRefreshes.get({ result: 'rate_limited' }),
        backlog: m.refreshBacklog.get({}),
        paused_s: m.refreshPausedSeconds.get({}),
        job_runs: Object.fromEntries(['connections.refresh', 'connections.health', 'audit.prune'].map((j) => [j, m.jobRuns.get({ job: j, result: 'ran' })])),
        rss_MB: Math.round(process.memoryUsage().rss / 1048576),
      });
    } else if (msg.cmd === 'fresh') {
      const now = Date.now();
      let fresh = 0;
      let due = 0;
      let inactive = 0;
      for (let after = null; ; ) {
        const page = await store.listActiveConnections(after, 1000);
        for (const c of page) {
          if (c.expiresAt !== null && c.expiresAt > now + msg.marginMs) fresh++;
          else due++;
        }
        if (page.length < 1000) break;
        after = page.at(-1).name;
      }
      const all = (await store.listConnections()).length;
      inactive = all - fresh - due;
      process.send({ id: msg.id, fresh, due, inactive });
    } else if (msg.cmd === 'audit') {
      await s.usage.flush();
      let rows = 0;
      let handouts = 0;
      for (let before; ; ) {
        const page = await s.serverStore.listAudit({ limit: 1000, action: 'token.handout', ...(before === undefined ? {} : { beforeId: before }) });
        rows += page.length;
        for (const e of page) handouts += Number(e.details.count ?? 0);
        if (page.length < 1000) break;
        before = page.at(-1).id;
      }
      process.send({ id: msg.id, handout_audit_rows: rows, handouts_audited: handouts });
    } else if (msg.cmd === 'run') {
      const result = await scheduler.runNow(msg.job, { force: msg.force === true });
      process.send({ id: msg.id, result });
    } else if (msg.cmd === 'stop') {
      await scheduler?.stop();
      ac.abort();
      await server.done;
      process.send({ id: msg.id, ok: true });
      process.exit(0);
    }
  } catch (err) {
    process.send({ id: msg.id, error: String(err?.stack ?? err) });
  }
});
process.send({ ready: true, url: server.url, pid: process.pid });

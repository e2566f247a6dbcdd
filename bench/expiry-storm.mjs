#!/usr/bin/env node
/**
 * An expiry storm: --count connections (default 10 000) fall due together, and the background refresher of one
 * `dropkey serve` (bench/jobs-server.mjs, the real jobs) works through them against the emulator, optionally with
 * --latency-ms of token-endpoint latency (emulator fault delay_ms) and --rate-limit-n 429 answers with
 * Retry-After --retry-after-s. Meanwhile --valid connections that are still valid are handed out in a loop.
 *
 * Scenarios: `expired` (after an outage: every stored token expired a minute ago) or `due-soon` (a batch import:
 * all expire together at margin + spread/2 from now, so half are due now and the rest spread over the window).
 *
 * Reports the refresh curve (per second: refreshed so far, rate, backlog, failures, 429s), hand-out latency of
 * the valid connections during the storm, how long the storm took against the margin, and whether every
 * connection ended fresh (valid beyond the margin) with no failure.
 *
 *   npm run build && node bench/expiry-storm.mjs [--count 10000] [--scenario expired|due-soon] [--latency-ms 0]
 *        [--rate-limit-n 0] [--retry-after-s 2] [--margin-s 600] [--interval-s 60] [--concurrency 32]
 *        [--valid 100] [--clients 8] [--timeout-s 900]
 *
 * Last line: JSON. Exit status 1 when a connection did not end fresh, a refresh failed, or the storm took more
 * than half the margin.
 */
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { log, machine, round, stop } from './lib.mjs';
import { handoutLoad, latencyStats, seed, startEmulator, startServer } from './jobs-lib.mjs';

const { values } = parseArgs({
  options: {
    count: { type: 'string', default: '10000' },
    scenario: { type: 'string', default: 'expired' },
    'latency-ms': { type: 'string', default: '0' },
    'rate-limit-n': { type: 'string', default: '0' },
    'retry-after-s': { type: 'string', default: '2' },
    'margin-s': { type: 'string', default: '600' },
    'interval-s': { type: 'string', default: '60' },
    concurrency: { type: 'string', default: '32' },
    valid: { type: 'string', default: '100' },
    clients: { type: 'string', default: '8' },
    'timeout-s': { type: 'string', default: '900' },
  },
});
const num = (k) => {
  const v = Number(values[k]);
  if (!Number.isFinite(v) || v < 0) throw new Error(`--${k} must be a number >= 0`);
  return v;
};
const COUNT = num('count');
const MARGIN_MS = num('margin-s') * 1000;
const SPREAD_MS = MARGIN_MS / 2;
if (!['expired', 'due-soon'].includes(values.scenario)) throw new Error('--scenario must be expired or due-soon');

async function main() {
  const home = mkdtempSync(join(tmpdir(), 'dropkey-bench-storm-'));
  const emu = await startEmulator();
  const children = [emu.child];
  try {
    const base = Date.now();
    const expiresAt = values.scenario === 'expired' ? () => base - 60_000 : () => base + MARGIN_MS + SPREAD_MS / 2;
    const { env, authorization } = await seed({ home, masterKey: randomBytes(32).toString('base64'), emu, count: COUNT, valid: num('valid'), expiresAt });
    // The storm starts when the server does: the seeding took a while, so 'due-soon' is re-based on now.
    if (num('rate-limit-n') > 0) await emu.control('faults', { route: 'oauth2/token', status: 429, retry_after: num('retry-after-s'), count: num('rate-limit-n') });
    if (num('latency-ms') > 0) await emu.control('faults', { route: 'oauth2/token', delay_ms: num('latency-ms'), count: 1_000_000 });
    const server = await startServer({
      ...env,
      BENCH_JOBS: 'on',
      BENCH_REFRESH_INTERVAL_MS: String(num('interval-s') * 1000),
      BENCH_REFRESH_MARGIN_MS: String(MARGIN_MS),
      BENCH_HEALTH_INTERVAL_MS: String(24 * 3600_000),
      DROPKEY_REFRESH_CONCURRENCY: String(num('concurrency')),
    });
    const t0 = performance.now();
    const curve = [];
    let done = false;
    let finishedAfterS = null;
    const handoutLat = [];
    const paths = Array.from({ length: num('valid') }, (_, i) => `/api/v1/connections/v${i}/token`);
    const load =
      paths.length > 0
        ? (async () => {
            let errors = 0;
            while (!done) {
              const r = await handoutLoad({ url: server.url, authorization, paths, clients: num('clients'), ms: 1000 });
              handoutLat.push(...r.lat);
              errors += r.errors;
            }
            return errors;
          })()
        : Promise.resolve(0);
    try {
      let last = 0;
      const deadline = t0 + num('timeout-s') * 1000;
      for (let tick = 1; performance.now() < deadline; tick++) {
        await new Promise((r) => setTimeout(r, Math.max(0, t0 + tick * 1000 - performance.now())));
        const st = await server.call('stats');
        curve.push({ t_s: tick, refreshed: st.refreshed, per_s: st.refreshed - last, backlog: st.backlog, failed: st.failed, rate_limited: st.rate_limited });
        last = st.refreshed;
        if (tick % 5 === 0) log(`${tick} s: ${st.refreshed} refreshed (${curve.slice(-5).reduce((n, c) => n + c.per_s, 0) / 5}/s), backlog ${st.backlog}, failed ${st.failed}, 429s ${st.rate_limited}`);
        if (st.refreshed + st.failed >= COUNT && st.backlog === 0) {
          finishedAfterS = round((performance.now() - t0) / 1000, 1);
          break;
        }
      }
    } finally {
      done = true;
    }
    const handoutErrors = await load;
    const fresh = await server.call('fresh', { marginMs: MARGIN_MS });
    const st = await server.call('stats');
    await server.stop();
    const lat = latencyStats(handoutLat);
    const summary = {
      bench: 'expiry-storm',
      scenario: values.scenario,
      count: COUNT,
      latency_ms: num('latency-ms'),
      rate_limit_n: num('rate-limit-n'),
      margin_s: MARGIN_MS / 1000,
      concurrency: num('concurrency'),
      finished_after_s: finishedAfterS,
      peak_per_s: Math.max(0, ...curve.map((c) => c.per_s)),
      refreshed: st.refreshed,
      failed: st.failed,
      rate_limited: st.rate_limited,
      paused_s: round(st.paused_s, 1),
      // Fresh: valid beyond the margin. The --valid connections are counted too.
      end: fresh,
      handouts_during_storm: { ...lat, errors: handoutErrors },
      eld_max_ms: round(st.eld_max_ms, 1),
      met: finishedAfterS !== null && finishedAfterS < MARGIN_MS / 2000 && st.failed === 0 && fresh.due === 0 && fresh.inactive === 0 && handoutErrors === 0,
      curve,
      ...machine(),
      node: process.version,
    };
    console.log(JSON.stringify(summary));
    process.exitCode = summary.met ? 0 : 1;
  } finally {
    for (const c of children.reverse()) await stop(c);
    rmSync(home, { recursive: true, force: true });
  }
}

await main();

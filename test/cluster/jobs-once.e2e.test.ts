/**
 * docs/deploying.md ("What the cluster guarantees"): scheduled work runs once across the cluster, not once per instance. Three instances, each with its
 * own PostgreSQL store handles (locks: the core store; run records: the webhook store), run the production
 * Scheduler (src/server/jobs/scheduler.ts) on one shared manual clock for 20 periods; the job's body itself
 * touches PostgreSQL so runs take real time. Exactly one run per period across the three, never two at once,
 * and when the instance that ran last stops, the others carry on.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { Scheduler, type RunResult } from '../../src/server/jobs/scheduler.js';
import { ManualTimers } from '../../src/server/jobs/timers.js';
import { Keyring } from '../../src/store/cipher.js';
import { openDriver } from '../../src/store/postgres/index.js';
import { dropSchema, freshSchemaName, TEST_DATABASE_URL, withAdmin } from '../../src/store/postgres/test-helpers.test-support.js';

const INTERVAL = 60_000;
const PERIODS = 20;
const quiet = { info() {}, warn() {}, error() {}, debug() {} };

test('a scheduled job runs once per period across 3 instances on one PostgreSQL store', { skip: TEST_DATABASE_URL ? false : 'DROPKEY_TEST_DATABASE_URL is not set', timeout: 60_000 }, async () => {
  const schema = freshSchemaName();
  const keyring = Keyring.generate();
  const timers = new ManualTimers(Date.now());
  const closers: (() => Promise<void>)[] = [];
  try {
    const runs: { instance: number; at: number }[] = [];
    const results: RunResult[] = [];
    let inside = 0;
    let maxInside = 0;
    const instances: Scheduler[] = [];
    for (let i = 0; i < 3; i++) {
      const stores = await openDriver({ connectionString: TEST_DATABASE_URL!, schema, keyring, maxConnections: 5 });
      const store = stores.core;
      closers.push(() => stores.close());
      const scheduler = new Scheduler({ locks: stores.locks, runs: stores.webhooks, timers, logger: quiet, random: Math.random, onResult: (_n, r) => void results.push(r) });
      scheduler.add({
        name: 'cluster.count',
        intervalMs: INTERVAL,
        initialDelayMs: 0,
        async run() {
          inside++;
          maxInside = Math.max(maxInside, inside);
          runs.push({ instance: i, at: timers.now() });
          // Real work against the database, so a run is in flight while the other instances' timers fire.
          await withAdmin((c) => c.query('SELECT pg_sleep(0.01)'));
          inside--;
        },
      });
      instances.push(scheduler);
      closers.unshift(() => scheduler.stop());
    }
    const step = async (ms: number) => {
      timers.advance(ms);
      // Let every attempt started by the advance finish (they wait on PostgreSQL, not on the clock).
      for (let k = 0; k < 3; k++) {
        await Promise.all(instances.map((s) => s.idle()));
        await new Promise((r) => setImmediate(r));
      }
    };
    for (const s of instances) s.start();
    for (let t = 0; t < PERIODS * 10; t++) await step(INTERVAL / 10);

    assert.equal(maxInside, 1, 'never two runs at once');
    // Instances fire every interval × (1 ± 10 %); a run counts for its period (≥ 81 % of an interval apart).
    assert.ok(runs.length >= PERIODS - 1 && runs.length <= Math.ceil(PERIODS / 0.81) + 1, `about one run per period: ${runs.length} runs in ${PERIODS} periods (3 uncoordinated instances would make ~${3 * PERIODS})`);
    for (let k = 1; k < runs.length; k++) assert.ok(runs[k]!.at - runs[k - 1]!.at >= INTERVAL * 0.81 - 1, `runs ${k - 1} and ${k} are a period apart`);
    assert.ok(results.filter((r) => r === 'recent' || r === 'locked').length >= runs.length, 'the other instances skipped');

    // The instance that ran last stops: the job keeps running on the others.
    const last = runs[runs.length - 1]!.instance;
    await instances[last]!.stop();
    const before = runs.length;
    for (let t = 0; t < 5 * 10; t++) await step(INTERVAL / 10);
    const after = runs.slice(before);
    assert.ok(after.length >= 4, `the survivors kept the job running (${after.length} runs in 5 periods)`);
    assert.ok(after.every((r) => r.instance !== last));
  } finally {
    for (const close of closers) await close().catch(() => undefined);
    await dropSchema(schema);
  }
});

import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { openStores } from '../../store/index.js';
import type { Stores } from '../../store/types.js';
import type { WebhookStore } from '../../store/webhook-types.js';
import { Scheduler, type RunResult } from './scheduler.js';
import { ManualTimers } from './timers.js';

let dir: string;
let stores: Stores;
let runs: WebhookStore;
const quiet = { info() {}, warn() {}, error() {}, debug() {} } as never;

before(async () => {
  dir = mkdtempSync(join(tmpdir(), 'dropkey-sched-'));
  const masterKey = randomBytes(32).toString('base64');
  stores = await openStores({ home: dir, masterKey });
  runs = stores.webhooks;
});
after(async () => {
  await stores.close();
  rmSync(dir, { recursive: true, force: true });
});

async function settle(s: Scheduler): Promise<void> {
  for (let i = 0; i < 3; i++) {
    await new Promise((r) => setImmediate(r));
    await s.idle();
  }
}

test('intervals are jittered within ±jitter of the interval', async () => {
  for (const [random, expected] of [[0, 54_000], [0.5, 60_000], [0.999999, 66_000]] as const) {
    const timers = new ManualTimers();
    const s = new Scheduler({ locks: stores.locks, runs, timers, logger: quiet, random: () => random });
    let n = 0;
    s.add({ name: `jit${random}`, intervalMs: 60_000, jitter: 0.1, initialDelayMs: 0, run: async () => void n++ });
    s.start();
    timers.advance(0);
    await settle(s);
    assert.equal(n, 1);
    assert.equal(timers.nextAt! - timers.now(), expected);
    await s.stop();
  }
});

test('a run is skipped while another holder has the job lock; a failing run is recorded and rescheduled', async () => {
  const timers = new ManualTimers();
  const results: RunResult[] = [];
  const s = new Scheduler({ locks: stores.locks, runs, timers, logger: quiet, random: () => 0.5, onResult: (_n, r) => void results.push(r) });
  let calls = 0;
  s.add({
    name: 'flaky',
    intervalMs: 1_000,
    initialDelayMs: 0,
    run: async () => {
      calls++;
      throw new Error('the job broke');
    },
  });
  let release!: () => void;
  let held!: () => void;
  const holding = new Promise<void>((r) => (held = r));
  const other = stores.locks.withLock('job:flaky', { ttlMs: 60_000, waitMs: 0 }, async () => {
    held();
    await new Promise<void>((r) => (release = r));
  });
  await holding;
  s.start();
  timers.advance(0);
  await settle(s);
  assert.deepEqual(results, ['locked']);
  assert.equal(calls, 0);
  release();
  await other;
  timers.advance(1_000);
  await settle(s);
  assert.deepEqual(results, ['locked', 'failed']);
  assert.equal(calls, 1);
  const rec = (await runs.listJobRuns()).find((r) => r.name === 'flaky')!;
  assert.equal(rec.lastOutcome, 'failed');
  assert.equal(rec.lastError, 'the job broke');
  assert.equal(timers.pending, 1, 'rescheduled after the failure');
  await s.stop();
  assert.equal(timers.pending, 0);
  assert.equal(await s.runNow('flaky'), 'stopped');
});

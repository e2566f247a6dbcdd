/**
 * SharedBackoffStore over an in-memory table: a block recorded by one instance is seen by another; an unreachable
 * table degrades to the instance's memory without errors and is left alone for a while (no proxied request waits
 * on a dead database). The SQL tables run end to end in test/cluster/shared-backoff.e2e.test.ts.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { BackoffState } from './backoff.js';
import { RETRY_AFTER_FAILURE_MS, SharedBackoffStore, type BackoffTable } from './shared-backoff.js';

function table(): BackoffTable & { rows: Map<string, BackoffState>; down: boolean; calls: number } {
  const t = {
    rows: new Map<string, BackoffState>(),
    down: false,
    calls: 0,
    async get(key: string, now: number) {
      t.calls++;
      if (t.down) throw new Error('connection refused');
      const b = t.rows.get(key);
      return b && b.until > now ? b : undefined;
    },
    async block(key: string, state: BackoffState) {
      t.calls++;
      if (t.down) throw new Error('connection refused');
      const cur = t.rows.get(key);
      if (!cur || cur.until < state.until) t.rows.set(key, state);
    },
  };
  return t;
}

describe('SharedBackoffStore', () => {
  it('a block set through one instance is seen by another, and ends on time', async () => {
    let now = 1_000;
    const shared = table();
    const a = new SharedBackoffStore(shared, { clock: () => now });
    const b = new SharedBackoffStore(shared, { clock: () => now });
    assert.equal(await b.get('conn', now), undefined);
    await a.block('conn', { until: now + 2_000, reason: 'too_many_requests' });
    assert.deepEqual(await b.get('conn', now), { until: 3_000, reason: 'too_many_requests' });
    await a.block('conn', { until: now + 500, reason: 'too_many_requests' });
    assert.equal((await b.get('conn', now))?.until, 3_000, 'a shorter block never shortens one in force');
    now = 3_000;
    assert.equal(await b.get('conn', now), undefined);
  });

  it('an unreachable table falls back to memory, is reported once, and is skipped for a while', async () => {
    let now = 1_000;
    const shared = table();
    const errors: unknown[] = [];
    const a = new SharedBackoffStore(shared, { clock: () => now, onError: (e) => errors.push(e) });
    shared.down = true;
    await a.block('conn', { until: now + 2_000, reason: 'too_many_requests' });
    assert.equal((await a.get('conn', now))?.until, 3_000, 'this instance still honours its own block');
    const calls = shared.calls;
    assert.equal(await a.get('other', now), undefined);
    assert.equal(shared.calls, calls, 'no database call while it is known to be down');
    assert.equal(errors.length, 1);
    shared.down = false;
    now += RETRY_AFTER_FAILURE_MS;
    assert.equal(await a.get('other', now), undefined);
    assert.equal(shared.calls, calls + 1, 'tried again after the pause');
  });
});

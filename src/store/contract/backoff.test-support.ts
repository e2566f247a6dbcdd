/**
 * The BackoffTable contract (the proxy's 429 back-off shared by every instance on one database), run against every
 * driver; `a` and `b` are two instances. The policy on top (memory first, degrade while the database is away) is
 * tested in src/server/proxy/shared-backoff.test.ts; its end-to-end run across instances in
 * test/cluster/shared-backoff.e2e.test.ts.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { withHarness, type DriverUnderTest } from './harness.test-support.js';

const T0 = 1_700_000_000_000;
const HOUR = 60 * 60_000;

export function backoffContractTests(d: DriverUnderTest): void {
  describe(`BackoffTable contract: ${d.name}`, { ...(d.skip ? { skip: d.skip } : {}) }, () => {
    test('a block recorded by one instance is seen by another until it ends, with its reason', () =>
      withHarness(d.make, async (h) => {
        const [a, b] = [(await h.open()).backoff, (await h.open()).backoff];
        assert.equal(await b.get('conn', T0), undefined);
        await a.block('conn', { until: T0 + 2_000, reason: 'too_many_write_operations' }, T0);
        assert.deepEqual(await b.get('conn', T0 + 1_999), { until: T0 + 2_000, reason: 'too_many_write_operations' });
        assert.equal(await b.get('conn', T0 + 2_000), undefined, 'ended');
        assert.equal(await b.get('other', T0), undefined, 'per key');
      }));

    test('a block never shortens one already recorded; a longer one extends it', () =>
      withHarness(d.make, async (h) => {
        const [a, b] = [(await h.open()).backoff, (await h.open()).backoff];
        await a.block('conn', { until: T0 + 5_000, reason: 'too_many_requests' }, T0);
        await b.block('conn', { until: T0 + 1_000, reason: 'too_many_write_operations' }, T0);
        assert.deepEqual(await a.get('conn', T0), { until: T0 + 5_000, reason: 'too_many_requests' });
        await b.block('conn', { until: T0 + 9_000, reason: 'too_many_write_operations' }, T0);
        assert.deepEqual(await a.get('conn', T0), { until: T0 + 9_000, reason: 'too_many_write_operations' });
      }));

    test('rows whose block ended over an hour ago are dropped by the next block', () =>
      withHarness(d.make, async (h) => {
        const s = (await h.open()).backoff;
        await s.block('old', { until: T0, reason: 'too_many_requests' }, T0 - 1_000);
        await s.block('recent', { until: T0 + HOUR, reason: 'too_many_requests' }, T0);
        assert.deepEqual((await h.rows('SELECT key FROM proxy_backoff ORDER BY key')).map((r) => r['key']), ['old', 'recent']);
        await s.block('new', { until: T0 + HOUR + 2, reason: 'too_many_requests' }, T0 + HOUR + 1);
        assert.deepEqual((await h.rows('SELECT key FROM proxy_backoff ORDER BY key')).map((r) => r['key']), ['new', 'recent']);
      }));

    test('a closed store fails the call (the shared back-off then falls back to memory)', () =>
      withHarness(d.make, async (h) => {
        const s = await h.open();
        await s.close();
        await assert.rejects(s.backoff.get('conn', T0), { code: 'DROPKEY_INTERNAL' });
      }));
  });
}

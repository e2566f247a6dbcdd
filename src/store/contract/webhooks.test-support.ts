/**
 * The WebhookStore contract (endpoints, the outbox and delivery log, job runs), run against every driver; `a` and
 * `b` are two instances (handles) on one database. Merged from the former per-driver suites
 * (sqlite/webhook-store.test.ts, postgres/webhook-store.e2e.test.ts): every case of either runs for both.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { describe, test } from 'node:test';
import { deriveKeyId, Keyring } from '../cipher.js';
import type { Stores } from '../types.js';
import type { AttemptOutcome, WebhookStore } from '../webhook-types.js';
import { withHarness, type DriverHarness, type DriverUnderTest } from './harness.test-support.js';

const T0 = 1_700_000_000_000;

const outcome = (over: Partial<AttemptOutcome> = {}): AttemptOutcome => ({
  attempt: 1,
  at: T0 + 1,
  statusCode: 200,
  error: null,
  durationMs: 5,
  result: 'succeeded',
  nextAttemptAt: null,
  ...over,
});

let evt = 0;
const event = (type: string, id = `evt_${++evt}`) => ({ id, type, connection: 'c', at: T0, body: JSON.stringify({ id, type, n: evt }) });

export function webhookContractTests(d: DriverUnderTest): void {
  /** A fresh database with two instances on it. */
  const withTwo = (fn: (a: WebhookStore, b: WebhookStore, h: DriverHarness, stores: [Stores, Stores]) => Promise<void>) =>
    withHarness(d.make, async (h) => {
      const [x, y] = await Promise.all([h.open({ clock: () => T0 }), h.open({ clock: () => T0 })]);
      await fn(x.webhooks, y.webhooks, h, [x, y]);
    });

  describe(`WebhookStore contract: ${d.name}`, { ...(d.skip ? { skip: d.skip } : {}) }, () => {
    test('the webhook tables come from the one migrator (schema_migrations); reopening is idempotent; the core store works on the same database', () =>
      withHarness(d.make, async (h) => {
        await (await h.open()).close();
        const again = await h.open();
        assert.deepEqual(await again.webhooks.listEndpoints(), []);
        const tables = new Set((await h.rows(d.name === 'sqlite' ? "SELECT name FROM sqlite_master WHERE type = 'table'" : 'SELECT tablename AS name FROM pg_tables WHERE schemaname = current_schema()')).map((r) => String(r['name'])));
        for (const t of ['webhook_endpoints', 'webhook_events', 'webhook_deliveries', 'webhook_attempts', 'job_runs', 'schema_migrations']) assert.ok(tables.has(t), t);
        assert.ok(!tables.has('webhook_schema_migrations'), 'no migrations table of its own any more');
        assert.deepEqual(await h.rows('SELECT version FROM schema_migrations ORDER BY version'), h.migrations.map((version) => ({ version })));
        await again.core.createApp({ name: 'a', key: 'k', secret: null, scopes: [], team: false, access: null });
        assert.equal((await again.core.listApps()).length, 1);
      }));

    test('endpoints: create, list, read; the signing secret is encrypted at rest and never listed', () =>
      withTwo(async (a, b, h) => {
        const e = await a.createEndpoint({ url: 'https://hooks.example.com/a', description: 'A', events: ['token.refreshed'], secret: 'whsec-plain-secret-42', createdBy: 'cli' }, T0);
        assert.deepEqual(await b.getEndpoint(e.id), e);
        assert.ok((await b.listEndpoints()).some((x) => x.id === e.id));
        assert.ok(!JSON.stringify(await a.listEndpoints()).includes('whsec-plain'));
        const raw = String((await h.rows('SELECT secret_enc FROM webhook_endpoints WHERE id = $1', [e.id]))[0]!['secret_enc']);
        assert.match(raw, /^dk1\./);
        assert.ok(!raw.includes('whsec-plain'));
        assert.equal(await a.deleteEndpoint(e.id), true);
        assert.equal(await a.deleteEndpoint(e.id), false);
      }));

    test('secrets are encrypted at rest, never listed, and re-encrypted under a new key', () =>
      withHarness(d.make, async (h) => {
        const oldKey = randomBytes(32);
        const keyring = Keyring.fromKey(oldKey);
        const s = (await h.open({ keyring })).webhooks;
        const e = await s.createEndpoint({ url: 'https://x.example/h', description: '', events: ['*'], secret: 'whsec_plain', createdBy: 't' }, T0);
        assert.equal(JSON.stringify(await s.listEndpoints()).includes('whsec_plain'), false);
        const raw = String((await h.rows('SELECT secret_enc FROM webhook_endpoints WHERE id = $1', [e.id]))[0]!['secret_enc']);
        assert.match(raw, /^dk1\./);
        assert.ok(!raw.includes('whsec_plain'));

        const newKey = randomBytes(32);
        const newId = deriveKeyId(newKey);
        const both = new Keyring([{ id: newId, key: newKey, created: null }, { id: deriveKeyId(oldKey), key: oldKey, created: null }], newId);
        const r = (await h.open({ keyring: both })).webhooks;
        const res = await r.reencryptSecrets();
        assert.ok(res.rewritten >= 1);
        assert.equal(res.remaining, 0);
        await r.enqueueEvent(event('connection.created', 'evt_rot'), T0);
        const claimed = await r.claimDue(T0, 1000, 10);
        assert.equal(claimed.find((c) => c.delivery.endpointId === e.id)?.secret, 'whsec_plain');
        await r.deleteEndpoint(e.id);
      }));

    test('key rotation re-encrypts signing secrets; the old key can then be dropped', () =>
      withHarness(d.make, async (h) => {
        const keyring = h.keyring;
        const s1 = (await h.open()).webhooks;
        const e = await s1.createEndpoint({ url: 'https://h/k', description: '', events: ['*'], secret: 'rotate-me', createdBy: 'cli' }, T0);
        await s1.enqueueEvent(event('x.k'), T0);
        const rotated = keyring.withNewActiveKey();
        const s2 = await h.open({ keyring: rotated });
        assert.deepEqual(await s2.webhooks.reencryptSecrets(), { rewritten: 1, remaining: 0 });
        // The store's key check is the core's: rotated too, so that a handle without the old key can open.
        await s2.core.reencryptSecrets();
        const s3 = (await h.open({ keyring: rotated.withoutKey(keyring.activeKeyId) })).webhooks;
        const [c] = await s3.claimDue(T0, 1_000, 1);
        assert.equal(c?.delivery.endpointId, e.id);
        assert.equal(c?.secret, 'rotate-me');
      }));

    test('events fan out to subscribed endpoints; 2 instances x 3 workers claim 40 deliveries with no duplicates', () =>
      withTwo(async (a, b) => {
        const star = await a.createEndpoint({ url: 'https://h/star', description: '', events: ['*'], secret: 's1', createdBy: 'cli' }, T0);
        const only = await a.createEndpoint({ url: 'https://h/only', description: '', events: ['connection.needs_reauth'], secret: 's2', createdBy: 'cli' }, T0);
        assert.equal((await a.enqueueEvent(event('token.refreshed'), T0)).length, 1, 'only the * endpoint');
        assert.equal((await b.enqueueEvent(event('connection.needs_reauth'), T0)).length, 2);
        for (let i = 0; i < 18; i++) await (i % 2 ? a : b).enqueueEvent(event('connection.needs_reauth'), T0);
        const workers = [a, a, a, b, b, b].map(async (s) => {
          const got: string[] = [];
          for (;;) {
            const batch = await s.claimDue(T0 + 10, 60_000, 3);
            if (batch.length === 0) return got;
            got.push(...batch.map((c) => c.delivery.id));
          }
        });
        const claimed = (await Promise.all(workers)).flat();
        assert.equal(claimed.length, 39, 'every due delivery is claimed'); // 1 + 2 + 18 x 2
        assert.equal(new Set(claimed).size, 39, 'and none twice');
        // Claimed deliveries stay invisible until their lease runs out, then they are due again.
        assert.deepEqual(await b.claimDue(T0 + 10, 60_000, 100), []);
        assert.equal(await a.nextDueAt(), T0 + 10 + 60_000);
        const again = await b.claimDue(T0 + 10 + 60_000, 1_000, 100);
        assert.equal(again.length, 39);
        const first = again.find((c) => c.delivery.endpointId === only.id)!;
        assert.equal(first.secret, 's2');
        assert.equal(first.delivery.endpointUrl, 'https://h/only');
        assert.match(first.body, /connection\.needs_reauth/);
        void star;
      }));

    test('claims are exclusive across handles until the lease ends; attempts are logged; delete cascades', () =>
      withTwo(async (a, b) => {
        const e1 = await a.createEndpoint({ url: 'https://a.example/', description: '', events: ['connection.created'], secret: 's1', createdBy: 't' }, T0);
        const e2 = await a.createEndpoint({ url: 'https://b.example/', description: '', events: ['connection.revoked'], secret: 's2', createdBy: 't' }, T0);
        const ids = await a.enqueueEvent(event('connection.created', 'evt_1'), T0);
        assert.equal(ids.length, 1, 'only the subscribed endpoint');
        assert.deepEqual(await a.enqueueEvent(event('connection.reconnected', 'evt_x'), T0), [], 'nobody subscribed');
        const first = await a.claimDue(T0, 10_000, 10);
        assert.equal(first.length, 1);
        assert.equal(first[0]!.delivery.endpointId, e1.id);
        assert.equal((await b.claimDue(T0 + 5_000, 10_000, 10)).length, 0, 'claimed by the other handle');
        assert.equal((await b.claimDue(T0 + 10_000, 10_000, 10)).length, 1, 'the lease ran out (a dead worker): at-least-once');
        await b.recordAttempt(ids[0]!, { attempt: 1, at: T0 + 10_000, statusCode: 500, error: 'HTTP 500', durationMs: 3, result: 'retry', nextAttemptAt: T0 + 70_000 });
        assert.equal(await a.nextDueAt(), T0 + 70_000);
        assert.equal((await a.claimDue(T0 + 69_999, 10_000, 10)).length, 0);
        await a.recordAttempt(ids[0]!, { attempt: 2, at: T0 + 70_000, statusCode: 200, error: null, durationMs: 4, result: 'succeeded', nextAttemptAt: null });
        const d1 = (await a.getDelivery(ids[0]!))!;
        assert.equal(d1.status, 'succeeded');
        assert.deepEqual(d1.attemptLog.map((x) => x.statusCode), [500, 200]);
        assert.equal(await a.nextDueAt(), null);
        assert.equal(await a.redeliver(ids[0]!, T0 + 80_000), true);
        assert.equal((await a.getDelivery(ids[0]!))!.status, 'pending');
        assert.equal(await a.deleteEndpoint(e1.id), true);
        assert.equal(await a.getDelivery(ids[0]!), undefined, 'deliveries go with the endpoint');
        assert.equal(await a.deleteEndpoint(e1.id), false);
        await a.deleteEndpoint(e2.id);
      }));

    test('attempts: retry, then success; the log keeps every attempt; redeliver makes it pending again', () =>
      withTwo(async (a, b) => {
        const e = await a.createEndpoint({ url: 'https://h/r', description: '', events: ['x.retry'], secret: 's3', createdBy: 'cli' }, T0);
        const [id] = await a.enqueueEvent(event('x.retry'), T0, e.id);
        const [c1] = await b.claimDue(T0 + 10_000_000, 1_000, 1, [id!]);
        assert.equal(c1?.delivery.id, id);
        await b.recordAttempt(id!, outcome({ result: 'retry', statusCode: 503, error: 'HTTP 503', nextAttemptAt: T0 + 10_000_500, at: T0 + 10_000_000 }));
        assert.deepEqual(await a.claimDue(T0 + 10_000_100, 1_000, 1, [id!]), [], 'not due before nextAttemptAt');
        const [c2] = await a.claimDue(T0 + 10_000_500, 1_000, 1, [id!]);
        assert.ok(c2);
        await a.recordAttempt(id!, outcome({ attempt: 2, at: T0 + 10_000_500 }));
        const d1 = await b.getDelivery(id!);
        assert.equal(d1?.status, 'succeeded');
        assert.equal(d1?.attempts, 2);
        assert.equal(d1?.completedAt, T0 + 10_000_505);
        assert.deepEqual(d1?.attemptLog.map((x) => [x.attempt, x.statusCode]), [
          [1, 503],
          [2, 200],
        ]);
        assert.ok((await a.listDeliveries({ endpointId: e.id })).every((x) => x.endpointId === e.id));
        assert.equal(await a.redeliver(id!, T0 + 20_000_000), true);
        assert.equal(await a.redeliver(id!, T0 + 20_000_000), false, 'already pending');
        assert.equal((await a.getDelivery(id!))?.status, 'pending');
        assert.equal(await a.redeliver('whd_nope', T0), false);
      }));

    test('deleting an endpoint drops its deliveries; purgeFinished removes old finished ones', () =>
      withTwo(async (a) => {
        const e = await a.createEndpoint({ url: 'https://h/p', description: '', events: ['x.purge'], secret: 's4', createdBy: 'cli' }, T0);
        const [id] = await a.enqueueEvent(event('x.purge'), T0, e.id);
        await a.claimDue(T0 + 30_000_000, 1_000, 1, [id!]);
        await a.recordAttempt(id!, outcome({ result: 'failed', statusCode: 410, error: 'gone', at: T0 + 30_000_000 }));
        assert.equal(await a.purgeFinished(T0 + 30_000_000), 0, 'not old enough');
        assert.equal(await a.purgeFinished(T0 + 40_000_000), 1);
        assert.equal(await a.getDelivery(id!), undefined);
        const [id2] = await a.enqueueEvent(event('x.purge'), T0, e.id);
        await a.deleteEndpoint(e.id);
        assert.equal(await a.getDelivery(id2!), undefined);
        await a.recordAttempt(id2!, outcome()); // the endpoint went away meanwhile: nothing to record, no error
      }));

    test('a job starts once per period across instances, even when both try at the same moment', () =>
      withTwo(async (a, b) => {
        const results = await Promise.all([a.beginJobRun('health', T0, 60_000), b.beginJobRun('health', T0, 60_000), a.beginJobRun('health', T0 + 1, 60_000), b.beginJobRun('health', T0 + 2, 60_000)]);
        assert.equal(results.filter(Boolean).length, 1);
        await a.finishJobRun('health', T0 + 5, 'ok', null);
        assert.equal(await b.beginJobRun('health', T0 + 59_999, 60_000), false);
        // Whichever of the racing calls won recorded a start in [T0, T0 + 2]: one period after the latest of them, go.
        assert.equal(await b.beginJobRun('health', T0 + 60_002, 60_000), true);
        await b.finishJobRun('health', T0 + 60_010, 'failed', 'boom');
        const run = (await a.listJobRuns()).find((r) => r.name === 'health');
        assert.deepEqual(run, { name: 'health', lastStartedAt: T0 + 60_002, lastFinishedAt: T0 + 60_010, lastOutcome: 'failed', lastError: 'boom', runs: 2 });
      }));

    test('job runs: one start per period across handles, recorded outcomes', () =>
      withTwo(async (a, b) => {
        assert.equal(await a.beginJobRun('j', T0, 60_000), true);
        assert.equal(await b.beginJobRun('j', T0 + 30_000, 60_000), false, 'another handle ran it this period');
        await a.finishJobRun('j', T0 + 1_000, 'failed', 'boom');
        assert.equal(await b.beginJobRun('j', T0 + 60_000, 60_000), true);
        assert.equal(await b.beginJobRun('j', T0 + 60_001, 0), true, 'minInterval 0 forces');
        const runs = (await a.listJobRuns()).find((r) => r.name === 'j')!;
        assert.equal(runs.runs, 3);
        assert.equal(runs.lastOutcome, 'running');
      }));

    test('an instance whose clock is BEHIND the one that started the job skips it this period', () =>
      withTwo(async (a, b) => {
        const SKEW = 5_000; // b's clock is 5 s behind a's
        assert.equal(await a.beginJobRun('skewed', T0, 60_000), true);
        assert.equal(await b.beginJobRun('skewed', T0 - SKEW, 60_000), false, 'a start "in b\'s future" is this period');
        assert.equal(await b.beginJobRun('skewed', T0 - 59_999, 60_000), false, 'still within one period of that start');
        // The next period on a's clock: a runs, then b (still 5 s behind, so it thinks the period is older) skips again.
        assert.equal(await a.beginJobRun('skewed', T0 + 60_000, 60_000), true);
        assert.equal(await b.beginJobRun('skewed', T0 + 60_000 - SKEW, 60_000), false);
        // A clock a whole period behind is a different period (|now - last| >= minInterval).
        assert.equal(await b.beginJobRun('skewed', T0, 60_000), true, 'a whole period behind is another period');
        assert.equal((await a.listJobRuns()).find((r) => r.name === 'skewed')?.runs, 3);
      }));
  });
}

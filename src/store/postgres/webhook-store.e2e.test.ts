/**
 * The PostgreSQL WebhookStore: the outbox and job-run semantics of ../webhook-types.ts, and what several instances
 * on one schema rely on: concurrent claims never hand one delivery to two workers, a job starts once per period.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { Keyring } from '../cipher.js';
import type { AttemptOutcome, WebhookStore } from '../webhook-types.js';
import { openPostgresStore } from './index.js';
import { openPostgresWebhookStore, webhookMigrations } from './webhook-store.js';
import { dropSchema, freshSchemaName, SKIP_REASON, TEST_DATABASE_URL, withAdmin } from './test-helpers.js';

const T0 = 1_700_000_000_000;

if (!TEST_DATABASE_URL) {
  test('PostgreSQL webhook store', { skip: SKIP_REASON }, () => {});
} else {
  tests(TEST_DATABASE_URL);
}

function tests(url: string): void {
  const schema = freshSchemaName();
  const keyring = Keyring.generate();
  let a: WebhookStore;
  let b: WebhookStore; // a second instance
  let evt = 0;
  const event = (type: string) => ({ id: `evt_${++evt}`, type, connection: 'c', at: T0, body: JSON.stringify({ type, n: evt }) });
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

  before(async () => {
    await (await openPostgresStore({ connectionString: url, keyring, schema })).close();
    [a, b] = await Promise.all([openPostgresWebhookStore({ connectionString: url, keyring, schema }, T0), openPostgresWebhookStore({ connectionString: url, keyring, schema }, T0)]);
  });
  after(async () => {
    await a.close();
    await b.close();
    await dropSchema(schema);
  });

  describe('PostgreSQL webhook store', () => {
    test('migrations recorded once in their own table', async () => {
      const r = await withAdmin((c) => c.query(`SELECT version FROM "${schema}".webhook_schema_migrations`));
      assert.deepEqual(r.rows, webhookMigrations.map((m) => ({ version: m.version })));
    });

    test('endpoints: create, list, read; the signing secret is encrypted at rest and never listed', async () => {
      const e = await a.createEndpoint({ url: 'https://hooks.example.com/a', description: 'A', events: ['token.refreshed'], secret: 'whsec-plain-secret-42', createdBy: 'cli' }, T0);
      assert.deepEqual(await b.getEndpoint(e.id), e);
      assert.ok((await b.listEndpoints()).some((x) => x.id === e.id));
      assert.ok(!JSON.stringify(await a.listEndpoints()).includes('whsec-plain'));
      const raw = await withAdmin((c) => c.query(`SELECT secret_enc FROM "${schema}".webhook_endpoints WHERE id = $1`, [e.id]));
      assert.match(raw.rows[0].secret_enc, /^dk1\./);
      assert.ok(!raw.rows[0].secret_enc.includes('whsec-plain'));
      assert.equal(await a.deleteEndpoint(e.id), true);
      assert.equal(await a.deleteEndpoint(e.id), false);
    });

    test('events fan out to subscribed endpoints; 2 instances x 3 workers claim 40 deliveries with no duplicates', async () => {
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
    });

    test('attempts: retry, then success; the log keeps every attempt; redeliver makes it pending again', async () => {
      const e = await a.createEndpoint({ url: 'https://h/r', description: '', events: ['x.retry'], secret: 's3', createdBy: 'cli' }, T0);
      const [id] = await a.enqueueEvent(event('x.retry'), T0, e.id);
      const [c1] = await b.claimDue(T0 + 10_000_000, 1_000, 1, [id!]);
      assert.equal(c1?.delivery.id, id);
      await b.recordAttempt(id!, outcome({ result: 'retry', statusCode: 503, error: 'HTTP 503', nextAttemptAt: T0 + 10_000_500, at: T0 + 10_000_000 }));
      assert.deepEqual(await a.claimDue(T0 + 10_000_100, 1_000, 1, [id!]), [], 'not due before nextAttemptAt');
      const [c2] = await a.claimDue(T0 + 10_000_500, 1_000, 1, [id!]);
      assert.ok(c2);
      await a.recordAttempt(id!, outcome({ attempt: 2, at: T0 + 10_000_500 }));
      const d = await b.getDelivery(id!);
      assert.equal(d?.status, 'succeeded');
      assert.equal(d?.attempts, 2);
      assert.equal(d?.completedAt, T0 + 10_000_505);
      assert.deepEqual(d?.attemptLog.map((x) => [x.attempt, x.statusCode]), [
        [1, 503],
        [2, 200],
      ]);
      assert.ok((await a.listDeliveries({ endpointId: e.id })).every((x) => x.endpointId === e.id));
      assert.equal(await a.redeliver(id!, T0 + 20_000_000), true);
      assert.equal(await a.redeliver(id!, T0 + 20_000_000), false, 'already pending');
      assert.equal((await a.getDelivery(id!))?.status, 'pending');
      assert.equal(await a.redeliver('whd_nope', T0), false);
    });

    test('deleting an endpoint drops its deliveries; purgeFinished removes old finished ones', async () => {
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
    });

    test('a job starts once per period across instances, even when both try at the same moment', async () => {
      const results = await Promise.all([a.beginJobRun('health', T0, 60_000), b.beginJobRun('health', T0, 60_000), a.beginJobRun('health', T0 + 1, 60_000), b.beginJobRun('health', T0 + 2, 60_000)]);
      assert.equal(results.filter(Boolean).length, 1);
      await a.finishJobRun('health', T0 + 5, 'ok', null);
      assert.equal(await b.beginJobRun('health', T0 + 59_999, 60_000), false);
      // Whichever of the racing calls won recorded a start in [T0, T0 + 2]: one period after the latest of them, go.
      assert.equal(await b.beginJobRun('health', T0 + 60_002, 60_000), true);
      await b.finishJobRun('health', T0 + 60_010, 'failed', 'boom');
      const run = (await a.listJobRuns()).find((r) => r.name === 'health');
      assert.deepEqual(run, { name: 'health', lastStartedAt: T0 + 60_002, lastFinishedAt: T0 + 60_010, lastOutcome: 'failed', lastError: 'boom', runs: 2 });
    });

    test('an instance whose clock is BEHIND the one that started the job skips it this period', async () => {
      const SKEW = 5_000;
      assert.equal(await a.beginJobRun('skewed', T0, 60_000), true);
      assert.equal(await b.beginJobRun('skewed', T0 - SKEW, 60_000), false, 'a start "in b\'s future" is this period');
      assert.equal(await a.beginJobRun('skewed', T0 + 60_000, 60_000), true);
      assert.equal(await b.beginJobRun('skewed', T0 + 60_000 - SKEW, 60_000), false);
      assert.equal(await b.beginJobRun('skewed', T0, 60_000), true, 'a whole period behind is another period');
      assert.equal((await a.listJobRuns()).find((r) => r.name === 'skewed')?.runs, 3);
    });

    test('key rotation re-encrypts signing secrets', async () => {
      const fresh = freshSchemaName();
      try {
        const s1 = await openPostgresWebhookStore({ connectionString: url, keyring, schema: fresh }, T0);
        const e = await s1.createEndpoint({ url: 'https://h/k', description: '', events: ['*'], secret: 'rotate-me', createdBy: 'cli' }, T0);
        await s1.enqueueEvent(event('x.k'), T0);
        await s1.close();
        const rotated = keyring.withNewActiveKey();
        const s2 = await openPostgresWebhookStore({ connectionString: url, keyring: rotated, schema: fresh }, T0);
        assert.deepEqual(await s2.reencryptSecrets(), { rewritten: 1, remaining: 0 });
        await s2.close();
        const s3 = await openPostgresWebhookStore({ connectionString: url, keyring: rotated.withoutKey(keyring.activeKeyId), schema: fresh }, T0);
        const [c] = await s3.claimDue(T0, 1_000, 1);
        assert.equal(c?.delivery.endpointId, e.id);
        assert.equal(c?.secret, 'rotate-me');
        await s3.close();
      } finally {
        await dropSchema(fresh);
      }
    });
  });
}

import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import Database from 'better-sqlite3';
import { deriveKeyId, Keyring } from '../cipher.js';
import { openStore } from '../index.js';
import type { WebhookStore } from '../webhook-types.js';
import { openSqliteWebhookStore, WEBHOOK_MIGRATIONS_TABLE } from './webhook-store.js';

let dir: string;
let path: string;
const oldKey = randomBytes(32);
const keyring = Keyring.fromKey(oldKey);
const T0 = Date.UTC(2026, 0, 1);
const event = (id: string, type = 'connection.created') => ({ id, type, connection: 'c', at: T0, body: JSON.stringify({ id, type }) });

before(() => {
  dir = mkdtempSync(join(tmpdir(), 'dropkey-whstore-'));
  path = join(dir, 'dropkey.db');
});
after(() => rmSync(dir, { recursive: true, force: true }));

async function open(): Promise<WebhookStore> {
  return openSqliteWebhookStore({ path, keyring }, T0);
}

test('own migrations table; the core store still opens the same file', async () => {
  const s = await open();
  await s.close();
  const again = await open(); // idempotent
  await again.close();
  const db = new Database(path, { readonly: true });
  const tables = (db.prepare("SELECT name FROM sqlite_master WHERE type = 'table'").all() as { name: string }[]).map((r) => r.name);
  assert.ok(tables.includes(WEBHOOK_MIGRATIONS_TABLE));
  assert.ok(!tables.includes('schema_migrations'), 'never writes the core migrations table');
  db.close();
  const core = await openStore({ home: dir, masterKey: randomBytes(32).toString('base64') });
  await core.close();
});

test('secrets are encrypted at rest, never listed, and re-encrypted under a new key', async () => {
  const s = await open();
  const e = await s.createEndpoint({ url: 'https://x.example/h', description: '', events: ['*'], secret: 'whsec_plain', createdBy: 't' }, T0);
  assert.equal(JSON.stringify(await s.listEndpoints()).includes('whsec_plain'), false);
  const db = new Database(path, { readonly: true });
  const raw = (db.prepare('SELECT secret_enc FROM webhook_endpoints WHERE id = ?').get(e.id) as { secret_enc: string }).secret_enc;
  db.close();
  assert.match(raw, /^dk1\./);
  assert.ok(!raw.includes('whsec_plain'));
  await s.close();

  const newKey = randomBytes(32);
  const newId = deriveKeyId(newKey);
  const both = new Keyring([{ id: newId, key: newKey, created: null }, { id: deriveKeyId(oldKey), key: oldKey, created: null }], newId);
  const r = await openSqliteWebhookStore({ path, keyring: both }, T0);
  const res = await r.reencryptSecrets();
  assert.ok(res.rewritten >= 1);
  assert.equal(res.remaining, 0);
  await r.enqueueEvent(event('evt_rot'), T0);
  const claimed = await r.claimDue(T0, 1000, 10);
  assert.equal(claimed.find((c) => c.delivery.endpointId === e.id)?.secret, 'whsec_plain');
  await r.deleteEndpoint(e.id);
  await r.close();
});

test('claims are exclusive across handles until the lease ends; attempts are logged; delete cascades', async () => {
  const a = await open();
  const b = await open();
  const e1 = await a.createEndpoint({ url: 'https://a.example/', description: '', events: ['connection.created'], secret: 's1', createdBy: 't' }, T0);
  const e2 = await a.createEndpoint({ url: 'https://b.example/', description: '', events: ['connection.revoked'], secret: 's2', createdBy: 't' }, T0);
  const ids = await a.enqueueEvent(event('evt_1'), T0);
  assert.equal(ids.length, 1, 'only the subscribed endpoint');
  assert.deepEqual(await a.enqueueEvent(event('evt_x', 'connection.reconnected'), T0), [], 'nobody subscribed');
  const first = await a.claimDue(T0, 10_000, 10);
  assert.equal(first.length, 1);
  assert.equal(first[0]!.delivery.endpointId, e1.id);
  assert.equal((await b.claimDue(T0 + 5_000, 10_000, 10)).length, 0, 'claimed by the other handle');
  assert.equal((await b.claimDue(T0 + 10_000, 10_000, 10)).length, 1, 'the lease ran out (a dead worker): at-least-once');
  await b.recordAttempt(ids[0]!, { attempt: 1, at: T0 + 10_000, statusCode: 500, error: 'HTTP 500', durationMs: 3, result: 'retry', nextAttemptAt: T0 + 70_000 });
  assert.equal(await a.nextDueAt(), T0 + 70_000);
  assert.equal((await a.claimDue(T0 + 69_999, 10_000, 10)).length, 0);
  await a.recordAttempt(ids[0]!, { attempt: 2, at: T0 + 70_000, statusCode: 200, error: null, durationMs: 4, result: 'succeeded', nextAttemptAt: null });
  const d = (await a.getDelivery(ids[0]!))!;
  assert.equal(d.status, 'succeeded');
  assert.deepEqual(d.attemptLog.map((x) => x.statusCode), [500, 200]);
  assert.equal(await a.nextDueAt(), null);
  assert.equal(await a.redeliver(ids[0]!, T0 + 80_000), true);
  assert.equal((await a.getDelivery(ids[0]!))!.status, 'pending');
  assert.equal(await a.deleteEndpoint(e1.id), true);
  assert.equal(await a.getDelivery(ids[0]!), undefined, 'deliveries go with the endpoint');
  assert.equal(await a.deleteEndpoint(e1.id), false);
  await a.deleteEndpoint(e2.id);
  await a.close();
  await b.close();
});

test('job runs: a second handle whose clock is BEHIND the first still runs the job once per period', async () => {
  const a = await open();
  const b = await open();
  const SKEW = 5_000; // b's clock is 5 s behind a's
  assert.equal(await a.beginJobRun('skew', T0, 60_000), true);
  assert.equal(await b.beginJobRun('skew', T0 - SKEW, 60_000), false, 'b sees a start "in its future": this period, skip');
  assert.equal(await b.beginJobRun('skew', T0 - 59_999, 60_000), false, 'still within one period of that start');
  // The next period on a's clock: a runs, then b (still 5 s behind, so it thinks the period is older) skips again.
  assert.equal(await a.beginJobRun('skew', T0 + 60_000, 60_000), true);
  assert.equal(await b.beginJobRun('skew', T0 + 60_000 - SKEW, 60_000), false);
  // A clock a whole period behind is a different period (|now - last| >= minInterval).
  assert.equal(await b.beginJobRun('skew', T0, 60_000), true);
  assert.equal((await a.listJobRuns()).find((r) => r.name === 'skew')!.runs, 3);
  await a.close();
  await b.close();
});

test('job runs: one start per period across handles, recorded outcomes', async () => {
  const a = await open();
  const b = await open();
  assert.equal(await a.beginJobRun('j', T0, 60_000), true);
  assert.equal(await b.beginJobRun('j', T0 + 30_000, 60_000), false, 'another handle ran it this period');
  await a.finishJobRun('j', T0 + 1_000, 'failed', 'boom');
  assert.equal(await b.beginJobRun('j', T0 + 60_000, 60_000), true);
  assert.equal(await b.beginJobRun('j', T0 + 60_001, 0), true, 'minInterval 0 forces');
  const runs = (await a.listJobRuns()).find((r) => r.name === 'j')!;
  assert.equal(runs.runs, 3);
  assert.equal(runs.lastOutcome, 'running');
  await a.close();
  await b.close();
});

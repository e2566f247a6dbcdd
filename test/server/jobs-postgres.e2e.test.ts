/**
 * Background work on a cluster's store (docs/deploying.md ("What the cluster guarantees")): three server instances on one PostgreSQL database run each
 * scheduled job once per period (one proactive refresh at the emulator), and deliver each webhook event once
 * although every instance runs a delivery worker. Skipped, saying why, without DROPKEY_TEST_DATABASE_URL.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { JOB_NAMES } from '../../src/server/jobs/index.js';
import { SKIP_REASON, TEST_DATABASE_URL } from '../../src/store/postgres/test-helpers.test-support.js';
import { makeRig, startReceiver, type Instance, type Receiver, type Rig } from './webhooks-rig.js';

const MIN = 60_000;
const skip = TEST_DATABASE_URL ? false : SKIP_REASON;
let rig: Rig | undefined;
let receiver: Receiver | undefined;

before(async () => {
  if (skip) return;
  rig = await makeRig({ databaseUrl: TEST_DATABASE_URL! });
  receiver = await startReceiver();
});
after(async () => {
  await receiver?.close();
  await rig?.close();
});

test('three instances on PostgreSQL: one refresh job run per period, one refresh, each webhook delivered once', { skip }, async () => {
  const r = rig!;
  const nodes: Instance[] = [];
  for (let i = 0; i < 3; i++) nodes.push(await r.instance({ start: false }));
  const [a, b, c] = nodes as [Instance, Instance, Instance];
  const admin = await a.key(['admin'], '*');
  const created = await a.call('POST', '/api/v1/webhooks', { key: admin, body: { url: receiver!.url, events: ['connection.created'] } });
  assert.equal(created.status, 201);
  await r.connection(a.dk, 'pgshared');
  const before = await a.dk.get('pgshared');
  r.timers.advance(235 * MIN);
  const grants = await r.refreshGrants();
  for (const n of nodes) n.app.start();
  r.timers.advance(15_000);
  for (const n of nodes) await n.settle();
  const results = nodes.flatMap((n) => n.jobResults.filter((x) => x.job === JOB_NAMES.refresh).map((x) => x.result));
  assert.equal(results.length, 3);
  assert.equal(results.filter((x) => x === 'ran').length, 1, results.join(', '));
  assert.equal((await r.refreshGrants()) - grants, 1, 'exactly one refresh at the emulator');
  assert.ok((await c.dk.get('pgshared')).expiresAt! > before.expiresAt!);

  // Events emitted on different instances: every worker polls, each event arrives once.
  const n0 = receiver!.received.length;
  b.app.services.events.emit({ type: 'connection.created', at: r.timers.now(), connection: 'x1', data: {} });
  c.app.services.events.emit({ type: 'connection.created', at: r.timers.now(), connection: 'x2', data: {} });
  await receiver!.waitFor(n0 + 2);
  // Let every worker poll again (15 s) and find nothing left to send.
  for (const n of nodes) await n.settle();
  r.timers.advance(16_000);
  for (const n of nodes) await n.settle();
  const got = receiver!.received.slice(n0).map((x) => JSON.parse(x.body).connection).sort();
  assert.deepEqual(got, ['x1', 'x2']);
  const attempts = nodes.reduce((k, n) => k + n.attempts.length, 0);
  assert.equal(attempts, 2, 'one attempt per delivery across the three workers');
});

/**
 * UsageRecorder: key counters are written at every tick, audit counts (one upsert per key and connection in use)
 * only every few ticks, and everything on flush(); nothing is counted twice or lost when a write fails.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { ApiKeyRecord } from '../../store/server-types.js';
import type { ServerDeps } from '../deps.js';
import { Counter } from '../metrics.js';
import { UsageRecorder } from './usage.js';

function rig(auditEveryTicks = 3) {
  const keyWrites: { id: string; lastUsedAt: number; tokenHandouts: number }[][] = [];
  const auditWrites: { target: string | null; count: number }[][] = [];
  const state = { now: 1_000, failKeys: false, failAudit: false };
  const tokenHandouts = new Counter('dropkey_token_handouts_total', 'test', ['connection']);
  const deps = {
    clock: () => state.now,
    logger: { error() {}, warn() {} },
    metrics: { tokenHandouts },
    serverStore: {
      async recordApiKeyUsage(u: { id: string; lastUsedAt: number; tokenHandouts: number }[]) {
        if (state.failKeys) throw new Error('down');
        keyWrites.push(u);
      },
      async addAuditCounts(e: { target: string | null; count: number }[]) {
        if (state.failAudit) throw new Error('down');
        auditWrites.push(e.map(({ target, count }) => ({ target, count })));
      },
    },
  } as unknown as ServerDeps;
  const key = { id: 'k1', name: 'ci' } as ApiKeyRecord;
  return { usage: new UsageRecorder(deps, auditEveryTicks), key, keyWrites, auditWrites, state, tokenHandouts };
}

test('ticks write the key counters each time and the audit counts every third tick', async () => {
  const { usage, key, keyWrites, auditWrites } = rig(3);
  for (const c of ['a', 'b', 'a']) usage.handout(key, c);
  await usage.tick();
  assert.deepEqual(keyWrites.at(-1), [{ id: 'k1', lastUsedAt: 1_000, tokenHandouts: 3 }]);
  assert.equal(auditWrites.length, 0, 'no audit upsert on the first tick');
  usage.handout(key, 'b');
  await usage.tick();
  assert.deepEqual(keyWrites.at(-1), [{ id: 'k1', lastUsedAt: 1_000, tokenHandouts: 1 }]);
  await usage.tick();
  assert.equal(keyWrites.length, 2, 'nothing new for the key: no write');
  assert.deepEqual(auditWrites, [[{ target: 'a', count: 2 }, { target: 'b', count: 2 }]]);
});

test('flush() writes everything at once (what the audit page and stop() need)', async () => {
  const { usage, key, keyWrites, auditWrites } = rig(100);
  usage.handout(key, 'a');
  await usage.flush();
  assert.deepEqual(keyWrites, [[{ id: 'k1', lastUsedAt: 1_000, tokenHandouts: 1 }]]);
  assert.deepEqual(auditWrites, [[{ target: 'a', count: 1 }]]);
});

test('failed writes are retried later, never counted twice or lost', async () => {
  const { usage, key, keyWrites, auditWrites, state } = rig(1);
  usage.handout(key, 'a');
  state.failKeys = true;
  await usage.tick();
  usage.handout(key, 'a');
  state.failKeys = false;
  state.failAudit = true;
  await usage.tick();
  assert.deepEqual(keyWrites, [[{ id: 'k1', lastUsedAt: 1_000, tokenHandouts: 2 }]]);
  state.failAudit = false;
  usage.handout(key, 'a');
  await usage.flush();
  assert.deepEqual(keyWrites.at(-1), [{ id: 'k1', lastUsedAt: 1_000, tokenHandouts: 1 }]);
  assert.deepEqual(auditWrites, [[{ target: 'a', count: 3 }]]);
});

test('a slot (the cached token) keeps its pair\'s record: counts, audit entries and the metric are the same as without', async () => {
  const { usage, key, keyWrites, auditWrites, state, tokenHandouts } = rig(1);
  const other = { id: 'k2', name: 'other' } as ApiKeyRecord;
  const slotA = {};
  const slotB = {};
  usage.handout(key, 'a', slotA);
  usage.handout(key, 'a', slotA);
  usage.handout(other, 'a', slotA); // another key through the same token: its own pair
  usage.handout(key, 'a', slotA);
  usage.handout(key, 'b', slotB);
  usage.handout(key, 'a'); // no slot: found by lookup, the same pair
  await usage.tick();
  assert.deepEqual(auditWrites.at(-1), [{ target: 'a', count: 4 }, { target: 'b', count: 1 }, { target: 'a', count: 1 }]);
  assert.equal(tokenHandouts.get({ connection: 'a' }), 5);
  assert.equal(tokenHandouts.get({ connection: 'b' }), 1);
  // After a write the slot's record belongs to the written period: new hand-outs start a new entry.
  usage.handout(key, 'a', slotA);
  state.failAudit = true;
  await usage.tick();
  // A failed write puts the pair back; hand-outs through the slot keep adding to it, and one write carries them all.
  usage.handout(key, 'a', slotA);
  usage.handout(key, 'a', slotA);
  state.failAudit = false;
  await usage.tick();
  assert.deepEqual(auditWrites.at(-1), [{ target: 'a', count: 3 }]);
  assert.equal(tokenHandouts.get({ connection: 'a' }), 8);
  assert.deepEqual(keyWrites.map((w) => w.find((k) => k.id === 'k1')?.tokenHandouts), [5, 1, 2]);
});

/**
 * The rotation engine on an in-memory port: batching, compare-and-set against a racing writer, passes, reporting,
 * and refusal of a ciphertext under a key the keyring lacks. The SQL ports are covered end to end by
 * test/cluster/key-rotation.e2e.test.ts (SQLite and PostgreSQL).
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { Keyring, parseCiphertext } from './cipher.js';
import { keyStatus, rotateSecrets, SECRET_COLUMNS, type SecretColumn, type SecretTablePort } from './rotation.js';

const conn = SECRET_COLUMNS.find((c) => c.table === 'connections' && c.column === 'refresh_token_enc')!;

/** One table's column in memory; `onBatch` lets a test act as another instance writing between read and write. */
function memoryPort(rows: Map<string, string>, onBatch?: () => void): SecretTablePort & { batches: number } {
  const port = {
    kind: 'sqlite' as const,
    batches: 0,
    async tables() {
      return new Set([conn.table]);
    },
    async batch(c: SecretColumn, keyId: string, after: string | null, limit: number) {
      if (c !== conn) return [];
      port.batches++;
      const out = [...rows]
        .filter(([k, v]) => (after === null || k > after) && !v.startsWith(`dk1.${keyId}.`))
        .sort(([a], [b]) => (a < b ? -1 : 1))
        .slice(0, limit)
        .map(([key, value]) => ({ key, value }));
      onBatch?.();
      return out;
    },
    async compareAndSet(_c: SecretColumn, changes: { key: string; from: string; to: string }[]) {
      let n = 0;
      for (const ch of changes) {
        if (rows.get(ch.key) === ch.from) {
          rows.set(ch.key, ch.to);
          n++;
        }
      }
      return n;
    },
    async countByKeyId(c: SecretColumn) {
      const m = new Map<string, number>();
      if (c === conn) for (const v of rows.values()) m.set(parseCiphertext(v).keyId, (m.get(parseCiphertext(v).keyId) ?? 0) + 1);
      return m;
    },
    async close() {},
  };
  return port;
}

describe('rotateSecrets', () => {
  const old = Keyring.generate();
  const both = old.withNewActiveKey();

  it('rewrites every row in batches and reports per column', async () => {
    const rows = new Map(Array.from({ length: 25 }, (_, i) => [`c${String(i).padStart(2, '0')}`, old.encrypt(`rt-${i}`, conn.context(`c${String(i).padStart(2, '0')}`))]));
    const port = memoryPort(rows);
    const r = await rotateSecrets(port, both, { batchSize: 10 });
    assert.equal(r.rewritten, 25);
    assert.equal(r.remaining, 0);
    assert.equal(r.raced, 0);
    assert.ok(port.batches >= 3, 'several batches');
    for (const [k, v] of rows) {
      assert.equal(parseCiphertext(v).keyId, both.activeKeyId);
      assert.equal(both.decrypt(v, conn.context(k)), `rt-${k.slice(1).replace(/^0/, '')}`);
    }
    assert.deepEqual((await keyStatus(port)).byKeyId, { [both.activeKeyId]: 25 });
  });

  it('never overwrites a value another instance wrote meanwhile; the row is picked up in the next pass', async () => {
    const rows = new Map([
      ['a', old.encrypt('rt-a', conn.context('a'))],
      ['b', old.encrypt('rt-b', conn.context('b'))],
    ]);
    let raced = false;
    // Between the batch read and the write, an instance still on the OLD key rewrites "b" (a refresh).
    const port = memoryPort(rows, () => {
      if (!raced) rows.set('b', old.encrypt('rt-b-refreshed', conn.context('b')));
      raced = true;
    });
    const r = await rotateSecrets(port, both, { batchSize: 10 });
    assert.equal(r.raced, 1);
    assert.equal(r.remaining, 0, 'the second pass moved it');
    assert.equal(both.decrypt(rows.get('b')!, conn.context('b')), 'rt-b-refreshed', 'the newer value survived');
  });

  it('reports what a writer keeps putting back under the old key, after the passes', async () => {
    const rows = new Map([['a', old.encrypt('rt-a', conn.context('a'))]]);
    const port = memoryPort(rows, () => rows.set('a', old.encrypt('rt-a', conn.context('a'))));
    const r = await rotateSecrets(port, both, { maxPasses: 2 });
    assert.equal(r.remaining, 1);
    assert.equal(r.columns.find((c) => c.column === 'refresh_token_enc')?.remaining, 1);
  });

  it('stops on a ciphertext under a key it does not hold, before writing anything', async () => {
    const stranger = Keyring.generate();
    const rows = new Map([
      ['a', stranger.encrypt('x', conn.context('a'))],
      ['b', old.encrypt('rt-b', conn.context('b'))],
    ]);
    const before = new Map(rows);
    await assert.rejects(rotateSecrets(memoryPort(rows), both), (e: Error & { code?: string }) => e.code === 'DROPKEY_KEY_ERROR' && !e.message.includes('rt-b'));
    assert.deepEqual(rows, before);
  });
});

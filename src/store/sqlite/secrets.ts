/**
 * Key rotation's view of the SQLite tables (../rotation.ts walks the catalog of encrypted columns through it), on
 * the driver's connection. Batches are short: between them the stores' own writers keep working.
 */
import { ciphertextKeyId } from '../cipher.js';
import type { SecretTablePort } from '../types.js';
import type { SqliteHandle } from './db.js';

const id = (s: string) => `"${s}"`;

export function sqliteSecretPort(h: SqliteHandle): SecretTablePort {
  return {
    async tables() {
      return h.run('list the tables', () => new Set((h.db.prepare("SELECT name FROM sqlite_master WHERE type = 'table'").all() as { name: string }[]).map((r) => r.name)));
    },
    async batch(c, keyId, afterKey, limit) {
      return h.run(
        're-encrypt secrets',
        () =>
          h.db
            .prepare(
              `SELECT ${id(c.key)} AS key, ${id(c.column)} AS value FROM ${id(c.table)}
               WHERE ${id(c.column)} LIKE 'dk1.%' AND substr(${id(c.column)}, 1, length(@p)) <> @p AND (@after IS NULL OR ${id(c.key)} > @after)
               ORDER BY ${id(c.key)} LIMIT @limit`,
            )
            .all({ p: `dk1.${keyId}.`, after: afterKey, limit }) as { key: string; value: string }[],
      );
    },
    async compareAndSet(c, changes) {
      return h.run(
        're-encrypt secrets',
        () => {
          const stmt = h.db.prepare(`UPDATE ${id(c.table)} SET ${id(c.column)} = ? WHERE ${id(c.key)} = ? AND ${id(c.column)} = ?`);
          return changes.reduce((n, ch) => n + stmt.run(ch.to, ch.key, ch.from).changes, 0);
        },
        { immediate: true },
      );
    },
    async countByKeyId(c) {
      return h.run('count secrets by key', () => {
        const counts = new Map<string, number>();
        for (const r of h.db.prepare(`SELECT ${id(c.column)} AS value FROM ${id(c.table)} WHERE ${id(c.column)} LIKE 'dk1.%'`).iterate() as Iterable<{ value: string }>) {
          const k = ciphertextKeyId(r.value);
          if (k !== undefined) counts.set(k, (counts.get(k) ?? 0) + 1);
        }
        return counts;
      });
    },
  };
}

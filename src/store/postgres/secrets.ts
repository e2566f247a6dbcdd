/**
 * Key rotation's view of the PostgreSQL tables (../rotation.ts walks the catalog of encrypted columns through it),
 * on the driver's pool; each batch is one short transaction, so refreshes on other instances keep going.
 */
import type { SecretTablePort } from '../types.js';
import type { PgDatabase } from './db.js';
import { quoteIdent as q } from './migrations.js';

export function postgresSecretPort(db: PgDatabase, schema: string): SecretTablePort {
  const t = (name: string) => `${q(schema)}.${q(name)}`;
  return {
    async tables() {
      const r = await db.query<{ table_name: string }>('list the tables', 'SELECT table_name FROM information_schema.tables WHERE table_schema = $1', [schema]);
      return new Set(r.rows.map((x) => x.table_name));
    },
    async batch(c, keyId, afterKey, limit) {
      const r = await db.query<{ key: string; value: string }>(
        're-encrypt secrets',
        `SELECT ${q(c.key)} AS key, ${q(c.column)} AS value FROM ${t(c.table)}
         WHERE starts_with(${q(c.column)}, 'dk1.') AND NOT starts_with(${q(c.column)}, $1) AND ($2::text IS NULL OR ${q(c.key)} COLLATE "C" > $2)
         ORDER BY ${q(c.key)} COLLATE "C" LIMIT $3`,
        [`dk1.${keyId}.`, afterKey, limit],
      );
      return r.rows;
    },
    async compareAndSet(c, changes) {
      const r = await db.tx(`re-encrypt ${c.table}.${c.column}`, (x) =>
        x.query(
          `UPDATE ${t(c.table)} AS x SET ${q(c.column)} = v.to_value
           FROM unnest($1::text[], $2::text[], $3::text[]) AS v(k, from_value, to_value)
           WHERE x.${q(c.key)} = v.k AND x.${q(c.column)} = v.from_value`,
          [changes.map((ch) => ch.key), changes.map((ch) => ch.from), changes.map((ch) => ch.to)],
        ),
      );
      return r.rowCount ?? 0;
    },
    async countByKeyId(c) {
      const r = await db.query<{ kid: string; n: number }>(
        'count secrets by key',
        `SELECT split_part(${q(c.column)}, '.', 2) AS kid, count(*) AS n FROM ${t(c.table)} WHERE starts_with(${q(c.column)}, 'dk1.') GROUP BY 1`,
      );
      return new Map(r.rows.map((x) => [x.kid, Number(x.n)]));
    },
  };
}

/**
 * PostgreSQL's table for the proxy's shared 429 back-off (`proxy_backoff`, created by ./migrations.ts): every
 * instance on the schema sees a block another one recorded. The policy (memory first, degrade while the database
 * is away) is src/server/proxy/shared-backoff.ts's.
 */
import type { BackoffRecord, BackoffTable } from '../types.js';
import type { PgDatabase } from './db.js';
import { quoteIdent } from './migrations.js';

/** Rows whose block ended this long ago are deleted on the next block() (they only matter while in force). */
export const BACKOFF_KEEP_MS = 60 * 60_000;
/** A proxied request never waits long on the database: the back-off then degrades to this instance's memory. */
const TIMEOUT_MS = 2_000;

export class PgBackoffTable implements BackoffTable {
  readonly #db: PgDatabase;
  readonly #t: string;

  constructor(db: PgDatabase, schema: string) {
    this.#db = db;
    this.#t = `${quoteIdent(schema)}.proxy_backoff`;
  }

  async get(key: string, now: number): Promise<BackoffRecord | undefined> {
    const r = await this.#db.query<BackoffRecord>('read the shared back-off', `SELECT until, reason FROM ${this.#t} WHERE key = $1 AND until > $2`, [key, now], { timeoutMs: TIMEOUT_MS });
    const row = r.rows[0];
    return row && { until: row.until, reason: row.reason };
  }

  async block(key: string, record: BackoffRecord, now: number): Promise<void> {
    await this.#db.query(
      'record a shared back-off',
      `INSERT INTO ${this.#t} (key, until, reason) VALUES ($1, $2, $3)
       ON CONFLICT (key) DO UPDATE SET until = EXCLUDED.until, reason = EXCLUDED.reason WHERE ${this.#t}.until < EXCLUDED.until`,
      [key, record.until, record.reason],
      { timeoutMs: TIMEOUT_MS },
    );
    await this.#db.query('record a shared back-off', `DELETE FROM ${this.#t} WHERE until < $1`, [now - BACKOFF_KEEP_MS], { timeoutMs: TIMEOUT_MS });
  }
}

/**
 * SQLite's table for the proxy's shared 429 back-off (`proxy_backoff`, created by ./migrations.ts): every process
 * serving from this file sees a block another one recorded. The policy (memory first, degrade while the database
 * is away) is src/server/proxy/shared-backoff.ts's.
 */
import type { BackoffRecord, BackoffTable } from '../types.js';
import type { SqliteHandle } from './db.js';

/** Rows whose block ended this long ago are deleted on the next block() (they only matter while in force). */
export const BACKOFF_KEEP_MS = 60 * 60_000;
/** A proxied request never waits long for another process's write lock: the back-off then degrades to memory. */
const BUSY_TIMEOUT_MS = 2_000;

export class SqliteBackoffTable implements BackoffTable {
  readonly #h: SqliteHandle;

  constructor(h: SqliteHandle) {
    this.#h = h;
  }

  async get(key: string, now: number): Promise<BackoffRecord | undefined> {
    const row = this.#h.run(
      'read the shared back-off',
      () => this.#h.db.prepare('SELECT until, reason FROM proxy_backoff WHERE key = ? AND until > ?').get(key, now) as BackoffRecord | undefined,
      { busyTimeoutMs: BUSY_TIMEOUT_MS },
    );
    return row && { until: row.until, reason: row.reason };
  }

  async block(key: string, record: BackoffRecord, now: number): Promise<void> {
    this.#h.run(
      'record a shared back-off',
      () => {
        this.#h.db
          .prepare(
            `INSERT INTO proxy_backoff (key, until, reason) VALUES (?, ?, ?)
             ON CONFLICT (key) DO UPDATE SET until = excluded.until, reason = excluded.reason WHERE proxy_backoff.until < excluded.until`,
          )
          .run(key, record.until, record.reason);
        this.#h.db.prepare('DELETE FROM proxy_backoff WHERE until < ?').run(now - BACKOFF_KEEP_MS);
      },
      { busyTimeoutMs: BUSY_TIMEOUT_MS },
    );
  }
}

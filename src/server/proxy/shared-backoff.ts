/**
 * A 429 back-off shared by every instance on one database (issue 5 §5): the store-backed BackoffStore that
 * backoff.ts leaves room for. When Dropbox answers too_many_requests to one instance, the "blocked until" moment
 * goes to a small table; every instance consults it before sending a request for that connection upstream, so a
 * caller on another instance waits out the same Retry-After instead of meeting the limit again (Dropbox limits
 * per token, dropbox-api.md §3.4).
 *
 * Reads are one primary-key lookup per proxied request, skipped while this instance already knows a block is in
 * force. When the database cannot be reached, the back-off degrades to this instance's memory (never an error
 * for the caller: the proxy must keep working while PostgreSQL restarts, and Dropbox repeats its 429 if needed).
 */
import { MemoryBackoffStore, type BackoffState, type BackoffStore, type RateLimitReason } from './backoff.js';

export const BACKOFF_TABLE = 'proxy_backoff';
/** How long the table is skipped after it failed to answer. */
export const RETRY_AFTER_FAILURE_MS = 5_000;

/** The SQL a driver offers; `until` is epoch ms. */
export interface BackoffTable {
  get(key: string, now: number): Promise<BackoffState | undefined>;
  /** Sets the block unless one lasting at least as long is already recorded; also drops long-finished rows. */
  block(key: string, state: BackoffState, now: number): Promise<void>;
  close(): Promise<void>;
}

export interface SharedBackoffOptions {
  clock?: () => number;
  /** Told once per failure streak when the table cannot be reached (the proxy keeps the memory back-off). */
  onError?: (err: unknown) => void;
}

export class SharedBackoffStore implements BackoffStore {
  readonly #table: BackoffTable;
  readonly #local = new MemoryBackoffStore();
  readonly #clock: () => number;
  readonly #onError: (err: unknown) => void;
  #failing = false;
  /** After a failure, the table is left alone until then (no proxied request waits on a dead database). */
  #retryAt = 0;

  constructor(table: BackoffTable, options: SharedBackoffOptions = {}) {
    this.#table = table;
    this.#clock = options.clock ?? Date.now;
    this.#onError = options.onError ?? (() => {});
  }

  async get(key: string, now: number): Promise<BackoffState | undefined> {
    const known = this.#local.get(key, now);
    if (known) return known;
    if (this.#clock() < this.#retryAt) return undefined;
    try {
      const b = await this.#table.get(key, now);
      this.#ok();
      if (b) this.#local.block(key, b);
      return b;
    } catch (err) {
      this.#fail(err);
      return undefined;
    }
  }

  async block(key: string, state: BackoffState): Promise<void> {
    this.#local.block(key, state);
    if (this.#clock() < this.#retryAt) return;
    try {
      await this.#table.block(key, state, this.#clock());
      this.#ok();
    } catch (err) {
      this.#fail(err);
    }
  }

  close(): Promise<void> {
    return this.#table.close();
  }

  #ok(): void {
    this.#failing = false;
  }

  #fail(err: unknown): void {
    if (!this.#failing) this.#onError(err);
    this.#failing = true;
    this.#retryAt = this.#clock() + RETRY_AFTER_FAILURE_MS;
  }
}

/** Rows whose block ended this long ago are deleted on the next block() (they only matter while in force). */
const KEEP_MS = 60 * 60_000;

function reasonOf(v: string): RateLimitReason {
  return v === 'too_many_write_operations' ? v : 'too_many_requests';
}

/** PostgreSQL: a table in the store's schema, through a small pool of its own. */
export async function postgresBackoffTable(connectionString: string, schema: string): Promise<BackoffTable> {
  const { default: pg } = await import('pg');
  const { quoteIdent } = await import('../../store/postgres/migrations.js');
  const pool = new pg.Pool({ connectionString, max: 2, application_name: 'dropkey backoff', connectionTimeoutMillis: 2_000, query_timeout: 2_000 });
  pool.on('error', () => {}); // a connection dropped while idle (server restart) is replaced on the next query
  const t = `${quoteIdent(schema)}.${quoteIdent(BACKOFF_TABLE)}`;
  let ready: Promise<void> | undefined;
  const ensure = () =>
    (ready ??= pool
      .query(`CREATE TABLE IF NOT EXISTS ${t} (key text PRIMARY KEY, until bigint NOT NULL, reason text NOT NULL)`)
      .then(() => undefined)
      .catch((err: { code?: string }) => {
        // Two instances creating it at once: the loser sees a unique violation on the catalog; the table exists.
        if (err.code === '23505' || err.code === '42P07') return;
        ready = undefined;
        throw err;
      }));
  return {
    async get(key, now) {
      await ensure();
      const r = await pool.query<{ until: string; reason: string }>(`SELECT until, reason FROM ${t} WHERE key = $1 AND until > $2`, [key, now]);
      const row = r.rows[0];
      return row ? { until: Number(row.until), reason: reasonOf(row.reason) } : undefined;
    },
    async block(key, state, now) {
      await ensure();
      await pool.query(
        `INSERT INTO ${t} (key, until, reason) VALUES ($1, $2, $3)
         ON CONFLICT (key) DO UPDATE SET until = EXCLUDED.until, reason = EXCLUDED.reason WHERE ${t}.until < EXCLUDED.until`,
        [key, state.until, state.reason],
      );
      await pool.query(`DELETE FROM ${t} WHERE until < $1`, [now - KEEP_MS]);
    },
    close: () => pool.end(),
  };
}

/** SQLite: a table in the store's file, on its own handle (several processes on one host share the file). */
export async function sqliteBackoffTable(path: string): Promise<BackoffTable> {
  const { default: Database } = await import('better-sqlite3');
  const db = new Database(path, { fileMustExist: true });
  db.pragma('busy_timeout = 2000');
  db.exec(`CREATE TABLE IF NOT EXISTS ${BACKOFF_TABLE} (key TEXT PRIMARY KEY, until INTEGER NOT NULL, reason TEXT NOT NULL)`);
  const select = db.prepare(`SELECT until, reason FROM ${BACKOFF_TABLE} WHERE key = ? AND until > ?`);
  const upsert = db.prepare(
    `INSERT INTO ${BACKOFF_TABLE} (key, until, reason) VALUES (?, ?, ?)
     ON CONFLICT (key) DO UPDATE SET until = excluded.until, reason = excluded.reason WHERE ${BACKOFF_TABLE}.until < excluded.until`,
  );
  const purge = db.prepare(`DELETE FROM ${BACKOFF_TABLE} WHERE until < ?`);
  return {
    async get(key, now) {
      const row = select.get(key, now) as { until: number; reason: string } | undefined;
      return row ? { until: row.until, reason: reasonOf(row.reason) } : undefined;
    },
    async block(key, state, now) {
      upsert.run(key, state.until, state.reason);
      purge.run(now - KEEP_MS);
    },
    async close() {
      db.close();
    },
  };
}

/**
 * The shared back-off for `dropkey serve` (src/server/main.ts): on the table beside the store the instance uses.
 * `databaseUrl` is DROPKEY_DATABASE_URL (needed for PostgreSQL, whose store does not expose its credentials).
 */
export async function openSharedBackoff(
  store: object,
  databaseUrl: string | undefined,
  onError: (err: unknown) => void,
): Promise<SharedBackoffStore> {
  if ('path' in store && typeof store.path === 'string') return new SharedBackoffStore(await sqliteBackoffTable(store.path), { onError });
  const { selectDriver, storePaths } = await import('../../store/index.js');
  const driver = selectDriver(databaseUrl, storePaths('.'));
  const schema = 'schema' in store && typeof store.schema === 'string' ? store.schema : 'dropkey';
  if (driver.kind !== 'postgres') throw new Error('the store and DROPKEY_DATABASE_URL disagree');
  return new SharedBackoffStore(await postgresBackoffTable(driver.connectionString, schema), { onError });
}

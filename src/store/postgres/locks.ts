/**
 * PostgreSQL locks: a lease row in `locks` (the waiting, heartbeat and takeover are ../lease.ts's, shared by every
 * driver) plus a liveness session: a holder records the advisory-lock key its process holds on a dedicated
 * connection, so when the process dies, PostgreSQL drops that session and others take the lease at once instead of
 * after the ttl. Design: docs/decisions/0002-postgres-store.md.
 */
import type Pg from 'pg';
import { randomBytes } from 'node:crypto';
import { withLease, type LeasePrimitives } from '../lease.js';
import type { Clock, LockLease, LockOptions, LockStore, Sleep } from '../types.js';
import { pg, type PgDatabase } from './db.js';
import { LIVENESS_LOCK_NS, quoteIdent } from './migrations.js';

/**
 * The liveness session: one dedicated connection per store holding a session-level advisory lock on a random key.
 * Lease rows record that key; a waiter that can take the same key (pg_try_advisory_xact_lock) knows the holder's
 * session is gone, i.e. the holder process died or lost its connection, and takes the lease without waiting for
 * the ttl. A collision with another instance's key only makes a dead holder look alive (the ttl still applies).
 */
class Liveness {
  readonly #config: Pg.ClientConfig;
  #client: Pg.Client | null = null;
  #key: number | null = null;
  #starting: Promise<number | null> | null = null;
  #closed = false;

  constructor(config: Pg.ClientConfig) {
    this.#config = config;
  }

  /** The key of a live session, connecting when needed; null when that is impossible now (the ttl applies). */
  key(): Promise<number | null> {
    if (this.#closed) return Promise.resolve(null);
    if (this.#key !== null) return Promise.resolve(this.#key);
    this.#starting ??= this.#start().finally(() => (this.#starting = null));
    return this.#starting;
  }

  async #start(): Promise<number | null> {
    const client = new pg.Client({ ...this.#config, application_name: `${this.#config.application_name ?? 'dropkey'} liveness` });
    const lost = () => {
      if (this.#client === client) {
        this.#client = null;
        this.#key = null;
      }
    };
    client.on('error', lost);
    client.on('end', lost);
    try {
      await client.connect();
      for (let i = 0; i < 5; i++) {
        const key = randomBytes(4).readInt32BE(0);
        const r = await client.query<{ ok: boolean }>('SELECT pg_try_advisory_lock($1, $2) AS ok', [LIVENESS_LOCK_NS, key]);
        if (r.rows[0]?.ok) {
          if (this.#closed) break;
          this.#client = client;
          this.#key = key;
          return key;
        }
      }
    } catch {
      /* PostgreSQL unreachable: the lease works without liveness (ttl only); we try again at the next heartbeat */
    }
    await client.end().catch(() => {});
    return null;
  }

  async close(): Promise<void> {
    this.#closed = true;
    await this.#starting;
    const c = this.#client;
    this.#client = null;
    this.#key = null;
    await c?.end().catch(() => {});
  }
}

export class PgLocks implements LockStore {
  readonly #db: PgDatabase;
  readonly #table: string;
  readonly #clock: Clock;
  readonly #sleep: Sleep;
  readonly #liveness: Liveness;
  #closed = false;

  /** `config` is the pool's: the liveness session connects with the same settings. */
  constructor(db: PgDatabase, config: Pg.ClientConfig, schema: string, clock: Clock, sleep: Sleep) {
    this.#db = db;
    this.#table = `${quoteIdent(schema)}.locks`;
    this.#clock = clock;
    this.#sleep = sleep;
    this.#liveness = new Liveness(config);
  }

  #query<R extends Pg.QueryResultRow>(operation: string, sql: string, params: unknown[] = []): Promise<Pg.QueryResult<R>> {
    return this.#db.query<R>(operation, sql, params);
  }

  withLock<T>(key: string, options: LockOptions, fn: (lease: LockLease) => Promise<T>): Promise<T> {
    const locks = this.#table;
    const primitives: LeasePrimitives = {
      tryAcquire: async (name, owner, now, expiresAt) => {
        const session = await this.#db.track(() => this.#liveness.key());
        // Take the row when it is free, expired, already ours (a retry after a lost reply), or when its holder's
        // liveness session is gone (we can take that session's advisory lock: the holder died). A session lost to a
        // server restart after it was recorded proves nothing (every session ended), so then only the ttl applies
        // until the holder's heartbeat records its new session.
        const r = await this.#query<{ acquired: boolean; expires_at: number }>(
          'take a lock',
          `WITH attempt AS (
             INSERT INTO ${locks} AS l (name, owner, expires_at, acquired_at, holder_session, session_stamped_at)
             VALUES ($1, $2, $3, $4, $5, now())
             ON CONFLICT (name) DO UPDATE SET owner = excluded.owner, expires_at = excluded.expires_at,
               acquired_at = excluded.acquired_at, holder_session = excluded.holder_session,
               session_stamped_at = excluded.session_stamped_at
             WHERE l.expires_at <= $4 OR l.owner = $2
               OR (l.holder_session IS NOT NULL AND l.session_stamped_at > pg_postmaster_start_time()
                   AND pg_try_advisory_xact_lock(${LIVENESS_LOCK_NS}, l.holder_session))
             RETURNING expires_at
           )
           SELECT true AS acquired, expires_at FROM attempt
           UNION ALL
           SELECT false, expires_at FROM ${locks} WHERE name = $1 AND NOT EXISTS (SELECT 1 FROM attempt)`,
          [name, owner, expiresAt, now, session],
        );
        const row = r.rows[0];
        if (row?.acquired) return { acquired: true };
        return { acquired: false, expiresAt: row?.expires_at ?? null };
      },
      extend: async (name, owner, expiresAt) => {
        const session = await this.#db.track(() => this.#liveness.key());
        const r = await this.#query('extend a lock', `UPDATE ${locks} SET expires_at = $3, holder_session = $4, session_stamped_at = now() WHERE name = $1 AND owner = $2`, [name, owner, expiresAt, session]);
        return r.rowCount === 1;
      },
      release: async (name, owner) => {
        if (this.#closed) return; // closing mid-lock: the lease expires by itself (or at once: the liveness session ends)
        await this.#query('release a lock', `DELETE FROM ${locks} WHERE name = $1 AND owner = $2`, [name, owner]);
      },
    };
    return withLease(primitives, key, options, fn, { clock: this.#clock, sleep: this.#sleep });
  }

  /** Ends the liveness session (leases held now are free at once for others); the pool is the driver's. */
  async close(): Promise<void> {
    this.#closed = true;
    await this.#liveness.close();
  }
}

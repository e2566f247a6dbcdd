/**
 * SQLite locks: lease rows in `locks` (the waiting, heartbeat and release are ../lease.ts's, shared by every driver).
 * Taking a lock is one IMMEDIATE transaction: insert the row, or take it over when its lease ran out.
 */
import { withLease, type LeasePrimitives } from '../lease.js';
import type { Clock, LockLease, LockOptions, LockStore, Sleep } from '../types.js';
import type { SqliteHandle } from './db.js';

export class SqliteLocks implements LockStore {
  readonly #h: SqliteHandle;
  readonly #clock: Clock;
  readonly #sleep: Sleep;

  constructor(h: SqliteHandle, clock: Clock, sleep: Sleep) {
    this.#h = h;
    this.#clock = clock;
    this.#sleep = sleep;
  }

  withLock<T>(key: string, options: LockOptions, fn: (lease: LockLease) => Promise<T>): Promise<T> {
    const primitives: LeasePrimitives = {
      tryAcquire: async (name, owner, now, expiresAt) =>
        this.#h.run(
          'take a lock',
          () => {
            const r = this.#h.db
              .prepare(
                `INSERT INTO locks (name, owner, expires_at, acquired_at) VALUES (?, ?, ?, ?)
                 ON CONFLICT (name) DO UPDATE SET owner = excluded.owner, expires_at = excluded.expires_at,
                   acquired_at = excluded.acquired_at
                 WHERE locks.expires_at <= ?`,
              )
              .run(name, owner, expiresAt, now, now);
            if (r.changes === 1) return { acquired: true as const };
            const held = this.#h.db.prepare('SELECT expires_at FROM locks WHERE name = ?').get(name) as { expires_at: number } | undefined;
            return { acquired: false as const, expiresAt: held?.expires_at ?? null };
          },
          { immediate: true },
        ),
      extend: async (name, owner, expiresAt) =>
        this.#h.run('extend a lock', () => this.#h.db.prepare('UPDATE locks SET expires_at = ? WHERE name = ? AND owner = ?').run(expiresAt, name, owner).changes === 1),
      release: async (name, owner) => {
        if (this.#h.closed) return; // closing mid-lock: the lease expires by itself
        this.#h.run('release a lock', () => this.#h.db.prepare('DELETE FROM locks WHERE name = ? AND owner = ?').run(name, owner));
      },
    };
    return withLease(primitives, key, options, fn, { clock: this.#clock, sleep: this.#sleep });
  }
}

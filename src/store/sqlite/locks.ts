/**
 * SQLite locks: lease rows in `locks` (the waiting, heartbeat and release are ../lease.ts's, shared by every driver).
 * Taking a lock is one IMMEDIATE transaction: insert the row, or take it over when its lease ran out or when its
 * holder, a process of this machine, is dead.
 */
import { randomUUID } from 'node:crypto';
import { hostname } from 'node:os';
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
            const held = this.#h.db.prepare('SELECT owner, expires_at FROM locks WHERE name = ?').get(name) as { owner: string; expires_at: number } | undefined;
            if (held && holderIsGone(held.owner)) {
              // Only if the dead holder still has it: another waiter may have taken it over first.
              const took = this.#h.db
                .prepare('UPDATE locks SET owner = ?, expires_at = ?, acquired_at = ? WHERE name = ? AND owner = ?')
                .run(owner, expiresAt, now, name, held.owner);
              if (took.changes === 1) return { acquired: true as const };
            }
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
    return withLease(primitives, key, options, fn, { clock: this.#clock, sleep: this.#sleep, newOwner: lockOwner });
  }
}

/**
 * Lock owners say which process holds the lock: "pid@host#uuid". Every user of a SQLite file is on this machine,
 * so a waiter can see that a holder was killed (SIGKILL, OOM) and take its lock at once instead of waiting out the
 * ttl (15 s for a refresh), as PostgreSQL does through the holder's ended session.
 */
function lockOwner(): string {
  return `${process.pid}@${hostname()}#${randomUUID()}`;
}

/**
 * True only when the holder is surely dead: a process of this host that no longer exists. Another host's or an
 * older dropkey's owner (a bare uuid) cannot be checked and is waited out until its lease expires; so is a stopped
 * (SIGSTOP) process, which still exists. A reused pid only makes us wait, never take a live holder's lock.
 */
export function holderIsGone(owner: string): boolean {
  const m = /^(\d+)@(.*)#/.exec(owner);
  if (!m || m[2] !== hostname()) return false;
  const pid = Number(m[1]);
  if (pid === process.pid) return false;
  try {
    process.kill(pid, 0);
    return false;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'ESRCH';
  }
}

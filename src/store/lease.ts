/**
 * Lease locks shared by every process (and later every instance) on one store. Drivers supply three atomic
 * primitives on a row keyed by the lock name; this module does the waiting, the heartbeat and the release, so every
 * driver behaves the same.
 *
 * - acquire: insert the row, or take it over when its lease expired (a holder that died frees it after ttlMs);
 * - wait: poll with small jittered exponential back-off until waitMs passes (DROPKEY_LOCK_TIMEOUT);
 * - heartbeat: while fn runs, extend the lease every ttlMs/3 so a slow but live holder is not overtaken;
 * - release: delete the row only if we still own it.
 *
 * Lease expiry and the wait deadline use the injected clock; waits use the injected sleep. In production these are
 * Date.now and setTimeout; tests pair a virtual clock with a sleep that advances it.
 * Locks are not reentrant: taking the same key twice in one call chain waits for itself until waitMs.
 */
import { randomUUID } from 'node:crypto';
import { DropkeyError, ErrorCodes } from '../errors.js';
import { defaultSleep } from '../sleep.js';
import type { Clock, LockLease, LockOptions, Sleep } from './types.js';

export interface LeasePrimitives {
  /**
   * Atomically inserts the lease or takes over an expired one (expires_at <= now). A transient failure should be
   * a DropkeyError with details.retryable = true: the caller keeps waiting instead of failing.
   */
  tryAcquire(key: string, owner: string, now: number, expiresAt: number): Promise<{ acquired: true } | { acquired: false; expiresAt: number | null }>;
  /** Moves expires_at forward if `owner` still holds the lease; false if it was lost. */
  extend(key: string, owner: string, expiresAt: number): Promise<boolean>;
  /** Deletes the lease if `owner` still holds it. */
  release(key: string, owner: string): Promise<void>;
}

export interface LeaseDeps {
  clock: Clock;
  sleep: Sleep;
  /** In [0, 1); for back-off jitter. */
  random?: () => number;
  /** A new owner id for each lock taken (default a random UUID); a driver may encode who holds it. */
  newOwner?: () => string;
}

const FIRST_DELAY_MS = 5;
const MAX_DELAY_MS = 100;

/** The store's default wait: the package's one real timer (src/sleep.ts). */
export const realSleep: Sleep = defaultSleep;

export async function withLease<T>(
  p: LeasePrimitives,
  key: string,
  options: LockOptions,
  fn: (lease: LockLease) => Promise<T>,
  deps: LeaseDeps,
): Promise<T> {
  const { ttlMs, waitMs, signal } = options;
  if (typeof key !== 'string' || key === '') throw new DropkeyError(ErrorCodes.INTERNAL, 'withLock needs a non-empty lock name');
  if (!(Number.isFinite(ttlMs) && ttlMs > 0) || !(Number.isFinite(waitMs) && waitMs >= 0)) {
    throw new DropkeyError(ErrorCodes.INTERNAL, `withLock("${key}"): ttlMs must be > 0 and waitMs >= 0`);
  }
  const { clock, sleep } = deps;
  const random = deps.random ?? Math.random;
  const owner = (deps.newOwner ?? randomUUID)();
  const deadline = clock() + waitMs;
  let delay = FIRST_DELAY_MS;
  let heldUntil: number | null = null;

  for (;;) {
    throwIfCancelled(signal, key);
    const now = clock();
    let r: Awaited<ReturnType<LeasePrimitives['tryAcquire']>>;
    try {
      r = await p.tryAcquire(key, owner, now, now + ttlMs);
    } catch (err) {
      // A store busy beyond its own timeout counts as "not yet": keep waiting until our deadline.
      if (!(err instanceof DropkeyError && err.details?.['retryable'] === true)) throw err;
      r = { acquired: false, expiresAt: null };
    }
    if (r.acquired) break;
    heldUntil = r.expiresAt ?? heldUntil;
    const after = clock();
    if (after >= deadline) {
      throw new DropkeyError(ErrorCodes.LOCK_TIMEOUT, `timed out after ${waitMs} ms waiting for the lock "${key}", held by another dropkey process`, {
        hint:
          'another dropkey process (a CLI or a server) is working on the same thing; try again in a moment. ' +
          `If that process died, the lock frees itself within ${Math.ceil(ttlMs / 1000)} s.`,
        details: { lock: key, waitMs, ...(heldUntil === null ? {} : { heldForAnotherMs: Math.max(0, heldUntil - after) }) },
      });
    }
    // Full jitter keeps several waiters from polling in lock-step (AWS Architecture Blog, "Exponential Backoff And Jitter").
    const wait = Math.max(1, Math.min(deadline - after, Math.round(delay / 2 + (random() * delay) / 2)));
    try {
      await sleep(wait, signal);
    } catch (cause) {
      throwIfCancelled(signal, key);
      throw cause;
    }
    delay = Math.min(delay * 2, MAX_DELAY_MS);
  }

  const lost = new AbortController();
  const stop = new AbortController();
  const beat = Math.max(1, Math.floor(ttlMs / 3));
  const heartbeat = (async () => {
    while (!stop.signal.aborted) {
      try {
        await sleep(beat, stop.signal);
      } catch {
        return; // stopped
      }
      if (stop.signal.aborted) return;
      try {
        if (!(await p.extend(key, owner, clock() + ttlMs))) {
          lost.abort(new DropkeyError(ErrorCodes.LOCK_TIMEOUT, `the lock "${key}" was taken over by another process after this one stalled for longer than ${ttlMs} ms`));
          return;
        }
      } catch {
        // A transient store error (busy, connection blip): try again at the next beat. If the lease runs out
        // meanwhile, extend() reports it as lost.
      }
    }
  })();

  try {
    return await fn({ signal: lost.signal });
  } finally {
    stop.abort();
    await heartbeat;
    try {
      await p.release(key, owner);
    } catch {
      // The lease expires by itself after ttlMs; failing here would hide fn's own result or error.
    }
  }
}

function throwIfCancelled(signal: AbortSignal | undefined, key: string): void {
  if (signal?.aborted) {
    throw new DropkeyError(ErrorCodes.CANCELLED, `cancelled while waiting for the lock "${key}"`, { cause: signal.reason });
  }
}

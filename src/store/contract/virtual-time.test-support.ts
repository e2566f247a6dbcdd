/**
 * Deterministic virtual time for store tests: a clock and a sleep that never wait for real. Timers fire strictly in
 * time order, and between two timers every woken task runs until it waits again (settle), so lock tests with
 * heartbeats, back-off and lease expiry give the same interleaving on every run, in milliseconds of real time.
 *
 * settle() lets a few macrotask turns pass; that is enough for drivers whose I/O is synchronous (better-sqlite3).
 * A network driver passes its own settle (e.g. one that waits until its pool is idle).
 */
import type { Clock, Sleep } from '../types.js';

interface Timer {
  at: number;
  seq: number;
  resolve: () => void;
}

export class VirtualTime {
  #now: number;
  #seq = 0;
  #timers: Timer[] = [];
  readonly #settle: () => Promise<void>;

  constructor(start = Date.UTC(2026, 0, 1), settle: () => Promise<void> = defaultSettle) {
    this.#now = start;
    this.#settle = settle;
  }

  readonly clock: Clock = () => this.#now;

  readonly sleep: Sleep = (ms, signal) =>
    new Promise<void>((resolve, reject) => {
      if (signal?.aborted) return reject(signal.reason);
      const timer: Timer = {
        at: this.#now + Math.max(0, ms),
        seq: this.#seq++,
        resolve: () => {
          signal?.removeEventListener('abort', onAbort);
          resolve();
        },
      };
      const onAbort = () => {
        this.#timers = this.#timers.filter((t) => t !== timer);
        reject(signal!.reason);
      };
      signal?.addEventListener('abort', onAbort, { once: true });
      this.#timers.push(timer);
    });

  /** Moves the clock forward without firing timers (e.g. "this much time passed while a process was dead"). */
  jump(ms: number): void {
    this.#now += ms;
  }

  get pendingTimers(): number {
    return this.#timers.length;
  }

  /**
   * Runs virtual time until `p` settles: let woken tasks run, then fire the earliest timer, and so on.
   * Fails if `p` is still pending with no timer left (a deadlock) or after `limitMs` of virtual time.
   */
  async runUntil<T>(p: Promise<T>, limitMs = 3_600_000): Promise<T> {
    const start = this.#now;
    type Outcome = { ok: true; value: T } | { ok: false; error: unknown };
    let outcome: Outcome | undefined;
    p.then(
      (value) => (outcome = { ok: true, value }),
      (error: unknown) => (outcome = { ok: false, error }),
    );
    for (;;) {
      await this.#settle();
      const o = outcome as Outcome | undefined;
      if (o) {
        if (o.ok) return o.value;
        throw o.error;
      }
      this.#timers.sort((a, b) => a.at - b.at || a.seq - b.seq);
      const next = this.#timers.shift();
      if (!next) throw new Error('VirtualTime.runUntil: the promise is pending but nothing is scheduled (deadlock)');
      if (next.at - start > limitMs) throw new Error(`VirtualTime.runUntil: still pending after ${limitMs} ms of virtual time`);
      this.#now = Math.max(this.#now, next.at);
      next.resolve();
    }
  }

  /** Runs every task that is ready now, without moving the clock. */
  settle(): Promise<void> {
    return this.#settle();
  }
}

async function defaultSettle(): Promise<void> {
  for (let i = 0; i < 10; i++) await new Promise<void>((r) => setImmediate(r));
}

/**
 * A sleep that never returns until thaw(): stands in for a process that stopped running (killed, frozen) while
 * holding a lock, so its heartbeat never fires.
 */
export class FrozenSleep {
  #waiting: (() => void)[] = [];
  readonly sleep: Sleep = (_ms, signal) =>
    new Promise<void>((resolve, reject) => {
      if (signal?.aborted) return reject(signal.reason);
      signal?.addEventListener('abort', () => reject(signal.reason), { once: true });
      this.#waiting.push(resolve);
    });

  /** Wakes every sleeper once (the process resumes). */
  thaw(): void {
    const w = this.#waiting;
    this.#waiting = [];
    for (const r of w) r();
  }
}

/**
 * The timer seam of background work (scheduler, webhook delivery and its timeouts). Production uses real,
 * unref'd timers; tests use ManualTimers, whose clock is also the app's clock, and move time forward by hand:
 * no sleeps, and hours of back-off pass in microseconds.
 */

export type TimerHandle = { readonly id: number } | NodeJS.Timeout;

export interface Timers {
  /** Epoch ms: the same clock the timers count in. */
  now(): number;
  setTimeout(fn: () => void, ms: number): TimerHandle;
  clearTimeout(handle: TimerHandle): void;
}

/** Real timers on Date.now; unref'd so background work never keeps a process alive by itself. */
export const realTimers: Timers = {
  now: () => Date.now(),
  setTimeout(fn, ms) {
    // setTimeout's limit is 2^31-1 ms (~24.8 days); longer waits are clamped (the caller re-checks on wake).
    const t = setTimeout(fn, Math.min(Math.max(0, ms), 2_147_483_647));
    t.unref();
    return t;
  },
  clearTimeout(handle) {
    clearTimeout(handle as NodeJS.Timeout);
  },
};

interface ManualTimer {
  id: number;
  at: number;
  fn: () => void;
}

/**
 * Timers that fire only when advance() moves time past them, in time order (ties in creation order). The clock
 * never moves by itself. Timers created while advancing (a callback re-arming itself) fire in the same advance if
 * they fall due within it.
 */
export class ManualTimers implements Timers {
  #now: number;
  #seq = 0;
  #timers: ManualTimer[] = [];

  constructor(start = Date.UTC(2026, 0, 1)) {
    this.#now = start;
  }

  readonly clock = (): number => this.#now;

  now(): number {
    return this.#now;
  }

  setTimeout(fn: () => void, ms: number): TimerHandle {
    const t: ManualTimer = { id: ++this.#seq, at: this.#now + Math.max(0, ms), fn };
    this.#timers.push(t);
    return { id: t.id };
  }

  clearTimeout(handle: TimerHandle): void {
    const id = (handle as { id?: unknown }).id;
    this.#timers = this.#timers.filter((t) => t.id !== id);
  }

  get pending(): number {
    return this.#timers.length;
  }

  /** When the earliest timer is due, or undefined. */
  get nextAt(): number | undefined {
    return this.#timers.reduce<number | undefined>((m, t) => (m === undefined || t.at < m ? t.at : m), undefined);
  }

  /** Moves the clock forward by `ms`, firing every timer that falls due, each at its own time. */
  advance(ms: number): void {
    const target = this.#now + Math.max(0, ms);
    for (;;) {
      const due = this.#timers.filter((t) => t.at <= target).sort((a, b) => a.at - b.at || a.id - b.id)[0];
      if (!due) break;
      this.#timers = this.#timers.filter((t) => t !== due);
      this.#now = Math.max(this.#now, due.at);
      due.fn();
    }
    this.#now = target;
  }
}

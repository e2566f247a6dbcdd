/**
 * Periodic background jobs that run once across every process and instance sharing a store (docs/webhooks.md,
 * docs/deploying.md ("What the cluster guarantees")).
 *
 * Each instance keeps its own jittered timer per job; when it fires:
 *   1. take the store lock `job:<name>` with waitMs 0: if another instance is running the job right now, skip;
 *   2. under the lock, ask the store whether a run already started this period (beginJobRun): if another
 *      instance ran it a moment ago, skip. Without this second step, N instances would each run the job once per
 *      period, one after the other;
 *   3. run, then record the outcome.
 * The lock's lease is extended by the store's heartbeat while the job runs, so a long run is not overtaken, and a
 * holder that died frees the job after lockTtlMs. Jitter keeps instances from firing in lock-step.
 *
 * stop() clears the timers, aborts the running jobs' signal and waits for them to finish.
 */
import { DropkeyError, ErrorCodes } from '../../errors.js';
import type { LockLease, LockOptions } from '../../store/types.js';
import type { WebhookStore } from '../../store/webhook-types.js';
import type { Logger } from '../deps.js';
import type { TimerHandle, Timers } from './timers.js';

export interface JobContext {
  /** Aborted when the scheduler stops or the job's lock lease is lost: stop working and return. */
  signal: AbortSignal;
  /** Started by runNow({ force: true }) (an admin's "run now"): do the work at once rather than spread it. */
  forced: boolean;
}

export interface JobDefinition {
  name: string;
  intervalMs: number;
  /** Each wait is intervalMs × (1 ± jitter), uniformly (default 0.1). */
  jitter?: number;
  /** Delay before the first run after start (default: uniformly up to min(intervalMs, 30 s)). */
  initialDelayMs?: number;
  /** The job lock's lease (default 60 s); the store's heartbeat extends it while the job runs. */
  lockTtlMs?: number;
  run(ctx: JobContext): Promise<void>;
}

/** ran: this instance did the work; locked: another instance is running it; recent: another instance ran it this period. */
export type RunResult = 'ran' | 'failed' | 'locked' | 'recent' | 'stopped';

export interface SchedulerDeps {
  locks: { withLock<T>(key: string, options: LockOptions, fn: (lease: LockLease) => Promise<T>): Promise<T> };
  runs: Pick<WebhookStore, 'beginJobRun' | 'finishJobRun'>;
  timers: Timers;
  logger: Pick<Logger, 'info' | 'warn' | 'error' | 'debug'>;
  /** In [0, 1) (default Math.random). */
  random?: () => number;
  /** Called after every attempt (tests and metrics wait on it instead of sleeping). */
  onResult?: (name: string, result: RunResult) => void;
}

interface JobState {
  def: Required<Omit<JobDefinition, 'initialDelayMs'>> & { initialDelayMs: number | undefined };
  timer: TimerHandle | undefined;
  running: Promise<RunResult> | undefined;
}

export class Scheduler {
  readonly #deps: SchedulerDeps;
  readonly #jobs = new Map<string, JobState>();
  readonly #stop = new AbortController();
  readonly #random: () => number;
  #started = false;

  constructor(deps: SchedulerDeps) {
    this.#deps = deps;
    this.#random = deps.random ?? Math.random;
  }

  add(job: JobDefinition): this {
    if (this.#jobs.has(job.name)) throw new DropkeyError(ErrorCodes.INTERNAL, `job "${job.name}" is already scheduled`);
    if (!(job.intervalMs > 0)) throw new DropkeyError(ErrorCodes.INTERNAL, `job "${job.name}": intervalMs must be > 0`);
    const jitter = Math.min(Math.max(job.jitter ?? 0.1, 0), 0.5);
    this.#jobs.set(job.name, {
      def: { name: job.name, intervalMs: job.intervalMs, jitter, lockTtlMs: job.lockTtlMs ?? 60_000, run: job.run, initialDelayMs: job.initialDelayMs },
      timer: undefined,
      running: undefined,
    });
    if (this.#started) this.#arm(this.#jobs.get(job.name)!, this.#firstDelay(this.#jobs.get(job.name)!));
    return this;
  }

  get names(): string[] {
    return [...this.#jobs.keys()];
  }

  start(): void {
    if (this.#started || this.#stop.signal.aborted) return;
    this.#started = true;
    for (const s of this.#jobs.values()) this.#arm(s, this.#firstDelay(s));
  }

  /**
   * Runs the job now on this instance (still under its lock). With `force`, a run another instance made this
   * period does not count (an admin's "run now"). Concurrent calls share the running attempt.
   */
  runNow(name: string, options: { force?: boolean } = {}): Promise<RunResult> {
    const s = this.#jobs.get(name);
    if (!s) return Promise.reject(new DropkeyError(ErrorCodes.NOT_FOUND, `No background job named "${name}".`, { hint: `Jobs: ${this.names.join(', ')}` }));
    return this.#attempt(s, options.force === true);
  }

  /** Resolves once no job is running on this instance. */
  async idle(): Promise<void> {
    for (;;) {
      const running = [...this.#jobs.values()].map((s) => s.running).filter((p): p is Promise<RunResult> => p !== undefined);
      if (running.length === 0) return;
      await Promise.allSettled(running);
    }
  }

  async stop(): Promise<void> {
    if (!this.#stop.signal.aborted) this.#stop.abort(new DropkeyError(ErrorCodes.CANCELLED, 'the server is shutting down'));
    for (const s of this.#jobs.values()) {
      if (s.timer !== undefined) this.#deps.timers.clearTimeout(s.timer);
      s.timer = undefined;
    }
    await this.idle();
  }

  #firstDelay(s: JobState): number {
    return s.def.initialDelayMs ?? Math.floor(this.#random() * Math.min(s.def.intervalMs, 30_000));
  }

  #nextDelay(s: JobState): number {
    const { intervalMs, jitter } = s.def;
    return Math.max(1, Math.round(intervalMs * (1 - jitter + 2 * jitter * this.#random())));
  }

  #arm(s: JobState, delayMs: number): void {
    if (this.#stop.signal.aborted) return;
    if (s.timer !== undefined) this.#deps.timers.clearTimeout(s.timer);
    s.timer = this.#deps.timers.setTimeout(() => {
      s.timer = undefined;
      void this.#attempt(s, false).finally(() => this.#arm(s, this.#nextDelay(s)));
    }, delayMs);
  }

  #attempt(s: JobState, force: boolean): Promise<RunResult> {
    s.running ??= this.#attemptOnce(s, force).finally(() => {
      s.running = undefined;
    });
    return s.running;
  }

  async #attemptOnce(s: JobState, force: boolean): Promise<RunResult> {
    const { locks, runs, timers, logger } = this.#deps;
    const { name, lockTtlMs, intervalMs, jitter } = s.def;
    if (this.#stop.signal.aborted) return this.#report(name, 'stopped');
    // A run that started within the shortest jittered interval belongs to this period (margin for clock skew
    // between instances).
    const period = Math.floor(intervalMs * (1 - jitter) * 0.9);
    let result: RunResult;
    try {
      result = await locks.withLock(`job:${name}`, { ttlMs: lockTtlMs, waitMs: 0 }, async (lease) => {
        if (!(await runs.beginJobRun(name, timers.now(), force ? 0 : period))) return 'recent';
        const signal = AbortSignal.any([this.#stop.signal, lease.signal]);
        try {
          await s.def.run({ signal, forced: force });
        } catch (err) {
          const message = err instanceof Error ? err.message : String(err);
          logger.error({ job: name, err }, 'background job failed');
          await runs.finishJobRun(name, timers.now(), 'failed', message.slice(0, 500)).catch(() => undefined);
          return 'failed';
        }
        await runs.finishJobRun(name, timers.now(), 'ok', null);
        return 'ran';
      });
    } catch (err) {
      if (err instanceof DropkeyError && err.code === ErrorCodes.LOCK_TIMEOUT) {
        logger.debug({ job: name }, 'background job skipped: another instance is running it');
        return this.#report(name, 'locked');
      }
      logger.warn({ job: name, err }, 'background job could not start');
      return this.#report(name, 'failed');
    }
    if (result === 'recent') logger.debug({ job: name }, 'background job skipped: another instance ran it this period');
    return this.#report(name, result);
  }

  #report(name: string, result: RunResult): RunResult {
    try {
      this.#deps.onResult?.(name, result);
    } catch {
      // an observer's failure is not the job's
    }
    return result;
  }
}

/**
 * The background jobs module (docs/webhooks.md): proactive refresh, health checks and housekeeping, run by the
 * Scheduler once across every instance sharing the store (docs/deploying.md ("What the cluster guarantees")). Started by the listener (app.start()),
 * stopped on shutdown; it has no routes of its own except GET /api/v1/jobs (admin: when each job last ran).
 */
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { Hono } from 'hono';
import { DropkeyError, ErrorCodes } from '../../errors.js';
import type { AppEnv, ServerModule } from '../context.js';
import { HttpError, ServerErrorCodes } from '../errors.js';
import { authorize, type ServerServices } from '../services.js';
import { checkHealth } from './connections.js';
import { refreshExpiring } from './refresh.js';
import { pruneAudit } from './retention.js';
import { Scheduler, type RunResult } from './scheduler.js';
import { realTimers, type Timers } from './timers.js';

export interface JobsOptions {
  timers?: Timers;
  random?: () => number;
  /** Proactive refresh: how often to look (default 1 min) and how far ahead (default 10 min). */
  refreshIntervalMs?: number;
  refreshMarginMs?: number;
  /** Connections fall due spread over this window before their margin (default: half the margin; see refresh.ts). */
  refreshSpreadMs?: number;
  /** Background refreshes in flight at most (default: the server config's refreshConcurrency, 32). */
  refreshConcurrency?: number;
  /** Health checks (default every 15 min), spread over half the interval, this many at a time (default 4). */
  healthIntervalMs?: number;
  healthConcurrency?: number;
  /** Audit entries are kept this long (default: the server config's auditRetentionMs, 90 days). */
  auditRetentionMs?: number;
  /** Finished webhook deliveries are kept this long (default 30 days). */
  deliveryRetentionMs?: number;
  onResult?: (job: string, result: RunResult) => void;
  /** Delay before a job's first run, by job name (default: the scheduler's, up to 30 s). */
  initialDelayMs?: Partial<Record<string, number>>;
  /** Whether the process is overloaded now (default: eventLoopBusy()); background refreshes back off while it is. */
  busy?: () => boolean;
}

/** The event loop's delay, over about the last BUSY_WINDOW_MS, passed BUSY_DELAY_MS. */
const BUSY_DELAY_MS = 30;
const BUSY_WINDOW_MS = 200;

/**
 * Whether this process's event loop was late by more than BUSY_DELAY_MS recently (perf_hooks'
 * monitorEventLoopDelay, read and reset at most every BUSY_WINDOW_MS): the sign that background work is taking the
 * time token hand-outs need. Sampled only while a refresh run uses it: stop() ends the sampling.
 */
export function eventLoopBusy(now: () => number = () => performance.now()): { busy: () => boolean; stop: () => void } {
  const h = monitorEventLoopDelay({ resolution: 10 });
  h.enable();
  let since = now();
  let last = false;
  return {
    busy: () => {
      const t = now();
      if (t - since < BUSY_WINDOW_MS) return last;
      last = h.max > BUSY_DELAY_MS * 1e6;
      h.reset();
      since = t;
      return last;
    },
    stop: () => h.disable(),
  };
}

export const JOB_NAMES = { refresh: 'connections.refresh', health: 'connections.health', purge: 'webhooks.purge', audit: 'audit.prune' } as const;

export function createScheduler(s: ServerServices, o: JobsOptions = {}): Scheduler {
  const store = s.webhookStore;
  if (!store) throw new DropkeyError(ErrorCodes.INTERNAL, 'Background jobs need the webhook store (job run records).');
  const timers = o.timers ?? realTimers;
  const scheduler = new Scheduler({
    locks: s.dropkey.store,
    runs: store,
    timers,
    logger: s.logger,
    ...(o.random ? { random: o.random } : {}),
    onResult: (job, result) => {
      s.metrics.jobRuns.inc({ job, result });
      o.onResult?.(job, result);
    },
  });
  const deps = { dropkey: s.dropkey, events: s.events, clock: s.clock, logger: s.logger, invalidate: (name: string) => s.tokens.invalidate(name) };
  const failing = new Set<string>();
  const teamApps = new Map<string, boolean>();
  const refreshIntervalMs = o.refreshIntervalMs ?? 60_000;
  // Sleeps on the jobs' timers, so tests move pacing and Retry-After waits with the clock.
  const sleep = (ms: number, signal?: AbortSignal): Promise<void> =>
    new Promise<void>((resolve) => {
      if (signal?.aborted) return resolve();
      const done = () => {
        timers.clearTimeout(h);
        signal?.removeEventListener('abort', done);
        resolve();
      };
      const h = timers.setTimeout(done, ms);
      signal?.addEventListener('abort', done, { once: true });
    });
  const refreshState = { latencyMs: 250 };
  const m = s.metrics;
  scheduler.add({
    name: JOB_NAMES.refresh,
    intervalMs: refreshIntervalMs,
    ...(o.initialDelayMs?.[JOB_NAMES.refresh] === undefined ? {} : { initialDelayMs: o.initialDelayMs[JOB_NAMES.refresh] }),
    // Long refresh rounds (many connections, slow Dropbox) keep the lease through the store's heartbeat.
    lockTtlMs: 60_000,
    run: async ({ signal, forced }) => {
      const lag = o.busy ? undefined : eventLoopBusy();
      const r = await refreshExpiring(deps, {
        marginMs: o.refreshMarginMs ?? 10 * 60_000,
        ...(o.refreshSpreadMs === undefined ? {} : { spreadMs: o.refreshSpreadMs }),
        paceMs: refreshIntervalMs,
        maxConcurrency: o.refreshConcurrency ?? s.config.refreshConcurrency,
        sleep,
        signal,
        forced,
        failing,
        state: refreshState,
        busy: o.busy ?? lag!.busy,
        progress: {
          backlog: (n) => m.refreshBacklog.set({}, n),
          refreshed: () => m.backgroundRefreshes.inc({ result: 'refreshed' }),
          failed: () => m.backgroundRefreshes.inc({ result: 'failed' }),
          rateLimited: () => m.backgroundRefreshes.inc({ result: 'rate_limited' }),
          paused: (ms) => m.refreshPausedSeconds.inc({}, ms / 1000),
        },
      }).finally(() => lag?.stop());
      if (r.checked > 0 || r.rateLimited > 0) {
        s.logger.info({ checked: r.checked, refreshed: r.refreshed.length, failed: r.failed.length, rateLimited: r.rateLimited }, 'proactive refresh run');
      }
    },
  });
  const healthIntervalMs = o.healthIntervalMs ?? 15 * 60_000;
  scheduler.add({
    name: JOB_NAMES.health,
    intervalMs: healthIntervalMs,
    ...(o.initialDelayMs?.[JOB_NAMES.health] === undefined ? {} : { initialDelayMs: o.initialDelayMs[JOB_NAMES.health] }),
    run: async ({ signal, forced }) => {
      teamApps.clear();
      const r = await checkHealth(deps, {
        signal,
        // Spread over half the interval (the next run is armed when this one ends); "run now" checks at once.
        spreadMs: forced ? 0 : healthIntervalMs / 2,
        concurrency: o.healthConcurrency ?? 4,
        sleep,
        team: async (app) => {
          let t = teamApps.get(app);
          if (t === undefined) {
            t = (await s.dropkey.getApp(app)).team;
            teamApps.set(app, t);
          }
          return t;
        },
      });
      s.logger.info({ checked: r.checked, broken: r.broken.length, inconclusive: r.inconclusive.length }, 'health check run');
    },
  });
  scheduler.add({
    name: JOB_NAMES.audit,
    intervalMs: 3600_000,
    initialDelayMs: 5 * 60_000,
    run: async ({ signal }) => {
      const n = await pruneAudit(s.serverStore, { before: timers.now() - (o.auditRetentionMs ?? s.config.auditRetentionMs), signal });
      if (n > 0) {
        m.auditPruned.inc({}, n);
        s.logger.info({ deleted: n }, 'old audit entries pruned');
      }
    },
  });
  scheduler.add({
    name: JOB_NAMES.purge,
    intervalMs: 24 * 3600_000,
    initialDelayMs: 10 * 60_000,
    run: async () => {
      const n = await store.purgeFinished(timers.now() - (o.deliveryRetentionMs ?? 30 * 24 * 3600_000));
      if (n > 0) s.logger.info({ deleted: n }, 'old webhook deliveries purged');
    },
  });
  return scheduler;
}

export function createJobsModule(o: JobsOptions = {}): ServerModule {
  return {
    name: 'jobs',
    mount: '/api/v1/jobs',
    routes(s: ServerServices) {
      const r = new Hono<AppEnv>();
      r.get('/', async (c) => {
        const key = c.get('apiKey') ?? (await s.apiKeys.authenticate(c.req.header('authorization')));
        authorize(key, 'admin');
        if (key.connections !== '*') throw new HttpError(ServerErrorCodes.FORBIDDEN, 'Only an admin key for all connections may see background jobs.');
        if (!s.webhookStore) return c.json({ jobs: [] });
        const runs = await s.webhookStore.listJobRuns();
        const iso = (t: number | null) => (t === null ? null : new Date(t).toISOString());
        return c.json(
          {
            jobs: Object.values(JOB_NAMES).map((name) => {
              const run = runs.find((x) => x.name === name);
              return {
                name,
                last_started_at: iso(run?.lastStartedAt ?? null),
                last_finished_at: iso(run?.lastFinishedAt ?? null),
                last_outcome: run?.lastOutcome ?? null,
                last_error: run?.lastError ?? null,
                runs: run?.runs ?? 0,
              };
            }),
          },
          200,
          { 'Cache-Control': 'no-store' },
        );
      });
      return r;
    },
    start(s: ServerServices) {
      if (!s.webhookStore) {
        s.logger.warn({}, 'background jobs disabled: no webhook store (job run records)');
        return { stop: async () => {} };
      }
      const scheduler = createScheduler(s, o);
      // Tests and an admin "run now" reach the running scheduler here.
      s.scheduler = scheduler;
      scheduler.start();
      return {
        stop: async () => {
          await scheduler.stop();
          if (s.scheduler === scheduler) s.scheduler = undefined;
        },
      };
    },
  };
}

export const jobsModule: ServerModule = createJobsModule();

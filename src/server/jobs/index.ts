/**
 * The background jobs module (docs/webhooks.md): proactive refresh, health checks and housekeeping, run by the
 * Scheduler once across every instance sharing the store (docs/deploying.md ("What the cluster guarantees")). Started by the listener (app.start()),
 * stopped on shutdown; it has no routes of its own except GET /api/v1/jobs (admin: when each job last ran).
 */
import { Hono } from 'hono';
import { DropkeyError, ErrorCodes } from '../../errors.js';
import type { AppEnv, ServerModule } from '../context.js';
import { HttpError, ServerErrorCodes } from '../errors.js';
import { authorize, type ServerServices } from '../services.js';
import { checkHealth, refreshExpiring } from './connections.js';
import { Scheduler, type RunResult } from './scheduler.js';
import { realTimers, type Timers } from './timers.js';

export interface JobsOptions {
  timers?: Timers;
  random?: () => number;
  /** Proactive refresh: how often to look (default 1 min) and how far ahead (default 10 min). */
  refreshIntervalMs?: number;
  refreshMarginMs?: number;
  /** Health checks (default every 15 min). */
  healthIntervalMs?: number;
  /** Finished webhook deliveries are kept this long (default 30 days). */
  deliveryRetentionMs?: number;
  onResult?: (job: string, result: RunResult) => void;
}

export const JOB_NAMES = { refresh: 'connections.refresh', health: 'connections.health', purge: 'webhooks.purge' } as const;

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
  scheduler.add({
    name: JOB_NAMES.refresh,
    intervalMs: refreshIntervalMs,
    // Long refresh rounds (many connections, slow Dropbox) keep the lease through the store's heartbeat.
    lockTtlMs: 60_000,
    run: async ({ signal }) => {
      const r = await refreshExpiring(deps, { marginMs: o.refreshMarginMs ?? 10 * 60_000, signal, failing });
      if (r.checked > 0) s.logger.info({ checked: r.checked, refreshed: r.refreshed.length, failed: r.failed.length }, 'proactive refresh run');
    },
  });
  scheduler.add({
    name: JOB_NAMES.health,
    intervalMs: o.healthIntervalMs ?? 15 * 60_000,
    run: async ({ signal }) => {
      teamApps.clear();
      const r = await checkHealth(deps, {
        signal,
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

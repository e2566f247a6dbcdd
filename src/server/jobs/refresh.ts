/**
 * The proactive refresher (docs/deploying.md "Background refresh"): keeps every refreshable connection's access
 * token valid by refreshing it shortly before it enters the refresh margin, with work proportional to what is due.
 *
 * - What is due is read with an indexed query (Store.listDueConnections) that decrypts nothing; a connection's
 *   full record is read only by the refresh itself.
 * - Each connection falls due at its own point in the `spreadMs` before its margin, fixed by its name and expiry
 *   (refreshPoint): tokens minted together (a batch import, the end of an outage) are refreshed spread over that
 *   window, so their next expiries, and the refreshes after those, are spread too instead of falling due together
 *   again.
 * - A run paces the due connections: their starts are spaced over the time left before the soonest of them
 *   reaches half of its margin (at most `paceMs`), with a concurrency sized to that backlog and the measured
 *   token-endpoint latency (at most `maxConcurrency`). Tokens already past that point are refreshed at full
 *   concurrency. A forced run ("run now") does not pace.
 * - Each refresh makes one token-endpoint attempt. A 429 pauses the whole run for Dropbox's Retry-After (1 s
 *   without one), halves the concurrency once per pause (it grows back by one per limit/2 successes), and puts the connection back
 *   in the queue; a connection rate-limited 5 times in one run counts as failed until the next run.
 * - Progress is in the metrics: dropkey_refresh_due (the backlog left), dropkey_background_refreshes_total
 *   (refreshed, failed, rate_limited), dropkey_refresh_paused_seconds_total.
 */
import type { TokenInfo } from '../../connections/types.js';
import { DropboxApiError, DropkeyError, ErrorCodes } from '../../errors.js';
import { classifyTransient } from '../../dropbox/retry.js';
import type { ConnectionSummary } from '../../store/types.js';
import type { Logger } from '../deps.js';
import type { ServerEvents } from '../events.js';
import { classifyRefreshError, reportRefreshFailure } from './events.js';

export interface RefreshDeps {
  dropkey: {
    store: { listDueConnections(expiresBefore: number, limit: number): Promise<ConnectionSummary[]> };
    getToken(name: string, options: { minValidSeconds?: number; signal?: AbortSignal; attempts?: number }): Promise<TokenInfo>;
  };
  events: ServerEvents;
  clock: () => number;
  logger: Pick<Logger, 'info' | 'warn' | 'error' | 'debug'>;
  /** Called when a connection's token changed or its refresh failed, so in-memory token caches drop it. */
  invalidate?: (connection: string) => void;
}

export interface RefreshProgress {
  backlog(n: number): void;
  refreshed(): void;
  failed(): void;
  rateLimited(): void;
  paused(ms: number): void;
}

export interface RefreshOptions {
  marginMs: number;
  /** Connections fall due spread over this window before their margin (default: half the margin). */
  spreadMs?: number;
  /** A run spaces its starts over at most this long (default 60 s, the job interval); 0 never paces. */
  paceMs?: number;
  /** Refreshes in flight at most (default 32). */
  maxConcurrency?: number;
  /** Due rows read per query (default 10 000). */
  readLimit?: number;
  /** Waits ms on the jobs' timers; resolves early when the signal aborts. */
  sleep: (ms: number, signal?: AbortSignal) => Promise<void>;
  signal?: AbortSignal;
  /** Connections in a failure streak (refresh_failed is emitted once per streak). */
  failing?: Set<string>;
  progress?: RefreshProgress;
  /** Carried between runs: the token endpoint's measured latency (ms, moving average). */
  state?: { latencyMs: number };
  /**
   * Whether this process is overloaded right now (its event loop lagging): then no refresh starts for
   * BUSY_BACKOFF_MS and the refreshes in flight are halved, so that token hand-outs stay fast during a storm; they
   * grow back one by one as refreshes succeed. Refreshes of expired tokens are paced by it too: a caller asking for one refreshes it
   * itself meanwhile.
   */
  busy?: () => boolean;
}

/** The in-flight limit is halved at most this often while the process is busy. */
const BUSY_BACKOFF_MS = 100;

export interface RefreshRunSummary {
  checked: number;
  refreshed: string[];
  failed: string[];
  /** 429 answers waited out. */
  rateLimited: number;
  /** When each refresh started (clock ms), in start order: the run's pace, for tests and benchmarks. */
  startedAt: number[];
}

/** A number in [0, 1) fixed by the text (FNV-1a). */
export function unitHash(text: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < text.length; i++) {
    h ^= text.charCodeAt(i);
    h = Math.imul(h, 0x01000193);
  }
  return (h >>> 0) / 2 ** 32;
}

/** When a connection falls due: its margin, moved earlier by up to spreadMs by its name and current expiry. */
export function refreshPoint(c: { name: string; expiresAt: number }, marginMs: number, spreadMs: number): number {
  return c.expiresAt - marginMs - Math.floor(spreadMs * unitHash(`${c.name}\u0000${c.expiresAt}`));
}

/** Dropbox's wait from a 429 anywhere in the error's causes (ms, 1 s when it named none), or undefined. */
export function rateLimitWaitMs(err: unknown): number | undefined {
  const seen = new Set<unknown>();
  for (let e: unknown = err; e !== undefined && e !== null && !seen.has(e); e = (e as { cause?: unknown }).cause) {
    seen.add(e);
    if (e instanceof DropboxApiError && e.status === 429) return classifyTransient(e)?.retryAfterMs ?? 1000;
  }
  return undefined;
}

const MAX_RATE_LIMITS_PER_CONNECTION = 5;

/**
 * One run: refreshes what is due now (see the module comment), then reads again until nothing due is left that
 * this run has not tried. `forced`: refresh everything due without pacing (an admin's "run now").
 */
export async function refreshExpiring(d: RefreshDeps, o: RefreshOptions & { forced?: boolean }): Promise<RefreshRunSummary> {
  const { clock } = d;
  const spreadMs = Math.max(0, o.spreadMs ?? o.marginMs / 2);
  const paceMs = o.forced ? 0 : Math.max(0, o.paceMs ?? 60_000);
  const maxConcurrency = Math.max(1, Math.floor(o.maxConcurrency ?? 32));
  const state = o.state ?? { latencyMs: 250 };
  const summary: RefreshRunSummary = { checked: 0, refreshed: [], failed: [], rateLimited: 0, startedAt: [] };
  const tried = new Set<string>();
  let pausedUntil = 0;
  let limit: number;
  let sinceRateLimit = 0;
  let lastBusyBackoff = -Infinity;
  const aborted = () => o.signal?.aborted === true;

  for (;;) {
    if (aborted()) break;
    const now = clock();
    const rows = await d.dropkey.store.listDueConnections(now + o.marginMs + spreadMs, o.readLimit ?? 10_000);
    const due = rows.filter((c) => !tried.has(c.name) && c.expiresAt !== null && refreshPoint({ name: c.name, expiresAt: c.expiresAt }, o.marginMs, spreadMs) <= now);
    if (due.length === 0) break;
    for (const c of due) tried.add(c.name);
    o.progress?.backlog(due.length);

    // The pace: spaced over the time until the soonest due token keeps only half its margin (at most paceMs).
    const soonest = Math.min(...due.map((c) => c.expiresAt!));
    const windowMs = paceMs === 0 ? 0 : Math.min(paceMs, Math.max(0, soonest - now - o.marginMs / 2));
    const spacing = windowMs / due.length;
    // Enough in flight to keep that pace at the measured latency; everything at once when urgent.
    const wanted = spacing === 0 ? due.length : Math.ceil(state.latencyMs / spacing);
    limit = Math.min(maxConcurrency, Math.max(1, wanted));
    const startOfBatch = clock();
    const queue = due.map((c) => ({ c, rateLimits: 0 }));
    const running = new Set<Promise<void>>();
    let started = 0;
    let left = due.length;

    const one = async (item: { c: ConnectionSummary; rateLimits: number }): Promise<void> => {
      const { c } = item;
      const t0 = clock();
      summary.startedAt.push(t0);
      const outcome = await refreshOne(d, c, o);
      if (outcome.kind === 'rate_limited') {
        summary.rateLimited++;
        o.progress?.rateLimited();
        const at = clock();
        // Halved once per pause: the answers of one wave in flight are one signal, not one each.
        if (at >= pausedUntil) limit = Math.max(1, Math.floor(limit / 2));
        const until = at + outcome.waitMs;
        if (until > pausedUntil) {
          o.progress?.paused(until - Math.max(pausedUntil, at));
          pausedUntil = until;
        }
        sinceRateLimit = 0;
        item.rateLimits++;
        if (item.rateLimits < MAX_RATE_LIMITS_PER_CONNECTION) {
          queue.unshift(item);
          return;
        }
        d.logger.warn({ connection: c.name }, 'background refresh rate-limited repeatedly; trying again next run');
        summary.failed.push(c.name);
        o.progress?.failed();
      } else {
        const took = clock() - t0;
        if (outcome.kind === 'refreshed') state.latencyMs = state.latencyMs * 0.8 + took * 0.2;
        summary.checked++;
        if (outcome.kind === 'refreshed') {
          summary.refreshed.push(c.name);
          o.progress?.refreshed();
        } else if (outcome.kind === 'failed') {
          summary.failed.push(c.name);
          o.progress?.failed();
        }
        if (++sinceRateLimit >= Math.max(1, Math.floor(limit / 2)) && limit < maxConcurrency) {
          limit++;
          sinceRateLimit = 0;
        }
      }
      left--;
      o.progress?.backlog(left);
    };

    while ((queue.length > 0 || running.size > 0) && !aborted()) {
      const t = clock();
      if (o.busy !== undefined && running.size > 0 && t - lastBusyBackoff >= BUSY_BACKOFF_MS && o.busy()) {
        lastBusyBackoff = t;
        limit = Math.max(1, Math.floor(limit / 2));
        sinceRateLimit = 0;
        // Even one refresh at a time can keep the loop busy when Dropbox answers at once: no new start for a moment.
        pausedUntil = Math.max(pausedUntil, t + BUSY_BACKOFF_MS);
      }
      if (queue.length > 0 && running.size < limit) {
        const wait = Math.max(pausedUntil, startOfBatch + started * spacing) - t;
        if (wait <= 0) {
          const item = queue.shift()!;
          started++;
          const p = one(item).finally(() => running.delete(p));
          running.add(p);
          continue;
        }
        // Wait for the next start, or for a refresh to finish (which may move the pause).
        const done = new AbortController();
        await Promise.race([o.sleep(wait, o.signal ? AbortSignal.any([o.signal, done.signal]) : done.signal), ...running]);
        done.abort();
        continue;
      }
      await Promise.race(running);
    }
    await Promise.allSettled(running);
    o.progress?.backlog(0);
  }
  return summary;
}

type Outcome = { kind: 'refreshed' | 'fresh' | 'failed' | 'gone' } | { kind: 'rate_limited'; waitMs: number };

async function refreshOne(d: RefreshDeps, c: ConnectionSummary, o: RefreshOptions): Promise<Outcome> {
  try {
    // Valid for at least the margin: the facade re-checks under the refresh lock and never refreshes a
    // connection another process refreshed meanwhile. One attempt: the run owns the retry (Retry-After above).
    const t = await d.dropkey.getToken(c.name, {
      minValidSeconds: Math.ceil(o.marginMs / 1000),
      attempts: 1,
      ...(o.signal ? { signal: o.signal } : {}),
    });
    o.failing?.delete(c.name);
    if (t.expiresAt !== c.expiresAt) {
      d.invalidate?.(c.name);
      return { kind: 'refreshed' };
    }
    return { kind: 'fresh' };
  } catch (err) {
    if (err instanceof DropkeyError && (err.code === ErrorCodes.CANCELLED || err.code === ErrorCodes.NOT_FOUND)) return { kind: 'gone' }; // stopping, or deleted meanwhile
    const waitMs = rateLimitWaitMs(err);
    if (waitMs !== undefined && !o.signal?.aborted) return { kind: 'rate_limited', waitMs };
    d.invalidate?.(c.name);
    const kind = classifyRefreshError(err);
    d.logger.warn({ connection: c.name, code: err instanceof DropkeyError ? err.code : 'unknown', event: kind?.type }, 'proactive refresh failed');
    // needs_reauth is a one-time transition (the classifier sees to that); refresh_failed once per streak.
    if (kind?.type === 'connection.needs_reauth' || !o.failing?.has(c.name)) {
      reportRefreshFailure(d, c.name, err, { app: c.app, account_id: c.accountId, detected_by: 'proactive_refresh' });
    }
    o.failing?.add(c.name);
    return { kind: 'failed' };
  }
}

/**
 * Background work on connections (docs/webhooks.md): check on a schedule that Dropbox still accepts each connection,
 * marking broken ones and emitting events. The proactive refresh is in ./refresh.ts.
 *
 * Both go through the facade, which already single-flights refreshes per connection and holds the store lock
 * `refresh:<name>` across processes; the scheduler runs each job on one instance at a time (jobs/scheduler.ts).
 */
import type { Dropkey } from '../../connections/dropkey.js';
import type { ConnectionSummary } from '../../store/types.js';
import { errorTag } from '../../dropbox/errors.js';
import { DropkeyError, ErrorCodes } from '../../errors.js';
import { isVersionConflict } from '../../store/index.js';
import type { Logger } from '../deps.js';
import type { ServerEvents } from '../events.js';
import { classifyRefreshError, reportRefreshFailure } from './events.js';

/** What the health check reads of a connection (a summary: nothing decrypted). */
type Checked = Pick<ConnectionSummary, 'name' | 'app' | 'accountId' | 'email' | 'state' | 'expiresAt' | 'refreshable'>;

export interface ConnectionJobDeps {
  dropkey: Dropkey;
  events: ServerEvents;
  clock: () => number;
  logger: Pick<Logger, 'info' | 'warn' | 'error' | 'debug'>;
  /** Called when a connection's token changed or it was marked broken, so in-memory token caches drop it. */
  invalidate?: (connection: string) => void;
}

export interface HealthRunSummary {
  checked: number;
  healthy: string[];
  broken: string[];
  /** Checks that could not tell (network, 5xx, 429): the state was left alone. */
  inconclusive: string[];
}

const BROKEN_TAGS: Record<string, string> = {
  invalid_access_token:
    'Dropbox no longer accepts this connection: the app was unlinked from the account, or its token was revoked. Connect it again.',
  user_suspended: 'Dropbox says the account of this connection is suspended. Ask the account owner or the team admin, then connect it again.',
};

/**
 * Calls check/user (team/get_info for team apps) with each active connection's token (docs/webhooks.md). A token that
 * Dropbox rejects outright is first given one forced refresh (the refresh may well work: then the connection is
 * fine); if the refresh token is rejected too, the facade marks it needs_reauth. If a fresh token is still
 * rejected, the connection is marked revoked with its reason in plain words. Network errors, 5xx and 429 change
 * nothing: one bad minute at Dropbox must not flip every connection.
 */
export async function checkHealth(
  d: ConnectionJobDeps,
  options: {
    team: (app: string) => Promise<boolean>;
    signal?: AbortSignal;
    /** Checks are spaced evenly over this long (default 0: one after the other as fast as `concurrency` allows). */
    spreadMs?: number;
    /** Spread only when more than this many connections are checkable (default 50). */
    spreadAbove?: number;
    /** Checks in flight at most (default 4). */
    concurrency?: number;
    /** Connections read per query (default 500). */
    batch?: number;
    /** Waits ms on the jobs' timers (needed when spreadMs > 0); resolves early when the signal aborts. */
    sleep?: (ms: number, signal?: AbortSignal) => Promise<void>;
  },
): Promise<HealthRunSummary> {
  const { logger } = d;
  const store = d.dropkey.store;
  const summary: HealthRunSummary = { checked: 0, healthy: [], broken: [], inconclusive: [] };
  const batch = Math.max(1, options.batch ?? 500);
  const concurrency = Math.max(1, options.concurrency ?? 4);
  // An imported access token that already expired has nothing left to check (the token API says so: 409).
  const now = d.clock();
  const checkable = (x: Checked) => x.state === 'active' && (x.refreshable || x.expiresAt === null || x.expiresAt > now);
  const pages = async function* (): AsyncGenerator<Checked[]> {
    for (let after: string | null = null; ; ) {
      const page = await store.listActiveConnections(after, batch);
      if (page.length === 0) return;
      yield page.filter(checkable);
      if (page.length < batch) return;
      after = page[page.length - 1]!.name;
    }
  };
  // Spread: count first (summaries only), then space the checks evenly over spreadMs.
  let spacing = 0;
  if ((options.spreadMs ?? 0) > 0 && options.sleep) {
    let total = 0;
    for await (const page of pages()) total += page.length;
    // A few dozen checks are no burst: they go at once (bounded by `concurrency`).
    spacing = total > (options.spreadAbove ?? 50) ? options.spreadMs! / total : 0;
  }
  const startedAt = d.clock();
  let started = 0;
  const running = new Set<Promise<void>>();
  const check = async (c: Checked): Promise<void> => {
    summary.checked++;
    const team = await options.team(c.app).catch(() => false);
    const outcome = await checkOne(d, c, team, options.signal).catch((err: unknown) => {
      logger.warn({ connection: c.name, err }, 'health check failed');
      return 'inconclusive' as const;
    });
    summary[outcome].push(c.name);
    if (outcome === 'inconclusive') logger.info({ connection: c.name }, 'health check inconclusive; state left unchanged');
  };
  outer: for await (const page of pages()) {
    for (const c of page) {
      for (;;) {
        if (options.signal?.aborted) break outer;
        if (running.size >= concurrency) {
          await Promise.race(running);
          continue;
        }
        const wait = startedAt + started * spacing - d.clock();
        if (wait > 0 && options.sleep) {
          await options.sleep(wait, options.signal);
          continue;
        }
        break;
      }
      started++;
      const p = check(c).finally(() => running.delete(p));
      running.add(p);
    }
  }
  await Promise.allSettled(running);
  return summary;
}

/** check/user (team/get_info for team apps); with `token`, exactly the one a forced refresh just gave. */
function probe(dropkey: Dropkey, name: string, team: boolean, signal: AbortSignal | undefined, token?: string): Promise<void> {
  return dropkey.checkAccess(name, { team, ...(signal ? { signal } : {}), ...(token === undefined ? {} : { accessToken: token }) });
}

async function checkOne(d: ConnectionJobDeps, c: Checked, team: boolean, signal: AbortSignal | undefined): Promise<'healthy' | 'broken' | 'inconclusive'> {
  const { dropkey } = d;
  let rejected: string | undefined;
  try {
    await probe(dropkey, c.name, team, signal);
    return 'healthy';
  } catch (err) {
    const verdict = judge(err);
    if (verdict === 'healthy') return 'healthy';
    if (verdict === 'refresh') return refreshFailed(d, c, err);
    if (verdict === 'inconclusive') return 'inconclusive';
    rejected = verdict;
  }
  // Nothing to refresh with (an imported access token): Dropbox's refusal is final.
  if (!c.refreshable) return markBroken(d, c, rejected);
  // Rejected: one forced refresh, naming the rejected token so concurrent callers share it.
  let fresh: string;
  try {
    const current = (await dropkey.getToken(c.name)).accessToken;
    fresh = await dropkey.getAccessToken(c.name, { forceRefresh: true, rejectedToken: current, ...(signal ? { signal } : {}) });
  } catch (err) {
    return refreshFailed(d, c, err);
  }
  d.invalidate?.(c.name);
  try {
    await probe(dropkey, c.name, team, signal, fresh);
    return 'healthy';
  } catch (err) {
    const verdict = judge(err);
    if (verdict === 'healthy') return 'healthy';
    if (verdict === 'inconclusive' || verdict === 'refresh') return 'inconclusive';
    rejected = verdict;
  }
  return markBroken(d, c, rejected);
}

/** healthy | a BROKEN_TAGS key | refresh (the token could not be got) | inconclusive. */
function judge(err: unknown): string {
  const tag = errorTag(err);
  // The token works; it just lacks account_info.read / team_info.read, which the check needs (Dropbox docs: users routes, Dropbox OAuth guide: scopes).
  if (tag === 'missing_scope') return 'healthy';
  if (tag !== undefined && tag in BROKEN_TAGS) return tag;
  if (err instanceof DropkeyError && (err.code === ErrorCodes.REAUTH_REQUIRED || err.code === ErrorCodes.TOKEN_EXPIRED)) return 'refresh';
  if (classifyRefreshError(err)?.type === 'connection.needs_reauth') return 'refresh';
  return 'inconclusive';
}

function refreshFailed(d: ConnectionJobDeps, c: Checked, err: unknown): 'broken' | 'inconclusive' {
  d.invalidate?.(c.name);
  const kind = reportRefreshFailure(d, c.name, err, { app: c.app, account_id: c.accountId, detected_by: 'health_check' });
  if (kind === 'connection.needs_reauth') return 'broken';
  if (err instanceof DropkeyError && (err.code === ErrorCodes.REAUTH_REQUIRED || err.code === ErrorCodes.TOKEN_EXPIRED)) return 'broken';
  return 'inconclusive';
}

async function markBroken(d: ConnectionJobDeps, c: Checked, tag: string): Promise<'broken' | 'inconclusive'> {
  const store = d.dropkey.store;
  const lastError = BROKEN_TAGS[tag] ?? 'Dropbox no longer accepts this connection. Connect it again.';
  const rec = await store.getConnection(c.name);
  if (!rec || rec.state !== 'active') return 'inconclusive';
  try {
    // expectedVersion: a reconnect or refresh that landed meanwhile wins; the next run checks again.
    await store.updateConnection(c.name, { state: 'revoked', lastError }, { expectedVersion: rec.version });
  } catch (err) {
    if (isVersionConflict(err)) return 'inconclusive';
    throw err;
  }
  d.invalidate?.(c.name);
  d.logger.warn({ connection: c.name, reason: tag }, 'connection marked revoked by the health check');
  d.events.emit({
    type: 'connection.revoked',
    at: d.clock(),
    connection: c.name,
    data: { app: c.app, account_id: c.accountId, email: c.email, reason: tag, message: lastError, detected_by: 'health_check' },
  });
  return 'broken';
}

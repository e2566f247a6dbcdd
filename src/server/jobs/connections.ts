/**
 * Background work on connections (docs/webhooks.md): refresh tokens before they expire, and check on a schedule that
 * Dropbox still accepts each connection, marking broken ones and emitting events.
 *
 * Both go through the facade, which already single-flights refreshes per connection and holds the store lock
 * `refresh:<name>` across processes; the scheduler runs each job on one instance at a time (jobs/scheduler.ts).
 */
import type { Dropkey } from '../../connections/dropkey.js';
import type { ConnectionInfo } from '../../connections/types.js';
import { errorTag } from '../../dropbox/errors.js';
import { DropkeyError, ErrorCodes } from '../../errors.js';
import { isVersionConflict } from '../../store/index.js';
import type { Logger } from '../deps.js';
import type { ServerEvents } from '../events.js';
import { classifyRefreshError, reportRefreshFailure } from './events.js';

export interface ConnectionJobDeps {
  dropkey: Dropkey;
  events: ServerEvents;
  clock: () => number;
  logger: Pick<Logger, 'info' | 'warn' | 'error' | 'debug'>;
  /** Called when a connection's token changed or it was marked broken, so in-memory token caches drop it. */
  invalidate?: (connection: string) => void;
}

export interface RefreshRunSummary {
  checked: number;
  refreshed: string[];
  failed: string[];
}

/**
 * Refreshes every active, refreshable connection whose access token expires within `marginMs`. The facade is
 * asked for a token valid for at least the margin, so it re-checks under the refresh lock and never refreshes a
 * connection another process refreshed meanwhile.
 *
 * A failure streak emits connection.refresh_failed once, not every run (`failing` holds the streaks).
 */
export async function refreshExpiring(
  d: ConnectionJobDeps,
  options: { marginMs: number; signal?: AbortSignal; failing?: Set<string>; concurrency?: number },
): Promise<RefreshRunSummary> {
  const { dropkey, clock } = d;
  const summary: RefreshRunSummary = { checked: 0, refreshed: [], failed: [] };
  const due = (await dropkey.list()).filter(
    (c) => c.state === 'active' && c.refreshable && c.expiresAt !== null && c.expiresAt - clock() <= options.marginMs,
  );
  // A few at a time: many connections minted together expire together, and one slow refresh must not hold up
  // the rest past their expiry.
  const queue = [...due];
  const worker = async (): Promise<void> => {
    for (let c = queue.shift(); c !== undefined; c = queue.shift()) {
      if (options.signal?.aborted) return;
      await refreshOne(d, c, options, summary);
    }
  };
  await Promise.all(Array.from({ length: Math.min(options.concurrency ?? 4, queue.length) }, worker));
  return summary;
}

async function refreshOne(
  d: ConnectionJobDeps,
  c: ConnectionInfo,
  options: { marginMs: number; signal?: AbortSignal; failing?: Set<string> },
  summary: RefreshRunSummary,
): Promise<void> {
  const { dropkey, logger } = d;
  summary.checked++;
  try {
    const t = await dropkey.getToken(c.name, {
      minValidSeconds: Math.ceil(options.marginMs / 1000),
      ...(options.signal ? { signal: options.signal } : {}),
    });
    if (t.expiresAt !== c.expiresAt) {
      summary.refreshed.push(c.name);
      d.invalidate?.(c.name);
    }
    options.failing?.delete(c.name);
  } catch (err) {
    if (err instanceof DropkeyError && (err.code === ErrorCodes.CANCELLED || err.code === ErrorCodes.NOT_FOUND)) return; // stopping, or deleted meanwhile
    summary.failed.push(c.name);
    d.invalidate?.(c.name);
    const kind = classifyRefreshError(err);
    logger.warn({ connection: c.name, code: err instanceof DropkeyError ? err.code : 'unknown', event: kind?.type }, 'proactive refresh failed');
    // needs_reauth is a one-time transition (the classifier sees to that); refresh_failed once per streak.
    if (kind?.type === 'connection.needs_reauth' || !options.failing?.has(c.name)) {
      reportRefreshFailure(d, c.name, err, { app: c.app, account_id: c.accountId, detected_by: 'proactive_refresh' });
    }
    options.failing?.add(c.name);
  }
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
  options: { team: (app: string) => Promise<boolean>; signal?: AbortSignal },
): Promise<HealthRunSummary> {
  const { dropkey, logger } = d;
  const summary: HealthRunSummary = { checked: 0, healthy: [], broken: [], inconclusive: [] };
  // An imported access token that already expired has nothing left to check (the token API says so: 409).
  const now = d.clock();
  const checkable = (x: ConnectionInfo) => x.state === 'active' && (x.refreshable || x.expiresAt === null || x.expiresAt > now);
  for (const c of (await dropkey.list()).filter(checkable)) {
    if (options.signal?.aborted) break;
    summary.checked++;
    const team = await options.team(c.app).catch(() => false);
    const outcome = await checkOne(d, c, team, options.signal);
    summary[outcome].push(c.name);
    if (outcome === 'inconclusive') logger.info({ connection: c.name }, 'health check inconclusive; state left unchanged');
  }
  return summary;
}

/** check/user (team/get_info for team apps); with `token`, exactly the one a forced refresh just gave. */
function probe(dropkey: Dropkey, name: string, team: boolean, signal: AbortSignal | undefined, token?: string): Promise<void> {
  return dropkey.checkAccess(name, { team, ...(signal ? { signal } : {}), ...(token === undefined ? {} : { accessToken: token }) });
}

async function checkOne(d: ConnectionJobDeps, c: ConnectionInfo, team: boolean, signal: AbortSignal | undefined): Promise<'healthy' | 'broken' | 'inconclusive'> {
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

function refreshFailed(d: ConnectionJobDeps, c: ConnectionInfo, err: unknown): 'broken' | 'inconclusive' {
  d.invalidate?.(c.name);
  const kind = reportRefreshFailure(d, c.name, err, { app: c.app, account_id: c.accountId, detected_by: 'health_check' });
  if (kind === 'connection.needs_reauth') return 'broken';
  if (err instanceof DropkeyError && (err.code === ErrorCodes.REAUTH_REQUIRED || err.code === ErrorCodes.TOKEN_EXPIRED)) return 'broken';
  return 'inconclusive';
}

async function markBroken(d: ConnectionJobDeps, c: ConnectionInfo, tag: string): Promise<'broken' | 'inconclusive'> {
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

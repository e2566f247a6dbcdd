/**
 * Tokens and connections: a valid access token (refreshed through the shared, locked refresher), an explicit
 * refresh, listing, a Dropbox client that keeps its token fresh, and a check that Dropbox accepts a connection.
 */
import { DropboxClient, type PathRoot } from '../dropbox/client.js';
import { DropboxApiError, DropkeyError, ErrorCodes } from '../errors.js';
import type { ConnectionPageQuery, ConnectionRecord, ConnectionListing } from '../store/types.js';
import { type ConnectionsContext, report } from './context.js';
import { validateName } from './names.js';
import { rpcCall } from './protocol.js';
import { redactText } from './redact.js';
import { notFound, refreshFallbackError } from './refresher.js';
import type { ConnectionInfo, GetTokenOptions, TokenInfo } from './types.js';

export interface ClientOptions {
  selectUser?: string;
  selectAdmin?: string;
  pathRoot?: PathRoot;
}

export interface CheckAccessOptions {
  /** A team app's token is checked with team/get_info; a user app's with check/user. */
  team: boolean;
  /** Check exactly this token: no refresh before, none on a 401, no retry. */
  accessToken?: string;
  signal?: AbortSignal;
}

export function connectionInfo(c: ConnectionRecord): ConnectionInfo {
  return listingInfo({ ...c, refreshable: c.refreshToken !== null && c.refreshToken !== '' });
}

/** A valid access token for the connection, refreshed first when it expires within the margin. */
export async function getAccessToken(ctx: ConnectionsContext, name: string, options: GetTokenOptions = {}): Promise<string> {
  return (await getToken(ctx, name, options)).accessToken;
}

/** The access token with its expiry, scopes and account. Never the refresh token. */
export async function getToken(ctx: ConnectionsContext, name: string, options: GetTokenOptions = {}): Promise<TokenInfo> {
  validateName('connection', name);
  if (options.minValidSeconds !== undefined && (!Number.isFinite(options.minValidSeconds) || options.minValidSeconds < 0)) {
    throw new DropkeyError(ErrorCodes.BAD_INPUT, `minValidSeconds must be a number of seconds >= 0, got ${String(options.minValidSeconds)}.`);
  }
  const rec = await ctx.refresher.fresh(name, options);
  if (!rec.accessToken) throw new DropkeyError(ErrorCodes.INTERNAL, `Connection "${name}" has no access token after a refresh.`);
  return {
    accessToken: rec.accessToken,
    expiresAt: rec.accessTokenExpiresAt,
    scopes: [...rec.scopes],
    accountId: rec.accountId,
    teamId: rec.teamId,
    connection: rec.name,
    email: rec.email,
  };
}

/**
 * Refreshes now when needed (or always with `force`), and returns the connection. A refresh that fails throws,
 * even when the current access token still works (token readers keep using it; whoever asked for a refresh
 * must learn it did not happen): the error keeps the cause's code and says until when the old token works.
 */
export async function refresh(ctx: ConnectionsContext, name: string, options: { force?: boolean; signal?: AbortSignal } = {}): Promise<ConnectionInfo> {
  validateName('connection', name);
  let rec: ConnectionRecord;
  try {
    rec = await ctx.refresher.fresh(name, {
      ...(options.force ? { forceRefresh: true } : {}),
      ...(options.signal ? { signal: options.signal } : {}),
    });
    const failed = refreshFallbackError(rec);
    if (failed !== undefined) throw refreshFailedError(rec, failed);
  } catch (err) {
    // An unknown connection or a bad name is not a failed refresh.
    if (!(err instanceof DropkeyError) || (err.code !== ErrorCodes.NOT_FOUND && err.code !== ErrorCodes.BAD_INPUT && err.code !== ErrorCodes.CANCELLED)) {
      await report(ctx, { action: 'connection.refresh_failed', target: name, details: { code: err instanceof DropkeyError ? err.code : 'unknown' }, error: err });
    }
    throw err;
  }
  await report(ctx, { action: 'connection.refreshed', target: name, details: {} });
  return connectionInfo(rec);
}

/** A listing's connection (no token read) as ConnectionInfo. */
export function listingInfo(c: ConnectionListing): ConnectionInfo {
  return {
    name: c.name,
    app: c.app,
    accountId: c.accountId,
    email: c.email,
    displayName: c.displayName,
    teamId: c.teamId,
    teamName: c.teamName,
    scopes: [...c.scopes],
    expiresAt: c.accessTokenExpiresAt,
    state: c.state,
    refreshable: c.refreshable,
    linkedBy: c.linkedByName || c.linkedByEmail ? { name: c.linkedByName ?? null, email: c.linkedByEmail ?? null } : null,
    lastError: c.lastError,
    lastRefreshAt: c.lastRefreshAt,
    createdAt: c.createdAt,
    updatedAt: c.updatedAt,
  };
}

/** One page of connections (Store.listConnectionPage): no token is decrypted. */
export async function listConnectionPage(ctx: ConnectionsContext, query: ConnectionPageQuery): Promise<{ connections: ConnectionInfo[]; next: string | null }> {
  const page = await ctx.store.listConnectionPage(query);
  return { connections: page.connections.map(listingInfo), next: page.next };
}

export async function listConnections(ctx: ConnectionsContext): Promise<ConnectionInfo[]> {
  return (await ctx.store.listConnections()).map(connectionInfo);
}

export async function getConnection(ctx: ConnectionsContext, name: string): Promise<ConnectionInfo> {
  validateName('connection', name);
  const rec = await ctx.store.getConnection(name);
  if (!rec) throw notFound(name);
  return connectionInfo(rec);
}

/**
 * A Dropbox API client (rpc / upload / download) whose token always comes from this connection: refreshed
 * before it expires, and once more when Dropbox answers 401 expired_access_token; 429 and 5xx are retried.
 */
export function client(ctx: ConnectionsContext, name: string, options: ClientOptions = {}): DropboxClient {
  validateName('connection', name);
  let current: string | undefined;
  return new DropboxClient({
    urls: ctx.urls,
    fetch: ctx.fetch,
    sleep: ctx.sleep,
    getAccessToken: async (opts: { forceRefresh?: boolean; rejectedToken?: string }) => {
      if (!opts.forceRefresh) {
        const t = await getAccessToken(ctx, name);
        current = t;
        return t;
      }
      // A forced refresh names the token Dropbox refused (the client's, else the last one handed out), so
      // concurrent 401s share one refresh instead of refreshing once each.
      const rejected = opts.rejectedToken ?? current;
      return getAccessToken(ctx, name, { forceRefresh: true, ...(rejected ? { rejectedToken: rejected } : {}) });
    },
    ...(options.selectUser === undefined ? {} : { selectUser: options.selectUser }),
    ...(options.selectAdmin === undefined ? {} : { selectAdmin: options.selectAdmin }),
    ...(options.pathRoot === undefined ? {} : { pathRoot: options.pathRoot }),
  });
}

/**
 * Asks Dropbox whether it accepts the connection's token, with a harmless call: check/user for a user app,
 * team/get_info for a team app. Without `accessToken` the token comes from the refresher (and the client retries
 * as usual); with it, that exact token is sent once, so the caller gets Dropbox's verdict on it (a health check
 * that just forced a refresh). Resolves when Dropbox accepts it; throws the decoded Dropbox error otherwise.
 */
export async function checkAccess(ctx: ConnectionsContext, name: string, options: CheckAccessOptions): Promise<void> {
  const route = options.team ? 'team/get_info' : 'check/user';
  const arg = options.team ? undefined : { query: 'dropkey' };
  const opts = options.signal ? { signal: options.signal } : {};
  if (options.accessToken !== undefined) {
    await rpcCall(ctx, options.accessToken, route, arg ?? null, { ...opts, timeoutMs: ctx.retry.attemptTimeoutMs });
    return;
  }
  await client(ctx, name).rpc(route, arg, opts);
}

/** A refresh that failed while the old token still works (Dropkey.refresh): the cause's code, in plain words. */
function refreshFailedError(rec: ConnectionRecord, err: unknown): DropkeyError {
  const code = err instanceof DropkeyError ? err.code : err instanceof DropboxApiError ? ErrorCodes.DROPBOX_API : ErrorCodes.DROPBOX_UNAVAILABLE;
  const why = err instanceof Error ? redactText(err.message).slice(0, 300) : 'unknown error';
  const until = rec.accessTokenExpiresAt === null ? null : new Date(rec.accessTokenExpiresAt).toISOString();
  // The failure's own advice when it has some (e.g. a new app secret), else: wait, then let the doctor look.
  const inner = err instanceof DropkeyError && err.hint ? err : undefined;
  return new DropkeyError(
    code,
    `Refreshing connection "${rec.name}" failed: ${why.replace(/\.?$/, '.')} The current access token still works` +
      `${until ? ` until ${until}` : ''}, so services using it are not affected yet.`,
    {
      cause: err,
      hint: inner?.hint ?? 'Try again in a few minutes; if it keeps failing, let dropkey check the connection.',
      ...(inner ? (inner.fix ? { fix: inner.fix } : {}) : { fix: { action: 'doctor', connection: rec.name } }),
      details: { connection: rec.name, refreshed: false, access_token_expires_at: until },
    },
  );
}

/**
 * What every way of connecting ends with (login, import): the new token checked against Dropbox, then the
 * connection created, or reconnected under the same name, under the refresh lock.
 */
import { errorTag } from '../dropbox/errors.js';
import { withRetry } from '../dropbox/retry.js';
import { DropkeyError, ErrorCodes } from '../errors.js';
import type { AppRecord, ConnectionPatch } from '../store/types.js';
import { type ConnectionsContext, report } from './context.js';
import { authenticatedAdmin, identify, type Identity, type LinkedAdmin } from './protocol.js';
import { redactText } from './redact.js';
import { LOCK_TTL_MS } from './refresher.js';
import { connectionInfo } from './tokens.js';
import type { ConnectionInfo } from './types.js';

export interface ConnectResult {
  connection: ConnectionInfo;
  /** True when the name was new; false when an existing connection was reconnected. */
  created: boolean;
  /** Things the user should know (printed by the CLI), never secrets. */
  warnings: string[];
}

/**
 * Checks a fresh token against Dropbox and says who it belongs to. A missing account_info.read /
 * team_info.read scope does not fail the connection (it may be all the job needs); other refusals do.
 */
export async function validateToken(ctx: ConnectionsContext, app: AppRecord, accessToken: string, warnings: string[], signal?: AbortSignal): Promise<Identity> {
  const identity = await checkToken(ctx, app, accessToken, warnings, signal);
  if (!app.team) return identity;
  return { ...identity, linkedBy: await linkedAdmin(ctx, app, accessToken, warnings, signal) };
}

/**
 * Who linked a team app, or null when Dropbox would not say: that never fails a login or import (the connection
 * works without it). Why is logged (debug) and said in the warnings (unless it is the missing team_info.read scope,
 * which checkToken already warned about).
 */
async function linkedAdmin(ctx: ConnectionsContext, app: AppRecord, accessToken: string, warnings: string[], signal?: AbortSignal): Promise<LinkedAdmin | null> {
  try {
    return await withRetry((s) => authenticatedAdmin({ urls: ctx.urls, fetch: ctx.fetch }, accessToken, s, ctx.retry.attemptTimeoutMs), {
      retry: ctx.retry,
      sleep: ctx.sleep,
      ...(signal ? { signal } : {}),
    });
  } catch (err) {
    if (signal?.aborted) throw err;
    const why = errorTag(err) ?? (err instanceof Error ? redactText(err.message) : 'unknown error');
    ctx.log.debug({ app: app.name, reason: why }, 'could not learn which admin linked the team app (team/token/get_authenticated_admin); recorded as unknown');
    if (errorTag(err) !== 'missing_scope') warnings.push(`Dropbox did not say which admin linked the team app (${why}); it is recorded as unknown.`);
    return null;
  }
}

async function checkToken(ctx: ConnectionsContext, app: AppRecord, accessToken: string, warnings: string[], signal?: AbortSignal): Promise<Identity> {
  try {
    return await withRetry((s) => identify({ urls: ctx.urls, fetch: ctx.fetch }, accessToken, app.team, s, ctx.retry.attemptTimeoutMs), {
      retry: ctx.retry,
      sleep: ctx.sleep,
      ...(signal ? { signal } : {}),
    });
  } catch (err) {
    const tag = errorTag(err);
    if (tag === 'missing_scope') {
      const scope = app.team ? 'team_info.read' : 'account_info.read';
      warnings.push(`Could not read the ${app.team ? 'team' : 'account'} details: the token lacks the ${scope} scope. Enable it in the App Console to see them in the list of connections.`);
      return { accountId: null, email: null, displayName: null, teamId: null, teamName: null, serverDate: null };
    }
    const reason = err instanceof DropkeyError ? err.details?.['reason'] : undefined;
    if (reason === 'team_token_without_select_user') {
      throw new DropkeyError(ErrorCodes.BAD_INPUT, `This token belongs to a whole Business team, but app "${app.name}" is registered as a user app.`, {
        cause: err,
        hint: 'Mark the app as a team app, then import again.',
        fix: { action: 'app-update', app: app.name, field: 'team' },
      });
    }
    if (reason === 'user_token_on_team_route') {
      throw new DropkeyError(ErrorCodes.BAD_INPUT, `This token belongs to a single user, but app "${app.name}" is registered as a team app.`, {
        cause: err,
        hint: 'Mark the app as a user app, then import again.',
        fix: { action: 'app-update', app: app.name, field: 'user' },
      });
    }
    if (tag === 'invalid_access_token') {
      throw new DropkeyError(ErrorCodes.BAD_INPUT, 'Dropbox does not accept this token: it was revoked, mistyped, or belongs to another app.', {
        cause: err,
        hint: 'Let dropkey check the token to see why.',
        fix: { action: 'doctor', token: true },
      });
    }
    throw err;
  }
}

/** What a login or import found out, to be stored. */
export interface NewCredential {
  name: string;
  app: AppRecord;
  accessToken: string;
  refreshToken: string | null;
  expiresAt: number | null;
  scopes: string[];
  identity: Identity;
  warnings: string[];
  refreshed: boolean;
  /** How the credential came (the audit entry says it). */
  via: 'login' | 'import';
}

/** Creates or reconnects a connection, holding the refresh lock so no refresh interleaves. */
export async function saveConnection(ctx: ConnectionsContext, p: NewCredential): Promise<ConnectResult> {
  const result = await storeConnection(ctx, p);
  const c = result.connection;
  const type = result.created ? 'connection.created' : 'connection.reconnected';
  await report(ctx, {
    action: type,
    target: c.name,
    details: { app: c.app, account_id: c.accountId, mode: p.via },
    event: { type, connection: c.name, data: { app: c.app, account_id: c.accountId, email: c.email, team_id: c.teamId } },
  });
  return result;
}

async function storeConnection(ctx: ConnectionsContext, p: NewCredential): Promise<ConnectResult> {
  return ctx.store.withLock(`refresh:${p.name}`, { ttlMs: LOCK_TTL_MS, waitMs: ctx.lockWaitMs }, async () => {
    const now = ctx.now();
    const existing = await ctx.store.getConnection(p.name);
    const fields = {
      app: p.app.name,
      accountId: p.identity.accountId,
      teamId: p.identity.teamId,
      email: p.identity.email,
      displayName: p.identity.displayName,
      teamName: p.identity.teamName,
      linkedByName: p.identity.linkedBy?.name ?? null,
      linkedByEmail: p.identity.linkedBy?.email ?? null,
      scopes: p.scopes,
      accessToken: p.accessToken,
      accessTokenExpiresAt: p.expiresAt,
      state: 'active' as const,
      lastError: null,
      lastRefreshAt: p.refreshed ? now : null,
    };
    if (!existing) {
      const rec = await ctx.store.createConnection({ name: p.name, ...fields, refreshToken: p.refreshToken });
      ctx.log.info({ connection: p.name, app: p.app.name }, 'connection created');
      return { connection: connectionInfo(rec), created: true, warnings: p.warnings };
    }
    const patch: ConnectionPatch = { ...fields };
    let allowClear = false;
    if (p.refreshToken) {
      patch.refreshToken = p.refreshToken;
    } else if (existing.refreshToken) {
      // Replacing a renewable connection by a non-renewable credential would lose the refresh token.
      throw new DropkeyError(ErrorCodes.ALREADY_EXISTS, `Connection "${p.name}" already exists and holds a refresh token; this credential has none and would replace it.`, {
        hint: `Use another name (e.g. ${p.name}_2), or revoke the old one first.`,
        fix: { action: 'revoke', connections: [p.name] },
      });
    } else {
      patch.refreshToken = null;
      allowClear = true;
    }
    const rec = await ctx.store.updateConnection(p.name, patch, allowClear ? { allowClearRefreshToken: true } : {});
    ctx.log.info({ connection: p.name, app: p.app.name }, 'connection reconnected');
    return { connection: connectionInfo(rec), created: false, warnings: p.warnings };
  });
}
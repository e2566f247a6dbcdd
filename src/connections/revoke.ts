/**
 * Revoking a connection: its token revoked at Dropbox (a team token through a member when its scopes allow), then
 * the record deleted under the refresh lock.
 */
import { errorTag } from '../dropbox/errors.js';
import { withRetry } from '../dropbox/retry.js';
import { DropkeyError, ErrorCodes } from '../errors.js';
import { revokeToken } from '../oauth/token.js';
import type { ConnectionRecord } from '../store/types.js';
import { type ConnectionsContext, report } from './context.js';
import { validateName } from './names.js';
import { rpcCall } from './protocol.js';
import { redactText } from './redact.js';
import { LOCK_TTL_MS, notFound } from './refresher.js';

export interface RevokeResult {
  connection: string;
  /** True when Dropbox revoked the token now; false when Dropbox already considered it invalid. */
  revokedAtDropbox: boolean;
  /** Plain words for the user. */
  message: string;
}

/**
 * Revokes the connection's token at Dropbox (which also disables its refresh token, Dropbox docs: auth/token/revoke), then deletes it
 * locally. If Dropbox says the token is already invalid, it is deleted locally all the same, and the result
 * says so. If Dropbox cannot be reached, nothing is deleted unless `force` is set.
 */
export async function revoke(ctx: ConnectionsContext, name: string, options: { force?: boolean; signal?: AbortSignal } = {}): Promise<RevokeResult> {
  validateName('connection', name);
  const rec = await ctx.store.getConnection(name);
  if (!rec) throw notFound(name);
  let revokedAtDropbox = false;
  let message: string;
  try {
    const token = await tokenForRevoke(ctx, rec, options.signal);
    if (token === null) {
      message = `Dropbox already considered the token of "${name}" invalid; deleted it locally.`;
    } else {
      const attempt = (t: string) =>
        withRetry((signal) => revokeAtDropbox(ctx, rec, t, signal), {
          retry: ctx.retry,
          sleep: ctx.sleep,
          ...(options.signal ? { signal: options.signal } : {}),
        });
      let r: { alreadyInvalid: boolean };
      try {
        r = await attempt(token);
      } catch (err) {
        // Dropbox's clock says the token expired while ours still counts it valid (skew, a token cut short): as the
        // proxy does, refresh once (shared with concurrent callers through rejectedToken) and revoke with the new one.
        if (errorTag(err) !== 'expired_access_token') throw err;
        const fresh = await ctx.refresher.fresh(rec.name, { forceRefresh: true, rejectedToken: token, ...(options.signal ? { signal: options.signal } : {}) });
        if (!fresh.accessToken || fresh.accessToken === token) throw err;
        r = await attempt(fresh.accessToken);
      }
      revokedAtDropbox = !r.alreadyInvalid;
      message = r.alreadyInvalid
        ? `Dropbox already considered the token of "${name}" invalid; deleted it locally.`
        : `Revoked "${name}" at Dropbox (its refresh token too) and deleted it locally.`;
    }
  } catch (err) {
    const teamToken = err instanceof DropkeyError && err.details?.['reason'] === 'team_token_without_select_user';
    if (!options.force && teamToken) {
      // auth/token/revoke is a user route (Dropbox docs: auth/token/revoke): a team token reaches it only acting as a member, which needs
      // the team_data.member scope. Admin connectors rarely hold it, so the app is unlinked by hand instead.
      throw new DropkeyError(ErrorCodes.BAD_INPUT, `Dropbox does not let this team token revoke itself: "${name}" was kept.`, {
        cause: err,
        hint: 'Remove the app in the Dropbox Admin console (Settings, then Apps), then delete the connection locally.',
        fix: { action: 'revoke', connections: [name], force: true },
      });
    }
    if (!options.force) {
      const why = err instanceof Error ? redactText(err.message) : 'unknown error';
      throw new DropkeyError(ErrorCodes.DROPBOX_UNAVAILABLE, `Could not revoke "${name}" at Dropbox, so it was kept: ${why}`, {
        cause: err,
        hint: 'Try again later, or delete it locally anyway (then unlink the app at https://www.dropbox.com/account/connected_apps).',
        fix: { action: 'revoke', connections: [name], force: true },
      });
    }
    message =
      `Could not revoke "${name}" at Dropbox, so its refresh token stays valid at Dropbox; deleted it locally anyway. ` +
      'To cut it off, unlink the app at https://www.dropbox.com/account/connected_apps (or the Admin console for a team app).';
  }
  await ctx.store.withLock(`refresh:${name}`, { ttlMs: LOCK_TTL_MS, waitMs: ctx.lockWaitMs }, async () => {
    await ctx.store.deleteConnection(name);
  });
  ctx.log.info({ connection: name, revokedAtDropbox }, 'connection revoked');
  await report(ctx, {
    action: 'connection.revoked',
    target: name,
    details: { revoked_at_dropbox: revokedAtDropbox, ...(options.force ? { force: true } : {}) },
    event: { type: 'connection.revoked', connection: name, data: { app: rec.app, account_id: rec.accountId, email: rec.email, revoked_at_dropbox: revokedAtDropbox } },
  });
  return { connection: name, revokedAtDropbox, message };
}

/**
 * POST /2/auth/token/revoke (Dropbox docs: auth/token/revoke). It is a user route: a team token reaches it only acting as a member
 * (Dropbox-API-Select-User), which needs the team_data.member scope; then any member will do, found with
 * team/members/list_v2 (members.read). Without those scopes the 400 surfaces for revoke() to explain.
 */
async function revokeAtDropbox(ctx: ConnectionsContext, rec: ConnectionRecord, token: string, signal: AbortSignal | undefined): Promise<{ alreadyInvalid: boolean }> {
  const base = { urls: ctx.urls, fetch: ctx.fetch, ...(signal ? { signal } : {}), timeoutMs: ctx.retry.attemptTimeoutMs };
  try {
    return await revokeToken({ ...base, accessToken: token });
  } catch (err) {
    const teamToken = err instanceof DropkeyError && err.details?.['reason'] === 'team_token_without_select_user';
    if (!teamToken || !rec.scopes.includes('team_data.member') || !rec.scopes.includes('members.read')) throw err;
    const list = await rpcCall(base, token, 'team/members/list_v2', { limit: 1 }, base);
    const member = (list.result as { members?: Array<{ profile?: { team_member_id?: unknown } }> }).members?.[0]?.profile?.team_member_id;
    if (typeof member !== 'string') throw err;
    try {
      await rpcCall(base, token, 'auth/token/revoke', null, { ...base, headers: { 'dropbox-api-select-user': member } });
      return { alreadyInvalid: false };
    } catch (err2) {
      if (errorTag(err2) === 'invalid_access_token') return { alreadyInvalid: true };
      throw err2;
    }
  }
}

/** A token to revoke with, or null when the credential is already dead (refresh token rejected, token expired). */
async function tokenForRevoke(ctx: ConnectionsContext, rec: ConnectionRecord, signal?: AbortSignal): Promise<string | null> {
  if (rec.state === 'needs_reauth' || rec.state === 'revoked') return null;
  try {
    return (await ctx.refresher.fresh(rec.name, { minValidSeconds: 60, ...(signal ? { signal } : {}) })).accessToken;
  } catch (err) {
    if (err instanceof DropkeyError && (err.code === ErrorCodes.REAUTH_REQUIRED || err.code === ErrorCodes.TOKEN_EXPIRED)) return null;
    throw err;
  }
}

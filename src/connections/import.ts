/**
 * Importing a credential made elsewhere: a refresh token (checked by one refresh) or a pasted access token
 * (accepted with a warning: it cannot be renewed).
 */
import { errorTag } from '../dropbox/errors.js';
import { withRetry } from '../dropbox/retry.js';
import { DropboxApiError, DropkeyError, ErrorCodes, type Fix } from '../errors.js';
import { resolveApp } from './apps.js';
import { type ConnectResult, saveConnection, validateToken } from './connect.js';
import type { ConnectionsContext } from './context.js';
import { cleanSecretInput } from './input.js';
import { DEFAULT_CONNECTION, validateName } from './names.js';
import { type Identity, makeRefreshGrant } from './protocol.js';

/** Dropbox short-lived tokens last 4 hours (https://developers.dropbox.com/oauth-guide); an imported `sl.` token lives at most that. */
const SHORT_LIVED_MS = 4 * 3600 * 1000;

export interface ImportInput {
  connection?: string;
  app?: string;
  refreshToken?: string;
  accessToken?: string;
  signal?: AbortSignal;
}

export interface ImportResult extends ConnectResult {
  /** False for a pasted access token: it cannot be renewed and expires within 4 hours. */
  refreshable: boolean;
  /** For a credential that cannot be renewed: the login that replaces it with one that can. */
  fix?: Fix;
}

/**
 * Imports an existing credential. A refresh token is checked by one refresh (Dropbox has no token
 * introspection, so this is how scopes and expiry are learnt); a pasted access token is accepted with a warning:
 * it cannot be renewed.
 */
export async function importCredential(ctx: ConnectionsContext, input: ImportInput): Promise<ImportResult> {
  const name = validateName('connection', input.connection ?? DEFAULT_CONNECTION);
  const app = await resolveApp(ctx, input.app, name);
  if ((input.refreshToken === undefined) === (input.accessToken === undefined)) {
    throw new DropkeyError(ErrorCodes.BAD_INPUT, 'Give exactly one of a refresh token or an access token to import.', {
      hint: 'Import a refresh token (preferred), or an access token.',
      fix: { action: 'import', connection: name, app: app.name, token: 'refresh' },
    });
  }
  const warnings: string[] = [];
  if (input.refreshToken !== undefined) {
    const refreshToken = cleanSecretInput(input.refreshToken, 'refresh token', 'refresh');
    if (refreshToken.startsWith('sl.')) {
      throw new DropkeyError(ErrorCodes.BAD_INPUT, 'This looks like an access token (it starts with "sl."), not a refresh token.', {
        hint: 'Import it as an access token.',
        fix: { action: 'import', connection: name, app: app.name, token: 'access' },
      });
    }
    const grant = makeRefreshGrant({ urls: ctx.urls, fetch: ctx.fetch, now: ctx.now, timeoutMs: ctx.retry.attemptTimeoutMs });
    const once = (scopes?: readonly string[]) =>
      withRetry((signal) => grant({ app, refreshToken, signal, ...(scopes ? { scopes } : {}) }), {
        retry: ctx.retry,
        sleep: ctx.sleep,
        ...(input.signal ? { signal: input.signal } : {}),
      });
    let res;
    try {
      // Dropbox's refresh answer lists no scopes unless a `scope` subset is asked for (Dropbox docs: oauth2/token), and there is no
      // introspection: asking for the app's scopes confirms them. If the grant lacks one, a plain refresh follows.
      res = app.scopes.length > 0 ? await once(app.scopes).catch((err: unknown) => {
        if (err instanceof DropboxApiError && err.code === ErrorCodes.OAUTH_FAILED && err.status === 400) return undefined;
        throw err;
      }) : undefined;
      if (!res) {
        res = await once();
        warnings.push(`Dropbox does not tell which scopes this refresh token grants, so dropkey could not record them (the app lists ${app.scopes.length > 0 ? app.scopes.join(', ') : 'none'}).`);
      }
    } catch (err) {
      if (err instanceof DropboxApiError && err.summary === 'invalid_grant') {
        throw new DropkeyError(ErrorCodes.BAD_INPUT, `Dropbox does not accept this refresh token for app "${app.name}": it was revoked, mistyped, or belongs to another app.`, {
          cause: err,
          hint: `Check that the token came from app key ${app.key}, or connect with a browser login.`,
          fix: { action: 'login', connection: name, app: app.name },
        });
      }
      throw err;
    }
    const identity = await validateToken(ctx, app, res.accessToken, warnings, input.signal);
    const result = await saveConnection(ctx, {
      name,
      app,
      accessToken: res.accessToken,
      refreshToken: res.refreshToken ?? refreshToken,
      expiresAt: res.expiresAt,
      scopes: res.scopes ?? [],
      identity,
      warnings,
      refreshed: true,
      via: 'import',
    });
    return { ...result, refreshable: true };
  }

  const accessToken = cleanSecretInput(input.accessToken ?? '', 'access token', 'access');
  let identity: Identity;
  try {
    identity = await validateToken(ctx, app, accessToken, warnings, input.signal);
  } catch (err) {
    if (errorTag(err) === 'expired_access_token') {
      throw new DropkeyError(ErrorCodes.TOKEN_EXPIRED, 'This access token has already expired (App Console tokens last 4 hours).', {
        cause: err,
        hint: 'Connect for good instead, with a browser login.',
        fix: { action: 'login', connection: name, app: app.name },
      });
    }
    // Refresh tokens and retired long-lived access tokens are both 64 characters (dropbox/token-shape.ts); one
    // that Dropbox refuses as a Bearer token is most likely a refresh token pasted into the wrong option.
    if (err instanceof DropkeyError && errorTag(err.cause) === 'invalid_access_token' && /^[A-Za-z0-9_-]{64}$/.test(accessToken)) {
      throw new DropkeyError(ErrorCodes.BAD_INPUT, 'Dropbox does not accept this 64-character value as an access token: it is most likely a refresh token.', {
        cause: err.cause,
        hint: 'Import it as a refresh token.',
        fix: { action: 'import', connection: name, app: app.name, token: 'refresh' },
      });
    }
    throw err;
  }
  const shortLived = accessToken.startsWith('sl.');
  warnings.push(
    shortLived
      ? 'This access token expires within 4 hours and cannot be renewed: dropkey has no refresh token for it.'
      : 'This looks like a long-lived (legacy) access token; it cannot be renewed, and Dropbox no longer issues new ones.',
  );
  warnings.push('Upgrade it to a connection that renews itself with a browser login.');
  const result = await saveConnection(ctx, {
    name,
    app,
    accessToken,
    refreshToken: null,
    // Dropbox gives no introspection: 4 hours from now is the latest a short-lived token can expire.
    expiresAt: shortLived ? ctx.now() + SHORT_LIVED_MS : null,
    scopes: [],
    identity,
    warnings,
    refreshed: false,
    via: 'import',
  });
  return { ...result, refreshable: false, fix: { action: 'login', connection: name, app: app.name } };
}

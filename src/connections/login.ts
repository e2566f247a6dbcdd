/**
 * The authorization-code login: PKCE (S256), offline access and a fresh `state` to start; the code exchanged,
 * checked and stored to finish (https://www.dropbox.com/developers/documentation/http/documentation#oauth2-authorize).
 */
import { DropkeyError, ErrorCodes } from '../errors.js';
import { buildAuthorizeUrl, parseCallback } from '../oauth/authorize.js';
import { codeChallengeS256, generateCodeVerifier, generateState } from '../oauth/pkce.js';
import { exchangeCode } from '../oauth/token.js';
import { findApp, resolveApp } from './apps.js';
import { type ConnectResult, saveConnection, validateToken } from './connect.js';
import type { ConnectionsContext } from './context.js';
import { cleanSecretInput, validateScopes } from './input.js';
import { DEFAULT_CONNECTION, validateName } from './names.js';
import { clientOf } from './protocol.js';
import { redactText } from './redact.js';
import type { PendingLogin } from './types.js';

export interface StartLoginInput {
  app?: string;
  connection?: string;
  scopes?: string[];
  /**
   * Scopes to add to an existing connection: only these are asked for, and Dropbox is told to include the scopes
   * granted before (include_granted_scopes, `team` for a team app, else `user`), so the new token has both.
   * Not with `scopes`.
   */
  addScopes?: string[];
  /** The loopback callback URL; omit for the no-redirect flow (the user pastes the code Dropbox shows). */
  redirectUri?: string;
}

export interface FinishLoginInput {
  pending: PendingLogin;
  /** The code the user pasted (no-redirect flow). */
  code?: string;
  /** The full redirect URL, or its path and query, as received by the callback server. */
  callbackUrl?: string | URL | URLSearchParams;
  signal?: AbortSignal;
}

/**
 * Begins an authorization-code login: PKCE (S256), `token_access_type=offline` and a fresh `state`, always.
 * The result holds the verifier: keep it in memory until finishLogin, never log it.
 */
export async function startLogin(ctx: ConnectionsContext, input: StartLoginInput = {}): Promise<PendingLogin> {
  const connection = validateName('connection', input.connection ?? DEFAULT_CONNECTION);
  const app = await resolveApp(ctx, input.app, connection);
  const adding = input.addScopes !== undefined && input.addScopes.length > 0;
  if (adding && input.scopes !== undefined && input.scopes.length > 0) {
    throw new DropkeyError(ErrorCodes.BAD_INPUT, 'Give either the scopes to ask for or the scopes to add, not both.');
  }
  let scopes = input.scopes && input.scopes.length > 0 ? validateScopes(input.scopes) : [...app.scopes];
  let granted: string[] = [];
  if (adding) {
    // Dropbox: include_granted_scopes must be omitted when the user never linked the app, so it needs a connection.
    const existing = await ctx.store.getConnection(connection);
    if (!existing || existing.app !== app.name) {
      throw new DropkeyError(ErrorCodes.BAD_INPUT, existing
        ? `Connection "${connection}" uses app "${existing.app}", not "${app.name}": scopes can be added only with the app that granted the others.`
        : `There is no connection "${connection}" to add scopes to.`, {
        hint: 'Connect it with a browser login first, asking for every scope it needs.',
        fix: { action: 'login', connection, app: existing?.app ?? app.name },
      });
    }
    scopes = validateScopes(input.addScopes);
    granted = existing.scopes;
  }
  if (input.redirectUri !== undefined) {
    let u: URL;
    try {
      u = new URL(input.redirectUri);
    } catch {
      throw new DropkeyError(ErrorCodes.BAD_INPUT, `The redirect URI ${JSON.stringify(input.redirectUri)} is not a URL.`);
    }
    if (u.protocol !== 'https:' && !(u.protocol === 'http:' && ['127.0.0.1', 'localhost', '[::1]'].includes(u.hostname))) {
      throw new DropkeyError(ErrorCodes.BAD_INPUT, 'Dropbox accepts only https redirect URIs, except for localhost and 127.0.0.1.');
    }
  }
  const codeVerifier = generateCodeVerifier();
  const state = generateState();
  const authorizeUrl = buildAuthorizeUrl({
    urls: ctx.urls,
    clientId: app.key,
    ...(input.redirectUri === undefined ? {} : { redirectUri: input.redirectUri }),
    state,
    codeChallenge: codeChallengeS256(codeVerifier),
    ...(scopes.length > 0 ? { scopes } : {}),
    ...(adding ? { includeGrantedScopes: app.team ? ('team' as const) : ('user' as const) } : {}),
    tokenAccessType: 'offline',
  });
  return {
    app: app.name,
    connection,
    authorizeUrl,
    state,
    codeVerifier,
    ...(input.redirectUri === undefined ? {} : { redirectUri: input.redirectUri }),
    // What the connection will have if Dropbox does not list the granted scopes in its answer.
    scopes: [...new Set([...granted, ...scopes])],
  };
}

/** Exchanges the code, validates the new connection at once, and stores it (new, or reconnecting the name). */
export async function finishLogin(ctx: ConnectionsContext, input: FinishLoginInput): Promise<ConnectResult> {
  const { pending } = input;
  const app = await findApp(ctx, pending.app);
  let code: string;
  if (input.callbackUrl !== undefined) {
    code = parseCallback(input.callbackUrl, pending.state).code;
  } else if (typeof input.code === 'string' && input.code.trim() !== '') {
    code = cleanSecretInput(input.code, 'authorization code');
  } else {
    throw new DropkeyError(ErrorCodes.BAD_INPUT, 'No authorization code was given.', {
      hint: 'Paste the code Dropbox showed after you clicked Allow.',
    });
  }
  const tokens = await recordLoginFailure(ctx, pending.connection, () => exchangeCode({
    urls: ctx.urls,
    fetch: ctx.fetch,
    now: ctx.now,
    client: clientOf(app),
    code,
    codeVerifier: pending.codeVerifier,
    ...(pending.redirectUri === undefined ? {} : { redirectUri: pending.redirectUri }),
    ...(input.signal ? { signal: input.signal } : {}),
    timeoutMs: ctx.retry.attemptTimeoutMs,
  }).catch((err: unknown) => { throw invalidClientAtLogin(err, app.name); }));
  const warnings: string[] = [];
  if (!tokens.refreshToken) {
    warnings.push('Dropbox returned no refresh token, so this connection stops working when its access token expires (within 4 hours).');
  }
  const identity = await validateToken(ctx, app, tokens.accessToken, warnings, input.signal);
  return saveConnection(ctx, {
    name: pending.connection,
    app,
    accessToken: tokens.accessToken,
    refreshToken: tokens.refreshToken ?? null,
    expiresAt: tokens.expiresAt ?? null,
    scopes: tokens.scopes.length > 0 ? tokens.scopes : pending.scopes,
    identity: {
      ...identity,
      accountId: identity.accountId ?? tokens.accountId ?? null,
      teamId: identity.teamId ?? tokens.teamId ?? null,
    },
    warnings,
    refreshed: true,
    via: 'login',
  });
}

/**
 * invalid_client when the code is exchanged: the app is registered, but Dropbox refuses its key or secret (changed
 * or mistyped since `app add`). The fix is to store the right secret in that app, not to register it again.
 */
function invalidClientAtLogin(err: unknown, app: string): unknown {
  if (!(err instanceof DropkeyError) || err.code !== ErrorCodes.INVALID_CLIENT) return err;
  return new DropkeyError(ErrorCodes.INVALID_CLIENT, `Dropbox rejected the key or secret of app "${app}" (invalid_client) when the login was finished: the secret was mistyped or regenerated, or the key belongs to another app; nothing was saved.`, {
    cause: err,
    hint: 'Copy the app secret from the app\'s Settings tab in the Dropbox App Console (click Show) and store it in the app, then log in again.',
    fix: { action: 'app-update', app, field: 'secret' },
    details: { app, reason: 'invalid_client' },
  });
}

/**
 * A failed code exchange for an existing connection is remembered in its lastError (so `dropkey doctor` can
 * explain e.g. a redirect URI mismatch later); the connection itself is left as it was.
 */
async function recordLoginFailure<T>(ctx: ConnectionsContext, name: string, fn: () => Promise<T>): Promise<T> {
  try {
    return await fn();
  } catch (err) {
    if (err instanceof DropkeyError && err.code !== ErrorCodes.CANCELLED && (await ctx.store.getConnection(name))) {
      await ctx.store.updateConnection(name, { lastError: `The last login failed: ${redactText(err.message)}` }).catch(() => undefined);
    }
    throw err;
  }
}

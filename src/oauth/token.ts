/**
 * The token endpoint, in two layers (after oauth4webapi's processRefreshTokenResponse and friends, https://github.com/panva/oauth4webapi):
 * - request builders return `{url, init}` and do no I/O;
 * - response processors validate Dropbox's answer into a TokenSet or throw a DropboxApiError;
 * - a small facade (exchangeCode, refreshAccessToken, revokeToken) wires them to an injected fetch and clock.
 * Sources: https://www.dropbox.com/developers/documentation/http/documentation#oauth2-token (parameters, client auth, response fields, error table), Dropbox docs: auth/token/revoke (revoke).
 */
import { DropboxApiError, DropkeyError, ErrorCodes, type Fix } from '../errors.js';
import type { DropboxUrls } from '../dropbox/hosts.js';
import { networkError, parseRetryAfter, readDropboxError, redactSecrets } from '../dropbox/errors.js';

export type FetchLike = (input: string | URL | Request, init?: RequestInit) => Promise<Response>;

export interface ClientCredentials {
  /** The app key. */
  clientId: string;
  /** The app secret; absent for PKCE-only (public) apps. */
  clientSecret?: string | undefined;
}

export interface PreparedRequest {
  url: string;
  init: RequestInit & { method: 'POST'; headers: Record<string, string> };
}

export type GrantType = 'authorization_code' | 'refresh_token';

export interface TokenSet {
  accessToken: string;
  /** Only with token_access_type=offline. After a refresh Dropbox sends none; the facade keeps the old one. */
  refreshToken?: string;
  /** Epoch ms from the injected clock; absent for legacy long-lived tokens (no expires_in). */
  expiresAt?: number;
  /** Granted scopes (empty when Dropbox sent no `scope`, e.g. legacy apps or some refresh answers). */
  scopes: string[];
  accountId?: string;
  teamId?: string;
  uid?: string;
  /** OIDC only. */
  idToken?: string;
  tokenType: 'bearer';
}

function basic(client: ClientCredentials & { clientSecret: string }): string {
  // Dropbox: "app key as the username and app secret as the password" (Dropbox docs: oauth2/token). Keys and secrets are [a-z0-9],
  // so RFC 6749 §2.3.1's form-encoding step changes nothing.
  return `Basic ${Buffer.from(`${client.clientId}:${client.clientSecret}`, 'utf8').toString('base64')}`;
}

/**
 * Client authentication: HTTP Basic when a secret exists, with no client_id in the body (Dropbox refused
 * `unknown field "client_id"` alongside other credentials, Dropbox docs: oauth2/token inferred rule); client_id in the body otherwise.
 */
function withClientAuth(client: ClientCredentials, body: URLSearchParams): Record<string, string> {
  if (!client.clientId) throw new DropkeyError(ErrorCodes.BAD_INPUT, 'the app key (client_id) is empty');
  const headers: Record<string, string> = {
    'content-type': 'application/x-www-form-urlencoded',
    accept: 'application/json',
  };
  if (client.clientSecret) headers['authorization'] = basic({ ...client, clientSecret: client.clientSecret });
  else body.set('client_id', client.clientId);
  return headers;
}

export function authorizationCodeRequest(p: {
  urls: Pick<DropboxUrls, 'token'>;
  client: ClientCredentials;
  code: string;
  /** Required for PKCE-only apps; sent whenever given (PKCE protects confidential apps too). */
  codeVerifier?: string | undefined;
  /** Must equal the redirect_uri of the authorize step; omit for the no-redirect flow. */
  redirectUri?: string | undefined;
}): PreparedRequest {
  if (!p.code) throw new DropkeyError(ErrorCodes.BAD_INPUT, 'the authorization code is empty');
  if (!p.client.clientSecret && !p.codeVerifier) {
    throw new DropkeyError(ErrorCodes.BAD_INPUT, 'an app without a secret must use PKCE: the code verifier is missing');
  }
  const body = new URLSearchParams({ grant_type: 'authorization_code', code: p.code });
  if (p.codeVerifier) body.set('code_verifier', p.codeVerifier);
  if (p.redirectUri !== undefined) body.set('redirect_uri', p.redirectUri);
  const headers = withClientAuth(p.client, body);
  return { url: p.urls.token, init: { method: 'POST', headers, body: body.toString() } };
}

export function refreshTokenRequest(p: {
  urls: Pick<DropboxUrls, 'token'>;
  client: ClientCredentials;
  refreshToken: string;
  /** Optional subset of the originally granted scopes (Dropbox docs: oauth2/token). */
  scopes?: readonly string[] | undefined;
}): PreparedRequest {
  if (!p.refreshToken) throw new DropkeyError(ErrorCodes.BAD_INPUT, 'the refresh token is empty');
  const body = new URLSearchParams({ grant_type: 'refresh_token', refresh_token: p.refreshToken });
  if (p.scopes && p.scopes.length > 0) body.set('scope', p.scopes.join(' '));
  const headers = withClientAuth(p.client, body);
  return { url: p.urls.token, init: { method: 'POST', headers, body: body.toString() } };
}

/** `POST /2/auth/token/revoke`: RPC, Void argument → no body, no Content-Type (as the JS SDK sends, Dropbox HTTP docs: request styles and headers, Dropbox docs: auth/token/revoke). */
export function revokeRequest(p: { urls: Pick<DropboxUrls, 'api'>; accessToken: string }): PreparedRequest {
  if (!p.accessToken) throw new DropkeyError(ErrorCodes.BAD_INPUT, 'the access token is empty');
  return {
    url: `${p.urls.api}/2/auth/token/revoke`,
    init: { method: 'POST', headers: { authorization: `Bearer ${p.accessToken}` } },
  };
}

function invalidResponse(what: string, response: Response): DropboxApiError {
  return new DropboxApiError(
    response.status,
    'invalid_token_response',
    null,
    `Dropbox's token endpoint answered with an unexpected body: ${what}`,
    {
      code: ErrorCodes.OAUTH_FAILED,
      hint: 'check DROPKEY_DROPBOX_URL / the token URL points at Dropbox (or the emulator), then try again',
      response,
    },
  );
}

function oneLine(s: string, max = 300): string {
  const t = s.replace(/[\u0000-\u001f\u007f]+/g, ' ').trim();
  return t.length > max ? `${t.slice(0, max)}…` : t;
}

/**
 * Maps a non-200 token-endpoint answer to a DropboxApiError (the Dropbox docs: oauth2/token error table). `summary` keeps the OAuth
 * error code (`invalid_grant`, `invalid_client`, ...). `secrets` are scrubbed from anything quoted back.
 */
export function tokenEndpointError(
  response: Response,
  text: string,
  ctx: { grant: GrantType; secrets?: ReadonlyArray<string | undefined>; now?: () => number },
): DropboxApiError {
  const status = response.status;
  const clean = redactSecrets(text, ctx.secrets);
  let body: { error?: unknown; error_description?: unknown } | undefined;
  try {
    const parsed: unknown = JSON.parse(clean);
    if (parsed && typeof parsed === 'object') body = parsed as typeof body;
  } catch {
    body = undefined;
  }
  const rawError = typeof body?.error === 'string' ? body.error : '';
  // One old capture packs the description into `error`: "invalid_client: Invalid client_id or client_secret".
  const m = /^([a-z_]+)(?::\s*(.*))?$/s.exec(rawError);
  const error = m?.[1] ?? '';
  const description =
    typeof body?.error_description === 'string' ? body.error_description : (m?.[2] ?? '');
  const said = description ? ` (Dropbox said: ${oneLine(description)})` : '';
  const make = (code: (typeof ErrorCodes)[keyof typeof ErrorCodes], message: string, hint?: string, details?: Record<string, unknown>, fix?: Fix) =>
    new DropboxApiError(status, error || `http_${status}`, body ?? oneLine(clean), message, {
      code,
      ...(hint === undefined ? {} : { hint }),
      ...(fix === undefined ? {} : { fix }),
      details: { endpoint: 'oauth2/token', grant: ctx.grant, ...details },
      response,
    });

  if (status >= 300 && status < 400) {
    const location = response.headers.get('location');
    let where = '';
    if (location) {
      try {
        const u = new URL(location, response.url || undefined);
        where = ` to ${u.origin}${u.pathname}`;
      } catch {
        where = ` to ${oneLine(location, 100)}`;
      }
    }
    return make(
      ErrorCodes.OAUTH_FAILED,
      `the token endpoint answered with a redirect (HTTP ${status})${where} instead of an answer; Dropbox never redirects token requests`,
      'check DROPKEY_DROPBOX_URL (or the token URL): use the https address of Dropbox or the emulator exactly, and make sure no proxy or captive portal intercepts it',
      { reason: 'redirect' },
    );
  }
  if (status === 429 || status >= 500) {
    const retryAfter = parseRetryAfter(response.headers, body, ctx.now);
    return make(
      ErrorCodes.DROPBOX_UNAVAILABLE,
      status === 429
        ? 'Dropbox is rate-limiting token requests (HTTP 429)'
        : `Dropbox's token endpoint had a server error (HTTP ${status})`,
      'try again in a little while',
      { retryable: true, ...(retryAfter === undefined ? {} : { retryAfter }) },
    );
  }
  if (error === 'invalid_client') {
    return make(
      ErrorCodes.INVALID_CLIENT,
      'Dropbox rejected the app key or secret (invalid_client): they do not match an existing app, or the secret ' +
        'was changed or mistyped',
      // No fix here: the app exists, and only the caller knows its name (it stores the corrected secret).
      'copy the app key and secret again from the app\'s Settings tab in the App Console and store them in place of the old ones',
    );
  }
  if (error === 'invalid_grant') {
    if (/redirect_uri/i.test(description)) {
      return make(
        ErrorCodes.OAUTH_FAILED,
        'Dropbox refused the code because the redirect URI differs from the one used to start the login ' +
          '(redirect_uri mismatch)',
        'exchange the code with exactly the redirect URI sent to the consent page (none for --no-redirect), and ' +
          'register that exact URI under Redirect URIs on the App Console\'s Settings tab; then log in again',
        { reason: 'redirect_uri_mismatch' },
        { action: 'login' },
      );
    }
    if (ctx.grant === 'refresh_token') {
      return make(
        ErrorCodes.REAUTH_REQUIRED,
        `Dropbox no longer accepts this connection's refresh token: it was revoked (app unlinked, token revoked, or ` +
          `leaked publicly) or belongs to another app${said}`,
        'connect again with a browser login',
        { reason: 'refresh_token_invalid' },
        { action: 'login' },
      );
    }
    return make(
      ErrorCodes.OAUTH_FAILED,
      `Dropbox refused the authorization code: codes work once and only for a short time${said}`,
      'start the login again, and finish it right away',
      { reason: 'code_invalid' },
      { action: 'login' },
    );
  }
  if (error === 'invalid_request' || error === 'unsupported_grant_type' || error === 'invalid_scope') {
    return make(
      ErrorCodes.OAUTH_FAILED,
      `Dropbox refused the token request (${error})${said}`,
      error === 'invalid_scope'
        ? "ask only for scopes enabled on the App Console's Permissions tab"
        : 'this is likely a bug in dropkey or a proxy changing the request; please report it',
    );
  }
  if (error) {
    return make(ErrorCodes.OAUTH_FAILED, `Dropbox refused the token request (${oneLine(error, 60)})${said}`);
  }
  return make(
    ErrorCodes.OAUTH_FAILED,
    `Dropbox's token endpoint answered HTTP ${status}${clean ? `: ${oneLine(clean, 200)}` : ''}`,
  );
}

/**
 * What a bearer token may hold (RFC 6750 §2.1 b64token; Dropbox's are [A-Za-z0-9._-], Dropbox docs: oauth2/token, Dropbox OAuth guide: token lifetimes) and a length well
 * above any Dropbox token (short-lived ones run to about 1,500 characters). A token is stored, sent in headers and
 * printed by `dropkey token`: a newline or an escape inside one would be a header or terminal injection.
 */
const TOKEN_CHARS = /^[A-Za-z0-9._~+/=-]+$/;
const MAX_TOKEN_LENGTH = 8192;

function checkToken(value: string, field: string, response: Response): string {
  if (value.length > MAX_TOKEN_LENGTH || !TOKEN_CHARS.test(value)) {
    throw invalidResponse(
      `${field} is not a token (${value.length > MAX_TOKEN_LENGTH ? `${value.length} characters long` : 'it holds characters a token cannot have'})`,
      response,
    );
  }
  return value;
}

function optString(v: unknown): string | undefined {
  return typeof v === 'string' && v !== '' ? v : undefined;
}

/**
 * Validates a token-endpoint answer (Dropbox docs: oauth2/token field rules) into a TokenSet. `uid` is kept when present but not
 * required (deprecated; Dropbox sends it, but refresh answers omit all ids). An account_id or team_id is required
 * for the code grant only.
 */
export async function processTokenResponse(
  response: Response,
  ctx: { grant: GrantType; now: () => number; secrets?: ReadonlyArray<string | undefined> },
): Promise<TokenSet> {
  let text: string;
  try {
    text = await response.text();
  } catch (cause) {
    throw networkError(cause, 'the token request');
  }
  if (response.status !== 200) throw tokenEndpointError(response, text, ctx);

  let j: Record<string, unknown>;
  try {
    const parsed: unknown = JSON.parse(text);
    if (!parsed || typeof parsed !== 'object' || Array.isArray(parsed)) throw new Error('not an object');
    j = parsed as Record<string, unknown>;
  } catch {
    throw invalidResponse('not a JSON object', response);
  }
  const accessToken = j['access_token'];
  if (typeof accessToken !== 'string' || accessToken === '') throw invalidResponse('no access_token', response);
  checkToken(accessToken, 'access_token', response);
  if (typeof j['token_type'] !== 'string' || j['token_type'].toLowerCase() !== 'bearer') {
    throw invalidResponse('token_type is not "bearer"', response);
  }
  const set: TokenSet = { accessToken, scopes: [], tokenType: 'bearer' };

  const expiresIn = j['expires_in'];
  if (expiresIn !== undefined && expiresIn !== null) {
    const n = typeof expiresIn === 'string' && /^\d+$/.test(expiresIn) ? Number(expiresIn) : expiresIn;
    if (typeof n !== 'number' || !Number.isFinite(n) || n <= 0) {
      throw invalidResponse('expires_in is not a positive number', response);
    }
    set.expiresAt = ctx.now() + Math.floor(n * 1000);
  }
  if (j['refresh_token'] !== undefined && j['refresh_token'] !== null) {
    const rt = j['refresh_token'];
    // A present-but-empty refresh token must never overwrite a stored one: refuse it.
    if (typeof rt !== 'string' || rt === '') throw invalidResponse('refresh_token is empty', response);
    set.refreshToken = checkToken(rt, 'refresh_token', response);
  }
  const scope = j['scope'];
  if (scope !== undefined && scope !== null) {
    if (typeof scope !== 'string') throw invalidResponse('scope is not a string', response);
    set.scopes = scope.split(/\s+/).filter(Boolean);
  }
  const accountId = optString(j['account_id']);
  const teamId = optString(j['team_id']);
  if (ctx.grant === 'authorization_code' && !accountId && !teamId) {
    throw invalidResponse('neither account_id nor team_id', response);
  }
  if (accountId) set.accountId = accountId;
  if (teamId) set.teamId = teamId;
  const uid = j['uid'];
  if (typeof uid === 'string' && uid) set.uid = uid;
  else if (typeof uid === 'number') set.uid = String(uid);
  const idToken = optString(j['id_token']);
  if (idToken) set.idToken = checkToken(idToken, 'id_token', response);
  return set;
}

export interface TokenCallOptions {
  urls: Pick<DropboxUrls, 'token'>;
  fetch: FetchLike;
  /** Epoch ms; expiresAt is computed from it. */
  now: () => number;
  client: ClientCredentials;
  /** Abort the request (e.g. Ctrl-C). */
  signal?: AbortSignal;
  /** Gives up on a slow token endpoint after this many ms (default 30 000); the error is retryable. */
  timeoutMs?: number;
}

/**
 * Runs one token-endpoint exchange (request + reading the body) under a deadline. The timer is a plain
 * setTimeout cleared at the end, so it both bounds a stalled body and keeps the process alive while waiting.
 */
async function call<T>(
  o: { fetch: FetchLike; signal?: AbortSignal; timeoutMs?: number },
  req: PreparedRequest,
  what: string,
  handle: (res: Response) => Promise<T>,
): Promise<T> {
  const ac = new AbortController();
  const timeoutMs = o.timeoutMs ?? 30_000;
  let timedOut = false;
  const timer = setTimeout(() => {
    timedOut = true;
    ac.abort(new DOMException(`${what} timed out after ${timeoutMs} ms`, 'TimeoutError'));
  }, timeoutMs);
  const onAbort = () => ac.abort(o.signal?.reason);
  o.signal?.addEventListener('abort', onAbort, { once: true });
  const fail = (cause: unknown): never => {
    if (o.signal?.aborted && !timedOut) {
      throw new DropkeyError(ErrorCodes.CANCELLED, `${what} was cancelled`, { cause });
    }
    if (timedOut) throw networkError(new DOMException('timed out', 'TimeoutError'), what);
    throw cause instanceof DropkeyError ? cause : networkError(cause, what);
  };
  try {
    if (o.signal?.aborted) onAbort();
    let res: Response;
    try {
      // Never follow a redirect: fetch would resend the body (a code, a refresh token) to wherever it points, and
      // a redirect loop or a cross-scheme hop would surface as a bare "fetch failed". A 3xx is reported as such.
      res = await o.fetch(req.url, { ...req.init, redirect: 'manual', signal: ac.signal });
    } catch (cause) {
      return fail(cause);
    }
    try {
      return await handle(res);
    } catch (cause) {
      if (ac.signal.aborted) return fail(cause);
      throw cause;
    }
  } finally {
    clearTimeout(timer);
    o.signal?.removeEventListener('abort', onAbort);
  }
}

/** Authorization code (+ PKCE verifier) → tokens. One attempt: codes are single-use, so never retried. */
export async function exchangeCode(
  o: TokenCallOptions & { code: string; codeVerifier?: string; redirectUri?: string },
): Promise<TokenSet> {
  const req = authorizationCodeRequest({
    urls: o.urls,
    client: o.client,
    code: o.code,
    codeVerifier: o.codeVerifier,
    redirectUri: o.redirectUri,
  });
  return call(o, req, 'the authorization code exchange', (res) =>
    processTokenResponse(res, {
      grant: 'authorization_code',
      now: o.now,
      secrets: [o.code, o.codeVerifier, o.client.clientSecret],
    }),
  );
}

/**
 * Refresh token → a new access token. Dropbox does not rotate refresh tokens (Dropbox docs: oauth2/token): when the answer has none,
 * the one passed in is returned, so a caller that stores the result never loses it. One attempt; retry policy
 * (5xx, 429, network) belongs to the caller (see dropbox/retry.ts).
 */
export async function refreshAccessToken(
  o: TokenCallOptions & { refreshToken: string; scopes?: readonly string[] },
): Promise<TokenSet> {
  const req = refreshTokenRequest({ urls: o.urls, client: o.client, refreshToken: o.refreshToken, scopes: o.scopes });
  const set = await call(o, req, 'the token refresh', (res) =>
    processTokenResponse(res, {
      grant: 'refresh_token',
      now: o.now,
      secrets: [o.refreshToken, o.client.clientSecret],
    }),
  );
  return { ...set, refreshToken: set.refreshToken ?? o.refreshToken };
}

/**
 * Revokes the access token and, when it was minted from a refresh token, that refresh token too (Dropbox docs: auth/token/revoke).
 * Resolves `{alreadyInvalid: true}` when Dropbox says the token is already invalid (401 invalid_access_token):
 * the goal, a dead token, holds. Other answers throw decoded DropboxApiErrors.
 */
export async function revokeToken(o: {
  urls: Pick<DropboxUrls, 'api'>;
  fetch: FetchLike;
  accessToken: string;
  signal?: AbortSignal;
  timeoutMs?: number;
}): Promise<{ alreadyInvalid: boolean }> {
  const req = revokeRequest({ urls: o.urls, accessToken: o.accessToken });
  return call(o, req, 'the token revocation', async (res) => {
    if (res.ok) {
      // A captive portal or a wrong base URL answers 200 to anything: only Dropbox's own answer to a Void route
      // (200, application/json, body `null`, Dropbox docs: auth/token/revoke) means the tokens are dead. Anything else keeps the connection.
      const type = (res.headers.get('content-type') ?? '').split(';')[0]!.trim().toLowerCase();
      const text = await res.text();
      if (res.status === 200 && type === 'application/json' && text.trim() === 'null') return { alreadyInvalid: false };
      const shown = redactSecrets(text, [o.accessToken]);
      throw new DropboxApiError(
        res.status,
        'unexpected_revoke_answer',
        null,
        `the answer to the token revocation was not Dropbox's answer (HTTP ${res.status} ${type || 'without a Content-Type'}` +
          `${shown.trim() ? `: ${oneLine(shown, 120)}` : ', empty body'}), so nothing is known to be revoked`,
        {
          code: ErrorCodes.DROPBOX_API,
          hint: 'check that DROPKEY_DROPBOX_URL (or the API URL) points at Dropbox and that no captive portal or proxy answers in its place, then try again',
          details: { endpoint: 'auth/token/revoke', status: res.status, content_type: type || null },
          response: res,
        },
      );
    }
    const err = await readDropboxError(res, 'auth/token/revoke', { secrets: [o.accessToken] });
    const tag = (err.error as { '.tag'?: unknown } | null)?.['.tag'];
    if (res.status === 401 && tag === 'invalid_access_token') return { alreadyInvalid: true };
    throw err;
  });
}

/**
 * The facade's calls to Dropbox, on top of the stateless oauth/ and dropbox/ layers: the refresh grant wired to
 * the injected fetch and clock, and the identity checks that validate a new connection (Dropbox docs: users routes, Dropbox Business API docs).
 */
import { type DropboxUrls } from '../dropbox/hosts.js';
import { networkError, readDropboxError, redactSecrets } from '../dropbox/errors.js';
import { DropboxApiError, DropkeyError, ErrorCodes } from '../errors.js';
import { type FetchLike, refreshAccessToken } from '../oauth/token.js';
import type { AppRecord } from '../store/types.js';
import type { RefreshGrant } from './refresher.js';

export function clientOf(app: AppRecord): { clientId: string; clientSecret?: string } {
  return app.secret ? { clientId: app.key, clientSecret: app.secret } : { clientId: app.key };
}

export function makeRefreshGrant(deps: { urls: DropboxUrls; fetch: FetchLike; now: () => number; timeoutMs: number }): RefreshGrant {
  return async ({ app, refreshToken, signal, scopes }) => {
    // Expiry counts from when the request left, so time spent in transit never makes a token look fresher.
    const sentAt = deps.now();
    let set: Awaited<ReturnType<typeof refreshAccessToken>>;
    try {
      set = await refreshAccessToken({
        urls: deps.urls,
        fetch: deps.fetch,
        now: () => sentAt,
        client: clientOf(app),
        refreshToken,
        ...(signal ? { signal } : {}),
        timeoutMs: deps.timeoutMs,
        ...(scopes && scopes.length > 0 ? { scopes } : {}),
      });
    } catch (err) {
      throw secretlessRefreshError(app, err);
    }
    return {
      accessToken: set.accessToken,
      expiresAt: set.expiresAt ?? null,
      scopes: set.scopes.length > 0 ? set.scopes : null,
      refreshToken: set.refreshToken ?? null,
    };
  };
}

/**
 * A refresh token minted for an app with its secret needs that secret to be refreshed; after `app update
 * --no-secret` Dropbox refuses the client_id-only request (invalid_request "missing ... client_secret", or
 * invalid_client). Said in those words, with the fix, instead of a generic refusal or "a dropkey bug".
 */
function secretlessRefreshError(app: AppRecord, err: unknown): unknown {
  if (app.secret || !(err instanceof DropboxApiError)) return err;
  const error = err.summary;
  const description = JSON.stringify(err.error ?? '');
  if (!(error === 'invalid_client' || error === 'unauthorized_client' || (error === 'invalid_request' && /client_secret|auth/i.test(description)))) return err;
  return new DropkeyError(
    ErrorCodes.INVALID_CLIENT,
    `Dropbox needs the app secret to refresh this connection, but app "${app.name}" has no secret in dropkey: the connection was authorized with the secret, which was removed since (app update --no-secret)`,
    {
      cause: err,
      hint: 'copy the app secret from the App Console (Settings tab, App secret: Show) and store it again',
      fix: { action: 'app-update', app: app.name, field: 'secret' },
      details: { app: app.name, reason: 'secret_missing' },
    },
  );
}

/** Who a token belongs to, as far as Dropbox tells. */
export interface Identity {
  accountId: string | null;
  email: string | null;
  displayName: string | null;
  teamId: string | null;
  teamName: string | null;
  /** Date header of Dropbox's answer (epoch ms), for clock-skew checks. */
  serverDate: number | null;
  /** Team apps: the admin who linked the app (team/token/get_authenticated_admin), when Dropbox said. */
  linkedBy?: LinkedAdmin | null;
}

export interface LinkedAdmin {
  name: string | null;
  email: string | null;
}

/**
 * The admin who linked a team app, from team/token/get_authenticated_admin (scope team_info.read). Throws what
 * Dropbox answered (missing_scope, mapping_not_found, admin_not_active...) for the caller to note.
 */
export async function authenticatedAdmin(
  deps: { urls: DropboxUrls; fetch: FetchLike },
  accessToken: string,
  signal?: AbortSignal,
  timeoutMs?: number,
): Promise<LinkedAdmin> {
  const route = 'team/token/get_authenticated_admin';
  const { result, response } = await rpcCall(deps, accessToken, route, null, { ...(signal ? { signal } : {}), ...(timeoutMs === undefined ? {} : { timeoutMs }) });
  const p = (result as { admin_profile?: Record<string, unknown> } | null)?.admin_profile;
  if (!p || typeof p !== 'object') throw notDropbox(route, response, redactSecrets(JSON.stringify(result) ?? '', [accessToken]));
  const name = (p['name'] ?? {}) as Record<string, unknown>;
  const email = str(p['email']);
  const display = str(name['display_name']);
  if (!email && !display) throw notDropbox(route, response, redactSecrets(JSON.stringify(result) ?? '', [accessToken]));
  return { name: display, email };
}

/** One RPC call with a bearer token; Void argument sent as no body (as the JS SDK does, Dropbox HTTP docs: request styles and headers). */
export async function rpcCall(
  deps: { urls: DropboxUrls; fetch: FetchLike },
  accessToken: string,
  route: string,
  arg: unknown,
  options: { signal?: AbortSignal; headers?: Record<string, string>; timeoutMs?: number } = {},
): Promise<{ result: unknown; response: Response }> {
  const headers: Record<string, string> = { authorization: `Bearer ${accessToken}`, ...options.headers };
  const init: RequestInit = { method: 'POST', headers };
  if (arg !== null && arg !== undefined) {
    headers['content-type'] = 'application/json';
    init.body = JSON.stringify(arg);
  }
  // Our own timeout, so a slow answer becomes a retryable network error; only the caller's signal cancels.
  const signals = [AbortSignal.timeout(options.timeoutMs ?? 30_000)];
  if (options.signal) signals.push(options.signal);
  init.signal = AbortSignal.any(signals);
  let response: Response;
  try {
    response = await deps.fetch(`${deps.urls.api}/2/${route}`, init);
  } catch (cause) {
    if (options.signal?.aborted) throw new DropkeyError(ErrorCodes.CANCELLED, `${route} was cancelled`, { cause });
    throw networkError(cause, route);
  }
  if (!response.ok) throw await readDropboxError(response, route, { secrets: [accessToken] });
  const text = await response.text();
  let result: unknown = null;
  try {
    result = text ? JSON.parse(text) : null;
  } catch (cause) {
    throw notDropbox(route, response, redactSecrets(text, [accessToken]), cause);
  }
  return { result, response };
}

/**
 * A 2xx that Dropbox would never send (HTML from a captive portal, an empty or wrongly shaped body from a wrong
 * DROPKEY_DROPBOX_URL). `details.reason` = 'not_dropbox' lets doctor explain it; the snippet is redacted by callers.
 */
export function notDropbox(route: string, response: Response, text: string, cause?: unknown): DropkeyError {
  const type = (response.headers.get('content-type') ?? '').split(';')[0]!.trim() || 'no Content-Type';
  const snippet = text.replace(/[\u0000-\u001f\u007f-\u009f]+/g, ' ').trim().slice(0, 120);
  return new DropkeyError(
    ErrorCodes.DROPBOX_API,
    `the answer to ${route} was not Dropbox's answer (HTTP ${response.status} ${type}${snippet ? `: ${snippet}` : ', empty body'})`,
    {
      ...(cause === undefined ? {} : { cause }),
      hint: 'check that DROPKEY_DROPBOX_URL (if set) points at Dropbox or the emulator, and that no captive portal or proxy answers in its place',
      details: { reason: 'not_dropbox', route, status: response.status },
    },
  );
}

function str(v: unknown): string | null {
  return typeof v === 'string' && v !== '' ? v : null;
}

function dateOf(response: Response): number | null {
  const d = response.headers.get('date');
  const t = d ? Date.parse(d) : NaN;
  return Number.isNaN(t) ? null : t;
}

/**
 * users/get_current_account for user tokens (Dropbox docs: users routes), team/get_info for team tokens (Dropbox Business API docs). Throws the decoded
 * DropboxApiError (401 expired/invalid/missing_scope, 400 wrong token kind) for the caller to explain.
 */
export async function identify(
  deps: { urls: DropboxUrls; fetch: FetchLike },
  accessToken: string,
  team: boolean,
  signal?: AbortSignal,
  timeoutMs?: number,
): Promise<Identity> {
  const opts = { ...(signal ? { signal } : {}), ...(timeoutMs === undefined ? {} : { timeoutMs }) };
  // Dropbox always names the account (or team) it answers for: without that id, it was not Dropbox answering.
  const shaped = (result: unknown, response: Response, route: string, id: string): Record<string, unknown> => {
    const r = result && typeof result === 'object' && !Array.isArray(result) ? (result as Record<string, unknown>) : undefined;
    if (!r || typeof r[id] !== 'string' || r[id] === '') {
      throw notDropbox(route, response, redactSecrets(JSON.stringify(result) ?? '', [accessToken]));
    }
    return r;
  };
  if (team) {
    const { result, response } = await rpcCall(deps, accessToken, 'team/get_info', null, opts);
    const r = shaped(result, response, 'team/get_info', 'team_id');
    return {
      accountId: null,
      email: null,
      displayName: null,
      teamId: str(r['team_id']),
      teamName: str(r['name']),
      serverDate: dateOf(response),
    };
  }
  const { result, response } = await rpcCall(deps, accessToken, 'users/get_current_account', null, opts);
  const r = shaped(result, response, 'users/get_current_account', 'account_id');
  const name = (r['name'] ?? {}) as Record<string, unknown>;
  const t = (r['team'] ?? null) as Record<string, unknown> | null;
  return {
    accountId: str(r['account_id']),
    email: str(r['email']),
    displayName: str(name['display_name']),
    teamId: t ? str(t['id']) : null,
    teamName: t ? str(t['name']) : null,
    serverDate: dateOf(response),
  };
}

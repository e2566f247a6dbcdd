/**
 * Decoding Dropbox error responses into DropboxApiError with plain-words messages and the fix.
 * Sources: https://www.dropbox.com/developers/documentation/http/documentation#error-handling (status codes, bodies, AuthError/AccessError tags, observed 400 texts), Dropbox data ingress guide: rate limits (429),
 * Dropbox docs: auth/token/revoke and Dropbox docs: errors (team token without Select-User).
 *
 * Retry facts travel in `details` (`retryable: true`, `retryAfter` seconds), read back with isRetryable() and
 * retryAfterOf(): DropkeyError has no dedicated fields for them.
 */
import { DropboxApiError, DropkeyError, ErrorCodes, type ErrorCode, type Fix } from '../errors.js';

export interface RetryDetails {
  retryable?: boolean;
  /** Seconds Dropbox asked us to wait (Retry-After header or JSON retry_after). */
  retryAfter?: number;
}

export function isRetryable(e: unknown): boolean {
  return e instanceof DropkeyError && e.details?.['retryable'] === true;
}

export function retryAfterOf(e: unknown): number | undefined {
  if (!(e instanceof DropkeyError)) return undefined;
  const v = e.details?.['retryAfter'];
  return typeof v === 'number' ? v : undefined;
}

/**
 * Seconds to wait from a 429/503 answer. Dropbox sends an integer `Retry-After` header and, for JSON bodies,
 * `error.retry_after` (Dropbox docs: errors; Python prefers the JSON value, so do we). HTTP-date values are accepted too (RFC 9110
 * §10.2.3) when a clock is given. Returns undefined when neither is present or readable.
 */
export function parseRetryAfter(headers: Headers, body?: unknown, now?: () => number): number | undefined {
  const fromJson = (body as { error?: { retry_after?: unknown } } | undefined)?.error?.retry_after;
  if (typeof fromJson === 'number' && Number.isFinite(fromJson) && fromJson >= 0) return fromJson;
  const h = headers.get('retry-after')?.trim();
  if (!h) return undefined;
  if (/^\d+$/.test(h)) return Number(h);
  if (now) {
    const t = Date.parse(h);
    if (!Number.isNaN(t)) return Math.max(0, Math.ceil((t - now()) / 1000));
  }
  return undefined;
}

/** Replaces every occurrence of the given secrets (tokens, codes, app secret) and token-like quoted values. */
export function redactSecrets(text: string, secrets: ReadonlyArray<string | undefined> = []): string {
  let out = text;
  for (const s of secrets) {
    if (s && s.length >= 4) out = out.split(s).join('[redacted]');
  }
  // Dropbox echoes a bad Authorization value back: `... "Authorization": "sl.Bl...".` (Dropbox docs: errors observed texts).
  out = out.replace(/("Authorization":\s*")[^"]*(")/gi, '$1[redacted]$2');
  out = out.replace(/\b(Bearer|Basic)\s+[A-Za-z0-9._~+/=-]{8,}/g, '$1 [redacted]');
  return out;
}

function oneLine(s: string, max = 400): string {
  const t = s.replace(/[\u0000-\u001f\u007f]+/g, ' ').replace(/\s+/g, ' ').trim();
  return t.length > max ? `${t.slice(0, max)}…` : t;
}

/** "path/not_found/.." → "path/not_found" (Dropbox appends random dots so nobody parses it, Dropbox docs: errors). */
export function cleanSummary(summary: string): string {
  return summary.replace(/[/.]+$/, '');
}

function tagOf(v: unknown): string | undefined {
  if (typeof v === 'string') return v;
  if (v && typeof v === 'object') {
    const t = (v as Record<string, unknown>)['.tag'];
    if (typeof t === 'string') return t;
  }
  return undefined;
}

/** The `.tag` of the `error` union of a DropboxApiError (e.g. `expired_access_token` on a 401). */
export function errorTag(e: unknown): string | undefined {
  return e instanceof DropboxApiError && e.error !== null && typeof e.error === 'object' ? tagOf(e.error) : undefined;
}

/** A failed connection (DNS, refused, reset, timeout): retryable. */
export function networkError(cause: unknown, what: string): DropkeyError {
  const timedOut = cause instanceof Error && (cause.name === 'TimeoutError' || cause.name === 'AbortError');
  const why = timedOut ? 'timed out' : 'failed';
  const detail = cause instanceof Error && !timedOut ? ` (${oneLine(redactSecrets(cause.message), 200)})` : '';
  return new DropkeyError(ErrorCodes.DROPBOX_UNAVAILABLE, `the connection to Dropbox ${why} during ${what}${detail}`, {
    cause,
    hint: 'check the network (and DROPKEY_DROPBOX_URL if set), then try again',
    details: { retryable: true, network: true },
  });
}

export interface DecodeInput {
  status: number;
  headers: Headers;
  /** The response body as text. */
  text: string;
  /** The route called, e.g. "files/upload" (used in messages). */
  route: string;
  /** Values that must never appear in the message (the access token sent, an app secret...). */
  secrets?: ReadonlyArray<string | undefined>;
  response?: Response;
  now?: () => number;
}

function parseJson(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return undefined;
  }
}

const TEAM_TOKEN_TEXT = 'access token you provided is for an entire Dropbox Business team';
const USER_TOKEN_ON_TEAM_ROUTE = 'does not work with this function';

interface Explained {
  message: string;
  hint?: string;
  fix?: Fix;
  code?: ErrorCode;
  details?: Record<string, unknown>;
}

function explain400(route: string, text: string): Explained {
  if (text.includes(TEAM_TOKEN_TEXT) || text.includes('entire Dropbox Business team')) {
    return {
      message:
        `${route} works on one person's Dropbox, but this token belongs to a whole Business team, ` +
        'and no team member was selected',
      hint:
        'select a member with the Dropbox-API-Select-User header (selectUser: "<team_member_id>", listed by ' +
        'team/members/list_v2), or connect a user app instead of a team app',
      details: { reason: 'team_token_without_select_user' },
    };
  }
  if (text.includes('DfB team management function') || text.includes(USER_TOKEN_ON_TEAM_ROUTE)) {
    return {
      message: `${route} is a team administration route, but this token belongs to a single user`,
      hint: 'register a team app and log in with it as a team admin',
      fix: { action: 'app-add', team: true },
      details: { reason: 'user_token_on_team_route' },
    };
  }
  if (text.includes('access token is malformed') || text.includes('Invalid authorization value')) {
    return {
      message: 'Dropbox says the access token is malformed: it is probably truncated or has extra characters pasted along',
      hint: 'let dropkey check the token (paste it when asked), or reconnect with a browser login',
      fix: { action: 'doctor', token: true },
      details: { reason: 'malformed_token' },
    };
  }
  if (text.includes('Must provide HTTP header "Authorization"')) {
    return { message: `the request to ${route} carried no access token`, details: { reason: 'no_authorization' } };
  }
  const said = oneLine(text.replace(/^Error in call to API function "[^"]*":\s*/, ''));
  return { message: `Dropbox rejected the request to ${route} as bad input: ${said || '(no details)'}` };
}

function explain401(route: string, error: unknown): Explained {
  const tag = tagOf(error);
  switch (tag) {
    case 'expired_access_token':
      return {
        code: ErrorCodes.TOKEN_EXPIRED,
        message: 'the access token has expired (Dropbox access tokens last 4 hours)',
        hint: 'get a fresh one from dropkey (connections with a refresh token renew themselves)',
        fix: { action: 'token' },
      };
    case 'invalid_access_token':
      return {
        message:
          'Dropbox does not accept the access token: it was revoked (app unlinked or token revoked), ' +
          'belongs to another app, or was mistyped',
        hint: 'let dropkey check the connection; if it was revoked, reconnect with a browser login',
        fix: { action: 'doctor' },
      };
    case 'missing_scope': {
      const scope = (error as { required_scope?: unknown }).required_scope;
      const s = typeof scope === 'string' && scope ? scope : 'needed by this call';
      return {
        message:
          `the token lacks the scope ${s}: enable it in the App Console's Permissions tab, then log in ` +
          'again (scopes are fixed at login)',
        hint: `enable ${s} in the App Console (Permissions tab), click Submit, then log in again`,
        fix: { action: 'login' },
        details: { requiredScope: typeof scope === 'string' ? scope : undefined },
      };
    }
    case 'invalid_select_user':
      return {
        message: 'the team member chosen with Dropbox-API-Select-User does not exist in this team or is not active',
        hint: 'use a team_member_id (dbmid:...) listed by team/members/list_v2',
      };
    case 'invalid_select_admin':
      return {
        message: 'the member chosen with Dropbox-API-Select-Admin is not an admin of this team',
        hint: 'use the team_member_id of a team admin',
      };
    case 'user_suspended':
      return { message: 'this Dropbox account is suspended', hint: "ask the team's admin to reactivate it" };
    case 'route_access_denied':
      return {
        message: `this app or token is not allowed to call ${route}`,
        hint: "check the app's access type (app folder or full Dropbox) and permissions in the App Console",
      };
    default:
      return { message: `Dropbox refused the access token for ${route} (${tag ?? 'unknown reason'})` };
  }
}

function explain403(route: string, error: unknown): Explained {
  const tag = tagOf(error);
  switch (tag) {
    case 'invalid_account_type':
      return {
        message: `this kind of Dropbox account cannot use ${route} (e.g. a Basic account on a Business feature)`,
      };
    case 'paper_access_denied':
      return { message: 'Paper is disabled for this account or team' };
    case 'team_access_denied':
      return { message: `the team's settings do not allow ${route}`, hint: "ask the team's admin" };
    case 'no_permission':
      return { message: `this account has no permission for ${route}` };
    default:
      return { message: `Dropbox denied access to ${route} (${tag ?? 'no reason given'})` };
  }
}

function explain409(route: string, summary: string): Explained {
  const s = cleanSummary(summary);
  if (/(^|\/)not_found$/.test(s)) return { message: `${route} failed: no file or folder at that path (${s})` };
  if (/(^|\/)conflict(\/|$)/.test(s)) return { message: `${route} failed: something already exists at that path (${s})` };
  if (/insufficient_space/.test(s)) return { message: `${route} failed: the Dropbox is full (${s})` };
  if (/malformed_path/.test(s)) return { message: `${route} failed: the path is malformed (${s})` };
  return { message: `${route} failed: ${s || 'route error'}` };
}

/** Turns a non-2xx API answer into a DropboxApiError. Pure: takes the body already read as text. */
export function decodeDropboxError(input: DecodeInput): DropboxApiError {
  const { status, headers, route } = input;
  const text = redactSecrets(input.text, input.secrets);
  const json = parseJson(text) as
    | { error_summary?: unknown; error?: unknown; user_message?: { text?: unknown } }
    | undefined;
  const isObj = json !== null && typeof json === 'object';
  const error: unknown = isObj ? (json.error ?? json) : text;
  const rawSummary = isObj && typeof json.error_summary === 'string' ? json.error_summary : '';
  const requestId = headers.get('x-dropbox-request-id') ?? undefined;
  let ex: Explained;
  // Tags come from JSON bodies only: a plain-text body is not a union tag.
  const union = isObj ? error : undefined;
  let summary = rawSummary || (isObj ? tagOf(error) : undefined) || `http_${status}`;

  if (status === 429) {
    const retryAfter = parseRetryAfter(headers, json, input.now);
    const reason = tagOf((error as { reason?: unknown } | undefined)?.reason) ?? 'too_many_requests';
    summary = rawSummary || reason;
    ex = {
      code: ErrorCodes.DROPBOX_UNAVAILABLE,
      message:
        reason === 'too_many_write_operations'
          ? 'Dropbox is busy with other writes in the same folder tree (too_many_write_operations)'
          : 'Dropbox is rate-limiting this token (too_many_requests)',
      hint: `wait ${retryAfter ?? 'a few'} seconds and try again`,
      details: { retryable: true, ...(retryAfter === undefined ? {} : { retryAfter }) },
    };
  } else if (status >= 500) {
    const retryAfter = parseRetryAfter(headers, json, input.now);
    summary = rawSummary || `http_${status}`;
    ex = {
      code: ErrorCodes.DROPBOX_UNAVAILABLE,
      message: `Dropbox had a server error (HTTP ${status}) on ${route}`,
      hint: 'try again in a little while; https://status.dropbox.com shows outages',
      details: { retryable: true, ...(retryAfter === undefined ? {} : { retryAfter }) },
    };
  } else if (status === 400) {
    ex = explain400(route, text);
    summary = `bad_input`;
  } else if (status === 401) {
    ex = explain401(route, union);
  } else if (status === 403) {
    ex = explain403(route, union);
  } else if (status === 409) {
    ex = explain409(route, rawSummary || summary);
    const um = json?.user_message?.text;
    if (typeof um === 'string' && um) ex.message += ` — Dropbox says: ${oneLine(um, 200)}`;
  } else if (status === 422) {
    const tag = tagOf(union);
    ex = {
      message:
        tag === 'invalid_root'
          ? "the Dropbox-API-Path-Root namespace is not this account's root (invalid_root)"
          : `the Dropbox-API-Path-Root namespace cannot be used (${tag ?? 'path root error'})`,
      hint: "use the root_namespace_id from users/get_current_account's root_info",
    };
  } else {
    ex = { message: `Dropbox answered HTTP ${status} to ${route}${text ? `: ${oneLine(text, 200)}` : ''}` };
  }

  return new DropboxApiError(status, summary, error, ex.message, {
    code: ex.code ?? ErrorCodes.DROPBOX_API,
    ...(ex.hint === undefined ? {} : { hint: ex.hint }),
    ...(ex.fix === undefined ? {} : { fix: ex.fix }),
    details: { route, ...(requestId ? { requestId } : {}), ...ex.details },
    ...(input.response ? { response: input.response } : {}),
  });
}

/** Reads the body of a failed response and decodes it. */
export async function readDropboxError(
  response: Response,
  route: string,
  options: { secrets?: ReadonlyArray<string | undefined>; now?: () => number } = {},
): Promise<DropboxApiError> {
  let text = '';
  try {
    text = await response.text();
  } catch {
    // A body that cannot be read (reset mid-way) still leaves the status to decode.
  }
  return decodeDropboxError({
    status: response.status,
    headers: response.headers,
    text,
    route,
    response,
    ...(options.secrets ? { secrets: options.secrets } : {}),
    ...(options.now ? { now: options.now } : {}),
  });
}

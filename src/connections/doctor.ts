/**
 * The diagnosis engine behind `dropkey doctor`: looks at a stored connection or a pasted token, asks Dropbox what
 * it thinks of it, and explains every problem in plain words with its fix as data (the CLI prints the command).
 * Sources: https://www.dropbox.com/developers/documentation/http/documentation#oauth2-token (token errors), Dropbox OAuth guide: token lifetimes (lifetimes, `sl.` prefix), Dropbox docs: errors (401 AuthError tags, the
 * team-token 400 text), Dropbox OAuth guide: scopes (scopes per route).
 */
import type { DropboxUrls } from '../dropbox/hosts.js';
import { errorTag, readDropboxError } from '../dropbox/errors.js';
import { resolveNeeds } from '../dropbox/scopes.js';
import { diagnoseTokenShape, type Finding, normalizePastedToken, type Severity } from '../dropbox/token-shape.js';
import { DropboxApiError, DropkeyError, ErrorCodes, type Fix } from '../errors.js';
import type { FetchLike } from '../oauth/token.js';
import type { AppRecord, ConnectionRecord } from '../store/types.js';
import type { ConnectionsContext } from './context.js';
import { DEFAULT_CONNECTION, validateName } from './names.js';
import { identify, type Identity, rpcCall } from './protocol.js';
import { type LoginFix, loginFix } from './refresher.js';
import { getToken } from './tokens.js';

// One finding shape for the shape check and the live checks, so the CLI prints both the same way.
export type { Finding, Severity };

export interface DoctorInput {
  /** A stored connection to check (default "default" when no token is given). */
  connection?: string;
  /** A pasted access token to check instead. */
  token?: string;
  /** Scopes the job needs, e.g. ["files.content.write"]. */
  need?: string[];
  signal?: AbortSignal;
}

export interface DoctorReport {
  healthy: boolean;
  /** What was checked: a connection name, or "pasted token". */
  subject: string;
  findings: Finding[];
}

/** Clock difference that breaks expiry arithmetic enough to matter (tokens are refreshed 300 s early). */
const MAX_SKEW_MS = 60_000;

/**
 * Harmless calls that need one scope each (Dropbox OAuth guide: scopes), to confirm a scope live: Dropbox checks the token's scopes before
 * anything else and answers 401 missing_scope when one is lacking. The content probes change nothing: a download of
 * a path that does not exist (409 when allowed), and an upload session that is opened and left to expire.
 * Scopes not listed are judged from the granted list only.
 */
interface Probe {
  route: string;
  arg: unknown;
  team: boolean;
  style: 'rpc' | 'upload' | 'download';
}
const SCOPE_PROBES: Record<string, Probe> = {
  'account_info.read': { route: 'users/get_current_account', arg: null, team: false, style: 'rpc' },
  'files.metadata.read': { route: 'files/list_folder', arg: { path: '', limit: 1 }, team: false, style: 'rpc' },
  'files.content.read': { route: 'files/download', arg: { path: '/dropkey-doctor-probe-does-not-exist' }, team: false, style: 'download' },
  'files.content.write': { route: 'files/upload_session/start', arg: { close: false }, team: false, style: 'upload' },
  'team_info.read': { route: 'team/get_info', arg: null, team: true, style: 'rpc' },
  'members.read': { route: 'team/members/list_v2', arg: { limit: 1 }, team: true, style: 'rpc' },
  'sessions.list': { route: 'team/devices/list_members_devices', arg: {}, team: true, style: 'rpc' },
  'events.read': { route: 'team_log/get_events', arg: { limit: 1 }, team: true, style: 'rpc' },
};

/** One content-host call for a probe; resolves to the response, whatever its status. */
async function contentProbe(ctx: Ctx, token: string, probe: Probe): Promise<Response> {
  const headers: Record<string, string> = { authorization: `Bearer ${token}`, 'dropbox-api-arg': JSON.stringify(probe.arg) };
  if (probe.style === 'upload') headers['content-type'] = 'application/octet-stream';
  const signals = [AbortSignal.timeout(30_000)];
  if (ctx.signal) signals.push(ctx.signal);
  const res = await ctx.fetch(`${ctx.urls.content}/2/${probe.route}`, {
    method: 'POST',
    headers,
    ...(probe.style === 'upload' ? { body: new Uint8Array(0) } : {}),
    signal: AbortSignal.any(signals),
  });
  return res;
}

const PASTE_PROBLEMS = new Set(['token.whitespace', 'token.quotes', 'token.bearer_prefix', 'token.assignment', 'token.inner_whitespace']);

/** What a finding says to do: words, and the fix as data when dropkey can do it. */
interface Advice {
  hint: string;
  fix?: Fix;
}

interface Ctx {
  urls: DropboxUrls;
  fetch: FetchLike;
  now: () => number;
  findings: Finding[];
  signal: AbortSignal | undefined;
  /** Running the doctor again on the same subject. */
  again: Fix;
}

function add(ctx: Ctx, f: Finding): void {
  if (!ctx.findings.some((x) => x.id === f.id)) ctx.findings.push(f);
}

function consoleFix(scopes: string[]): string {
  return `enable ${scopes.join(', ')} on the Permissions tab of the app in the Dropbox App Console and click Submit`;
}

function checkSkew(ctx: Ctx, serverDate: number | null): void {
  if (serverDate === null) return;
  const skew = ctx.now() - serverDate;
  // The Date header has one-second resolution; the threshold is far above that.
  if (Math.abs(skew) > MAX_SKEW_MS) {
    const secs = Math.round(Math.abs(skew) / 1000);
    add(ctx, {
      id: 'clock_skew',
      severity: 'warning',
      message: `This computer's clock is ${secs} seconds ${skew > 0 ? 'ahead of' : 'behind'} Dropbox's, so token expiry times computed here are off by as much.`,
      hint: 'turn on time synchronisation (NTP), e.g. "sudo timedatectl set-ntp true" on Linux',
    });
  }
}

/** Explains a Dropbox refusal of a live call. Returns true when it was understood. */
function explainLiveError(ctx: Ctx, err: unknown, login: Advice, route: string): boolean {
  const tag = errorTag(err);
  const reason = err instanceof DropkeyError ? err.details?.['reason'] : undefined;
  if (tag === 'expired_access_token') {
    add(ctx, { id: 'expired', severity: 'error', message: 'Dropbox says the access token has expired (access tokens last 4 hours).', ...login });
    return true;
  }
  if (tag === 'invalid_access_token') {
    add(ctx, {
      id: 'revoked',
      severity: 'error',
      message: 'Dropbox does not accept the access token: it was revoked (the app was unlinked or the token revoked), belongs to another app, or was mistyped.',
      ...login,
    });
    return true;
  }
  if (reason === 'team_token_without_select_user') {
    add(ctx, {
      id: 'team_token_without_select_user',
      severity: 'error',
      message: `${route} works on one person's Dropbox, but this is a Business team token and no team member was selected with the Dropbox-API-Select-User header.`,
      hint: 'send "Dropbox-API-Select-User: <team_member_id>" (team/members/list_v2 lists the ids), e.g. dropkey.client(name, { selectUser }) or new Dropbox({ auth, selectUser })',
    });
    return true;
  }
  if (reason === 'malformed_token') {
    add(ctx, {
      id: 'token_malformed',
      severity: 'error',
      message: 'Dropbox says the token is malformed: it is truncated or has extra characters.',
      hint: 'copy the token again, alone, or get one from dropkey',
      fix: { action: 'token' },
    });
    return true;
  }
  if (reason === 'not_dropbox' && err instanceof DropkeyError) {
    add(ctx, { id: 'not_dropbox', severity: 'error', message: `${err.message.replace(/^the/, 'The')}.`, hint: err.hint ?? 'check DROPKEY_DROPBOX_URL', ...(err.fix ? { fix: err.fix } : {}) });
    return true;
  }
  if (err instanceof DropkeyError && err.code === ErrorCodes.DROPBOX_UNAVAILABLE) {
    add(ctx, {
      id: 'dropbox_unreachable',
      severity: 'error',
      message: `Dropbox could not be reached: ${err.message}`,
      hint: 'check the network (and DROPKEY_DROPBOX_URL if set), then check again',
      fix: ctx.again,
    });
    return true;
  }
  return false;
}

async function probeScopes(ctx: Ctx, token: string, need: string[], team: boolean): Promise<string[]> {
  const missing: string[] = [];
  for (const scope of need) {
    const probe = SCOPE_PROBES[scope];
    if (!probe || probe.team !== team) continue;
    try {
      if (probe.style === 'rpc') {
        const r = await rpcCall(ctx, token, probe.route, probe.arg, ctx.signal ? { signal: ctx.signal } : {});
        checkSkew(ctx, dateOf(r.response));
      } else {
        const res = await contentProbe(ctx, token, probe);
        checkSkew(ctx, dateOf(res));
        if (res.status === 401) {
          const err = await readDropboxError(res, probe.route, { secrets: [token] });
          if (errorTag(err) === 'missing_scope') missing.push(scope);
        } else {
          await res.body?.cancel();
        }
      }
    } catch (err) {
      if (errorTag(err) === 'missing_scope') missing.push(scope);
    }
  }
  return missing;
}

function dateOf(response: Response): number | null {
  const d = response.headers.get('date');
  const t = d ? Date.parse(d) : NaN;
  return Number.isNaN(t) ? null : t;
}

function scopeFindings(ctx: Ctx, granted: string[] | null, need: string[], liveMissing: string[], login: LoginFix): void {
  const missing = new Set(liveMissing);
  if (granted !== null && granted.length > 0) for (const s of need) if (!granted.includes(s)) missing.add(s);
  if (missing.size === 0) return;
  const list = [...missing];
  add(ctx, {
    id: 'missing_scope',
    severity: 'error',
    message: `The token lacks the scope${list.length > 1 ? 's' : ''} ${list.join(', ')} that the job needs. Scopes are fixed when the connection is authorized.`,
    hint: `${consoleFix(list)}, then log in again adding ${list.length > 1 ? 'them' : 'it'} (the scopes already granted are kept)`,
    fix: { ...login, addScopes: list },
  });
}

async function doctorToken(ctx: Ctx, raw: string, need: string[]): Promise<void> {
  // Shape first (pure, from dropbox/token-shape.ts), then what Dropbox says about the cleaned value.
  const shape = diagnoseTokenShape(raw, { expect: 'access' });
  // What was pasted along (quotes, whitespace, "Bearer ") breaks the job that uses the value as given: a problem.
  for (const f of shape.findings) {
    if (f.id === 'token.short_lived') continue;
    add(ctx, { ...f, severity: PASTE_PROBLEMS.has(f.id) ? 'error' : f.severity });
  }
  const token = normalizePastedToken(raw, 'access').value;
  if (token === '' || shape.findings.some((f) => f.severity === 'error')) return;
  const maybeRefresh = shape.kind === 'long_lived_or_refresh';
  const login: Advice = { hint: 'connect for good with a browser login (then get tokens from dropkey), instead of pasting tokens', fix: { action: 'login' } };
  let id: Identity | undefined;
  let team = false;
  const live = (err: unknown, route: string): boolean => {
    if (maybeRefresh && errorTag(err) === 'invalid_access_token') {
      // Dropbox refuses it as a Bearer token: with this shape, it is most likely a refresh token.
      const finding: Finding = {
        id: 'token.refresh_as_access',
        severity: 'error',
        message: 'Dropbox does not accept this 64-character value as an access token: it is most likely a refresh token, which cannot be sent as "Authorization: Bearer".',
        hint: 'import it so dropkey mints access tokens from it',
        fix: { action: 'import', token: 'refresh' },
      };
      const i = ctx.findings.findIndex((f) => f.id === finding.id);
      if (i >= 0) ctx.findings[i] = finding;
      else ctx.findings.push(finding);
      return true;
    }
    return explainLiveError(ctx, err, login, route);
  };
  try {
    id = await identify(ctx, token, false, ctx.signal);
  } catch (err) {
    const reason = err instanceof DropkeyError ? err.details?.['reason'] : undefined;
    if (reason === 'team_token_without_select_user') {
      team = true;
      add(ctx, {
        id: 'team_token',
        severity: 'info',
        message: 'This is a Business team token: user routes (files, account) need a Dropbox-API-Select-User header naming a team member.',
        hint: 'send "Dropbox-API-Select-User: <team_member_id>" with user routes (team/members/list_v2 lists the ids)',
      });
      try {
        id = await identify(ctx, token, true, ctx.signal);
      } catch (err2) {
        if (!live(err2, 'team/get_info') && errorTag(err2) !== 'missing_scope') throw err2;
      }
    } else if (!live(err, 'users/get_current_account') && errorTag(err) !== 'missing_scope') {
      throw err;
    }
  }
  if (id) checkSkew(ctx, id.serverDate);
  if (ctx.findings.some((f) => f.severity === 'error' && !PASTE_PROBLEMS.has(f.id))) return;
  if (need.length > 0) {
    const missing = await probeScopes(ctx, token, need, team);
    scopeFindings(ctx, null, need, missing, { action: 'login' });
    const unknown = need.filter((s) => !SCOPE_PROBES[s] || SCOPE_PROBES[s]!.team !== team);
    if (unknown.length > 0) {
      add(ctx, {
        id: 'scopes_unverified',
        severity: 'info',
        message: `Dropbox offers no way to list a pasted token's scopes, and ${unknown.join(', ')} could not be checked with a harmless call.`,
        hint: 'connect with a browser login: dropkey then records the granted scopes',
        fix: { action: 'login' },
      });
    }
  }
  if (shape.kind === 'short_lived_access') {
    add(ctx, {
      id: 'pasted_short_lived_token',
      severity: 'warning',
      message: 'A pasted short-lived token stops working within 4 hours and cannot be renewed.',
      hint: 'connect once with a browser login (or import a refresh token) and get tokens from dropkey',
      fix: { action: 'login' },
    });
  }
}

async function doctorConnection(conn: ConnectionsContext, ctx: Ctx, name: string, need: string[]): Promise<void> {
  const rec = await conn.store.getConnection(name);
  if (!rec) {
    add(ctx, { id: 'not_found', severity: 'error', message: `There is no connection named "${name}".`, hint: 'check the name against the list of connections, or create it with a browser login', fix: { action: 'login', connection: name } });
    return;
  }
  const app = await conn.store.getApp(rec.app);
  const relogin = loginFix(rec);
  const login: Advice = { hint: 'connect it again with a browser login', fix: relogin };
  if (!app) {
    add(ctx, { id: 'app_missing', severity: 'error', message: `The connection uses app "${rec.app}", which is no longer registered.`, hint: 'register the app again with its key (and secret)', fix: { action: 'app-add', app: rec.app } });
    return;
  }
  lastErrorFindings(ctx, rec, relogin);
  if (rec.state !== 'active') {
    add(ctx, {
      id: 'needs_reauth',
      severity: 'error',
      message: `Connection "${name}" must be authorized again: Dropbox no longer accepts its refresh token.${rec.lastError ? ` ${rec.lastError}` : ''}`,
      ...login,
    });
    return;
  }
  if (!rec.refreshToken) {
    add(ctx, {
      id: 'no_refresh_token',
      severity: 'warning',
      message: `Connection "${name}" has no refresh token (it came from a pasted access token, or offline access was not requested), so it stops working when its access token expires.`,
      hint: 'connect it again with a browser login (dropkey always asks for offline access)',
      fix: relogin,
    });
  }
  accessFinding(ctx, app);

  // A real refresh checks the refresh token and the app key and secret (invalid_client) in one go.
  let token: string | undefined;
  try {
    const t = await getToken(conn, name, rec.refreshToken ? { forceRefresh: true, ...(ctx.signal ? { signal: ctx.signal } : {}) } : {});
    token = t.accessToken;
  } catch (err) {
    refreshFinding(ctx, err, rec, login);
  }
  if (!token) return;
  const fresh = (await conn.store.getConnection(name)) ?? rec;
  let id: Identity | undefined;
  try {
    id = await identify(ctx, token, app.team, ctx.signal);
  } catch (err) {
    if (errorTag(err) === 'missing_scope') {
      add(ctx, {
        id: 'account_details_unreadable',
        severity: 'info',
        message: `The token lacks ${app.team ? 'team_info.read' : 'account_info.read'}, so dropkey cannot show whose ${app.team ? 'team' : 'account'} this is.`,
        hint: `${consoleFix([app.team ? 'team_info.read' : 'account_info.read'])}, then log in again`,
        fix: relogin,
      });
    } else if (!explainLiveError(ctx, err, login, app.team ? 'team/get_info' : 'users/get_current_account')) {
      throw err;
    }
  }
  if (id) checkSkew(ctx, id.serverDate);
  if (need.length > 0) {
    const live = await probeScopes(ctx, token, need, app.team);
    scopeFindings(ctx, fresh.scopes, need, live, relogin);
  }
}

function accessFinding(ctx: Ctx, app: AppRecord): void {
  if (app.access === 'app_folder') {
    add(ctx, {
      id: 'app_folder_access',
      severity: 'info',
      message: `App "${app.name}" has App folder access: it sees only its own folder (/Apps/<app name>), not the rest of the Dropbox. Paths are relative to that folder.`,
      hint: 'if the job needs other folders, create an app with "Full Dropbox" access in the App Console and connect with it',
    });
  }
}

function lastErrorFindings(ctx: Ctx, rec: ConnectionRecord, relogin: Fix): void {
  const e = rec.lastError ?? '';
  if (/redirect_uri/i.test(e)) {
    add(ctx, {
      id: 'redirect_uri_mismatch',
      severity: 'error',
      message: 'The last login failed because the redirect URI differed from one registered for the app (Dropbox compares them exactly, port and path included).',
      hint: "register http://127.0.0.1:53682/callback under Redirect URIs on the app's Settings tab in the App Console, then log in again",
      fix: relogin,
    });
  }
  if (/entire Dropbox Business team|Select-User/i.test(e)) {
    add(ctx, {
      id: 'team_token_without_select_user',
      severity: 'error',
      message: 'A user route was called with this team token without selecting a team member.',
      hint: 'send "Dropbox-API-Select-User: <team_member_id>" (team/members/list_v2 lists the ids)',
    });
  }
}

function refreshFinding(ctx: Ctx, err: unknown, rec: ConnectionRecord, login: Advice): void {
  if (err instanceof DropkeyError && err.code === ErrorCodes.REAUTH_REQUIRED) {
    add(ctx, { id: 'needs_reauth', severity: 'error', message: err.message, ...login });
  } else if (err instanceof DropkeyError && err.details?.['reason'] === 'secret_missing') {
    add(ctx, {
      id: 'app_secret_missing',
      severity: 'error',
      message: err.message,
      hint: err.hint ?? "copy the secret from the app's Settings tab in the App Console (click Show) and store it again",
      fix: err.fix ?? { action: 'app-update', app: rec.app, field: 'secret' },
    });
  } else if (err instanceof DropkeyError && err.code === ErrorCodes.INVALID_CLIENT) {
    add(ctx, {
      id: 'invalid_client',
      severity: 'error',
      message: `Dropbox rejected the app key or secret of app "${rec.app}" (invalid_client): the secret was changed or mistyped, or the key belongs to another app.`,
      hint: "copy the secret from the app's Settings tab in the App Console (click Show) and store it again (if the key is wrong too, change it as well)",
      fix: { action: 'app-update', app: rec.app, field: 'secret' },
    });
  } else if (err instanceof DropkeyError && err.code === ErrorCodes.TOKEN_EXPIRED) {
    add(ctx, { id: 'expired', severity: 'error', message: err.message, ...login });
  } else if (err instanceof DropboxApiError && /redirect_uri/i.test(err.message)) {
    add(ctx, { id: 'redirect_uri_mismatch', severity: 'error', message: err.message, ...login });
  } else if (!explainLiveError(ctx, err, login, 'oauth2/token')) {
    add(ctx, {
      id: 'refresh_failed',
      severity: 'error',
      message: `Refreshing the access token failed: ${err instanceof Error ? err.message : String(err)}`,
      hint: 'check again; if it persists, connect it again with a browser login',
      fix: ctx.again,
    });
  }
}

export async function runDoctor(conn: ConnectionsContext, input: DoctorInput): Promise<DoctorReport> {
  // --need takes scope names or route names (files/upload → files.content.write); unknown items are reported.
  const { scopes: need, unknown } = resolveNeeds((input.need ?? []).flatMap((s) => s.split(/[\s,]+/)).filter(Boolean));
  const name = input.token === undefined ? validateName('connection', input.connection ?? DEFAULT_CONNECTION) : undefined;
  const again: Fix = name === undefined ? { action: 'doctor', token: true } : { action: 'doctor', connection: name };
  const ctx: Ctx = { urls: conn.urls, fetch: conn.fetch, now: conn.now, findings: [], signal: input.signal, again };
  if (unknown.length > 0) {
    add(ctx, {
      id: 'unknown_need',
      severity: 'warning',
      message: `Not a Dropbox scope or a known route: ${unknown.join(', ')}.`,
      hint: 'use scope names such as files.content.read, or route names such as files/upload',
    });
  }
  let subject: string;
  if (input.token !== undefined || name === undefined) {
    subject = 'pasted token';
    await doctorToken(ctx, input.token ?? '', need);
  } else {
    subject = name;
    await doctorConnection(conn, ctx, name, need);
  }
  return { healthy: !ctx.findings.some((f) => f.severity === 'error'), subject, findings: ctx.findings };
}

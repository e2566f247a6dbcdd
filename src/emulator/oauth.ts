/**
 * OAuth 2 as Dropbox does it (https://developers.dropbox.com/oauth-guide): the consent page (/oauth2/authorize, HTML without JavaScript)
 * and the token endpoint (/oauth2/token). Choices where Dropbox's behaviour is unknown are listed in
 * docs/emulator.md ("Behaviours chosen").
 */
import { createHash } from 'node:crypto';
import { CODE_LIFETIME_MS, CONSENT_LIFETIME_MS, type CodeRecord, type Core } from './core.js';
import { recordAppLink, recordLogin } from './events.js';
import { hashSecret, randomToken, secretEquals } from './ids.js';
import { isLoopbackHost, type AccountRecord, type AppRecord, type GrantRecord, type TokenAccessType } from './state.js';
import { basicCredentials, escapeHtml, jsonResponse, mediaType, readBody } from './wire.js';

// ---- shared ---------------------------------------------------------------------------------------------------

/** The token endpoint's success body (https://www.dropbox.com/developers/documentation/http/documentation#oauth2-token): also what POST /_emulator/grants returns. */
export function tokenResponseBody(
  core: Core,
  grant: GrantRecord,
  account: AccountRecord,
  accessToken: string,
  refreshToken: string | undefined,
): Record<string, unknown> {
  const body: Record<string, unknown> = { access_token: accessToken, token_type: 'bearer' };
  if (grant.token_access_type !== 'legacy') body['expires_in'] = core.tokenLifetimeSeconds;
  // `scope` is "present for scoped apps" (https://www.dropbox.com/developers/documentation/http/documentation#oauth2-token); an app configured with none is a legacy one.
  if (grant.scopes.length > 0) body['scope'] = [...grant.scopes].sort().join(' ');
  if (refreshToken !== undefined) body['refresh_token'] = refreshToken;
  if (grant.team_id) body['team_id'] = grant.team_id;
  else body['account_id'] = account.account_id;
  body['uid'] = account.uid; // always sent: Python and Java read it (https://www.dropbox.com/developers/documentation/http/documentation#oauth2-token)
  return body;
}

/** Registered URIs match exactly, except: a loopback URI without a port matches any port (RFC 8252 §7.3),
 *  and a trailing `*` matches any rest of the path and query (an emulator extension used by the demo app). */
export function redirectUriMatches(registered: string, given: string): boolean {
  if (registered === given) return true;
  let g: URL;
  let r: URL;
  const wildcard = registered.endsWith('*');
  try {
    g = new URL(given);
    r = new URL(wildcard ? registered.slice(0, -1) : registered);
  } catch {
    return false;
  }
  if (g.hash || given.includes('#')) return false;
  if (r.protocol !== g.protocol || r.hostname !== g.hostname || r.username || g.username || g.password) return false;
  const anyPort = r.port === '' && isLoopbackHost(r.hostname);
  if (!anyPort && r.port !== g.port) return false;
  const rest = (u: URL) => u.pathname + u.search;
  return wildcard ? rest(g).startsWith(rest(r)) : rest(g) === rest(r);
}

function eligibleAccounts(core: Core, app: AppRecord, role: string | undefined): AccountRecord[] {
  return [...core.state.accounts.values()]
    .filter((a) => (app.team ? a.team_id !== undefined && a.team_admin === true : true))
    .filter((a) => (role === 'work' ? a.team_id !== undefined : role === 'personal' ? a.team_id === undefined : true))
    .sort((a, b) => a.created - b.created);
}

// ---- the authorize page ---------------------------------------------------------------------------------------

const AUTHORIZE_FIELDS = new Set([
  'client_id', 'response_type', 'redirect_uri', 'state', 'require_role', 'force_reapprove', 'disable_signup',
  'locale', 'force_reauthentication', 'token_access_type', 'scope', 'include_granted_scopes', 'code_challenge',
  'code_challenge_method',
]);

interface AuthorizeRequest {
  app: AppRecord;
  responseType: 'code' | 'token';
  redirectUri: string | undefined;
  state: string | undefined;
  tokenAccessType: TokenAccessType;
  scopes: string[];
  /** `user`: add the scopes this user granted the app before; `team`: those granted when the app was linked to the team. */
  includeGranted: 'user' | 'team' | undefined;
  codeChallenge: string | undefined;
  requireRole: string | undefined;
}

interface PendingConsent {
  request: AuthorizeRequest;
  expiresAt: number;
}

/** Pending consent pages by id; bounded so that a loop of GETs cannot grow memory without end. */
const MAX_PENDING = 1000;

export class AuthorizePage {
  private pending = new Map<string, PendingConsent>();

  constructor(private readonly core: Core) {}

  reset(): void {
    this.pending.clear();
  }

  async handle(req: Request, url: URL): Promise<Response> {
    if (req.method === 'GET' || req.method === 'HEAD') return this.show(url);
    if (req.method === 'POST') return this.decide(req);
    return errorPage(405, 'Use GET to open the authorization page.');
  }

  private show(url: URL): Response {
    const parsed = this.parse(url.searchParams);
    if (parsed instanceof Response) return parsed;
    const accounts = eligibleAccounts(this.core, parsed.app, parsed.requireRole);
    if (accounts.length === 0) {
      return errorPage(400, parsed.app.team
        ? 'No team admin account exists in this emulator to link a team app. Create one with POST /_emulator/accounts {"email", "team": {"name"}, "team_admin": true}.'
        : 'No account in this emulator can approve this request. Create one with POST /_emulator/accounts.');
    }
    if (this.core.autoApprove) return this.approve(parsed, accounts[0]!);
    const id = randomToken(24);
    if (this.pending.size >= MAX_PENDING) this.pending.delete(this.pending.keys().next().value!);
    this.pending.set(id, { request: parsed, expiresAt: this.core.now() + CONSENT_LIFETIME_MS });
    return consentPage(url.pathname, id, parsed, accounts);
  }

  private async decide(req: Request): Promise<Response> {
    if (mediaType(req.headers.get('content-type')) !== 'application/x-www-form-urlencoded') {
      return errorPage(400, 'The consent form must be posted as application/x-www-form-urlencoded.');
    }
    const bytes = await readBody(req.body, 64 * 1024);
    if (!bytes) return errorPage(400, 'The consent form is too large.');
    const form = new URLSearchParams(Buffer.from(bytes).toString('utf8'));
    const id = form.get('consent_id') ?? '';
    const pending = this.pending.get(id);
    if (!pending || pending.expiresAt <= this.core.now()) {
      this.pending.delete(id);
      return errorPage(400, 'This authorization request has expired or was already answered. Start again from the app.');
    }
    const decision = form.get('decision');
    if (decision !== 'allow' && decision !== 'cancel') return errorPage(400, 'decision must be "allow" or "cancel".');
    this.pending.delete(id); // single use, whatever the answer
    const request = pending.request;
    if (decision === 'cancel') {
      return redirectWithError(request, 'access_denied', 'The user chose not to give your app access to their Dropbox account.');
    }
    const accounts = eligibleAccounts(this.core, request.app, request.requireRole);
    const chosen = accounts.find((a) => a.account_id === form.get('account')) ?? (form.get('account') ? undefined : accounts[0]);
    if (!chosen) return errorPage(400, 'Pick one of the accounts listed on the page.');
    return this.approve(request, chosen);
  }

  /** Validates every parameter (docs/emulator.md). Bad client or redirect URI: an error page, never a redirect. */
  private parse(q: URLSearchParams): AuthorizeRequest | Response {
    const seen = new Set<string>();
    for (const k of q.keys()) {
      if (!AUTHORIZE_FIELDS.has(k)) return errorPage(400, `unknown field "${k}"`);
      if (seen.has(k)) return errorPage(400, `duplicate field "${k}"`);
      seen.add(k);
    }
    const clientId = q.get('client_id');
    if (!clientId) return errorPage(400, 'missing required field "client_id"');
    const app = this.core.state.apps.get(clientId);
    if (!app) return errorPage(400, `Invalid client_id: "${clientId}"`);
    const redirectUri = q.get('redirect_uri') ?? undefined;
    if (redirectUri !== undefined && !app.redirect_uris.some((r) => redirectUriMatches(r, redirectUri))) {
      return errorPage(
        400,
        "Invalid redirect_uri. It must exactly match one of the redirect URIs you've pre-configured for your app (including the path).",
      );
    }
    const responseType = q.get('response_type');
    if (!responseType) return errorPage(400, 'missing required field "response_type"');
    if (responseType !== 'code' && responseType !== 'token') {
      return errorPage(400, `response_type: unknown value "${responseType}" (expected "code" or "token")`);
    }
    if (responseType === 'token' && redirectUri === undefined) return errorPage(400, 'redirect_uri is required when response_type is "token"');
    const state = q.get('state') ?? undefined;
    if (state !== undefined && Buffer.byteLength(state, 'utf8') > 500) return errorPage(400, 'state: must be at most 500 bytes');
    const tat = q.get('token_access_type') ?? 'online';
    if (tat !== 'online' && tat !== 'offline' && tat !== 'legacy') {
      return errorPage(400, `token_access_type: unknown value "${tat}" (expected "online", "offline" or "legacy")`);
    }
    if (responseType === 'token' && tat === 'offline') return errorPage(400, 'token_access_type "offline" needs response_type "code": the token flow cannot return a refresh token');
    for (const b of ['force_reapprove', 'disable_signup', 'force_reauthentication'] as const) {
      const v = q.get(b);
      if (v !== null && v !== 'true' && v !== 'false') return errorPage(400, `${b}: expected "true" or "false", got "${v}"`);
    }
    const role = q.get('require_role') ?? undefined;
    if (role !== undefined && role !== 'work' && role !== 'personal') return errorPage(400, `require_role: expected "work" or "personal", got "${role}"`);
    const locale = q.get('locale');
    if (locale !== null && !/^[A-Za-z]{2,8}([_-][A-Za-z0-9]{1,8})*$/.test(locale)) return errorPage(400, `locale: "${locale}" is not a language tag`);
    const igs = q.get('include_granted_scopes') ?? undefined;
    if (igs !== undefined && igs !== 'user' && igs !== 'team') return errorPage(400, `include_granted_scopes: expected "user" or "team", got "${igs}"`);
    const challenge = q.get('code_challenge') ?? undefined;
    const method = q.get('code_challenge_method') ?? undefined;
    if (method !== undefined && method !== 'S256') return errorPage(400, `code_challenge_method: only "S256" is supported, got "${method}"`);
    if (challenge !== undefined) {
      if (!/^[A-Za-z0-9_-]{43}$/.test(challenge)) return errorPage(400, 'code_challenge: must be BASE64URL(SHA-256(code_verifier)) without padding (43 characters)');
      if (method === undefined) return errorPage(400, 'code_challenge_method: required with code_challenge (use "S256")');
      if (responseType !== 'code') return errorPage(400, 'code_challenge is only valid with response_type "code"');
    } else if (method !== undefined) {
      return errorPage(400, 'code_challenge_method given without code_challenge');
    }
    let scopes = app.scopes;
    const scopeParam = q.get('scope');
    if (scopeParam !== null) {
      const asked = scopeParam.split(' ').filter(Boolean);
      const unknown = asked.filter((s) => !app.scopes.includes(s));
      if (asked.length === 0 || unknown.length > 0) {
        const why = asked.length === 0 ? 'scope is empty' : `the app is not configured for scope(s): ${unknown.join(' ')}`;
        if (redirectUri === undefined) return errorPage(400, `Invalid scope: ${why}`);
        return redirectWithError({ responseType, redirectUri, state } as AuthorizeRequest, 'invalid_scope', why);
      }
      scopes = [...new Set(asked)];
    }
    return {
      app,
      responseType,
      redirectUri,
      state,
      tokenAccessType: tat,
      scopes,
      includeGranted: igs,
      codeChallenge: challenge,
      requireRole: role,
    };
  }

  private approve(r: AuthorizeRequest, account: AccountRecord): Response {
    const core = this.core;
    const now = core.now();
    let scopes = r.scopes;
    if (r.includeGranted !== undefined) {
      // Only live grants count (a revoked one is gone): `user` those of this user's own links of the app,
      // `team` those of the app's link to this account's team (whichever admin made it).
      for (const g of core.state.grants.values()) {
        if (g.app_key !== r.app.key) continue;
        const same = r.includeGranted === 'team'
          ? g.team_id !== undefined && g.team_id === account.team_id
          : g.team_id === undefined && g.account_id === account.account_id;
        if (same) scopes = [...new Set([...scopes, ...g.scopes])];
      }
    }
    recordLogin(core.state, account, now);
    recordAppLink(core.state, r.app, account, now);
    if (r.responseType === 'token') {
      const { grant, accessToken } = core.state.createGrant(
        { app: r.app, account, scopes, tokenAccessType: r.tokenAccessType, pkce: false },
        now,
        core.tokenLifetimeSeconds,
      );
      core.save();
      const body = tokenResponseBody(core, grant, account, accessToken, undefined);
      const frag = new URLSearchParams();
      for (const [k, v] of Object.entries(body)) frag.set(k, String(v));
      if (r.state !== undefined) frag.set('state', r.state);
      return redirect(`${r.redirectUri!}#${frag.toString()}`);
    }
    const code = randomToken(32);
    const rec: CodeRecord = {
      app_key: r.app.key,
      account_id: account.account_id,
      scopes,
      redirect_uri: r.redirectUri,
      code_challenge: r.codeChallenge,
      token_access_type: r.tokenAccessType,
      expires_at: now + CODE_LIFETIME_MS,
    };
    pruneCodes(core, now);
    core.codes.set(hashSecret(code), rec);
    core.save();
    if (r.redirectUri === undefined) return codePage(r.app, code);
    const target = new URL(r.redirectUri);
    target.searchParams.append('code', code);
    if (r.state !== undefined) target.searchParams.append('state', r.state);
    return redirect(target.toString());
  }
}

function pruneCodes(core: Core, now: number): void {
  for (const [k, c] of core.codes) if (c.expires_at + CODE_LIFETIME_MS < now) core.codes.delete(k);
}

function redirect(location: string): Response {
  return new Response(null, { status: 302, headers: { Location: location, 'Cache-Control': 'no-store' } });
}

function redirectWithError(r: Pick<AuthorizeRequest, 'responseType' | 'redirectUri' | 'state'>, error: string, description: string): Response {
  if (r.redirectUri === undefined) return errorPage(200, 'You did not allow the app to access your Dropbox. You can close this page.', 'Access denied');
  const p = new URLSearchParams({ error, error_description: description });
  if (r.state !== undefined) p.set('state', r.state);
  if (r.responseType === 'token') return redirect(`${r.redirectUri}#${p.toString()}`);
  const target = new URL(r.redirectUri);
  for (const [k, v] of p) target.searchParams.append(k, v);
  return redirect(target.toString());
}

// ---- HTML -----------------------------------------------------------------------------------------------------

const SCOPE_TEXT: Record<string, string> = {
  'account_info.read': 'View basic information about your Dropbox account such as your username, email, and country',
  'account_info.write': 'Edit basic information about your Dropbox account',
  'files.metadata.read': 'View information about your Dropbox files and folders',
  'files.metadata.write': 'Edit information about your Dropbox files and folders',
  'files.content.read': 'View content of your Dropbox files and folders',
  'files.content.write': 'Edit content of your Dropbox files and folders',
  'files.permanent_delete': 'Permanently delete files and folders',
  'sharing.read': 'View your Dropbox sharing settings and collaborators',
  'sharing.write': 'View and manage your Dropbox sharing settings and collaborators',
  'team_info.read': 'View basic information about your team',
  'members.read': 'View your team membership',
  'sessions.list': 'View your team’s sessions, devices, and integrations',
  'events.read': 'View your team’s activity log',
  'groups.read': 'View your team group membership',
  'team_data.member': 'View structure of your team’s and members’ folders',
};

function page(status: number, title: string, body: string): Response {
  const html = `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>${escapeHtml(title)} - Dropbox (dropkey emulator)</title>
<style>body{font-family:system-ui,sans-serif;max-width:34rem;margin:3rem auto;padding:0 1rem;color:#1e1919}
h1{font-size:1.4rem}ul{padding-left:1.2rem}label{display:block;margin:.3rem 0}.actions{margin-top:1.5rem;display:flex;gap:.8rem}
button{font-size:1rem;padding:.5rem 1.4rem;border-radius:4px;border:1px solid #0061fe;background:#fff;color:#0061fe}
button[value=allow]{background:#0061fe;color:#fff}code#auth-code{display:block;font-size:1.2rem;padding:.8rem;background:#f4f4f4;word-break:break-all}
.note{color:#736c64;font-size:.85rem;margin-top:2rem}</style></head>
<body>${body}<p class="note">This is the dropkey emulator, a local stand-in for Dropbox. No real Dropbox account is involved.</p></body></html>`;
  return new Response(html, {
    status,
    headers: {
      'Content-Type': 'text/html; charset=utf-8',
      'Cache-Control': 'no-store',
      'X-Frame-Options': 'DENY',
      // No form-action: browsers apply it to the redirect that follows the Allow/Cancel POST, and that redirect
      // goes to the app's registered redirect_uri on another origin, as on Dropbox.
      'Content-Security-Policy': "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'",
    },
  });
}

function errorPage(status: number, message: string, title = `Error (${status})`): Response {
  return page(status, title, `<h1>${escapeHtml(title)}</h1><p id="error-message">${escapeHtml(message)}</p>`);
}

function consentPage(action: string, id: string, r: AuthorizeRequest, accounts: AccountRecord[]): Response {
  const perms = r.scopes.map((s) => `<li data-scope="${escapeHtml(s)}">${escapeHtml(SCOPE_TEXT[s] ?? s)}</li>`).join('');
  const picker = accounts
    .map(
      (a, i) =>
        `<label><input type="radio" name="account" value="${escapeHtml(a.account_id)}"${i === 0 ? ' checked' : ''}> ${escapeHtml(`${a.given_name} ${a.surname}`)} &lt;${escapeHtml(a.email)}&gt;${a.team_id ? ' (team)' : ''}</label>`,
    )
    .join('');
  const body = `<h1>Before you connect this app</h1>
<p><strong id="app-name">${escapeHtml(r.app.name)}</strong> would like to:</p><ul id="permissions">${perms}</ul>
<form method="post" action="${escapeHtml(action)}">
<input type="hidden" name="consent_id" value="${escapeHtml(id)}">
<fieldset><legend>Continue as</legend>${picker}</fieldset>
<div class="actions"><button type="submit" name="decision" value="cancel">Cancel</button><button type="submit" name="decision" value="allow">Allow</button></div>
</form>`;
  return page(200, `${r.app.name} - API Request Authorization`, body);
}

function codePage(app: AppRecord, code: string): Response {
  return page(
    200,
    'API Request Authorization',
    `<h1>Enter this code into ${escapeHtml(app.name)} to finish the process.</h1><code id="auth-code">${escapeHtml(code)}</code>`,
  );
}

// ---- the token endpoint ---------------------------------------------------------------------------------------

const TOKEN_FIELDS = new Set(['grant_type', 'code', 'redirect_uri', 'client_id', 'client_secret', 'code_verifier', 'refresh_token', 'scope', 'locale']);

function tokenError(error: string, description: string, status = 400): Response {
  return jsonResponse({ error, error_description: description }, status, { 'Cache-Control': 'no-store' });
}

const missing = (f: string) => tokenError('invalid_request', `missing required field "${f}"`);
const BAD_CLIENT = () => tokenError('invalid_client', 'Invalid client_id or client_secret');

export async function tokenEndpoint(core: Core, req: Request, url: URL): Promise<Response> {
  if (req.method !== 'POST') return tokenError('invalid_request', 'The token endpoint accepts POST only.');
  const bytes = await readBody(req.body, 64 * 1024);
  if (!bytes) return tokenError('invalid_request', 'request body too large');
  const params = new Map<string, string>();
  const add = (k: string, v: string): string | undefined => {
    if (params.has(k)) return k;
    params.set(k, v);
    return undefined;
  };
  for (const [k, v] of url.searchParams) {
    const dup = add(k, v);
    if (dup) return tokenError('invalid_request', `duplicate field "${dup}"`);
  }
  if (bytes.byteLength > 0) {
    // An empty body is fine whatever its Content-Type: the JS SDK refreshes with application/json and no body (docs/emulator.md).
    const type = mediaType(req.headers.get('content-type'));
    if (type !== 'application/x-www-form-urlencoded') {
      return tokenError('invalid_request', `Bad HTTP "Content-Type" header: "${type}". Expecting "application/x-www-form-urlencoded".`);
    }
    let text: string;
    try {
      text = new TextDecoder('utf-8', { fatal: true }).decode(bytes);
    } catch {
      return tokenError('invalid_request', 'request body is not valid UTF-8');
    }
    for (const [k, v] of new URLSearchParams(text)) {
      const dup = add(k, v);
      if (dup) return tokenError('invalid_request', `duplicate field "${dup}"`);
    }
  }
  for (const k of params.keys()) if (!TOKEN_FIELDS.has(k)) return tokenError('invalid_request', `unknown field "${k}"`);

  // Client authentication: HTTP Basic, or client_id (+ client_secret) parameters, never both (https://www.dropbox.com/developers/documentation/http/documentation#oauth2-token).
  let clientId: string | undefined;
  let clientSecret: string | undefined;
  let viaBasic = false;
  const authz = req.headers.get('authorization');
  if (authz !== null) {
    const basic = basicCredentials(authz);
    if (!basic) return tokenError('invalid_client', 'Authorization header must be "Basic base64(app_key:app_secret)"');
    if (params.has('client_id')) return tokenError('invalid_request', 'unknown field "client_id"');
    if (params.has('client_secret')) return tokenError('invalid_request', 'unknown field "client_secret"');
    clientId = basicAppKey(core, basic.user);
    clientSecret = basic.password;
    viaBasic = true;
  } else {
    clientId = params.get('client_id');
    clientSecret = params.get('client_secret');
  }

  const grantType = params.get('grant_type');
  if (!grantType) return missing('grant_type');
  if (grantType !== 'authorization_code' && grantType !== 'refresh_token') {
    return tokenError('unsupported_grant_type', `"grant_type" must be "authorization_code" or "refresh_token"`);
  }
  if (!clientId) return missing('client_id');
  const app = core.state.apps.get(clientId);
  if (!app) return BAD_CLIENT();
  if (clientSecret !== undefined && !(viaBasic ? basicSecretMatches(app, clientSecret) : secretEquals(clientSecret, app.secret))) {
    return BAD_CLIENT();
  }

  return grantType === 'authorization_code'
    ? exchangeCode(core, app, clientSecret !== undefined, params)
    : refresh(core, app, clientSecret !== undefined, params);
}

/**
 * HTTP Basic credentials may arrive form-encoded first, as RFC 6749 §2.3.1 asks, or raw, as most clients send them
 * (the official SDKs' keys and secrets are alphanumeric, so both are the same there): both are accepted.
 */
export function basicAppKey(core: Core, user: string): string {
  return core.state.apps.has(user) ? user : formDecoded(user);
}

export function basicSecretMatches(app: AppRecord, password: string): boolean {
  return secretEquals(password, app.secret) || secretEquals(formDecoded(password), app.secret);
}

function formDecoded(s: string): string {
  try {
    return decodeURIComponent(s.replace(/\+/g, ' '));
  } catch {
    return s;
  }
}

function exchangeCode(core: Core, app: AppRecord, authenticated: boolean, params: Map<string, string>): Response {
  const code = params.get('code');
  if (!code) return missing('code');
  const now = core.now();
  const key = hashSecret(code);
  const rec = core.codes.get(key);
  const gone = () => tokenError('invalid_grant', "code doesn't exist or has expired");
  if (!rec || rec.app_key !== app.key || rec.expires_at <= now) return gone();
  if (rec.used_by_grant !== undefined) {
    // A replayed code: refuse it and revoke what it produced (RFC 6749 §4.1.2).
    core.state.revokeGrant(rec.used_by_grant);
    core.codes.delete(key);
    core.save();
    return gone();
  }
  const verifier = params.get('code_verifier');
  if (rec.code_challenge !== undefined) {
    if (verifier === undefined) return missing('code_verifier');
    const ok = /^[A-Za-z0-9._~-]{43,128}$/.test(verifier) && createHash('sha256').update(verifier, 'ascii').digest('base64url') === rec.code_challenge;
    if (!ok) return tokenError('invalid_grant', 'invalid code verifier');
  } else if (verifier !== undefined) {
    return tokenError('invalid_grant', 'invalid code verifier');
  }
  if (!authenticated && rec.code_challenge === undefined) return missing('client_secret');
  if ((params.get('redirect_uri') ?? undefined) !== rec.redirect_uri) return tokenError('invalid_grant', 'redirect_uri mismatch');
  const account = core.state.accounts.get(rec.account_id);
  if (!account) return gone();
  const { grant, accessToken, refreshToken } = core.state.createGrant(
    { app, account, scopes: rec.scopes, tokenAccessType: rec.token_access_type, pkce: !authenticated },
    now,
    core.tokenLifetimeSeconds,
  );
  rec.used_by_grant = grant.id;
  core.save();
  return jsonResponse(tokenResponseBody(core, grant, account, accessToken, refreshToken), 200, { 'Cache-Control': 'no-store' });
}

function refresh(core: Core, app: AppRecord, authenticated: boolean, params: Map<string, string>): Response {
  const token = params.get('refresh_token');
  if (!token) return missing('refresh_token');
  const grantId = core.state.refresh.get(hashSecret(token));
  const grant = grantId === undefined ? undefined : core.state.grants.get(grantId);
  if (!grant || grant.app_key !== app.key) return tokenError('invalid_grant', 'refresh token is invalid or revoked');
  // A refresh with client_id alone is allowed only for grants that came from PKCE without a secret.
  if (!authenticated && !grant.pkce) return missing('client_secret');
  let scopes = grant.scopes;
  const scopeParam = params.get('scope');
  if (scopeParam !== undefined) {
    const asked = scopeParam.split(' ').filter(Boolean);
    const extra = asked.filter((s) => !grant.scopes.includes(s));
    if (asked.length === 0 || extra.length > 0) {
      return tokenError('invalid_scope', asked.length === 0 ? 'scope is empty' : `scope(s) not granted: ${extra.join(' ')}`);
    }
    scopes = [...new Set(asked)];
  }
  const accessToken = core.state.mintAccessToken(grant, scopes, core.now(), core.tokenLifetimeSeconds);
  core.save();
  // Observed refresh answer: no new refresh token, no account id (https://www.dropbox.com/developers/documentation/http/documentation#oauth2-token).
  const body: Record<string, unknown> = { access_token: accessToken, token_type: 'bearer', expires_in: core.tokenLifetimeSeconds };
  if (scopeParam !== undefined) body['scope'] = [...scopes].sort().join(' ');
  return jsonResponse(body, 200, { 'Cache-Control': 'no-store' });
}

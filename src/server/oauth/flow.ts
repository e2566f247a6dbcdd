/**
 * Browser OAuth logins run by the server: connect links (the owner has no dropkey login) and the UI's popup and
 * redirect flows. Each login is a PendingOAuthRecord: PKCE verifier (encrypted), state (stored hashed), the
 * browser-binding cookie's hash, and how the callback should answer (returnMode). The callback (./routes.ts)
 * takes the record by state in one delete (single use), checks expiry and the binding cookie, then exchanges the
 * code through the facade's finishLogin. Sources: https://www.dropbox.com/developers/documentation/http/documentation#oauth2-authorize (authorize), Dropbox docs: oauth2/token (code exchange with PKCE).
 */
import { getCookie, setCookie } from 'hono/cookie';
import { validateName } from '../../connections/names.js';
import { DropkeyError, ErrorCodes } from '../../errors.js';
import type { PendingOAuthRecord, ReturnMode } from '../../store/server-types.js';
import type { AppContext } from '../context.js';
import { randomToken, sha256Hex } from '../security/secrets.js';
import type { ServerServices } from '../services.js';

/** A connect link's lifetime bounds, in seconds (the API's expires_in; the UI asks for minutes). */
export const MAX_LINK_TTL_S = 7 * 24 * 3600;
export const MIN_LINK_TTL_S = 60;

export function bindingCookieName(publicUrl: string): string {
  // __Host- cookies must be Secure, Path=/ and host-only: unforgeable by sibling subdomains (RFC 6265bis §4.1.3.2).
  return publicUrl.startsWith('https:') ? '__Host-dropkey_oauth' : 'dropkey_oauth';
}

/**
 * The browser-binding value: an HttpOnly cookie set when a login starts and compared at the callback, so a
 * callback URL replayed or forwarded to another browser is refused. One value per browser (reused across
 * concurrent logins so two popups do not invalidate each other).
 */
export function browserBinding(c: AppContext, s: ServerServices): string {
  const name = bindingCookieName(s.config.publicUrl);
  let value = getCookie(c, name);
  if (!value || !/^[A-Za-z0-9_-]{43}$/.test(value)) value = randomToken(32, s.randomBytes);
  setCookie(c, name, value, {
    httpOnly: true,
    // Lax: the cookie comes back on Dropbox's top-level redirect to /oauth/callback (a GET navigation).
    sameSite: 'Lax',
    secure: s.config.publicUrl.startsWith('https:'),
    path: '/',
    maxAge: Math.ceil(s.config.pendingLoginTtlMs / 1000),
  });
  return value;
}

export function readBinding(c: AppContext, s: ServerServices): string | undefined {
  return getCookie(c, bindingCookieName(s.config.publicUrl));
}

/**
 * Puts back a pending login that a callback took but may not finish: one forwarded to (or replayed in) another
 * browser. Otherwise anyone holding the callback URL could use up someone else's login, and the browser that
 * started it would then be told it expired. It keeps its creation time and expiry. Between the take and the
 * put-back the state is briefly unknown, which can only make a simultaneous genuine callback start again, never
 * let a wrong browser through.
 */
export async function returnPendingLogin(s: ServerServices, pending: PendingOAuthRecord): Promise<void> {
  const { id: _id, createdAt, ...rest } = pending;
  await s.serverStore.createPendingOAuth(rest, createdAt);
}

export interface StartBrowserLoginInput {
  connection: string;
  /** App name; may be omitted when the connection exists (its app) or exactly one app is registered. */
  app?: string;
  scopes?: string[];
  returnMode: ReturnMode;
  /** Redirect mode: a same-origin path ("/connections/x") to land on afterwards. */
  returnTo?: string;
  actor: string;
  /** SHA-256 hex of the signed-in session id (popup/redirect). */
  sessionIdHash?: string;
  linkId?: string;
  /** From browserBinding(c, s). */
  binding: string;
}

/** Records a pending login and returns the Dropbox authorize URL to send the browser to. */
export async function startBrowserLogin(s: ServerServices, input: StartBrowserLoginInput): Promise<string> {
  if (input.returnTo !== undefined && !/^\/(?![/\\])[^\s]*$/.test(input.returnTo)) {
    throw new DropkeyError(ErrorCodes.BAD_INPUT, 'returnTo must be a path on this server (starting with a single "/").');
  }
  const pending = await s.dropkey.startLogin({
    connection: input.connection,
    ...(input.app === undefined ? {} : { app: input.app }),
    ...(input.scopes && input.scopes.length > 0 ? { scopes: input.scopes } : {}),
    redirectUri: s.paths.redirectUri,
  });
  await s.serverStore.createPendingOAuth(
    {
      stateHash: sha256Hex(pending.state),
      bindingHash: sha256Hex(input.binding),
      sessionIdHash: input.sessionIdHash ?? null,
      linkId: input.linkId ?? null,
      connection: pending.connection,
      app: pending.app,
      codeVerifier: pending.codeVerifier,
      redirectUri: s.paths.redirectUri,
      scopes: pending.scopes,
      returnMode: input.returnMode,
      returnTo: input.returnTo ?? null,
      actor: input.actor,
      expiresAt: s.clock() + s.config.pendingLoginTtlMs,
    },
    s.clock(),
  );
  return pending.authorizeUrl;
}

export interface CreatedLink {
  url: string;
  id: string;
  connection: string;
  app: string;
  expiresAt: number;
}

/** What creating a connect link needs: a running server's services, or the same parts opened by `dropkey link`. */
export type ConnectLinkServices = Pick<ServerServices, 'config' | 'dropkey' | 'serverStore' | 'audit' | 'paths' | 'clock' | 'randomBytes'>;

/** Creates a single-use connect link. `expiresIn` is seconds (default config.connectLinkTtlMs). */
export async function createConnectLink(
  s: ConnectLinkServices,
  input: { connection: string; app?: unknown; expiresIn?: unknown; actor: string },
): Promise<CreatedLink> {
  const connection = validateName('connection', input.connection);
  let ttlMs = s.config.connectLinkTtlMs;
  if (input.expiresIn !== undefined && input.expiresIn !== null) {
    const n = input.expiresIn;
    if (typeof n !== 'number' || !Number.isInteger(n) || n < MIN_LINK_TTL_S || n > MAX_LINK_TTL_S) {
      throw new DropkeyError(ErrorCodes.BAD_INPUT, `expires_in must be a whole number of seconds from ${MIN_LINK_TTL_S} to ${MAX_LINK_TTL_S}.`);
    }
    ttlMs = n * 1000;
  }
  const app = await resolveApp(s, connection, input.app);
  const token = randomToken(32, s.randomBytes);
  const now = s.clock();
  const rec = await s.serverStore.createConnectLink(
    { tokenHash: sha256Hex(token), connection, app, createdBy: input.actor, expiresAt: now + ttlMs },
    now,
  );
  await s.audit.write(input.actor, 'connect_link.created', connection, { app, link: rec.id, expires_at: new Date(rec.expiresAt).toISOString() });
  return { url: s.paths.connectLink(token), id: rec.id, connection, app, expiresAt: rec.expiresAt };
}

async function resolveApp(s: ConnectLinkServices, connection: string, app: unknown): Promise<string> {
  if (app !== undefined && app !== null) {
    if (typeof app !== 'string') throw new DropkeyError(ErrorCodes.BAD_INPUT, 'app must be an app name.');
    return (await s.dropkey.getApp(validateName('app', app))).name;
  }
  const same = (await s.dropkey.listPage({ limit: 1, names: [connection] })).connections[0];
  if (same) return same.app;
  const apps = await s.dropkey.listApps();
  if (apps.length === 1) return apps[0]!.name;
  throw new DropkeyError(
    ErrorCodes.BAD_INPUT,
    apps.length === 0 ? 'No Dropbox app is registered yet.' : `Several apps are registered (${apps.map((a) => a.name).join(', ')}); say which one with "app".`,
  );
}

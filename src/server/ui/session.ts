/**
 * Admin sessions and CSRF protection for the web UI (docs/web-ui.md).
 *
 * Session: a random 256-bit id in an HttpOnly, SameSite=Lax cookie (Secure and `__Host-` under https); the store
 * keeps only its SHA-256 (src/server/security/secrets.ts explains why a fast hash suffices for random ids). A new
 * id is issued at every sign-in (no session fixation); sign-out deletes it server-side.
 *
 * CSRF, two layers (OWASP CSRF Prevention Cheat Sheet):
 * - a synchronizer token: every state-changing form and fetch carries the session's random csrfToken, compared
 *   in constant time. Before sign-in (sign-in and setup forms) a double-submit cookie plays that role, which
 *   stops login CSRF.
 * - a fetch-metadata / Origin check: a POST whose Origin is another site, or whose Sec-Fetch-Site says
 *   cross-site or same-site, is refused before anything else. `Origin: null` is tolerated (privacy modes send
 *   it) because the token still has to match. UI pages set `<meta name="referrer" content="same-origin">` so
 *   same-origin form posts carry a real Origin (with the server-wide `Referrer-Policy: no-referrer`, Chrome
 *   would send `Origin: null` on every form POST: Fetch spec, "serializing a request origin").
 */
import { timingSafeEqual } from 'node:crypto';
import { deleteCookie, getCookie, setCookie } from 'hono/cookie';
import type { AdminUser } from '../../store/server-types.js';
import type { AppContext } from '../context.js';
import { HttpError, ServerErrorCodes } from '../errors.js';
import { randomToken, sha256Hex } from '../security/secrets.js';
import type { ServerServices } from '../services.js';

export interface UiSession {
  admin: AdminUser;
  /** SHA-256 hex of the session id (what pending OAuth logins record). */
  idHash: string;
  csrf: string;
}

const TOKEN_RE = /^[A-Za-z0-9_-]{43}$/;

function isHttps(s: ServerServices): boolean {
  return s.config.publicUrl.startsWith('https:');
}

export function sessionCookieName(s: ServerServices): string {
  // __Host-: Secure, Path=/, no Domain, so a sibling subdomain cannot plant or overwrite it (RFC 6265bis §4.1.3.2).
  return isHttps(s) ? '__Host-dropkey_session' : 'dropkey_session';
}

function preCookieName(s: ServerServices): string {
  return isHttps(s) ? '__Host-dropkey_pre' : 'dropkey_pre';
}

export function constantTimeEqual(a: string, b: string): boolean {
  const x = Buffer.from(a, 'utf8');
  const y = Buffer.from(b, 'utf8');
  // Length is not secret (every token has the same length); compare equal-length buffers only.
  if (x.length !== y.length) return false;
  return timingSafeEqual(x, y);
}

/** The signed-in admin of this request, or undefined (no cookie, unknown or expired session, deleted admin). */
export async function readSession(c: AppContext, s: ServerServices): Promise<UiSession | undefined> {
  const id = getCookie(c, sessionCookieName(s));
  if (!id || !TOKEN_RE.test(id)) return undefined;
  const idHash = sha256Hex(id);
  const rec = await s.serverStore.getSession(idHash, s.clock());
  if (!rec) return undefined;
  const admin = await s.serverStore.getAdmin(rec.userId);
  if (!admin) return undefined;
  return { admin, idHash, csrf: rec.csrfToken };
}

/** Starts a session for the admin and sets its cookie. Deletes the session the browser had before, if any. */
export async function startSession(c: AppContext, s: ServerServices, admin: AdminUser): Promise<UiSession> {
  const old = getCookie(c, sessionCookieName(s));
  if (old && TOKEN_RE.test(old)) await s.serverStore.deleteSession(sha256Hex(old));
  const id = randomToken(32, s.randomBytes);
  const csrf = randomToken(32, s.randomBytes);
  const now = s.clock();
  const idHash = sha256Hex(id);
  await s.serverStore.createSession({ idHash, userId: admin.id, csrfToken: csrf, createdAt: now, expiresAt: now + s.config.sessionTtlMs });
  setCookie(c, sessionCookieName(s), id, {
    httpOnly: true,
    sameSite: 'Lax',
    secure: isHttps(s),
    path: '/',
    maxAge: Math.floor(s.config.sessionTtlMs / 1000),
  });
  deleteCookie(c, preCookieName(s), { path: '/', secure: isHttps(s) });
  return { admin, idHash, csrf };
}

export async function endSession(c: AppContext, s: ServerServices, session: UiSession): Promise<void> {
  await s.serverStore.deleteSession(session.idHash);
  deleteCookie(c, sessionCookieName(s), { path: '/', secure: isHttps(s) });
}

/** The double-submit value for forms shown before sign-in; sets the cookie when the browser has none. */
export function preSessionToken(c: AppContext, s: ServerServices): string {
  let v = getCookie(c, preCookieName(s));
  if (!v || !TOKEN_RE.test(v)) {
    v = randomToken(32, s.randomBytes);
    setCookie(c, preCookieName(s), v, { httpOnly: true, sameSite: 'Lax', secure: isHttps(s), path: '/', maxAge: 3600 });
  }
  return v;
}

function csrfError(message: string): HttpError {
  return new HttpError(ServerErrorCodes.CSRF, message, { hint: 'Reload the page and try again.' });
}

/** Refuses cross-site POSTs by Origin and Sec-Fetch-Site, whatever their token says. */
export function checkOrigin(c: AppContext, s: ServerServices): void {
  const site = c.req.header('sec-fetch-site');
  if (site !== undefined && site !== 'same-origin' && site !== 'none') {
    throw csrfError('This request came from another site and was refused.');
  }
  const origin = c.req.header('origin');
  if (origin !== undefined && origin !== 'null' && origin !== new URL(s.config.publicUrl).origin) {
    throw csrfError('This request came from another site and was refused.');
  }
}

/** The CSRF token a form or fetch sent: the `_csrf` field or the X-CSRF-Token header. */
function presentedToken(c: AppContext, form: FormData | undefined): string {
  const header = c.req.header('x-csrf-token');
  if (header) return header;
  const v = form?.get('_csrf');
  return typeof v === 'string' ? v : '';
}

export function checkCsrf(c: AppContext, s: ServerServices, session: UiSession, form: FormData | undefined): void {
  checkOrigin(c, s);
  if (!constantTimeEqual(presentedToken(c, form), session.csrf)) {
    throw csrfError('The form expired or did not come from this site (CSRF token missing or wrong).');
  }
}

export function checkPreSessionCsrf(c: AppContext, s: ServerServices, form: FormData): void {
  checkOrigin(c, s);
  const cookie = getCookie(c, preCookieName(s)) ?? '';
  const field = form.get('_csrf');
  if (cookie === '' || typeof field !== 'string' || !constantTimeEqual(field, cookie)) {
    throw csrfError('The form expired or did not come from this site (CSRF token missing or wrong).');
  }
}

/**
 * The result of an action, carried across its redirect (POST-redirect-GET: reloading the page that shows the result
 * does not repeat the action). A short-lived cookie scoped to the page it is for holds the notice: its kind, its
 * words and its structured fix (rendered as links on the page). It is MACed with the session's CSRF token, so only
 * this server, for this session, can have written it (a cookie planted by a sibling host is ignored); it is shown
 * once, then cleared.
 */
import { createHmac } from 'node:crypto';
import { deleteCookie, getCookie, setCookie } from 'hono/cookie';
import type { Fix } from '../../errors.js';
import type { AppContext } from '../context.js';
import { html } from '../html.js';
import type { ServerServices } from '../services.js';
import { fixLinks } from './fix.js';
import type { Notice } from './layout.js';
import { constantTimeEqual, type UiSession } from './session.js';

export interface Flash {
  kind: Notice['kind'];
  text: string;
  fix?: Fix | undefined;
}

const MAX_TEXT = 1500;

function cookieName(s: ServerServices): string {
  return s.config.publicUrl.startsWith('https:') ? '__Host-dropkey_flash' : 'dropkey_flash';
}

function mac(ui: UiSession, payload: string): string {
  return createHmac('sha256', ui.csrf).update(`flash\n${payload}`).digest('base64url');
}

/** Sets the notice the next GET of `path` shows (the caller then redirects there). */
export function setFlash(c: AppContext, s: ServerServices, ui: UiSession, flash: Flash): void {
  const payload = Buffer.from(JSON.stringify({ k: flash.kind, t: flash.text.slice(0, MAX_TEXT), ...(flash.fix ? { f: flash.fix } : {}) }), 'utf8').toString('base64url');
  // Path=/ (a __Host- cookie must have it); a minute is plenty for a redirect.
  setCookie(c, cookieName(s), `${payload}.${mac(ui, payload)}`, { httpOnly: true, sameSite: 'Lax', secure: s.config.publicUrl.startsWith('https:'), path: '/', maxAge: 60 });
}

/** The notice set for this session by the action that redirected here, if any; cleared once read. */
export function takeFlash(c: AppContext, s: ServerServices, ui: UiSession): Notice | undefined {
  const v = getCookie(c, cookieName(s));
  if (!v) return undefined;
  deleteCookie(c, cookieName(s), { path: '/', secure: s.config.publicUrl.startsWith('https:') });
  const [payload = '', sig = ''] = v.split('.');
  if (!payload || !constantTimeEqual(sig, mac(ui, payload))) return undefined;
  try {
    const o = JSON.parse(Buffer.from(payload, 'base64url').toString('utf8')) as { k?: unknown; t?: unknown; f?: Fix };
    if ((o.k !== 'ok' && o.k !== 'error' && o.k !== 'info') || typeof o.t !== 'string') return undefined;
    return { kind: o.k, text: o.f ? html`${o.t} ${fixLinks(o.f)}` : o.t };
  } catch {
    return undefined;
  }
}

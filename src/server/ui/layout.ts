/**
 * The shell of every HTML page: head (stylesheet and deferred scripts, served from this origin, no inline script or
 * style: the CSP forbids them), the navigation for signed-in admins, and a live region for notices.
 */
import type { ErrorBody } from '../errors.js';
import { type Html, html } from '../html.js';
import { fixLinks } from './fix.js';
import type { UiSession } from './session.js';

export const ASSET_CSS = '/ui/assets/app.css';
export const ASSET_JS = '/ui/assets/app.js';
export const ASSET_ICON = '/ui/assets/icon.svg';

export interface NavItem {
  href: string;
  label: string;
}

/**
 * The navigation, in order. '/webhooks' is served by ./webhooks.ts.
 */
export const NAV: NavItem[] = [
  { href: '/connections', label: 'Connections' },
  { href: '/apps', label: 'Apps' },
  { href: '/api-keys', label: 'API keys' },
  { href: '/webhooks', label: 'Webhooks' },
  { href: '/audit', label: 'Audit log' },
  { href: '/master-key', label: 'Master key' },
];

export interface Notice {
  kind: 'ok' | 'error' | 'info';
  text: string | Html;
}

export interface PageOptions {
  title: string;
  body: Html;
  /** The signed-in admin: shows the navigation and the sign-out button. */
  session?: UiSession;
  /** Which NAV entry is current. */
  current?: string;
  notices?: Notice[];
  /** Server time (epoch ms): the script corrects countdowns for the browser's clock skew. */
  now?: number;
  /** The deferred scripts (same-origin paths only: the CSP forbids inline script). Default: the UI's script. */
  scripts?: string[];
  /** `data-*` attributes of <body>, for a page's script (the OAuth popup result). */
  bodyData?: Record<string, string>;
}

export function noticeHtml(n: Notice): Html {
  return html`<div class="notice notice-${n.kind}" role="${n.kind === 'error' ? 'alert' : 'status'}">${n.text}</div>`;
}

/**
 * The one layout of every HTML page the server writes: admin pages, sign-in and setup, the pages a connect-link
 * owner sees, error pages and the 404. Without a session there is no navigation, and the brand is not a link (the
 * owner of a connect link has no admin pages to go to).
 */
export function page(o: PageOptions): Html {
  const nav = o.session
    ? html`<nav aria-label="Main"><ul>${NAV.map(
        (n) => html`<li><a href="${n.href}"${o.current === n.href ? html` aria-current="page"` : ''}>${n.label}</a></li>`,
      )}</ul>
      <form method="post" action="/signout" class="signout"><input type="hidden" name="_csrf" value="${o.session.csrf}"><span class="who">${o.session.admin.email}</span> <button type="submit" class="link">Sign out</button></form></nav>`
    : '';
  const data = Object.entries(o.bodyData ?? {}).map(([k, v]) => html` data-${k}="${v}"`);
  return html`<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="referrer" content="same-origin">
${o.session ? html`<meta name="csrf-token" content="${o.session.csrf}">` : ''}
${o.now !== undefined ? html`<meta name="server-time" content="${new Date(o.now).toISOString()}">` : ''}
<title>${o.title} · dropkey</title>
<link rel="icon" href="${ASSET_ICON}" type="image/svg+xml">
<link rel="stylesheet" href="${ASSET_CSS}">
${(o.scripts ?? [ASSET_JS]).map((src) => html`<script src="${src}" defer></script>`)}
</head><body${data}>
<header class="top">${o.session ? html`<a class="brand" href="/">dropkey</a>` : html`<span class="brand">dropkey</span>`}${nav}</header>
<main id="main">
<div id="notices" aria-live="polite">${(o.notices ?? []).map(noticeHtml)}</div>
${o.body}
</main>
</body></html>
`;
}

/** Who reads an error page: an admin (fix links to the admin pages) or the owner of a connect link (words only). */
export type Audience = 'admin' | 'owner';

/** The page for an error: its message, the hint, the fix as links for admins, and the code for support. */
export function problemPage(status: number, body: ErrorBody, audience: Audience): Html {
  const links = audience === 'admin' ? fixLinks(body.fix) : html``;
  return page({
    title: body.message.length > 80 ? `${body.message.slice(0, 77)}...` : body.message,
    body: html`<section class="narrow problem">
<h1>${body.message}</h1>
${body.hint ? html`<p>${body.hint}</p>` : ''}
${String(links) ? html`<p class="fix-links">${links}</p>` : ''}
<p class="hint"><small>Error ${status} · ${body.code}</small></p>
</section>`,
  });
}

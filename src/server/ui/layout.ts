/**
 * The shell of every UI page: head (stylesheet and the one deferred script, both served from /ui/assets, no inline
 * script or style: the CSP forbids them), the navigation, and a live region for notices.
 */
import { type Html, html } from './html.js';
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
}

export function noticeHtml(n: Notice): Html {
  return html`<div class="notice notice-${n.kind}" role="${n.kind === 'error' ? 'alert' : 'status'}">${n.text}</div>`;
}

export function page(o: PageOptions): string {
  const nav = o.session
    ? html`<nav aria-label="Main"><ul>${NAV.map(
        (n) => html`<li><a href="${n.href}"${o.current === n.href ? html` aria-current="page"` : ''}>${n.label}</a></li>`,
      )}</ul>
      <form method="post" action="/signout" class="signout"><input type="hidden" name="_csrf" value="${o.session.csrf}"><span class="who">${o.session.admin.email}</span> <button type="submit" class="link">Sign out</button></form></nav>`
    : '';
  return html`<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="referrer" content="same-origin">
${o.session ? html`<meta name="csrf-token" content="${o.session.csrf}">` : ''}
${o.now !== undefined ? html`<meta name="server-time" content="${new Date(o.now).toISOString()}">` : ''}
<title>${o.title} · dropkey</title>
<link rel="icon" href="${ASSET_ICON}" type="image/svg+xml">
<link rel="stylesheet" href="${ASSET_CSS}">
<script src="${ASSET_JS}" defer></script>
</head><body>
<header class="top"><a class="brand" href="/">dropkey</a>${nav}</header>
<main id="main">
<div id="notices" aria-live="polite">${(o.notices ?? []).map(noticeHtml)}</div>
${o.body}
</main>
</body></html>
`.value;
}

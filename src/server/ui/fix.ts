/**
 * The web UI's rendering of a Fix (src/errors.ts): a link to the page where an admin does it. The CLI renders the
 * same fix as a command line (src/cli/fix.ts) and the API returns it as data (errors.ts, the `fix` field).
 */
import type { Fix } from '../../errors.js';
import { type Html, html } from '../html.js';

const enc = encodeURIComponent;

export interface FixTarget {
  href: string;
  label: string;
}

const connectionPage = (c: string): string => `/connections/${enc(c)}`;
const appPage = (a: string): string => `/apps/${enc(a)}`;

/** Where each fix is done in the UI. A login for a named connection goes to its (re)connect page. */
export function fixTargets(fix: Fix): FixTarget[] {
  switch (fix.action) {
    case 'login':
    case 'import':
      return fix.connection === undefined
        ? [{ href: '/connections', label: 'Connect Dropbox' }]
        : [{ href: `${connectionPage(fix.connection)}/reconnect`, label: `Connect “${fix.connection}” to Dropbox again` }];
    case 'token':
    case 'doctor':
      return fix.connection === undefined
        ? [{ href: '/connections', label: 'See the connections' }]
        : [{ href: connectionPage(fix.connection), label: `Test “${fix.connection}”` }];
    case 'list-connections':
      return [{ href: '/connections', label: 'See the connections' }];
    case 'revoke':
      return fix.connections.map((c) => ({ href: connectionPage(c), label: `Revoke “${c}”` }));
    case 'app-add':
      return [{ href: '/apps', label: fix.app === undefined ? 'Add an app' : `Add app “${fix.app}”` }];
    case 'app-update':
      return [{ href: appPage(fix.app), label: fix.field === 'secret' ? `Enter the secret of app “${fix.app}”` : `Edit app “${fix.app}”` }];
    case 'app-remove':
      return [{ href: appPage(fix.app), label: `Remove app “${fix.app}”` }];
    case 'list-apps':
      return [{ href: '/apps', label: 'See the apps' }];
    case 'apikey-create':
      return [{ href: '/api-keys', label: 'Create an API key' }];
    case 'apikey-revoke':
      return [{ href: '/api-keys', label: `Revoke API key “${fix.name}”` }];
    case 'list-apikeys':
      return [{ href: '/api-keys', label: 'See the API keys' }];
  }
}

/** The fix as links, e.g. `<a class="fix" href="/connections/x/reconnect">Connect “x” to Dropbox again</a>`. */
export function fixLinks(fix: Fix | undefined): Html {
  if (fix === undefined) return html``;
  return html`${fixTargets(fix).map((t, i) => html`${i > 0 ? ' ' : ''}<a class="fix" href="${t.href}">${t.label}</a>`)}`;
}

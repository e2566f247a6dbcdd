/**
 * The web UI (docs/web-ui.md): server-rendered pages that work without JavaScript, enhanced by one external script.
 * Mounted LAST at '/' (app.ts). Routes:
 *   GET  /ui/assets/app.js, /ui/assets/app.css        static assets (no inline script or style: CSP)
 *   GET  /, /setup, /signin; POST /setup, /signin, /signout                      (auth.ts)
 *   GET  /connections, /connections/{name}, /connections/{name}/reconnect, /ui/fragments/connections
 *   POST /connections/connect, /connections/{name}/test|refresh|revoke, /connect-links   (connections.ts)
 *   GET/POST /apps, /apps/{name}; POST /apps/{name}/delete                      (apps.ts)
 *   GET/POST /api-keys; POST /api-keys/{name}/revoke; GET /audit               (keys.ts)
 *   GET/POST /webhooks, /webhooks/{id}; POST .../test|delete|deliveries/{d}/redeliver  (webhooks.ts)
 *   GET /master-key; POST /master-key/rotate                                    (master-key.ts)
 * Every page but sign-in and setup needs a session (kit.ts guard); every POST a CSRF token (session.ts).
 * See docs/web-ui.md.
 */
import { createHash } from 'node:crypto';
import { Hono } from 'hono';
import type { AppEnv, ServerModule } from '../context.js';
import type { ServerServices } from '../services.js';
import { appRoutes } from './apps.js';
import { APP_CSS } from './assets/app-css.js';
import { APP_ICON } from './assets/icon-svg.js';
import { APP_JS } from './assets/app-js.js';
import { authRoutes } from './auth.js';
import { connectionRoutes } from './connections.js';
import { keyRoutes } from './keys.js';
import { webhookUiRoutes } from './webhooks.js';
import { masterKeyRoutes } from './master-key.js';
import { ASSET_CSS, ASSET_ICON, ASSET_JS } from './layout.js';

export { NAV, page, type NavItem, type PageOptions } from './layout.js';
export { guard, guardPost } from './kit.js';
export { html, raw, type Html } from '../html.js';

function asset(body: string, type: string) {
  const etag = `"${createHash('sha256').update(body).digest('base64url').slice(0, 22)}"`;
  return { body, type, etag };
}

export function uiRoutes(s: ServerServices): Hono<AppEnv> {
  const r = new Hono<AppEnv>();
  const assets = new Map([
    [ASSET_JS, asset(APP_JS, 'text/javascript; charset=utf-8')],
    [ASSET_CSS, asset(APP_CSS, 'text/css; charset=utf-8')],
    // An explicit icon, so browsers do not probe /favicon.ico and log a 404 on every page.
    [ASSET_ICON, asset(APP_ICON, 'image/svg+xml')],
  ]);
  for (const [path, a] of assets) {
    r.get(path, (c) => {
      // Revalidated each time (no-cache + ETag): a new dropkey version is picked up at once, unchanged files cost a 304.
      if (c.req.header('if-none-match') === a.etag) return c.body(null, 304, { ETag: a.etag, 'Cache-Control': 'no-cache' });
      return c.body(a.body, 200, { 'Content-Type': a.type, ETag: a.etag, 'Cache-Control': 'no-cache' });
    });
  }
  authRoutes(r, s);
  connectionRoutes(r, s);
  appRoutes(r, s);
  keyRoutes(r, s);
  webhookUiRoutes(r, s);
  masterKeyRoutes(r, s); // docs/decisions/0003-key-rotation.md: master key status and re-encryption
  return r;
}

export const uiModule: ServerModule = { name: 'ui', mount: '/', routes: uiRoutes };

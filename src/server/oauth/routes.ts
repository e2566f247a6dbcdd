/**
 * Browser-facing OAuth pages, mounted at '/':
 *   GET  /connect/{token}   connect-link landing page (a button; no script)
 *   POST /connect/{token}   starts the login and redirects to Dropbox
 *   GET  /oauth/callback    Dropbox's redirect target for every server login (links, UI popup, UI redirect)
 *   GET  /oauth/popup.js    the popup result page's script (CSP forbids inline script)
 * Errors go to the boundary in app.ts, which renders HTML here (and the popup result in popup mode).
 */
import { Hono } from 'hono';
import { DropkeyError, ErrorCodes } from '../../errors.js';
import type { ConnectLinkRecord, PendingOAuthRecord } from '../../store/server-types.js';
import { type AppContext, type AppEnv, clientIp, type ServerModule } from '../context.js';
import { HttpError, ServerErrorCodes } from '../errors.js';
import { html } from '../html.js';
import { hexEqual, sha256Hex } from '../security/secrets.js';
import type { ServerServices } from '../services.js';
import { page } from '../ui/layout.js';
import { browserBinding, readBinding, returnPendingLogin, startBrowserLogin } from './flow.js';

export const POPUP_SCRIPT_PATH = '/oauth/popup.js';

/**
 * Posts the result to the window that opened the popup (same origin only) and closes the popup. The UI listens
 * for `{source: "dropkey-oauth", ok, connection, error}` messages.
 */
const POPUP_SCRIPT = `(function () {
  var raw = document.body.getAttribute('data-result') || '{}';
  var result;
  try { result = JSON.parse(raw); } catch (e) { result = { ok: false }; }
  result.source = 'dropkey-oauth';
  if (window.opener && !window.opener.closed) {
    window.opener.postMessage(result, window.location.origin);
    window.close();
  }
})();
`;

function linkGone(link: ConnectLinkRecord | undefined, now: number): HttpError | undefined {
  if (!link) return new HttpError(ServerErrorCodes.ROUTE_NOT_FOUND, 'This connect link is not valid.', { hint: 'Ask the admin who sent it for a new one.' });
  if (link.usedAt !== null) return new HttpError(ServerErrorCodes.LINK_EXPIRED, 'This connect link was already used.', { hint: 'Ask the admin who sent it for a new one.' });
  if (link.expiresAt <= now) return new HttpError(ServerErrorCodes.LINK_EXPIRED, 'This connect link has expired.', { hint: 'Ask the admin who sent it for a new one.' });
  return undefined;
}

async function liveLink(c: AppContext, s: ServerServices): Promise<{ link: ConnectLinkRecord; token: string }> {
  s.limits.check('connect-link', clientIp(c, s.config.trustProxy));
  const token = c.req.param('token') ?? '';
  const link = /^[A-Za-z0-9_-]{43}$/.test(token) ? await s.serverStore.getConnectLinkByHash(sha256Hex(token)) : undefined;
  const gone = linkGone(link, s.clock());
  if (gone) throw gone;
  return { link: link!, token };
}

function resultPage(c: AppContext, pending: PendingOAuthRecord, result: { ok: boolean; connection: string; email?: string | null; created?: boolean }): Response {
  if (pending.returnMode === 'popup') {
    return c.html(
      page({
        title: 'Dropbox connected',
        body: html`<section class="narrow"><p>Dropbox is connected. You can close this window.</p></section>`,
        scripts: [POPUP_SCRIPT_PATH],
        bodyData: { result: JSON.stringify(result) },
      }),
    );
  }
  if (pending.returnMode === 'redirect') {
    const to = pending.returnTo ?? `/connections/${encodeURIComponent(pending.connection)}`;
    return c.redirect(`${to}${to.includes('?') ? '&' : '?'}connected=${encodeURIComponent(pending.connection)}`, 303);
  }
  return c.html(
    page({
      title: 'Dropbox connected',
      body: html`<section class="narrow"><h1>Dropbox is connected${result.email ? html` as ${result.email}` : ''}.</h1><p>You can close this window.</p></section>`,
    }),
  );
}

export function oauthRoutes(s: ServerServices): Hono<AppEnv> {
  const r = new Hono<AppEnv>();

  r.get(POPUP_SCRIPT_PATH, (c) => c.body(POPUP_SCRIPT, 200, { 'Content-Type': 'text/javascript; charset=utf-8', 'Cache-Control': 'no-cache' }));

  r.get('/connect/:token', async (c) => {
    c.set('ownerPage', true);
    const { link, token } = await liveLink(c, s);
    const minutes = Math.max(1, Math.round((link.expiresAt - s.clock()) / 60_000));
    return c.html(
      page({
        title: 'Connect Dropbox',
        body: html`<section class="narrow">
<h1>Connect your Dropbox</h1>
<p>You were invited to connect a Dropbox account as <strong>${link.connection}</strong>.
Dropbox will ask you to sign in and allow access; dropkey then keeps the connection working.</p>
<form method="post" action="/connect/${token}"><button type="submit" class="primary">Connect Dropbox</button></form>
<p class="hint"><small>This link works once and expires in about ${minutes} minute${minutes === 1 ? '' : 's'}.</small></p>
</section>`,
      }),
      200,
      { 'Cache-Control': 'no-store' },
    );
  });

  r.post('/connect/:token', async (c) => {
    c.set('ownerPage', true);
    const { link } = await liveLink(c, s);
    const authorizeUrl = await startBrowserLogin(s, {
      connection: link.connection,
      app: link.app,
      returnMode: 'link',
      actor: `link:${link.id}`,
      linkId: link.id,
      binding: browserBinding(c, s),
    });
    c.header('Cache-Control', 'no-store');
    return c.redirect(authorizeUrl, 303);
  });

  r.get('/oauth/callback', async (c) => {
    c.header('Cache-Control', 'no-store');
    const state = c.req.query('state');
    if (!state) {
      throw new HttpError(ServerErrorCodes.LINK_EXPIRED, 'This page needs the answer Dropbox sends after you allow access; it was opened without one.', {
        hint: 'Start connecting again.',
      });
    }
    const pending = await s.serverStore.takePendingOAuth(sha256Hex(state), s.clock());
    if (!pending) {
      throw new HttpError(ServerErrorCodes.LINK_EXPIRED, 'This sign-in with Dropbox expired or was already finished.', { hint: 'Start connecting again.' });
    }
    if (pending.returnMode === 'popup') c.set('popupResult', true);
    if (pending.returnMode === 'link') c.set('ownerPage', true);
    const binding = readBinding(c, s);
    if (!binding || !hexEqual(sha256Hex(binding), pending.bindingHash)) {
      await returnPendingLogin(s, pending);
      throw new HttpError(ServerErrorCodes.FORBIDDEN, 'This sign-in was started in another browser.', {
        hint: 'Start connecting again from this browser.',
      });
    }
    if (pending.linkId !== null && !(await s.serverStore.claimConnectLink(pending.linkId, s.clock()))) {
      throw new HttpError(ServerErrorCodes.LINK_EXPIRED, 'This connect link was already used or has expired.', { hint: 'Ask the admin who sent it for a new one.' });
    }
    let result;
    try {
      result = await s.dropkey.finishLogin({
        pending: {
          app: pending.app,
          connection: pending.connection,
          authorizeUrl: '',
          state,
          codeVerifier: pending.codeVerifier,
          redirectUri: pending.redirectUri,
          scopes: pending.scopes,
        },
        callbackUrl: new URL(c.req.url).searchParams,
        signal: c.req.raw.signal,
      });
    } catch (err) {
      // The owner may try again while the link lives: a cancelled consent must not burn it.
      if (pending.linkId !== null) await s.serverStore.releaseConnectLink(pending.linkId);
      await s.audit.write(pending.actor, 'connection.connect_failed', pending.connection, {
        code: err instanceof DropkeyError ? err.code : 'unknown',
        ...(pending.linkId ? { link: pending.linkId } : {}),
      });
      // The owner of a connect link has no dropkey to log in with: trying again means opening the link again.
      if (pending.linkId !== null && err instanceof DropkeyError && err.code !== ErrorCodes.INTERNAL) {
        throw new DropkeyError(err.code, err.message, {
          cause: err,
          hint: 'Open the link you were sent again to try once more (it works until it expires), or ask the admin who sent it for a new one.',
          ...(err.details === undefined ? {} : { details: err.details }),
        });
      }
      throw err;
    }
    const info = result.connection;
    s.tokens.invalidate(info.name);
    const action = result.created ? 'connection.created' : 'connection.reconnected';
    await s.audit.write(pending.actor, action, info.name, {
      app: info.app,
      account_id: info.accountId,
      mode: pending.returnMode,
      ...(pending.linkId ? { link: pending.linkId } : {}),
    });
    s.events.emit({
      type: action,
      at: s.clock(),
      connection: info.name,
      data: { app: info.app, account_id: info.accountId, email: info.email, team_id: info.teamId },
    });
    return resultPage(c, pending, { ok: true, connection: info.name, email: info.email, created: result.created });
  });

  return r;
}

export const oauthModule: ServerModule = { name: 'oauth', mount: '/', routes: oauthRoutes };

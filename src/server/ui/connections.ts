/**
 * Connections: the list (with "Connect Dropbox"), the detail page (Test, Refresh now, Reconnect, Revoke) and
 * connect links. The connect form works in three ways (docs/web-ui.md):
 * - with the page script: the click opens a blank popup synchronously (so no popup blocker fires), the script
 *   POSTs the form with mode=popup and navigates the popup to the authorize URL it gets back; /oauth/callback
 *   (oauth/routes.ts) answers the popup with a page that posts the result to this window and closes itself, and
 *   the list reloads its rows from /ui/fragments/connections;
 * - without script, or when the popup is blocked: the form posts mode=redirect and the browser goes to Dropbox
 *   and back to the connection's page (/connections/{name}?connected=...).
 * State is bound to this browser (binding cookie) and to the signed-in session (oauth/flow.ts).
 */
import type { Hono } from 'hono';
import { NAME_PATTERN, validateName } from '../../connections/names.js';
import type { AppInfo, ConnectionInfo } from '../../connections/types.js';
import { redactText } from '../../connections/redact.js';
import { DropkeyError, ErrorCodes } from '../../errors.js';
import type { AppEnv } from '../context.js';
import { mapError } from '../errors.js';
import { browserBinding, createConnectLink, MAX_LINK_TTL_S, MIN_LINK_TTL_S, startBrowserLogin } from '../oauth/flow.js';
import type { ServerServices } from '../services.js';
import { expiresIn, iso, STATE_LABEL, stateExplanation, when } from './format.js';
import { type Html, html } from '../html.js';
import { actorOf, errorText, errorWords, field, guard, guardPost, isUserError, wantsJson } from './kit.js';
import { type Notice, page } from './layout.js';
import type { UiSession } from './session.js';

const enc = encodeURIComponent;

function validName(v: string | undefined): string | undefined {
  return v !== undefined && NAME_PATTERN.test(v) ? v : undefined;
}

function stateBadge(c: ConnectionInfo): Html {
  return html`<span class="badge state-${c.state}">${STATE_LABEL[c.state]}</span>`;
}

function expiry(c: ConnectionInfo, now: number): Html {
  if (c.expiresAt === null) return html`${expiresIn(c, now)}`;
  return html`<time class="countdown" datetime="${iso(c.expiresAt)}">${expiresIn(c, now)}</time>`;
}

function team(c: ConnectionInfo): string {
  return c.teamName ?? c.teamId ?? '—';
}

export function connectionRows(list: ConnectionInfo[], now: number): Html {
  if (list.length === 0) {
    return html`<tr class="empty"><td colspan="6">No connections yet. Click <strong>Connect Dropbox</strong> to add one.</td></tr>`;
  }
  return html`${list.map(
    (c) => html`<tr data-connection="${c.name}">
<td><a href="/connections/${enc(c.name)}">${c.name}</a></td>
<td class="email">${c.email ?? '—'}</td>
<td>${team(c)}</td>
<td>${stateBadge(c)}</td>
<td>${expiry(c, now)}</td>
<td>${c.app}</td>
</tr>`,
  )}`;
}

/** The connect / reconnect form. `name` fixed → reconnect; otherwise the admin names the new connection. */
function connectForm(ui: UiSession, apps: AppInfo[], opts: { name?: string; app?: string; label: string; suggested?: string }): Html {
  if (apps.length === 0) {
    return html`<p class="hint">Register a Dropbox app first: <a href="/apps">Apps</a>.</p>`;
  }
  const appField =
    opts.app !== undefined
      ? html`<input type="hidden" name="app" value="${opts.app}">`
      : apps.length === 1
        ? html`<input type="hidden" name="app" value="${apps[0]!.name}">`
        : html`<label>App <select name="app" required>${apps.map((a) => html`<option value="${a.name}">${a.name}</option>`)}</select></label>`;
  const nameField =
    opts.name !== undefined
      ? html`<input type="hidden" name="connection" value="${opts.name}">`
      : html`<label>Connection name <input name="connection" required pattern="[A-Za-z0-9][A-Za-z0-9_.\\-]{0,63}" maxlength="64" value="${opts.suggested ?? ''}" placeholder="e.g. dropbox_default"></label>`;
  return html`<form method="post" action="/connections/connect" class="connect-form inline" data-popup-connect>
<input type="hidden" name="_csrf" value="${ui.csrf}">
<input type="hidden" name="mode" value="redirect">
${nameField}${appField}
<button type="submit" class="primary">${opts.label}</button>
</form>`;
}

function linkForm(ui: UiSession, apps: AppInfo[], name?: string): Html {
  if (apps.length === 0) return html``;
  return html`<form method="post" action="/connect-links" class="inline">
<input type="hidden" name="_csrf" value="${ui.csrf}">
${name === undefined ? html`<label>Connection name <input name="connection" required maxlength="64" placeholder="e.g. finance_dropbox"></label>` : html`<input type="hidden" name="connection" value="${name}">`}
${apps.length > 1 && name === undefined ? html`<label>App <select name="app">${apps.map((a) => html`<option value="${a.name}">${a.name}</option>`)}</select></label>` : ''}
<label>Valid for (minutes) <input name="minutes" type="number" min="1" max="10080" value="30" class="short"></label>
<button type="submit">Create connect link</button>
</form>`;
}

async function listPage(s: ServerServices, ui: UiSession, notices: Notice[]): Promise<string> {
  const [list, apps] = await Promise.all([s.dropkey.list(), s.dropkey.listApps()]);
  const now = s.clock();
  return page({
    title: 'Connections',
    now,
    session: ui,
    current: '/connections',
    notices,
    body: html`<h1>Connections</h1>
<section class="card">
<h2>Connect a Dropbox account</h2>
<p>Dropbox opens in a small window; sign in there and click Allow. The list below updates by itself.</p>
${connectForm(ui, apps, { label: 'Connect Dropbox', suggested: list.length === 0 ? 'default' : '' })}
</section>
<table class="list" aria-describedby="connections-caption">
<caption id="connections-caption">Connected Dropbox accounts</caption>
<thead><tr><th scope="col">Name</th><th scope="col">Account email</th><th scope="col">Team</th><th scope="col">State</th><th scope="col">Token expires</th><th scope="col">App</th></tr></thead>
<tbody id="connection-rows" data-fragment="/ui/fragments/connections">${connectionRows(list, now)}</tbody>
</table>
<section class="card">
<h2>Ask the owner to connect</h2>
<p>A connect link lets someone who cannot sign in here connect their Dropbox to a named connection. It works once.</p>
${linkForm(ui, apps)}
</section>`,
  });
}

async function detailPage(s: ServerServices, ui: UiSession, name: string, notices: Notice[], extra?: Html): Promise<string> {
  const c = await s.dropkey.get(name);
  const apps = await s.dropkey.listApps();
  const now = s.clock();
  const n = enc(c.name);
  return page({
    title: `Connection ${c.name}`,
    now,
    session: ui,
    current: '/connections',
    notices,
    body: html`<p class="crumbs"><a href="/connections">Connections</a> ›</p>
<h1>${c.name} ${stateBadge(c)}</h1>
<p class="state-text">${stateExplanation(c)}</p>
<dl class="facts">
<dt>Account</dt><dd>${c.displayName ?? '—'}</dd>
<dt>Email</dt><dd class="email">${c.email ?? '—'}</dd>
<dt>Account ID</dt><dd><code>${c.accountId ?? '—'}</code></dd>
<dt>Team</dt><dd>${team(c)}${c.teamId && c.teamName ? html` <code>${c.teamId}</code>` : ''}</dd>
${c.linkedBy ? html`<dt>Linked by</dt><dd class="linked-by">${[c.linkedBy.name, c.linkedBy.email ? `<${c.linkedBy.email}>` : null].filter(Boolean).join(' ')}</dd>` : ''}
<dt>App</dt><dd><a href="/apps/${enc(c.app)}">${c.app}</a></dd>
<dt>Granted scopes</dt><dd>${c.scopes.length ? html`<ul class="scopes">${c.scopes.map((x) => html`<li><code>${x}</code></li>`)}</ul>` : 'none recorded'}</dd>
<dt>Access token expires</dt><dd>${expiry(c, now)}${c.expiresAt !== null ? html` <small>(${when(c.expiresAt)})</small>` : ''}</dd>
<dt>Renewable</dt><dd>${c.refreshable ? 'yes (dropkey holds a refresh token)' : 'no'}</dd>
<dt>Last refresh</dt><dd>${when(c.lastRefreshAt)}</dd>
<dt>Last error</dt>${c.lastError ? html`<dd class="last-error">${c.lastError}</dd>` : html`<dd>none</dd>`}
<dt>Connected</dt><dd>${when(c.createdAt)}</dd>
</dl>
${extra ?? ''}
<section class="card actions" aria-label="Actions">
<form method="post" action="/connections/${n}/test" class="inline"><input type="hidden" name="_csrf" value="${ui.csrf}"><button type="submit">Test</button></form>
<form method="post" action="/connections/${n}/refresh" class="inline"><input type="hidden" name="_csrf" value="${ui.csrf}"><button type="submit">Refresh now</button></form>
${connectForm(ui, apps, { name: c.name, app: c.app, label: 'Reconnect' })}
<form method="post" action="/connections/${n}/revoke" class="inline" data-confirm="Revoke ${c.name}? Dropbox will stop accepting its tokens and dropkey deletes it.">
<input type="hidden" name="_csrf" value="${ui.csrf}"><button type="submit" class="danger">Revoke</button></form>
</section>
<section class="card">
<h2>Connect link</h2>
<p>Let the account owner reconnect this connection without signing in here. The link works once.</p>
${linkForm(ui, apps, c.name)}
</section>`,
  });
}

/** A failure shown on a page: the boundary's message (already redacted), with its hint and fix links. */
function failureText(err: unknown): Html {
  return errorText(mapError(err).body);
}

export function connectionRoutes(r: Hono<AppEnv>, s: ServerServices): void {
  r.get(
    '/connections',
    guard(s, async (c, ui) => {
      const notices: Notice[] = [];
      const revoked = validName(c.req.query('revoked'));
      if (revoked) notices.push({ kind: 'ok', text: `Connection "${revoked}" was revoked and deleted.` });
      return c.html(await listPage(s, ui, notices));
    }),
  );

  r.get(
    '/ui/fragments/connections',
    guard(s, async (c) => c.html(connectionRows(await s.dropkey.list(), s.clock()))),
  );

  r.post(
    '/connections/connect',
    guardPost(s, async (c, ui, form) => {
      const mode = field(form, 'mode') === 'popup' ? 'popup' : 'redirect';
      const connection = field(form, 'connection');
      const app = field(form, 'app');
      let authorizeUrl: string;
      try {
        const name = validateName('connection', connection);
        authorizeUrl = await startBrowserLogin(s, {
          connection: name,
          ...(app === '' ? {} : { app }),
          returnMode: mode,
          ...(mode === 'redirect' ? { returnTo: `/connections/${enc(name)}` } : {}),
          actor: actorOf(ui),
          sessionIdHash: ui.idHash,
          binding: browserBinding(c, s),
        });
      } catch (err) {
        if (!isUserError(err)) throw err;
        if (wantsJson(c)) return c.json({ error: { code: err.code, message: errorWords(err) } }, 400);
        return c.html(await listPage(s, ui, [{ kind: 'error', text: errorText(err) }]), 400);
      }
      if (wantsJson(c)) return c.json({ authorize_url: authorizeUrl });
      return c.redirect(authorizeUrl, 303);
    }),
  );

  r.get(
    '/connections/:name',
    guard(s, async (c, ui) => {
      const name = validateName('connection', c.req.param('name'));
      const notices: Notice[] = [];
      if (c.req.query('connected') === name) notices.push({ kind: 'ok', text: `Dropbox is connected as "${name}".` });
      if (c.req.query('refreshed') === '1') notices.push({ kind: 'ok', text: 'The access token was renewed.' });
      return c.html(await detailPage(s, ui, name, notices));
    }),
  );

  // The reconnect URL given in 409 DROPKEY_REAUTH_REQUIRED answers (app.ts UI CONTRACT), and where a login fix
  // (ui/fix.ts) links: for a connection that does not exist yet, it connects one under that name.
  r.get(
    '/connections/:name/reconnect',
    guard(s, async (c, ui) => {
      const name = validateName('connection', c.req.param('name'));
      const info = (await s.dropkey.list()).find((x) => x.name === name);
      const apps = await s.dropkey.listApps();
      if (!info) {
        return c.html(
          page({
            title: `Connect ${name}`,
            session: ui,
            current: '/connections',
            body: html`<p class="crumbs"><a href="/connections">Connections</a> ›</p>
<h1>Connect ${name}</h1>
<p>There is no connection named “${name}” yet. Sign in to Dropbox as the account owner and click Allow to create it.</p>
${connectForm(ui, apps, { name, label: 'Connect Dropbox' })}`,
          }),
        );
      }
      return c.html(
        page({
          title: `Reconnect ${name}`,
          session: ui,
          current: '/connections',
          body: html`<p class="crumbs"><a href="/connections">Connections</a> › <a href="/connections/${enc(name)}">${name}</a> ›</p>
<h1>Reconnect ${name}</h1>
<p>${stateExplanation(info)}</p>
${info.lastError ? html`<p class="last-error">Last error: ${info.lastError}</p>` : ''}
<p>Sign in to Dropbox as ${info.email ?? 'the account owner'} and click Allow. The connection keeps its name, so nothing else needs to change.</p>
${connectForm(ui, apps, { name, app: info.app, label: 'Reconnect' })}`,
        }),
      );
    }),
  );

  r.post(
    '/connections/:name/test',
    guardPost(s, async (c, ui) => {
      const name = validateName('connection', c.req.param('name'));
      const result = await s.connections.test(name, { actor: actorOf(ui) });
      const notice: Notice = result.ok ? { kind: 'ok', text: result.message } : { kind: 'error', text: html`The test failed: ${failureText(result.error)}` };
      return c.html(await detailPage(s, ui, name, [notice]));
    }),
  );

  r.post(
    '/connections/:name/refresh',
    guardPost(s, async (c, ui) => {
      const name = validateName('connection', c.req.param('name'));
      try {
        await s.connections.refresh(name, { actor: actorOf(ui), detectedBy: 'ui', signal: c.req.raw.signal });
      } catch (err) {
        if (!(err instanceof DropkeyError) || err.code === ErrorCodes.NOT_FOUND) throw err;
        return c.html(await detailPage(s, ui, name, [{ kind: 'error', text: html`Refreshing failed: ${failureText(err)}` }]), 502);
      }
      return c.redirect(`/connections/${enc(name)}?refreshed=1`, 303);
    }),
  );

  r.post(
    '/connections/:name/revoke',
    guardPost(s, async (c, ui, form) => {
      const name = validateName('connection', c.req.param('name'));
      const before = await s.dropkey.get(name);
      const force = field(form, 'force') === 'yes';
      if (field(form, 'confirmed') !== 'yes') {
        // No script (no confirm dialog): ask on a page of its own.
        return c.html(
          page({
            title: `Revoke ${name}`,
            session: ui,
            current: '/connections',
            body: html`<p class="crumbs"><a href="/connections">Connections</a> › <a href="/connections/${enc(name)}">${name}</a> ›</p>
<h1>Revoke ${name}?</h1>
<p>dropkey asks Dropbox to revoke the token of <strong>${before.email ?? name}</strong> (its refresh token stops working too) and deletes the connection here. Services using it lose access at once.</p>
<form method="post" action="/connections/${enc(name)}/revoke" class="stack">
<input type="hidden" name="_csrf" value="${ui.csrf}"><input type="hidden" name="confirmed" value="yes">
<label class="check"><input type="checkbox" name="force" value="yes"> If Dropbox cannot be reached, delete it here anyway</label>
<p><button type="submit" class="danger">Revoke ${name}</button> <a href="/connections/${enc(name)}">Cancel</a></p>
</form>`,
          }),
        );
      }
      try {
        await s.connections.revoke(name, { actor: actorOf(ui), force, signal: c.req.raw.signal });
      } catch (err) {
        if (!(err instanceof DropkeyError)) throw err;
        return c.html(await detailPage(s, ui, name, [{ kind: 'error', text: failureText(err) }]), 502);
      }
      return c.redirect(`/connections?revoked=${enc(name)}`, 303);
    }),
  );

  r.post(
    '/connect-links',
    guardPost(s, async (c, ui, form) => {
      const connection = field(form, 'connection');
      const minutesText = field(form, 'minutes');
      const minutes = minutesText === '' ? undefined : Number(minutesText);
      const app = field(form, 'app');
      let link;
      try {
        // Checked here in the form's unit: createConnectLink's own check speaks of the API's seconds.
        if (minutes !== undefined && (!Number.isInteger(minutes) || minutes < MIN_LINK_TTL_S / 60 || minutes > MAX_LINK_TTL_S / 60)) {
          throw new DropkeyError(ErrorCodes.BAD_INPUT, `The validity must be a whole number from ${MIN_LINK_TTL_S / 60} to ${MAX_LINK_TTL_S / 60} minutes (7 days).`);
        }
        link = await createConnectLink(s, {
          connection: validateName('connection', connection),
          ...(app === '' ? {} : { app }),
          ...(minutes === undefined ? {} : { expiresIn: minutes * 60 }),
          actor: actorOf(ui),
        });
      } catch (err) {
        if (!isUserError(err)) throw err;
        return c.html(await listPage(s, ui, [{ kind: 'error', text: html`No link was created: ${errorText({ message: redactText(err.message), hint: err.hint && redactText(err.hint), fix: err.fix })}` }]), 400);
      }
      return c.html(
        page({
          title: 'Connect link',
          now: s.clock(),
          session: ui,
          current: '/connections',
          body: html`<p class="crumbs"><a href="/connections">Connections</a> ›</p>
<h1>Connect link for ${link.connection}</h1>
<p>Send this link to the Dropbox account owner. <strong>It is shown only now</strong>, works once, and expires
${html`<time class="countdown" datetime="${iso(link.expiresAt)}">${expiresIn({ expiresAt: link.expiresAt }, s.clock())}</time>`} (${when(link.expiresAt)}).</p>
<div class="copy-row"><input id="link-url" class="secret-once" readonly value="${link.url}" aria-label="Connect link"><button type="button" data-copy="#link-url">Copy</button></div>
<p><a href="/connections">Back to connections</a></p>`,
        }),
        201,
      );
    }),
  );
}


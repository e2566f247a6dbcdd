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
import { DropkeyError, ErrorCodes, type Fix } from '../../errors.js';
import type { AppEnv } from '../context.js';
import { mapError } from '../errors.js';
import { browserBinding, createConnectLink, MAX_LINK_TTL_S, MIN_LINK_TTL_S, startBrowserLogin } from '../oauth/flow.js';
import type { ServerServices } from '../services.js';
import { expiresIn, iso, STATE_LABEL, stateExplanation, when } from './format.js';
import { type Html, html } from '../html.js';
import { actorOf, errorText, errorWords, field, guard, guardPost, isUserError, wantsJson } from './kit.js';
import { type Notice, page } from './layout.js';
import { setFlash, takeFlash } from './flash.js';
import type { UiSession } from './session.js';
import { encodeCursor, listingQuery, STATES } from '../listing.js';
import type { ConnectionPageQuery } from '../../store/types.js';
import type { AppContext } from '../context.js';

const enc = encodeURIComponent;

function validName(v: string | undefined): string | undefined {
  return v !== undefined && NAME_PATTERN.test(v) ? v : undefined;
}

/** The state, and for a working connection without a refresh token, that its token cannot be renewed. */
function stateBadge(c: ConnectionInfo): Html {
  const renew =
    c.state === 'active' && !c.refreshable
      ? html` <span class="badge not-renewable" title="dropkey holds no refresh token: the access token stops working when it expires">not renewable</span>`
      : '';
  return html`<span class="badge state-${c.state}">${STATE_LABEL[c.state]}</span>${renew}`;
}

/**
 * The token expiry. Only a working connection counts down: one that needs re-authorisation or is revoked has no
 * token to wait for, whatever its stored expiry says.
 */
function expiry(c: ConnectionInfo, now: number): Html {
  if (c.state === 'needs_reauth') return html`<span class="muted">— (reconnect first)</span>`;
  if (c.state === 'revoked') return html`<span class="muted">—</span>`;
  if (c.expiresAt === null) return html`${expiresIn(c, now)}`;
  return html`<time class="countdown" datetime="${iso(c.expiresAt)}">${expiresIn(c, now)}</time>`;
}

function team(c: ConnectionInfo): string {
  return c.teamName ?? c.teamId ?? '—';
}

export function connectionRows(list: ConnectionInfo[], now: number, filtered = false): Html {
  if (list.length === 0) {
    return filtered
      ? html`<tr class="empty"><td colspan="6">No connection matches. <a href="/connections">Show all</a>.</td></tr>`
      : html`<tr class="empty"><td colspan="6">No connections yet. Click <strong>Connect Dropbox</strong> to add one.</td></tr>`;
  }
  return html`${list.map(
    (c) => html`<tr data-connection="${c.name}">
<td data-label="Name"><a href="/connections/${enc(c.name)}">${c.name}</a></td>
<td data-label="Account" class="email">${c.email ?? '—'}</td>
<td data-label="Team">${team(c)}</td>
<td data-label="State">${stateBadge(c)}</td>
<td data-label="Token expires">${expiry(c, now)}</td>
<td data-label="App">${c.app}</td>
</tr>`,
  )}`;
}

/** The connect / reconnect form. `name` fixed → reconnect; otherwise the admin names the new connection. */
export function connectForm(ui: UiSession, apps: AppInfo[], opts: { name?: string; app?: string; label: string; suggested?: string }): Html {
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

/** Rows per page of the connections list: a page stays well under 100 KB whatever the number of connections. */
export const PAGE_SIZE = 50;

/** The list's query from the address (q, state, cursor); bad values are an error shown on the page. */
function pageQuery(c: AppContext): ConnectionPageQuery {
  return listingQuery({ cursor: c.req.query('cursor'), q: c.req.query('q'), state: c.req.query('state'), app: c.req.query('app') }, PAGE_SIZE);
}

function queryString(q: { search?: string | undefined; state?: string | undefined; app?: string | undefined }, cursor?: string): string {
  const p = new URLSearchParams();
  if (q.search) p.set('q', q.search);
  if (q.state) p.set('state', q.state);
  if (q.app) p.set('app', q.app);
  if (cursor) p.set('cursor', cursor);
  const t = p.toString();
  return t ? `?${t}` : '';
}

function searchForm(q: ConnectionPageQuery): Html {
  return html`<form method="get" action="/connections" class="inline search" role="search">
<label>Search <input type="search" name="q" value="${q.search ?? ''}" maxlength="200" placeholder="name, email, account or team"></label>
<label>State <select name="state"><option value="">any</option>${STATES.map((st) => html`<option value="${st}"${q.state === st ? html` selected` : ''}>${STATE_LABEL[st]}</option>`)}</select></label>
${q.app ? html`<input type="hidden" name="app" value="${q.app}">` : ''}<button type="submit">Search</button>${q.search || q.state || q.app ? html` <a href="/connections">Clear</a>` : ''}
</form>`;
}

function pager(q: ConnectionPageQuery, next: string | null): Html {
  const links = [
    q.after !== undefined ? html`<a href="/connections${queryString(q)}">« First page</a>` : '',
    next !== null ? html`<a href="/connections${queryString(q, encodeCursor(next))}" rel="next">Next page »</a>` : '',
  ].filter(Boolean);
  return links.length ? html`<nav class="pager" aria-label="Pages">${links.map((l, i) => html`${i ? ' · ' : ''}${l}`)}</nav>` : html``;
}

async function listPage(s: ServerServices, ui: UiSession, notices: Notice[], q: ConnectionPageQuery = { limit: PAGE_SIZE }): Promise<string> {
  const [result, apps] = await Promise.all([s.dropkey.listPage(q), s.dropkey.listApps()]);
  const list = result.connections;
  const filtered = q.search !== undefined || q.state !== undefined || q.app !== undefined;
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
${connectForm(ui, apps, { label: 'Connect Dropbox', suggested: list.length === 0 && !filtered && q.after === undefined ? 'default' : '' })}
</section>
${searchForm(q)}
<table class="list stack-on-phone" aria-describedby="connections-caption">
<caption id="connections-caption">Connected Dropbox accounts${q.app !== undefined ? html` of app ${q.app}` : ''}${q.search !== undefined || q.state !== undefined ? ' matching the search' : ''}${q.after !== undefined ? ' (continued)' : ''}</caption>
<thead><tr><th scope="col">Name</th><th scope="col">Account email</th><th scope="col">Team</th><th scope="col">State</th><th scope="col">Token expires</th><th scope="col">App</th></tr></thead>
<tbody id="connection-rows" data-fragment="/ui/fragments/connections${queryString(q, q.after === undefined ? undefined : encodeCursor(q.after))}">${connectionRows(list, now, filtered)}</tbody>
</table>
${pager(q, result.next)}
<section class="card">
<h2>Ask the owner to connect</h2>
<p>A connect link lets someone who cannot sign in here connect their Dropbox to a named connection. It works once.</p>
${linkForm(ui, apps)}
</section>`,
  });
}

/**
 * How a service uses this connection: the token API and the proxy, with curl and Python, at this server's public
 * address. No secret: the API key is read from an environment variable the reader fills in.
 */
export function usageSnippet(base: string, name: string, team: boolean): Html {
  const n = enc(name);
  const route = team ? 'team/get_info' : 'users/get_current_account';
  const curl = `# A token (API key with token:read)
curl -s -H "Authorization: Bearer $DROPKEY_API_KEY" \\
  ${base}/api/v1/connections/${n}/token

# Through the proxy (API key with proxy)
curl -s -X POST -H "Authorization: Bearer $DROPKEY_API_KEY" \\
  ${base}/proxy/${n}/2/${route}`;
  const python = `import os, requests

BASE = "${base}"
KEY = {"Authorization": "Bearer " + os.environ["DROPKEY_API_KEY"]}

# A token (API key with token:read)
token = requests.get(f"{BASE}/api/v1/connections/${n}/token", headers=KEY).json()["access_token"]

# Through the proxy (API key with proxy)
print(requests.post(f"{BASE}/proxy/${n}/2/${route}", headers=KEY).json())`;
  return html`<section class="card usage" aria-labelledby="usage-title">
<h2 id="usage-title">Use it from a service</h2>
<p>Create an <a href="/api-keys">API key</a> for this connection and put it in <code>DROPKEY_API_KEY</code>. The token
API hands out a valid access token; the proxy calls Dropbox for you (see <code>/api/openapi.json</code>).</p>
<h3>curl</h3>
<pre class="snippet" id="usage-curl"><code>${curl}</code></pre>
<h3>Python</h3>
<pre class="snippet" id="usage-python"><code>${python}</code></pre>
</section>`;
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
<dt>Access token expires</dt><dd>${expiry(c, now)}${c.expiresAt !== null && c.state === 'active' ? html` <small>(${when(c.expiresAt)})</small>` : ''}</dd>
<dt>Renewable</dt><dd>${c.refreshable ? 'yes (dropkey holds a refresh token)' : html`<strong>no</strong>: only an access token is stored; connect again to make it renewable`}</dd>
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
</section>
${usageSnippet(s.paths.publicUrl, c.name, apps.find((a) => a.name === c.app)?.team === true)}`,
  });
}

/** A failure carried to the next page: the boundary's words (already redacted) and its fix (shown as links). */
function failureFlash(prefix: string, err: unknown): { text: string; fix?: Fix | undefined } {
  const body = mapError(err).body;
  return { text: `${prefix}${errorWords(body)}`, fix: body.fix };
}

export function connectionRoutes(r: Hono<AppEnv>, s: ServerServices): void {
  r.get(
    '/connections',
    guard(s, async (c, ui) => {
      const notices: Notice[] = [];
      const revoked = validName(c.req.query('revoked'));
      if (revoked) notices.push({ kind: 'ok', text: `Connection "${revoked}" was revoked and deleted.` });
      let q: ConnectionPageQuery;
      try {
        q = pageQuery(c);
      } catch (err) {
        if (!isUserError(err)) throw err;
        return c.html(await listPage(s, ui, [...notices, { kind: 'error', text: errorText(err) }]), 400);
      }
      return c.html(await listPage(s, ui, notices, q));
    }),
  );

  r.get(
    '/ui/fragments/connections',
    guard(s, async (c) => {
      const q = pageQuery(c);
      return c.html(connectionRows((await s.dropkey.listPage(q)).connections, s.clock(), q.search !== undefined || q.state !== undefined || q.app !== undefined));
    }),
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
      const flash = takeFlash(c, s, ui);
      if (flash) notices.push(flash);
      return c.html(await detailPage(s, ui, name, notices));
    }),
  );

  // The reconnect URL given in 409 DROPKEY_REAUTH_REQUIRED answers (app.ts UI CONTRACT), and where a login fix
  // (ui/fix.ts) links: for a connection that does not exist yet, it connects one under that name.
  r.get(
    '/connections/:name/reconnect',
    guard(s, async (c, ui) => {
      const name = validateName('connection', c.req.param('name'));
      const info = (await s.dropkey.listPage({ limit: 1, names: [name] })).connections[0];
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
      // POST-redirect-GET: the result travels in a one-time cookie, so reloading the page does not test again.
      setFlash(c, s, ui, result.ok ? { kind: 'ok', text: result.message } : { kind: 'error', ...failureFlash('The test failed: ', result.error) });
      return c.redirect(`/connections/${enc(name)}?tested=1`, 303);
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
        setFlash(c, s, ui, { kind: 'error', ...failureFlash('Refreshing failed: ', err) });
        return c.redirect(`/connections/${enc(name)}?refresh_failed=1`, 303);
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
        // The detail page is read again after the failure: a revoke that found the grant gone shows the new state.
        if (!(await s.dropkey.store.getConnection(name))) return c.redirect(`/connections?revoked=${enc(name)}`, 303);
        setFlash(c, s, ui, { kind: 'error', ...failureFlash('Revoking failed: ', err) });
        return c.redirect(`/connections/${enc(name)}?revoke_failed=1`, 303);
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


/**
 * API keys (docs/api.md) and the audit log (docs/web-ui.md). Keys are created through the server's ApiKeyService (stored
 * hashed, audited) and shown exactly once, on the page that answers the creating POST (never in a URL, never
 * cached). The audit page lists who did what and when, and token hand-outs counted per key.
 */
import type { Hono } from 'hono';
import { API_PERMISSIONS, type ApiKeyRecord } from '../../store/server-types.js';
import type { AppEnv } from '../context.js';
import type { ServerServices } from '../services.js';
import { when } from './format.js';
import { type Html, html } from '../html.js';
import { actorOf, errorText, field, fields, guard, guardPost, isUserError } from './kit.js';
import { type Notice, page } from './layout.js';
import type { UiSession } from './session.js';

const PERMISSION_TEXT: Record<string, string> = {
  'token:read': 'get access tokens (GET /api/v1/connections/{name}/token)',
  proxy: 'call Dropbox through the proxy (/proxy/{name}/2/...)',
  admin: 'manage connections, connect links, API keys and the audit log through the API',
};

/** Up to this many connections are offered as checkboxes on the API keys page. */
const CHECKBOXES = 100;

function scopeText(k: ApiKeyRecord): string {
  return k.connections === '*' ? 'all connections' : k.connections.join(', ');
}

export function keyRoutes(r: Hono<AppEnv>, s: ServerServices): void {
  const keysPage = async (ui: UiSession, notices: Notice[], created?: { key: string; record: ApiKeyRecord }): Promise<string> => {
    await s.usage.flush();
    // Checkboxes for up to CHECKBOXES connections; with more, names are typed (a page never lists every connection).
    const [keys, firstConns] = await Promise.all([s.apiKeys.list(), s.dropkey.listPage({ limit: CHECKBOXES + 1 })]);
    const conns = firstConns.next === null ? firstConns.connections : [];
    const shown: Html = created
      ? html`<section class="card once" aria-labelledby="new-key-title">
<h2 id="new-key-title">New API key "${created.record.name}"</h2>
<p><strong>Copy it now: it is shown only once.</strong> dropkey stores only its hash.</p>
<div class="copy-row"><input id="new-key" class="secret-once" readonly value="${created.key}" aria-label="API key"><button type="button" data-copy="#new-key">Copy</button></div>
<p>Use it as <code>Authorization: Bearer ${created.record.prefix}…</code></p>
</section>`
      : html``;
    return page({
      title: 'API keys',
      session: ui,
      current: '/api-keys',
      notices,
      body: html`<h1>API keys</h1>
${shown}
<table class="list stack-on-phone"><caption>Keys</caption>
<thead><tr><th scope="col">Name</th><th scope="col">Key</th><th scope="col">Permissions</th><th scope="col">Connections</th><th scope="col">Token hand-outs</th><th scope="col">Last used</th><th scope="col">Created</th><th scope="col"><span class="sr-only">Actions</span></th></tr></thead>
<tbody>${
        keys.length === 0
          ? html`<tr class="empty"><td colspan="8">No API keys yet.</td></tr>`
          : keys.map(
              (k) => html`<tr${k.revokedAt !== null ? html` class="revoked"` : ''}>
<td data-label="Name">${k.name}</td><td data-label="Key"><code>${k.prefix}…</code></td><td data-label="Permissions">${k.permissions.join(', ')}</td><td data-label="Connections">${scopeText(k)}</td>
<td data-label="Token hand-outs" class="num">${k.tokenHandouts}</td><td data-label="Last used">${when(k.lastUsedAt)}</td><td data-label="Created">${when(k.createdAt)} <small>by ${k.createdBy}</small></td>
<td>${
                k.revokedAt !== null
                  ? html`revoked ${when(k.revokedAt)}`
                  : html`<form method="post" action="/api-keys/${encodeURIComponent(k.name)}/revoke" class="inline" data-confirm="Revoke API key ${k.name}? Services using it stop working.">
<input type="hidden" name="_csrf" value="${ui.csrf}"><button type="submit" class="danger small">Revoke</button></form>`
              }</td></tr>`,
            )
      }</tbody></table>
<section class="card">
<h2>Create an API key</h2>
<form method="post" action="/api-keys" class="stack">
<input type="hidden" name="_csrf" value="${ui.csrf}">
<label for="key-name">Name <small>(who uses it, e.g. airflow-prod)</small></label>
<input id="key-name" name="name" required maxlength="64" pattern="[A-Za-z0-9][A-Za-z0-9_.\\-]{0,63}">
<fieldset><legend>Permissions</legend>
${API_PERMISSIONS.map((p) => html`<label class="check"><input type="checkbox" name="permissions" value="${p}"${p === 'token:read' ? html` checked` : ''}> <code>${p}</code> <small>${PERMISSION_TEXT[p] ?? ''}</small></label>`)}
</fieldset>
<fieldset><legend>Connections it may use</legend>
<label class="check"><input type="checkbox" name="all_connections" value="yes"> All connections, including future ones</label>
${conns.map((c) => html`<label class="check"><input type="checkbox" name="connections" value="${c.name}"> ${c.name} <small>${c.email ?? ''}</small></label>`)}
<label for="key-more">${conns.length ? 'Other connection names' : 'Connection names'} <small>(comma-separated; they may be connected later)</small></label>
<input id="key-more" name="more_connections" maxlength="2000">
</fieldset>
<button type="submit" class="primary">Create key</button>
</form></section>`,
    });
  };

  r.get(
    '/api-keys',
    guard(s, async (c, ui) => c.html(await keysPage(ui, c.req.query('revoked') ? [{ kind: 'ok', text: 'The key was revoked.' }] : []))),
  );

  r.post(
    '/api-keys',
    guardPost(s, async (c, ui, form) => {
      const all = field(form, 'all_connections') === 'yes';
      const named = [...fields(form, 'connections'), ...field(form, 'more_connections').split(/[\s,]+/).filter(Boolean)];
      try {
        const created = await s.apiKeys.create({
          name: field(form, 'name'),
          permissions: fields(form, 'permissions'),
          connections: all ? '*' : named,
          actor: actorOf(ui),
        });
        return c.html(await keysPage(ui, [{ kind: 'ok', text: `API key "${created.record.name}" was created.` }], created), 201);
      } catch (err) {
        if (!isUserError(err)) throw err;
        return c.html(await keysPage(ui, [{ kind: 'error', text: html`No key was created: ${errorText(err)}` }]), 400);
      }
    }),
  );

  r.post(
    '/api-keys/:name/revoke',
    guardPost(s, async (c, ui) => {
      try {
        await s.apiKeys.revoke(c.req.param('name') ?? '', actorOf(ui));
      } catch (err) {
        if (!isUserError(err)) throw err;
        return c.html(await keysPage(ui, [{ kind: 'error', text: errorText(err) }]), 404);
      }
      return c.redirect('/api-keys?revoked=1', 303);
    }),
  );

  r.get(
    '/audit',
    guard(s, async (c, ui) => {
      await s.usage.flush();
      const beforeText = c.req.query('before');
      const before = beforeText !== undefined && /^\d{1,15}$/.test(beforeText) ? Number(beforeText) : undefined;
      const action = c.req.query('action')?.slice(0, 100) || undefined;
      const target = c.req.query('target')?.slice(0, 100) || undefined;
      const limit = 100;
      const [entries, keys] = await Promise.all([
        s.serverStore.listAudit({ limit, ...(before === undefined ? {} : { beforeId: before }), ...(action ? { action } : {}), ...(target ? { target } : {}) }),
        s.apiKeys.list(),
      ]);
      const last = entries[entries.length - 1];
      const filterQs = `${action ? `&action=${encodeURIComponent(action)}` : ''}${target ? `&target=${encodeURIComponent(target)}` : ''}`;
      return c.html(
        page({
          title: 'Audit log',
          session: ui,
          current: '/audit',
          body: html`<h1>Audit log</h1>
<section class="card"><h2>Token hand-outs per API key</h2>
${
  keys.length === 0
    ? html`<p>No API keys yet.</p>`
    : html`<table class="list compact stack-on-phone"><thead><tr><th scope="col">API key</th><th scope="col">Tokens handed out</th><th scope="col">Last used</th></tr></thead>
<tbody>${keys.map((k) => html`<tr><td data-label="API key">${k.name}${k.revokedAt !== null ? html` <small>(revoked)</small>` : ''}</td><td data-label="Tokens handed out" class="num">${k.tokenHandouts}</td><td data-label="Last used">${when(k.lastUsedAt)}</td></tr>`)}</tbody></table>`
}</section>
<form method="get" action="/audit" class="inline filters">
<label>Action <input name="action" value="${action ?? ''}" placeholder="e.g. connection.created"></label>
<label>Target <input name="target" value="${target ?? ''}" placeholder="connection or key name"></label>
<button type="submit">Filter</button> ${action || target ? html`<a href="/audit">Clear</a>` : ''}
</form>
<table class="list audit stack-on-phone"><caption>Newest first</caption>
<thead><tr><th scope="col">When</th><th scope="col">Who</th><th scope="col">What</th><th scope="col">On</th><th scope="col">Details</th></tr></thead>
<tbody>${
            entries.length === 0
              ? html`<tr class="empty"><td colspan="5">Nothing recorded${action || target ? ' for this filter' : ''}.</td></tr>`
              : entries.map(
                  (e) => html`<tr><td data-label="When" class="when">${when(e.at)}</td><td data-label="Who">${e.actor}</td><td data-label="What"><code class="word">${e.action}</code></td><td data-label="On">${e.target ?? ''}</td><td data-label="Details" class="details">${Object.entries(e.details).map(
                    ([k, v], i) => html`${i ? ' ' : ''}<span class="kv">${k}=${typeof v === 'string' ? v : JSON.stringify(v)}</span>`,
                  )}</td></tr>`,
                )
          }</tbody></table>
${entries.length === limit && last ? html`<p><a href="/audit?before=${last.id}${filterQs}">Older entries</a></p>` : ''}`,
        }),
      );
    }),
  );
}

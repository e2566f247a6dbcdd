/**
 * Webhooks in the web UI (docs/webhooks.md "a delivery log in the UI"), following the API keys page's patterns: the
 * signing secret is shown once on the page answering the creating POST; every action is a CSRF-checked form.
 *   GET  /webhooks                       endpoints, create form
 *   POST /webhooks                       create (shows the secret once)
 *   GET  /webhooks/{id}                  one endpoint and its delivery log (each attempt)
 *   POST /webhooks/{id}/test | /delete | /deliveries/{delivery}/redeliver
 * Everything goes through the webhooks module's service (src/server/webhooks/service.ts).
 */
import type { Hono } from 'hono';
import type { DeliveryAttempt, DeliveryRecord, WebhookEndpoint } from '../../store/webhook-types.js';
import type { AppEnv } from '../context.js';
import type { ServerServices } from '../services.js';
import { webhookService, WEBHOOK_EVENT_TYPES, type WebhookService } from '../webhooks/service.js';
import { when } from './format.js';
import { type Html, html } from '../html.js';
import { actorOf, errorText, field, fields, guard, guardPost, isUserError } from './kit.js';
import { type Notice, page } from './layout.js';
import type { UiSession } from './session.js';

const CURRENT = '/webhooks';

function statusText(d: DeliveryRecord): string {
  if (d.status === 'succeeded') return 'delivered';
  if (d.status === 'failed') return `failed after ${d.attempts} attempts`;
  return d.attempts === 0 ? 'queued' : `retrying (attempt ${d.attempts + 1} ${when(d.nextAttemptAt)})`;
}

function attemptsTable(log: DeliveryAttempt[]): Html {
  if (log.length === 0) return html`<p><small>No attempt yet.</small></p>`;
  return html`<table class="list compact"><thead><tr><th scope="col">#</th><th scope="col">When</th><th scope="col">HTTP</th><th scope="col">Time</th><th scope="col">Error</th></tr></thead>
<tbody>${log.map((a) => html`<tr><td class="num">${a.attempt}</td><td>${when(a.at)}</td><td>${a.statusCode ?? '—'}</td><td class="num">${a.durationMs} ms</td><td>${a.error ?? ''}</td></tr>`)}</tbody></table>`;
}

export function webhookUiRoutes(r: Hono<AppEnv>, s: ServerServices): void {
  const svc = (): WebhookService => webhookService(s);

  const listPage = async (ui: UiSession, notices: Notice[], created?: { endpoint: WebhookEndpoint; secret: string }): Promise<string> => {
    const endpoints = s.webhookStore ? await svc().list() : [];
    const shown: Html = created
      ? html`<section class="card once" aria-labelledby="new-hook-title">
<h2 id="new-hook-title">Signing secret of the new webhook</h2>
<p><strong>Copy it now: it is shown only once.</strong> Receivers verify the <code>Dropkey-Signature</code> header with it (see docs/webhooks.md).</p>
<div class="copy-row"><input id="new-secret" class="secret-once" readonly value="${created.secret}" aria-label="Signing secret"><button type="button" data-copy="#new-secret">Copy</button></div>
</section>`
      : html``;
    return page({
      title: 'Webhooks',
      session: ui,
      current: CURRENT,
      notices: s.webhookStore ? notices : [...notices, { kind: 'error', text: 'Webhooks are not available: this server was started without a webhook store.' }],
      body: html`<h1>Webhooks</h1>
${shown}
<table class="list"><caption>Endpoints</caption>
<thead><tr><th scope="col">URL</th><th scope="col">Events</th><th scope="col">Description</th><th scope="col">Created</th><th scope="col"><span class="sr-only">Actions</span></th></tr></thead>
<tbody>${
        endpoints.length === 0
          ? html`<tr class="empty"><td colspan="5">No webhooks yet.</td></tr>`
          : endpoints.map(
              (e) => html`<tr><td><a href="/webhooks/${encodeURIComponent(e.id)}"><code>${e.url}</code></a></td><td>${e.events.join(', ')}</td><td>${e.description}</td>
<td>${when(e.createdAt)} <small>by ${e.createdBy}</small></td>
<td><a href="/webhooks/${encodeURIComponent(e.id)}">Delivery log</a></td></tr>`,
            )
      }</tbody></table>
<section class="card">
<h2>Add a webhook</h2>
<form method="post" action="/webhooks" class="stack">
<input type="hidden" name="_csrf" value="${ui.csrf}">
<label for="hook-url">Receiver URL <small>(https recommended; redirects are not followed)</small></label>
<input id="hook-url" name="url" type="url" required maxlength="2000" placeholder="https://hooks.example.com/dropkey">
<fieldset><legend>Events</legend>
<label class="check"><input type="checkbox" name="events" value="*" checked> All events</label>
${WEBHOOK_EVENT_TYPES.filter((t) => t !== 'webhook.test').map((t) => html`<label class="check"><input type="checkbox" name="events" value="${t}"> <code>${t}</code></label>`)}
</fieldset>
<label for="hook-desc">Description <small>(optional)</small></label>
<input id="hook-desc" name="description" maxlength="200">
<button type="submit" class="primary">Add webhook</button>
</form></section>`,
    });
  };

  const detailPage = async (ui: UiSession, id: string, notices: Notice[]): Promise<string> => {
    const e = await svc().get(id);
    const deliveries = await svc().deliveries({ endpointId: e.id, limit: 50 });
    const detailed = await Promise.all(deliveries.map((d) => svc().delivery(d.id)));
    return page({
      title: 'Webhook',
      session: ui,
      current: CURRENT,
      notices,
      body: html`<h1>Webhook</h1>
<section class="card"><dl>
<dt>URL</dt><dd><code>${e.url}</code></dd>
<dt>Events</dt><dd>${e.events.join(', ')}</dd>
${e.description ? html`<dt>Description</dt><dd>${e.description}</dd>` : ''}
<dt>Created</dt><dd>${when(e.createdAt)} by ${e.createdBy}</dd>
</dl>
<form method="post" action="/webhooks/${encodeURIComponent(e.id)}/test" class="inline"><input type="hidden" name="_csrf" value="${ui.csrf}"><button type="submit">Send a test event</button></form>
<form method="post" action="/webhooks/${encodeURIComponent(e.id)}/delete" class="inline" data-confirm="Delete this webhook? Its pending deliveries are dropped."><input type="hidden" name="_csrf" value="${ui.csrf}"><button type="submit" class="danger">Delete</button></form>
</section>
<h2>Delivery log</h2>
${
  detailed.length === 0
    ? html`<p>Nothing sent yet.</p>`
    : detailed.map((d) =>
        d
          ? html`<section class="card delivery delivery-${d.status}"><h3><code>${d.eventType}</code>${d.connection ? html` · ${d.connection}` : ''} <small>${when(d.createdAt)}</small></h3>
<p>${statusText(d)}${d.lastError ? html` · <span class="error-text">${d.lastError}</span>` : ''} <small>event <code>${d.eventId}</code></small></p>
${attemptsTable(d.attemptLog)}
${
  d.status === 'pending'
    ? ''
    : html`<form method="post" action="/webhooks/${encodeURIComponent(e.id)}/deliveries/${encodeURIComponent(d.id)}/redeliver" class="inline"><input type="hidden" name="_csrf" value="${ui.csrf}"><button type="submit" class="small">Send again</button></form>`
}</section>`
          : '',
      )
}`,
    });
  };

  r.get('/webhooks', guard(s, async (c, ui) => c.html(await listPage(ui, c.req.query('deleted') ? [{ kind: 'ok', text: 'The webhook was deleted.' }] : []))));

  r.post(
    '/webhooks',
    guardPost(s, async (c, ui, form) => {
      try {
        const created = await svc().create({ url: field(form, 'url'), events: fields(form, 'events'), description: field(form, 'description'), actor: actorOf(ui) });
        return c.html(await listPage(ui, [{ kind: 'ok', text: 'The webhook was added.' }], created), 201);
      } catch (err) {
        if (!isUserError(err)) throw err;
        return c.html(await listPage(ui, [{ kind: 'error', text: html`No webhook was added: ${errorText(err)}` }]), 400);
      }
    }),
  );

  const detail = async (c: Parameters<Parameters<typeof guard>[1]>[0], ui: UiSession, notices: Notice[], status = 200) => {
    try {
      return c.html(await detailPage(ui, c.req.param('id') ?? '', notices), status as 200);
    } catch (err) {
      if (!isUserError(err)) throw err;
      return c.html(await listPage(ui, [{ kind: 'error', text: errorText(err) }]), 404);
    }
  };

  r.get('/webhooks/:id', guard(s, async (c, ui) => detail(c, ui, c.req.query('queued') ? [{ kind: 'ok', text: 'Queued again; it is being sent.' }] : [])));

  r.post(
    '/webhooks/:id/test',
    guardPost(s, async (c, ui) => {
      try {
        const d = await svc().test(c.req.param('id') ?? '', actorOf(ui));
        const notice: Notice =
          d.status === 'succeeded'
            ? { kind: 'ok', text: `The test event was delivered (HTTP ${d.lastStatusCode}).` }
            : { kind: 'error', text: `The test event was not delivered: ${d.lastError ?? 'unknown error'} It will be retried.` };
        return detail(c, ui, [notice]);
      } catch (err) {
        if (!isUserError(err)) throw err;
        return c.html(await listPage(ui, [{ kind: 'error', text: errorText(err) }]), 404);
      }
    }),
  );

  r.post(
    '/webhooks/:id/delete',
    guardPost(s, async (c, ui) => {
      try {
        await svc().remove(c.req.param('id') ?? '', actorOf(ui));
      } catch (err) {
        if (!isUserError(err)) throw err;
        return c.html(await listPage(ui, [{ kind: 'error', text: errorText(err) }]), 404);
      }
      return c.redirect('/webhooks?deleted=1', 303);
    }),
  );

  r.post(
    '/webhooks/:id/deliveries/:delivery/redeliver',
    guardPost(s, async (c, ui) => {
      const id = c.req.param('id') ?? '';
      const d = await svc().delivery(c.req.param('delivery') ?? '');
      if (!d || d.endpointId !== id || !(await svc().redeliver(d.id, actorOf(ui)))) {
        return detail(c, ui, [{ kind: 'error', text: 'This delivery cannot be sent again (unknown, or still pending).' }], 400);
      }
      return c.redirect(`/webhooks/${encodeURIComponent(id)}?queued=1`, 303);
    }),
  );
}

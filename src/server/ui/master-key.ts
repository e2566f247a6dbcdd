/**
 * Master key page (docs/decisions/0003-key-rotation.md, "an admin action in the UI"): which keys this instance holds, how many stored
 * secrets each key encrypts, and a button that re-encrypts every secret under the active key — the same code as
 * `dropkey keys rotate` (src/store/rotation.ts), in batches while the service keeps running.
 *
 * The page never creates a key: a running instance cannot give a new key to the others (docs/deploying.md, "Rotating
 * the master key"). The operator puts the new key first in DROPKEY_MASTER_KEY on every instance, then presses the
 * button (or runs the CLI) once.
 *
 * main.ts gives the app its rotation (ServerDeps.keyRotation); apps built without it (tests of other pages)
 * show the page with the CLI instructions only.
 */
import type { Hono } from 'hono';
import type { AppEnv } from '../context.js';
import type { ServerServices } from '../services.js';
import { html } from '../html.js';
import { actorOf, guard, guardPost } from './kit.js';
import { type Notice, page } from './layout.js';
import type { UiSession } from './session.js';

export function masterKeyRoutes(r: Hono<AppEnv>, s: ServerServices): void {
  /** One rotation at a time per instance (a double click must not start two walks). */
  let running = false;
  const view = async (ui: UiSession, notices: Notice[]): Promise<string> => {
    const ctl = s.keyRotation;
    const st = ctl ? await ctl.status() : undefined;
    const pending = st && ctl ? Object.entries(st.byKeyId).filter(([id]) => id !== ctl.activeKeyId).reduce((n, [, k]) => n + k, 0) : 0;
    const ids = ctl && st ? [...new Set([...ctl.keyIds, ...Object.keys(st.byKeyId)])] : [];
    return page({
      title: 'Master key',
      session: ui,
      current: '/master-key',
      notices: ctl ? notices : [...notices, { kind: 'info', text: 'Key rotation is not available on this server; use dropkey keys rotate.' }],
      body: html`<h1>Master key</h1>
<p>Every stored secret (app secrets, access and refresh tokens, pending logins, webhook signing secrets) is encrypted
under a master key. dropkey takes its keys from one of two places${ctl?.keySource ? html`; this server uses <strong>${ctl.keySource.kind === 'env' ? 'DROPKEY_MASTER_KEY' : ctl.keySource.kind === 'file' ? 'the key file' : 'keys given in memory'}</strong>` : ''}:</p>
<section class="card key-modes">
<h2>Key in DROPKEY_MASTER_KEY</h2>
<p>Needed when several instances share a database. To rotate without downtime: run <code>dropkey keys generate</code>,
put the new key <strong>first</strong> in <code>DROPKEY_MASTER_KEY</code> on every instance (keep the old one after it)
and restart them one by one, then re-encrypt below, then remove the old key from <code>DROPKEY_MASTER_KEY</code>.</p>
<h2>Key file</h2>
<p>Without <code>DROPKEY_MASTER_KEY</code>, the keys live in <code>master.key</code> in the data directory
(<code>DROPKEY_HOME</code>, mode 0600), created on first use. One host only: <code>dropkey keys rotate</code> on that
host adds a new key to the file, makes it active, re-encrypts everything, and <code>dropkey keys prune</code> removes the
old key once nothing uses it. A running server follows the file and picks the new key up without a restart.
Back the file up with the database: without it no stored secret can be read.</p>
</section>
${
  ctl && st
    ? html`<table class="list stack-on-phone"><caption>Keys</caption>
<thead><tr><th scope="col">Key id</th><th scope="col">Secrets</th><th scope="col">On this instance</th></tr></thead>
<tbody>${ids.map(
        (id) => html`<tr><td data-label="Key id"><code>${id}</code>${id === ctl.activeKeyId ? html` <strong>(active)</strong>` : ''}</td><td data-label="Secrets" class="num">${st.byKeyId[id] ?? 0}</td>
<td data-label="On this instance">${ctl.keyIds.includes(id) ? 'yes' : html`<strong>missing: these secrets cannot be read here</strong>`}</td></tr>`,
      )}</tbody></table>
<section class="card">
<h2>Re-encrypt under the active key</h2>
<p>${pending === 0 ? 'Every secret is already under the active key.' : `${pending} secret(s) are under other keys.`}</p>
<form method="post" action="/master-key/rotate" class="stack" data-confirm="Re-encrypt every stored secret under key ${ctl.activeKeyId}? Every instance must already list this key.">
<input type="hidden" name="_csrf" value="${ui.csrf}">
<button type="submit" class="primary">Re-encrypt every secret</button>
</form></section>`
    : html``
}`,
    });
  };

  r.get('/master-key', guard(s, async (c, ui) => c.html(await view(ui, []))));

  r.post(
    '/master-key/rotate',
    guardPost(s, async (c, ui) => {
      const ctl = s.keyRotation;
      if (!ctl) return c.html(await view(ui, [{ kind: 'error', text: 'Key rotation is not available on this server.' }]), 404);
      if (running) return c.html(await view(ui, [{ kind: 'error', text: 'A rotation is already running on this instance.' }]), 409);
      running = true;
      try {
        const report = await ctl.rotate();
        await s.audit.write(actorOf(ui), 'keys.rotated', report.activeKeyId, { rewritten: report.rewritten, remaining: report.remaining });
        const notice: Notice =
          report.remaining === 0
            ? { kind: 'ok', text: `Re-encrypted ${report.rewritten} secret(s); every secret is under key ${report.activeKeyId}.` }
            : { kind: 'error', text: `Re-encrypted ${report.rewritten} secret(s), but ${report.remaining} are still under other keys: some instance still writes with an old active key. Give every instance the new key first, then try again.` };
        return c.html(await view(ui, [notice]), report.remaining === 0 ? 200 : 409);
      } finally {
        running = false;
      }
    }),
  );
}

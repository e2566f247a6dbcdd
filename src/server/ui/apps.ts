/**
 * Dropbox apps: list, add, edit, remove. The secret is a write-only field: it is never rendered back (the page
 * only says whether one is stored). Each app page shows the exact redirect URI to register in the App Console
 * (`${publicUrl}/oauth/callback`, https://www.dropbox.com/developers/documentation/http/documentation#oauth2-authorize: it must match exactly, path included) and the console
 * checklist step by step.
 */
import type { Hono } from 'hono';
import { validateName } from '../../connections/names.js';
import type { AppInfo } from '../../connections/types.js';
import { KNOWN_SCOPES } from '../../dropbox/scopes.js';
import { DropkeyError, ErrorCodes } from '../../errors.js';
import type { AppAccess } from '../../store/types.js';
import type { AppEnv } from '../context.js';
import type { ServerServices } from '../services.js';
import { when } from './format.js';
import { type Html, html } from '../html.js';
import { actorOf, errorText, field, fields, type Form, guard, guardPost, isUserError } from './kit.js';
import { type Notice, page } from './layout.js';
import type { UiSession } from './session.js';
import { connectForm } from './connections.js';

/** Connections named on an app's page; the rest are a link to the connections list filtered by the app. */
const USED_BY_SHOWN = 20;

const enc = encodeURIComponent;

/** What a new app asks for by default: enough to identify the account and read and write files. */
const DEFAULT_SCOPES = ['account_info.read', 'files.metadata.read', 'files.content.read', 'files.content.write'];

interface AppDraft {
  name: string;
  key: string;
  scopes: string[];
  access: AppAccess;
  team: boolean;
  hasSecret: boolean;
}

function draftOf(a: AppInfo): AppDraft {
  return { name: a.name, key: a.key, scopes: a.scopes, access: a.access ?? 'full', team: a.team, hasSecret: a.hasSecret };
}

export function redirectUriBox(redirectUri: string): Html {
  return html`<div class="copy-row"><input id="redirect-uri" readonly value="${redirectUri}" aria-label="Redirect URI"><button type="button" data-copy="#redirect-uri">Copy</button></div>`;
}

export function checklist(redirectUri: string): Html {
  return html`<ol class="checklist">
<li>Open the <a href="https://www.dropbox.com/developers/apps" rel="noopener noreferrer" target="_blank">Dropbox App Console</a> and click <strong>Create app</strong> (or open your existing app).</li>
<li>Choose <strong>Scoped access</strong>, then the access type: <strong>App folder</strong> or <strong>Full Dropbox</strong>. It must match the access you pick here and cannot be changed later.</li>
<li>For a Dropbox Business admin connector, create the app as a <strong>team</strong> app (Dropbox shows team scopes such as <code>team_info.read</code>, <code>members.read</code>); otherwise a user app.</li>
<li>On the <strong>Settings</strong> tab, under <em>OAuth 2 → Redirect URIs</em>, paste <code>${redirectUri}</code> and click <strong>Add</strong>. It must match exactly, path included.</li>
<li>On the same tab, copy the <strong>App key</strong>, click <em>Show</em> next to <strong>App secret</strong> and copy it too; paste both into the form here.</li>
<li>On the <strong>Permissions</strong> tab, tick the same scopes you tick here and click <strong>Submit</strong>. Scope changes only apply to connections made afterwards: reconnect existing ones.</li>
<li>While the app is in <em>Development</em> status only a limited number of Dropbox users can connect it; click <strong>Apply for production</strong> on the Settings tab before rolling it out widely.</li>
</ol>`;
}

function scopeBoxes(selected: string[]): Html {
  const known = Object.entries(KNOWN_SCOPES);
  const unknown = selected.filter((s) => !Object.hasOwn(KNOWN_SCOPES, s));
  return html`<fieldset class="scopes-box"><legend>Scopes (the same as on the App Console's Permissions tab)</legend>
${known.map(
  ([scope, what]) =>
    html`<label class="check"><input type="checkbox" name="scopes" value="${scope}"${selected.includes(scope) ? html` checked` : ''}> <code>${scope}</code> <small>${what}</small></label>`,
)}
${unknown.map((scope) => html`<label class="check"><input type="checkbox" name="scopes" value="${scope}" checked> <code>${scope}</code></label>`)}
</fieldset>`;
}

function appForm(ui: UiSession, d: AppDraft, editing: boolean): Html {
  const action = editing ? `/apps/${enc(d.name)}` : '/apps';
  return html`<form method="post" action="${action}" class="stack app-form">
<input type="hidden" name="_csrf" value="${ui.csrf}">
${editing ? '' : html`<label for="app-name">Name in dropkey</label><input id="app-name" name="name" required maxlength="64" pattern="[A-Za-z0-9][A-Za-z0-9_.\\-]{0,63}" value="${d.name}" placeholder="e.g. backup">`}
<label for="app-key">App key</label>
<input id="app-key" name="key" required maxlength="64" autocomplete="off" spellcheck="false" value="${d.key}">
<label for="app-secret">App secret ${editing ? html`<small>(${d.hasSecret ? 'one is stored; leave empty to keep it' : 'none stored'})</small>` : html`<small>(optional for PKCE-only apps)</small>`}</label>
<input id="app-secret" name="secret" type="password" autocomplete="new-password" spellcheck="false" value="">
${editing && d.hasSecret ? html`<label class="check"><input type="checkbox" name="remove_secret" value="yes"> Remove the stored secret (PKCE only)</label>` : ''}
<fieldset><legend>Access</legend>
<label class="check"><input type="radio" name="access" value="full"${d.access === 'full' ? html` checked` : ''}> Full Dropbox</label>
<label class="check"><input type="radio" name="access" value="app_folder"${d.access === 'app_folder' ? html` checked` : ''}> App folder</label>
</fieldset>
<fieldset><legend>Linked to</legend>
<label class="check"><input type="radio" name="kind" value="user"${!d.team ? html` checked` : ''}> a user (each connection is one Dropbox account)</label>
<label class="check"><input type="radio" name="kind" value="team"${d.team ? html` checked` : ''}> a team (Dropbox Business admin connector)</label>
</fieldset>
${scopeBoxes(d.scopes)}
<button type="submit" class="primary">${editing ? 'Save changes' : 'Add app'}</button>
</form>`;
}

function readDraft(form: Form, name: string): AppDraft & { secret: string } {
  const access = field(form, 'access');
  return {
    name,
    key: field(form, 'key'),
    secret: typeof form.get('secret') === 'string' ? (form.get('secret') as string) : '',
    scopes: fields(form, 'scopes'),
    access: access === 'app_folder' ? 'app_folder' : 'full',
    team: field(form, 'kind') === 'team',
    hasSecret: false,
  };
}

/** The same key rule as the facade's addApp (src/connections/dropkey.ts), for edits that bypass it. */
function checkKey(key: string): void {
  if (!/^[A-Za-z0-9_-]{4,64}$/.test(key)) {
    throw new DropkeyError(ErrorCodes.BAD_INPUT, key === '' ? 'The app key is missing.' : 'The app key does not look like a Dropbox app key.', {
      hint: 'Copy the "App key" from the Settings tab of your app in the Dropbox App Console.',
    });
  }
}

function checkScopes(scopes: string[]): void {
  for (const s of scopes) {
    if (!/^[a-z][a-z0-9_.:]*$/i.test(s)) throw new DropkeyError(ErrorCodes.BAD_INPUT, `Invalid scope name ${JSON.stringify(s.slice(0, 60))}.`);
  }
}

export function appRoutes(r: Hono<AppEnv>, s: ServerServices): void {
  const listPage = async (ui: UiSession, notices: Notice[], draft?: AppDraft): Promise<string> => {
    const apps = await s.dropkey.listApps();
    const redirectUri = s.paths.redirectUri;
    return page({
      title: 'Apps',
      session: ui,
      current: '/apps',
      notices,
      body: html`<h1>Dropbox apps</h1>
<table class="list stack-on-phone"><caption>Registered apps</caption>
<thead><tr><th scope="col">Name</th><th scope="col">App key</th><th scope="col">Access</th><th scope="col">Linked to</th><th scope="col">Secret</th><th scope="col">Scopes</th></tr></thead>
<tbody>${
        apps.length === 0
          ? html`<tr class="empty"><td colspan="6">No app yet. Add one below.</td></tr>`
          : apps.map(
              (a) => html`<tr><td data-label="Name"><a href="/apps/${enc(a.name)}">${a.name}</a></td><td data-label="App key"><code>${a.key}</code></td><td data-label="Access">${a.access === 'app_folder' ? 'app folder' : a.access === 'full' ? 'full Dropbox' : 'unknown'}</td><td data-label="Linked to">${a.team ? 'team' : 'user'}</td><td data-label="Secret">${a.hasSecret ? 'stored' : 'none (PKCE)'}</td><td data-label="Scopes">${a.scopes.length}</td></tr>`,
            )
      }</tbody></table>
<section class="card">
<h2>Redirect URI for the App Console</h2>
${redirectUriBox(redirectUri)}
<details${apps.length === 0 ? html` open` : ''}><summary>App Console checklist</summary>${checklist(redirectUri)}</details>
</section>
<section class="card">
<h2>Add an app</h2>
${appForm(ui, draft ?? { name: apps.length === 0 ? 'default' : '', key: '', scopes: DEFAULT_SCOPES, access: 'full', team: false, hasSecret: false }, false)}
</section>`,
    });
  };

  const editPage = async (ui: UiSession, app: AppInfo, notices: Notice[], draft?: AppDraft): Promise<string> => {
    // The first few of its connections, read from the store's app index (an app may serve thousands).
    const { connections: users, next } = await s.dropkey.listPage({ limit: USED_BY_SHOWN, app: app.name });
    return page({
      title: `App ${app.name}`,
      session: ui,
      current: '/apps',
      notices,
      body: html`<p class="crumbs"><a href="/apps">Apps</a> ›</p>
<h1>${app.name}</h1>
<p>Added ${when(app.createdAt)}, changed ${when(app.updatedAt)}. Used by ${users.length === 0 ? 'no connection' : users.map((u, i) => html`${i ? ', ' : ''}<a href="/connections/${enc(u.name)}">${u.name}</a>`)}${next !== null ? html` and more: <a href="/connections?app=${enc(app.name)}">all connections of ${app.name}</a>` : ''}.</p>
<dl class="facts">
<dt>Access</dt><dd>${app.access === 'app_folder' ? 'app folder' : app.access === 'full' ? 'full Dropbox' : 'unknown'}, ${app.team ? 'team' : 'user'} app</dd>
<dt>Scopes asked for</dt><dd>${app.scopes.length ? html`<ul class="scopes" id="app-scopes">${app.scopes.map((x) => html`<li><code>${x}</code></li>`)}</ul>` : 'none chosen (Dropbox grants what the App Console sets)'}</dd>
</dl>
<section class="card">
<h2>Connect an account</h2>
<p>Sign in to Dropbox as the account owner and click Allow; the new connection uses this app and these scopes.</p>
${connectForm(ui, [app], { app: app.name, label: 'Connect an account', suggested: users.length === 0 ? 'default' : '' })}
</section>
<section class="card">
<h2>Redirect URI for the App Console</h2>
${redirectUriBox(s.paths.redirectUri)}
<details><summary>App Console checklist</summary>${checklist(s.paths.redirectUri)}</details>
</section>
<section class="card"><h2>Settings</h2>${appForm(ui, draft ?? draftOf(app), true)}</section>
<section class="card"><h2>Remove</h2>
<form method="post" action="/apps/${enc(app.name)}/delete" class="inline" data-confirm="Remove app ${app.name}?">
<input type="hidden" name="_csrf" value="${ui.csrf}"><button type="submit" class="danger"${users.length ? html` disabled title="Revoke its connections first"` : ''}>Remove app</button></form>
</section>`,
    });
  };

  r.get(
    '/apps',
    guard(s, async (c, ui) => {
      const notices: Notice[] = [];
      if (c.req.query('welcome')) notices.push({ kind: 'ok', text: 'Welcome! Register your Dropbox app first, then connect accounts on the Connections page.' });
      const added = c.req.query('removed');
      if (added && /^[A-Za-z0-9_.-]{1,64}$/.test(added)) notices.push({ kind: 'ok', text: `App "${added}" was removed.` });
      return c.html(await listPage(ui, notices));
    }),
  );

  r.post(
    '/apps',
    guardPost(s, async (c, ui, form) => {
      const d = readDraft(form, field(form, 'name'));
      try {
        checkKey(d.key);
        const app = await s.dropkey.addApp({
          name: d.name,
          key: d.key,
          ...(d.secret.trim() === '' ? {} : { secret: d.secret }),
          scopes: d.scopes,
          team: d.team,
          access: d.access,
        });
        await s.audit.write(actorOf(ui), 'app.created', app.name, { key: app.key, team: app.team, access: app.access, scopes: app.scopes });
        return c.redirect(`/apps/${enc(app.name)}?added=1`, 303);
      } catch (err) {
        if (!isUserError(err)) throw err;
        return c.html(await listPage(ui, [{ kind: 'error', text: errorText(err) }], d), 400);
      }
    }),
  );

  r.get(
    '/apps/:name',
    guard(s, async (c, ui) => {
      const app = await s.dropkey.getApp(validateName('app', c.req.param('name')));
      const notices: Notice[] = [];
      if (c.req.query('added')) notices.push({ kind: 'ok', text: `App "${app.name}" was added. Register the redirect URI below in the App Console, then connect an account.` });
      if (c.req.query('saved')) notices.push({ kind: 'ok', text: 'Saved.' });
      return c.html(await editPage(ui, app, notices));
    }),
  );

  r.post(
    '/apps/:name',
    guardPost(s, async (c, ui, form) => {
      const app = await s.dropkey.getApp(validateName('app', c.req.param('name')));
      const d = readDraft(form, app.name);
      try {
        checkKey(d.key);
        checkScopes(d.scopes);
        const secret = d.secret.trim();
        if (/\s/.test(secret)) throw new DropkeyError(ErrorCodes.BAD_INPUT, 'The app secret contains spaces or line breaks. Copy it again, alone.');
        if (secret !== '' && secret === d.key) throw new DropkeyError(ErrorCodes.BAD_INPUT, 'The app secret is the same as the app key: copy the secret (click Show), not the key.');
        const removeSecret = field(form, 'remove_secret') === 'yes';
        await s.dropkey.store.updateApp(app.name, {
          key: d.key,
          scopes: d.scopes,
          team: d.team,
          access: d.access,
          ...(secret !== '' ? { secret } : removeSecret ? { secret: null } : {}),
        });
        await s.audit.write(actorOf(ui), 'app.updated', app.name, {
          key: d.key,
          team: d.team,
          access: d.access,
          scopes: d.scopes,
          secret: secret !== '' ? 'replaced' : removeSecret ? 'removed' : 'kept',
        });
        return c.redirect(`/apps/${enc(app.name)}?saved=1`, 303);
      } catch (err) {
        if (!isUserError(err)) throw err;
        return c.html(await editPage(ui, app, [{ kind: 'error', text: errorText(err) }], { ...d, hasSecret: app.hasSecret }), 400);
      }
    }),
  );

  r.post(
    '/apps/:name/delete',
    guardPost(s, async (c, ui) => {
      const app = await s.dropkey.getApp(validateName('app', c.req.param('name')));
      try {
        await s.dropkey.removeApp(app.name);
      } catch (err) {
        if (!isUserError(err)) throw err;
        return c.html(await editPage(ui, app, [{ kind: 'error', text: errorText(err) }]), 400);
      }
      await s.audit.write(actorOf(ui), 'app.removed', app.name);
      return c.redirect(`/apps?removed=${enc(app.name)}`, 303);
    }),
  );
}

/**
 * Every kind of HTML page the server writes, through app.request() with the emulator reached in-process (no
 * socket): each goes through the one layout (ui/layout.ts) and hono's html helper, so hostile text (an admin email,
 * a Dropbox account email, an error text, a query value) is escaped on every page. Owner-facing pages (connect link,
 * consent result, their error pages) carry no navigation, no admin links and no command-line advice. A fix is
 * rendered three ways: a command line (CLI), a link (UI), a field (API).
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { fixCommand } from '../../src/cli/fix.js';
import { DropkeyError, ErrorCodes, type Fix } from '../../src/errors.js';
import { mapError } from '../../src/server/errors.js';
import { createConnectLink, startBrowserLogin } from '../../src/server/oauth/flow.js';
import { ensureSetupToken } from '../../src/server/setup.js';
import { fixLinks } from '../../src/server/ui/fix.js';
import { problemPage } from '../../src/server/ui/layout.js';
import { decodeEntities } from '../helpers/consent.js';
import { makeServerRig, PUBLIC_URL, type ServerRig } from './rig.js';
import { assertNoInlineScript, csrfOf, textOf, UiClient } from './ui-client.js';

/** Markup, both quotes and an ampersand, without whitespace or "@" so that it fits in an email's local part. */
const HOSTILE = `<img/src=x/onerror=alert(1)>"'&`;
const ESCAPED = '&lt;img/src=x/onerror=alert(1)&gt;&quot;&#39;&amp;';
const ADMIN_EMAIL = `${HOSTILE}@admin.example`;
const OWNER_EMAIL = `${HOSTILE}@owner.example`;
const PASSWORD = 'correct horse battery staple';

let rig: ServerRig;
let admin: UiClient;

/** The one layout: doctype, stylesheet, header, main; no inline script, style or handler (the CSP forbids them). */
function assertLayout(html: string, what: string): void {
  assert.match(html, /^<!doctype html>\n<html lang="en">/, `${what}: the layout's document`);
  assert.ok(html.includes('<link rel="stylesheet" href="/ui/assets/app.css">'), `${what}: the UI's stylesheet`);
  assert.ok(html.includes('<header class="top">'), `${what}: the UI's header`);
  assert.ok(html.includes('<main id="main">'), `${what}: the UI's main`);
  assert.match(html, /<title>[^<]* · dropkey<\/title>/, `${what}: the UI's title`);
  assertNoInlineScript(html);
}

function assertNoRawHostile(html: string, what: string): void {
  assert.ok(!html.includes('<img'), `${what}: hostile markup came through unescaped`);
  assert.ok(!html.includes(`"'&`), `${what}: hostile quotes came through unescaped`);
}

/** A page for a connect-link owner: the layout without navigation or admin links, and no command to run. */
function assertOwnerPage(html: string, what: string): void {
  assertLayout(html, what);
  assert.ok(!html.includes('<nav'), `${what}: no navigation`);
  assert.ok(!/<a class="brand"/.test(html), `${what}: the brand is not a link to admin pages`);
  assert.ok(!/class="fix"/.test(html), `${what}: no links to admin pages`);
  assert.ok(!/\bdropkey (login|import|app|revoke|doctor|token|list)\b/.test(textOf(html)), `${what}: no command-line advice`);
}

async function get(client: UiClient, path: string, status = 200): Promise<string> {
  const res = await client.get(path);
  const html = await res.text();
  assert.equal(res.status, status, `${path}: ${textOf(html).slice(0, 300)}`);
  assert.match(res.headers.get('content-type') ?? '', /^text\/html/, path);
  return html;
}

/** Runs the consent in-process: the emulator approves at once (autoApprove) and redirects to our callback. */
async function consent(authorizeUrl: string): Promise<string> {
  const res = await rig.emu.emulator.fetch(new Request(authorizeUrl, { redirect: 'manual' }));
  const location = res.headers.get('location');
  assert.ok(location?.startsWith(`${PUBLIC_URL}/oauth/callback?`), `consent redirected to ${location}`);
  const u = new URL(location);
  return `${u.pathname}${u.search}`;
}

function bindingCookie(res: Response): string {
  const c = res.headers.getSetCookie().find((x) => x.startsWith('dropkey_oauth='));
  assert.ok(c, 'a browser-binding cookie');
  return c.split(';')[0]!;
}

before(async () => {
  rig = await makeServerRig({ listen: false, emulator: { autoApprove: true, seed: { apps: [], accounts: [] } } });
  // The first account is the one the emulator approves as.
  await rig.emu.control.createAccount({ email: OWNER_EMAIL });
  await rig.dropboxApp('main');
});
after(async () => rig?.close());

describe('first run and sign-in pages', () => {
  test('sign-in before setup, the setup page, a wrong setup link: all in the layout', async () => {
    const anon = new UiClient(rig);
    const notSetUp = await get(anon, '/signin');
    assertLayout(notSetUp, 'sign-in before setup');
    assert.match(textOf(notSetUp), /not set up yet/);
    assert.ok(!/\bdropkey serve\b/.test(textOf(notSetUp)), 'no command to run: the operator restarts the server');
    const wrong = await get(anon, `/setup?token=${'A'.repeat(43)}`, 401);
    assertLayout(wrong, 'wrong setup link');
    const setupUrl = new URL((await ensureSetupToken(rig.app.services))!);
    const setup = await get(anon, `/setup${setupUrl.search}`);
    assertLayout(setup, 'setup');
    admin = new UiClient(rig);
    const form = await get(admin, `/setup${setupUrl.search}`);
    const done = await admin.post('/setup', {
      _csrf: csrfOf(form),
      token: setupUrl.searchParams.get('token')!,
      email: ADMIN_EMAIL,
      password: PASSWORD,
      password2: PASSWORD,
    });
    assert.equal(done.status, 303, textOf(await done.clone().text()));
    const signin = await get(new UiClient(rig), '/signin?signed_out=1');
    assertLayout(signin, 'sign-in');
    assertNoRawHostile(signin, 'sign-in');
  });
});

describe('admin pages', () => {
  test('every admin page is in the layout with the navigation, and escapes hostile text', async () => {
    await rig.connection('alpha');
    // A hostile account email and error text, as Dropbox or a failed refresh could leave them.
    await rig.store.updateConnection('alpha', { email: OWNER_EMAIL, lastError: `Dropbox said ${HOSTILE}` });
    await rig.key(['token:read'], ['alpha'], 'reader');
    const pages = [
      '/connections',
      '/connections/alpha',
      '/connections/alpha/reconnect',
      '/connections/newname/reconnect',
      '/apps',
      '/apps?welcome=1',
      '/apps/main',
      '/api-keys',
      `/audit?action=${encodeURIComponent(HOSTILE)}&target=${encodeURIComponent(HOSTILE)}`,
      '/webhooks',
      '/master-key',
    ];
    for (const path of pages) {
      const html = await get(admin, path);
      assertLayout(html, path);
      assert.ok(html.includes('<nav aria-label="Main">'), `${path}: the navigation`);
      assert.ok(html.includes('<a class="brand" href="/">dropkey</a>'), `${path}: the brand links home`);
      assertNoRawHostile(html, path);
      // The signed-in admin's (hostile) email is shown escaped on every page.
      assert.ok(html.includes(`<span class="who">${ESCAPED}@admin.example</span>`), `${path}: the admin's email, escaped`);
    }
    const detail = await get(admin, '/connections/alpha');
    assert.ok(detail.includes(`${ESCAPED}@owner.example`), 'the account email, escaped');
    assert.ok(detail.includes(`Dropbox said ${ESCAPED}`), 'the last error, escaped');
    const audit = await get(admin, `/audit?action=${encodeURIComponent(HOSTILE)}`);
    assert.ok(audit.includes(`name="action" value="${ESCAPED}"`), 'a reflected query value, escaped in its attribute');
    // The fragment the page script swaps in is escaped the same way.
    const rows = await get(admin, '/ui/fragments/connections');
    assert.ok(rows.includes(`${ESCAPED}@owner.example`));
    assertNoRawHostile(rows, 'connection rows fragment');
  });

  test('pages that answer a form: a new API key, a new connect link, the revoke confirmation', async () => {
    const csrf = csrfOf(await get(admin, '/api-keys'));
    const answers: [string, [string, string][], number][] = [
      ['/api-keys', [['_csrf', csrf], ['name', 'shown-once'], ['permissions', 'token:read'], ['connections', 'alpha']], 201],
      ['/connect-links', [['_csrf', csrf], ['connection', 'linked'], ['app', 'main'], ['minutes', '30']], 201],
      ['/connections/alpha/revoke', [['_csrf', csrf]], 200],
    ];
    for (const [path, fields, status] of answers) {
      const res = await admin.post(path, fields);
      const html = await res.text();
      assert.equal(res.status, status, `${path}: ${textOf(html).slice(0, 300)}`);
      assertLayout(html, `POST ${path}`);
      assert.ok(html.includes('<nav aria-label="Main">'), `${path}: the navigation`);
      assertNoRawHostile(html, `POST ${path}`);
    }
  });

  test('a login fix links to the reconnect page, which also connects a connection that does not exist yet', async () => {
    const html = await get(admin, '/connections/newname/reconnect');
    assert.match(textOf(html), /There is no connection named “newname” yet/);
    assert.match(html, /<input type="hidden" name="connection" value="newname">/);
  });

  test('a form error shows its hint and its fix as a link to the page where it is done', async () => {
    const page = await get(admin, '/api-keys');
    const res = await admin.post('/api-keys/ghost/revoke', { _csrf: csrfOf(page) });
    const html = await res.text();
    assert.equal(res.status, 404);
    assertLayout(html, 'API key form error');
    assert.match(html, /No live API key named &quot;ghost&quot;\. See which keys exist\. <a class="fix" href="\/api-keys">See the API keys<\/a>/);
    assert.ok(!/\bdropkey apikey\b/.test(textOf(html)), 'no command line in the web UI');
  });
});

describe('pages a connect-link owner sees', () => {
  test('the link page and the consent result: the layout without navigation; the account email escaped', async () => {
    const link = await createConnectLink(rig.app.services, { connection: 'owned', app: 'main', actor: 'test' });
    const path = new URL(link.url).pathname;
    const owner = new UiClient(rig);
    const landing = await get(owner, path);
    assertOwnerPage(landing, 'connect link page');
    assert.match(textOf(landing), /You were invited to connect a Dropbox account as owned/);
    const start = await owner.post(path, {});
    assert.equal(start.status, 303);
    const cookie = bindingCookie(start);
    const callback = await consent(start.headers.get('location')!);
    const res = await rig.call('GET', callback, { headers: { Cookie: cookie } });
    const done = await res.text();
    assert.equal(res.status, 200, textOf(done));
    assertOwnerPage(done, 'consent result');
    assert.ok(done.includes(`Dropbox is connected as ${ESCAPED}@owner.example.`), 'the email, escaped');
    assertNoRawHostile(done, 'consent result');

    // The used link: an error page for the owner, in the layout, with words only.
    const gone = await get(owner, path, 410);
    assertOwnerPage(gone, 'used link');
    assert.match(textOf(gone), /already used\. Ask the admin who sent it for a new one\./);
  });

  test('a refused consent: the owner gets the hint in words, no admin link, no command; the link still works', async () => {
    const link = await createConnectLink(rig.app.services, { connection: 'refused', app: 'main', actor: 'test' });
    const path = new URL(link.url).pathname;
    const owner = new UiClient(rig);
    const start = await owner.post(path, {});
    const state = new URL(start.headers.get('location')!).searchParams.get('state')!;
    const res = await rig.call('GET', `/oauth/callback?error=access_denied&state=${encodeURIComponent(state)}`, { headers: { Cookie: bindingCookie(start) } });
    const html = await res.text();
    assert.equal(res.status, 400);
    assertOwnerPage(html, 'refused consent');
    // The owner has no dropkey to "start the login" with: the way to try again is the link itself.
    assert.match(textOf(html), /access was not granted.*Open the link you were sent again.*ask the admin who sent it for a new one/);
    assert.equal((await owner.get(path)).status, 200, 'a cancelled consent does not burn the link');
  });

  test('unknown and expired links, and a callback without state: the layout, words only', async () => {
    const owner = new UiClient(rig);
    assertOwnerPage(await get(owner, `/connect/${'x'.repeat(43)}`, 404), 'unknown link');
    const expired = await createConnectLink(rig.app.services, { connection: 'late', app: 'main', actor: 'test', expiresIn: 60 });
    rig.clock.now += 61_000;
    assertOwnerPage(await get(owner, new URL(expired.url).pathname, 410), 'expired link');
    assertLayout(await get(owner, '/oauth/callback', 410), 'callback without state');
  });
});

describe('the popup result and error pages', () => {
  test('popup result pages (success and failure) are in the layout with only the popup script', async () => {
    const binding = 'p'.repeat(43);
    const cookie = `dropkey_oauth=${binding}`;
    let authorize = await startBrowserLogin(rig.app.services, { connection: 'popped', app: 'main', returnMode: 'popup', actor: 'admin:x', binding });
    let res = await rig.call('GET', await consent(authorize), { headers: { Cookie: cookie } });
    let html = await res.text();
    assert.equal(res.status, 200, textOf(html));
    assertLayout(html, 'popup success');
    assert.ok(html.includes('<script src="/oauth/popup.js" defer></script>'));
    assert.ok(!html.includes('/ui/assets/app.js'), 'only the popup script');
    const data = /<body data-result="([^"]*)">/.exec(html)?.[1];
    assert.ok(data, 'the result on <body>');
    assert.ok(!data.includes('<') && !data.includes('"'), 'the attribute value is escaped');
    assert.equal(JSON.parse(decodeEntities(data)).email, OWNER_EMAIL, 'the email survives the round trip');
    assertNoRawHostile(html, 'popup success');

    authorize = await startBrowserLogin(rig.app.services, { connection: 'popped', app: 'main', returnMode: 'popup', actor: 'admin:x', binding });
    const state = new URL(authorize).searchParams.get('state')!;
    res = await rig.call('GET', `/oauth/callback?error=access_denied&state=${encodeURIComponent(state)}`, { headers: { Cookie: cookie } });
    html = await res.text();
    assert.equal(res.status, 400);
    assertLayout(html, 'popup failure');
    assert.match(html, /<body data-result="\{&quot;ok&quot;:false/);
  });

  test('the 404 page and error pages are in the layout; hostile text in a path is escaped', async () => {
    const anon = new UiClient(rig);
    const html = await get(anon, `/nothing/${encodeURIComponent(HOSTILE)}`, 404);
    assertLayout(html, '404');
    assertNoRawHostile(html, '404');
    assert.match(textOf(html), /Nothing here: GET \/nothing\/.*Check the address\. Error 404 · DROPKEY_ROUTE_NOT_FOUND/);
    const api = await rig.call('GET', '/api/v1/nothing', { key: await rig.key(['admin'], '*') });
    assert.equal(api.status, 404);
    assert.match(api.headers.get('content-type') ?? '', /json/);
  });

  test('problem pages: admins get the fix as links, owners the words only; hostile text escaped either way', () => {
    const body = { code: 'DROPKEY_NOT_FOUND', message: `No app named ${HOSTILE}`, hint: `see ${HOSTILE}`, fix: { action: 'list-apps' } as Fix };
    const forAdmin = String(problemPage(404, body, 'admin'));
    assertLayout(forAdmin, 'admin problem page');
    assertNoRawHostile(forAdmin, 'admin problem page');
    assert.ok(forAdmin.includes('<a class="fix" href="/apps">See the apps</a>'));
    const forOwner = String(problemPage(404, body, 'owner'));
    assertOwnerPage(forOwner, 'owner problem page');
    assertNoRawHostile(forOwner, 'owner problem page');
    assert.ok(forOwner.includes(`see ${ESCAPED}`));
  });
});

describe('a fix, three ways', () => {
  test('the same fix is a command line in the CLI, a link in the UI and a field in the API', () => {
    const cases: [Fix, string, string][] = [
      [{ action: 'login', connection: 'alpha', app: 'main' }, 'dropkey login --connection alpha --app main', '<a class="fix" href="/connections/alpha/reconnect">Connect “alpha” to Dropbox again</a>'],
      [{ action: 'revoke', connections: ['a', 'b'] }, 'dropkey revoke --connection a; dropkey revoke --connection b', '<a class="fix" href="/connections/a">Revoke “a”</a> <a class="fix" href="/connections/b">Revoke “b”</a>'],
      [{ action: 'app-update', app: 'main', field: 'secret' }, 'dropkey app update --name main --secret -', '<a class="fix" href="/apps/main">Enter the secret of app “main”</a>'],
      [{ action: 'apikey-create', permission: 'admin', connection: '*' }, 'dropkey apikey create --name NAME --permission admin --connection "*"', '<a class="fix" href="/api-keys">Create an API key</a>'],
    ];
    for (const [fix, command, link] of cases) {
      const err = new DropkeyError(ErrorCodes.BAD_INPUT, 'm', { hint: 'words', fix });
      assert.equal(fixCommand(err.fix!), command);
      assert.equal(String(fixLinks(err.fix)), link);
      assert.deepEqual(mapError(err).body.fix, fix);
      assert.deepEqual(JSON.parse(JSON.stringify(err)).fix, fix, 'toJSON carries it too');
    }
  });

  test('the API answers with the fix as a field of the error body', async () => {
    const none = await rig.call('GET', '/api/v1/connections');
    assert.equal(none.status, 401);
    const body = (await none.json()) as { error: { code: string; hint?: string; fix?: Fix } };
    assert.equal(body.error.code, 'DROPKEY_UNAUTHORIZED');
    assert.deepEqual(body.error.fix, { action: 'apikey-create', permission: 'token:read' });
    assert.ok(body.error.hint && !/\bdropkey\b/.test(body.error.hint), 'the hint is words, not a command');
    const reader = await rig.key(['token:read'], ['alpha']);
    const forbidden = await rig.call('GET', '/api/v1/connections/beta/token', { key: reader });
    assert.equal(forbidden.status, 403);
    assert.deepEqual(((await forbidden.json()) as { error: { fix?: Fix } }).error.fix, { action: 'apikey-create', connection: 'beta' });
    const doc = (await (await rig.call('GET', '/api/openapi.json')).json()) as any;
    assert.deepEqual(doc.components.schemas.Error.properties.error.properties.fix, { $ref: '#/components/schemas/Fix' });
    const actions = doc.components.schemas.Fix.oneOf.map((o: any) => o.properties.action.const);
    assert.ok(actions.includes('login') && actions.includes('apikey-create') && actions.length >= 13, actions.join());
  });
});

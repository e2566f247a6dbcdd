/**
 * The web UI over plain HTTP, as a browser without JavaScript uses it (docs/web-ui.md): first-run setup, sign-in
 * and sign-out, session cookies, CSRF on every state-changing request, apps with a write-only secret, the
 * full-page redirect connect flow against the emulator, the popup mode's JSON start and callback page,
 * connection detail actions, connect links, API keys and the audit log.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { driveConsent } from '../helpers/consent.js';
import { ensureSetupToken } from '../../src/server/setup.js';
import { makeServerRig, PUBLIC_URL, type ServerRig } from './rig.js';
import { assertNoInlineScript, csrfOf, textOf, UiClient } from './ui-client.js';

const EMAIL = 'admin@example.com';
const PASSWORD = 'correct horse battery staple';

let rig: ServerRig;
let browser: UiClient;
let csrf: string;
let emuApp: { key: string; secret: string };

async function signIn(client: UiClient, email = EMAIL, password = PASSWORD): Promise<Response> {
  const html = await client.page('/signin');
  return client.post('/signin', { _csrf: csrfOf(html), email, password });
}

before(async () => {
  rig = await makeServerRig();
  const spec = await rig.emu.control.createApp({ redirect_uris: ['http://127.0.0.1/*'] });
  emuApp = { key: spec.key, secret: spec.secret! };
});
after(async () => rig.close());

describe('first run and sign-in', () => {
  test('setup link: a wrong token is refused; the right one creates the admin and signs in', async () => {
    const setupUrl = new URL((await ensureSetupToken(rig.app.services))!);
    browser = new UiClient(rig);

    const root = await browser.get('/');
    assert.equal(root.status, 303);
    const signin = await browser.page('/signin');
    assert.match(textOf(signin), /dropkey is not set up yet/);

    const wrong = await browser.get('/setup?token=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA');
    assert.equal(wrong.status, 401);
    assert.match(textOf(await wrong.text()), /wrong or expired/);

    const html = await browser.page(`/setup${setupUrl.search}`);
    const token = setupUrl.searchParams.get('token')!;
    // No pre-session CSRF cookie value → refused before anything is created.
    const stranger = new UiClient(rig);
    const forged = await stranger.post('/setup', { _csrf: 'x'.repeat(43), token, email: EMAIL, password: PASSWORD, password2: PASSWORD });
    assert.equal(forged.status, 403);
    assert.equal(await rig.serverStore.countAdmins(), 0);

    const mismatch = await browser.post('/setup', { _csrf: csrfOf(html), token, email: EMAIL, password: PASSWORD, password2: `${PASSWORD}!` });
    assert.equal(mismatch.status, 400);
    assert.match(textOf(await mismatch.text()), /passwords differ/);

    const short = await browser.post('/setup', { _csrf: csrfOf(html), token, email: EMAIL, password: 'short', password2: 'short' });
    assert.equal(short.status, 400);
    assert.match(textOf(await short.text()), /at least 12 characters/);

    const ok = await browser.post('/setup', { _csrf: csrfOf(html), token, email: EMAIL, password: PASSWORD, password2: PASSWORD });
    assert.equal(ok.status, 303, await ok.clone().text());
    assert.equal(ok.headers.get('location'), '/apps?welcome=1');
    const cookie = browser.lastSetCookies.find((c) => c.startsWith('dropkey_session='));
    assert.ok(cookie, 'a session cookie');
    assert.match(cookie, /HttpOnly/i);
    assert.match(cookie, /SameSite=Lax/i);
    assert.doesNotMatch(cookie, /Secure/i, 'plain http: no Secure flag');
    assert.equal(await rig.serverStore.countAdmins(), 1);
    // The stored session is keyed by a hash, never the cookie value.
    const id = browser.jar.get('dropkey_session')!;
    assert.equal(await rig.serverStore.getSession(id, rig.clock.now), undefined);

    const apps = await browser.page('/apps?welcome=1');
    assert.match(textOf(apps), /Welcome!/);
    csrf = csrfOf(apps);

    // The setup link is dead now.
    const again = await new UiClient(rig).get(`/setup${setupUrl.search}`);
    assert.equal(again.status, 303);
    assert.equal(again.headers.get('location'), '/signin');
  });

  test('sign-in: wrong password and unknown email get the same answer; the right one starts a new session', async () => {
    const c = new UiClient(rig);
    const bad = await signIn(c, EMAIL, 'not the password at all');
    assert.equal(bad.status, 401);
    const badText = textOf(await bad.text());
    const unknown = await signIn(c, 'nobody@example.com', PASSWORD);
    assert.equal(unknown.status, 401);
    assert.equal(textOf(await unknown.text()), badText);
    assert.match(badText, /Wrong email or password/);
    assert.ok(!c.jar.has('dropkey_session'));

    const page = await c.page('/signin?next=%2Faudit');
    const ok = await c.post('/signin', { _csrf: csrfOf(page), email: EMAIL, password: PASSWORD, next: '/audit' });
    assert.equal(ok.status, 303);
    assert.equal(ok.headers.get('location'), '/audit');
    assert.ok(c.jar.has('dropkey_session'));

    // An open redirect through `next` is refused.
    const c2 = new UiClient(rig);
    const p2 = await c2.page('/signin');
    const evil = await c2.post('/signin', { _csrf: csrfOf(p2), email: EMAIL, password: PASSWORD, next: '//evil.example/' });
    assert.equal(evil.headers.get('location'), '/connections');
  });

  test('pages need a session; sign-out ends it server-side', async () => {
    const anon = new UiClient(rig);
    for (const path of ['/connections', '/apps', '/api-keys', '/audit', '/connections/x', '/ui/fragments/connections']) {
      const res = await anon.get(path);
      assert.equal(res.status, 303, path);
      assert.equal(res.headers.get('location'), `/signin?next=${encodeURIComponent(path)}`);
    }
    const post = await anon.post('/apps', { name: 'x', key: 'abcd' });
    assert.equal(post.status, 401);

    const c = new UiClient(rig);
    await signIn(c);
    const html = await c.page('/connections');
    const stolen = c.jar.get('dropkey_session')!;
    const out = await c.post('/signout', { _csrf: csrfOf(html) });
    assert.equal(out.status, 303);
    assert.equal(out.headers.get('location'), '/signin?signed_out=1');
    // Replaying the old cookie does not work: the session is gone from the store.
    const replay = new UiClient(rig);
    replay.jar.set('dropkey_session', stolen);
    assert.equal((await replay.get('/connections')).status, 303);
  });

  test('sessions expire with the injected clock', async () => {
    const c = new UiClient(rig);
    await signIn(c);
    assert.equal((await c.get('/connections')).status, 200);
    rig.clock.now += rig.app.services.config.sessionTtlMs + 1000;
    try {
      assert.equal((await c.get('/connections')).status, 303);
    } finally {
      rig.clock.now -= rig.app.services.config.sessionTtlMs + 1000;
    }
  });
});

describe('CSRF', () => {
  test('a state-changing request needs the session token and a same-origin Origin', async () => {
    const form = { name: 'csrfapp', key: emuApp.key, access: 'full', kind: 'user' };
    const cases: [string, Record<string, string>, Record<string, string>][] = [
      ['no token', { ...form }, {}],
      ['wrong token', { ...form, _csrf: `${csrf.slice(0, -1)}${csrf.endsWith('A') ? 'B' : 'A'}` }, {}],
      ['short token', { ...form, _csrf: csrf.slice(0, 10) }, {}],
      ['other origin', { ...form, _csrf: csrf }, { Origin: 'http://evil.example' }],
      ['cross-site fetch metadata', { ...form, _csrf: csrf }, { 'Sec-Fetch-Site': 'cross-site' }],
      ['same-site (sibling subdomain)', { ...form, _csrf: csrf }, { 'Sec-Fetch-Site': 'same-site' }],
    ];
    for (const [what, fields, headers] of cases) {
      const res = await browser.post('/apps', fields, headers);
      assert.equal(res.status, 403, what);
      assert.match(await res.text(), /DROPKEY_CSRF/, what);
    }
    // Another admin session's token does not work for this session.
    const other = new UiClient(rig);
    await signIn(other);
    const otherCsrf = csrfOf(await other.page('/apps'));
    assert.notEqual(otherCsrf, csrf);
    assert.equal((await browser.post('/apps', { ...form, _csrf: otherCsrf })).status, 403);
    await assert.rejects(rig.dk.getApp('csrfapp'), /No app named/);
    // The X-CSRF-Token header (the page script's fetch) works like the field.
    const viaHeader = await browser.post('/apps', { ...form, name: 'hdrapp' }, { 'X-CSRF-Token': csrf });
    assert.equal(viaHeader.status, 303);
    await rig.dk.removeApp('hdrapp');
  });
});

describe('CSRF on every route', () => {
  test('every state-changing UI route refuses a signed-in request without the token', async () => {
    // Taken from the app's route table, so a route added later without guardPost fails here.
    const skip = /^\/(api\/|proxy\/|connect\/|oauth\/)|^\/(signin|setup)$/;
    const posts = [...new Set(rig.app.hono.routes.filter((r) => r.method !== 'GET' && r.method !== 'ALL' && !skip.test(r.path)).map((r) => `${r.method} ${r.path}`))];
    assert.ok(posts.length >= 10, posts.join(', '));
    for (const route of posts) {
      const [method, path] = route.split(' ') as [string, string];
      const url = path.replace(/:[a-z]+/g, 'nojs');
      const res = await browser.request(method, url, { body: 'x=1', headers: { 'Content-Type': 'application/x-www-form-urlencoded', Origin: PUBLIC_URL } });
      assert.equal(res.status, 403, route);
      assert.match(await res.text(), /DROPKEY_CSRF/, route);
    }
  });
});

describe('apps', () => {
  test('add an app: the secret is write-only, the redirect URI and checklist are shown', async () => {
    const bad = await browser.post('/apps', { _csrf: csrf, name: 'main', key: 'no spaces allowed', access: 'full', kind: 'user' });
    assert.equal(bad.status, 400);
    assert.match(textOf(await bad.text()), /does not look like a Dropbox app key/);

    const res = await browser.post('/apps', [
      ['_csrf', csrf], ['name', 'main'], ['key', emuApp.key], ['secret', emuApp.secret], ['access', 'full'], ['kind', 'user'],
      ['scopes', 'account_info.read'], ['scopes', 'files.metadata.read'], ['scopes', 'files.content.read'],
    ]);
    assert.equal(res.status, 303, await res.clone().text());
    assert.equal(res.headers.get('location'), '/apps/main?added=1');
    const app = await rig.dk.getApp('main');
    assert.deepEqual(app.scopes, ['account_info.read', 'files.metadata.read', 'files.content.read']);
    assert.equal(app.hasSecret, true);

    const html = await browser.page('/apps/main?added=1');
    assert.ok(!html.includes(emuApp.secret), 'the secret is never rendered');
    assert.ok(html.includes(`value="${PUBLIC_URL}/oauth/callback"`), 'the exact redirect URI');
    assert.match(html, /data-copy="#redirect-uri"/);
    assert.match(textOf(html), /Redirect URIs.*paste/);
    assert.match(html, /name="scopes" value="files.content.write"(?! checked)/);
    assert.match(html, /name="scopes" value="files.content.read" checked/);
    const list = await browser.page('/apps');
    assert.ok(!list.includes(emuApp.secret));
  });

  test('edit an app: an empty secret keeps the stored one; the key is checked', async () => {
    const before = await rig.store.getApp('main');
    const res = await browser.post('/apps/main', [
      ['_csrf', csrf], ['key', emuApp.key], ['secret', ''], ['access', 'full'], ['kind', 'user'],
      ['scopes', 'account_info.read'], ['scopes', 'files.metadata.read'], ['scopes', 'files.content.read'], ['scopes', 'files.content.write'],
    ]);
    assert.equal(res.status, 303);
    const afterRec = await rig.store.getApp('main');
    assert.equal(afterRec!.secret, before!.secret);
    assert.ok(afterRec!.scopes.includes('files.content.write'));
    const bad = await browser.post('/apps/main', { _csrf: csrf, key: '', access: 'full', kind: 'user' });
    assert.equal(bad.status, 400);
    assert.match(textOf(await bad.text()), /app key is missing/);
  });
});

let connectedEmail: string;

describe('connections', () => {
  test('no JavaScript: Connect → Dropbox consent → callback → the connection page with the account email', async () => {
    const account = await rig.emu.control.createAccount({ email: 'nojs@example.com' });
    connectedEmail = String(account.email);
    const list = await browser.page('/connections');
    assert.match(list, /data-popup-connect/);
    assert.match(list, /name="mode" value="redirect"/);
    const start = await browser.post('/connections/connect', { _csrf: csrf, mode: 'redirect', connection: 'nojs', app: 'main' });
    assert.equal(start.status, 303);
    const authorize = start.headers.get('location')!;
    assert.ok(authorize.startsWith(`${rig.emu.url}/oauth2/authorize?`), authorize);
    const q = new URL(authorize).searchParams;
    assert.equal(q.get('redirect_uri'), `${PUBLIC_URL}/oauth/callback`);
    assert.equal(q.get('code_challenge_method'), 'S256');

    const consent = await driveConsent(authorize, { account: connectedEmail });
    const back = new URL(consent.location!);
    assert.equal(`${back.origin}${back.pathname}`, `${PUBLIC_URL}/oauth/callback`);
    const cb = await browser.get(`${back.pathname}${back.search}`);
    assert.equal(cb.status, 303, await cb.clone().text());
    assert.equal(cb.headers.get('location'), '/connections/nojs?connected=nojs');

    const detail = await browser.page('/connections/nojs?connected=nojs');
    const text = textOf(detail);
    assert.match(text, /Dropbox is connected as "nojs"/);
    assert.ok(text.includes(connectedEmail));
    assert.match(text, /active/);
    assert.match(text, /account_info\.read/);
    assert.match(detail, /<time class="countdown" datetime="\d{4}-/);
    const rows = await browser.page('/ui/fragments/connections');
    assert.match(rows, /data-connection="nojs"/);
    assert.ok(rows.includes(connectedEmail));

    // The callback URL cannot be replayed.
    const replay = await browser.get(`${back.pathname}${back.search}`);
    assert.equal(replay.status, 410);
  });

  test('popup mode: the start answers JSON; the callback page reports to the opener through popup.js', async () => {
    const account = await rig.emu.control.createAccount({ email: 'popup@example.com' });
    const start = await browser.post('/connections/connect', { mode: 'popup', connection: 'pop', app: 'main' }, { Accept: 'application/json', 'X-CSRF-Token': csrf });
    assert.equal(start.status, 200);
    const { authorize_url } = (await start.json()) as { authorize_url: string };
    const consent = await driveConsent(authorize_url, { account: String(account.email) });
    const back = new URL(consent.location!);
    const cb = await browser.get(`${back.pathname}${back.search}`);
    assert.equal(cb.status, 200);
    const html = await cb.text();
    assertNoInlineScript(html);
    assert.match(html, /<script src="\/oauth\/popup\.js" defer><\/script>/);
    const data = /data-result="([^"]*)"/.exec(html)![1]!.replace(/&quot;/g, '"');
    assert.deepEqual(JSON.parse(data), { ok: true, connection: 'pop', email: 'popup@example.com', created: true });

    const bad = await browser.post('/connections/connect', { mode: 'popup', connection: 'bad name', app: 'main' }, { Accept: 'application/json', 'X-CSRF-Token': csrf });
    assert.equal(bad.status, 400);
    assert.match(((await bad.json()) as { error: { message: string } }).error.message, /Invalid connection name/);
  });

  test('a login started in one admin session cannot be finished in another browser', async () => {
    const start = await browser.post('/connections/connect', { _csrf: csrf, mode: 'redirect', connection: 'stolen', app: 'main' });
    const consent = await driveConsent(start.headers.get('location')!, { account: connectedEmail });
    const back = new URL(consent.location!);
    const other = new UiClient(rig);
    await signIn(other);
    const cb = await other.get(`${back.pathname}${back.search}`);
    assert.equal(cb.status, 403);
    await assert.rejects(rig.dk.get('stolen'), /stolen/);
  });

  test('detail actions: Test calls Dropbox, Refresh now renews, Reconnect page, connect link shown once', async () => {
    // POST-redirect-GET: the result is shown by the page the POST redirects to, once; a reload tests nothing.
    const tested = await browser.post('/connections/nojs/test', { _csrf: csrf });
    assert.equal(tested.status, 303);
    assert.equal(tested.headers.get('location'), '/connections/nojs?tested=1');
    assert.ok(textOf(await browser.page('/connections/nojs?tested=1')).includes(`Dropbox answered:`));
    const reqs = await rig.emu.control.requests();
    assert.ok(reqs.some((r) => r.path === '/2/users/get_current_account'));

    const before = await rig.dk.get('nojs');
    rig.clock.now += 60_000;
    const refreshed = await browser.post('/connections/nojs/refresh', { _csrf: csrf });
    assert.equal(refreshed.status, 303);
    assert.equal(refreshed.headers.get('location'), '/connections/nojs?refreshed=1');
    const after = await rig.dk.get('nojs');
    assert.ok(after.lastRefreshAt !== null && after.lastRefreshAt > (before.lastRefreshAt ?? 0));

    const reconnect = await browser.page('/connections/nojs/reconnect');
    assert.match(reconnect, /name="connection" value="nojs"/);
    assert.match(textOf(reconnect), /Reconnect nojs/);

    const link = await browser.post('/connect-links', { _csrf: csrf, connection: 'owner', minutes: '30' });
    assert.equal(link.status, 201);
    const html = await link.text();
    assert.equal(link.headers.get('cache-control'), 'no-store');
    const url = /id="link-url"[^>]*value="([^"]+)"/.exec(html)![1]!;
    assert.match(url, new RegExp(`^${PUBLIC_URL}/connect/[A-Za-z0-9_-]{43}$`));
    const links = await rig.serverStore.listConnectLinks(rig.clock.now);
    const rec = links.find((l) => l.connection === 'owner')!;
    assert.equal(rec.expiresAt - rec.createdAt, 30 * 60_000);
    // The link page works for the owner, with no dropkey login.
    const owner = await new UiClient(rig).get(new URL(url).pathname);
    assert.equal(owner.status, 200);

    const badLink = await browser.post('/connect-links', { _csrf: csrf, connection: 'owner', minutes: '0' });
    assert.equal(badLink.status, 400);
    const badText = textOf(await badLink.text());
    assert.match(badText, /No link was created/);
    // The form asks for minutes, so the error speaks of minutes.
    assert.match(badText, /from 1 to 10080 minutes/);
    assert.doesNotMatch(badText, /seconds/);
    const tooLong = await browser.post('/connect-links', { _csrf: csrf, connection: 'owner', minutes: '10081' });
    assert.equal(tooLong.status, 400);
    assert.match(textOf(await tooLong.text()), /from 1 to 10080 minutes/);
  });

  test('revoke: without script a confirmation page first, then revoked at Dropbox and gone from the list', async () => {
    const ask = await browser.post('/connections/pop/revoke', { _csrf: csrf });
    assert.equal(ask.status, 200);
    assert.match(textOf(await ask.text()), /Revoke pop\?/);
    assert.ok(await rig.dk.get('pop'));

    const done = await browser.post('/connections/pop/revoke', { _csrf: csrf, confirmed: 'yes' });
    assert.equal(done.status, 303);
    assert.equal(done.headers.get('location'), '/connections?revoked=pop');
    await assert.rejects(rig.dk.get('pop'), /pop/);
    const list = await browser.page('/connections?revoked=pop');
    assert.match(textOf(list), /Connection "pop" was revoked and deleted/);
    assert.ok(!list.includes('data-connection="pop"'));
    assert.ok(rig.events.some((e) => e.type === 'connection.revoked' && e.connection === 'pop'));
    const reqs = await rig.emu.control.requests();
    assert.ok(reqs.some((r) => r.path === '/2/auth/token/revoke'));
  });
});

describe('API keys and audit log', () => {
  test('create shows the key once; it works on the API; the list never shows it; revoke', async () => {
    const res = await browser.post('/api-keys', [['_csrf', csrf], ['name', 'airflow'], ['permissions', 'token:read'], ['connections', 'nojs']]);
    assert.equal(res.status, 201);
    const html = await res.text();
    const key = /id="new-key"[^>]*value="(dk_[A-Za-z0-9_-]{43})"/.exec(html)![1]!;
    const token = await rig.call('GET', '/api/v1/connections/nojs/token', { key });
    assert.equal(token.status, 200);
    assert.equal((await rig.call('GET', '/api/v1/connections/other/token', { key })).status, 403);

    const list = await browser.page('/api-keys');
    assert.ok(!list.includes(key), 'the key is shown only once');
    assert.ok(list.includes(key.slice(0, 11)), 'its prefix identifies it');

    const audit = await browser.page('/audit');
    const text = textOf(audit);
    for (const action of ['admin.created', 'admin.signed_in', 'admin.sign_in_failed', 'app.created', 'connection.created', 'connection.refreshed', 'connection.revoked', 'connect_link.created', 'apikey.created', 'token.handout']) {
      assert.ok(text.includes(action), `audit shows ${action}`);
    }
    assert.match(audit, /<td data-label="API key">airflow<\/td><td data-label="Tokens handed out" class="num">1<\/td>/, 'hand-outs counted per key');
    const filtered = textOf(await browser.page('/audit?action=apikey.created'));
    assert.ok(!filtered.includes('connection.revoked'));

    const noPerm = await browser.post('/api-keys', [['_csrf', csrf], ['name', 'nothing']]);
    assert.equal(noPerm.status, 400);
    assert.match(textOf(await noPerm.text()), /at least one permission/);

    const revoked = await browser.post('/api-keys/airflow/revoke', { _csrf: csrf });
    assert.equal(revoked.status, 303);
    assert.equal((await rig.call('GET', '/api/v1/connections/nojs/token', { key })).status, 401);
  });
});

describe('rate limits and https cookies', () => {
  test('sign-in is rate limited per client: 429 with Retry-After, and the clock refills it', async () => {
    const c = new UiClient(rig);
    const page = await c.page('/signin');
    let last: Response | undefined;
    for (let i = 0; i < 12; i++) {
      last = await c.post('/signin', { _csrf: csrfOf(page), email: EMAIL, password: 'wrong password here' });
      if (last.status === 429) break;
    }
    assert.equal(last!.status, 429);
    assert.ok(Number(last!.headers.get('retry-after')) > 0);
    rig.clock.now += 120_000;
    const ok = await c.post('/signin', { _csrf: csrfOf(page), email: EMAIL, password: PASSWORD });
    assert.equal(ok.status, 303);
  });

  test('under https the session cookie is Secure and __Host- prefixed', async () => {
    const https = await makeServerRig({ config: { publicUrl: 'https://dropkey.example.com' } });
    try {
      const setup = new URL((await ensureSetupToken(https.app.services))!);
      const c = new UiClient(https, 'https://dropkey.example.com');
      const html = await c.page(`/setup${setup.search}`);
      assert.ok([...c.jar.keys()].every((k) => k.startsWith('__Host-')));
      const res = await c.post('/setup', { _csrf: csrfOf(html), token: setup.searchParams.get('token')!, email: EMAIL, password: PASSWORD, password2: PASSWORD });
      assert.equal(res.status, 303);
      const cookie = c.lastSetCookies.find((x) => x.startsWith('__Host-dropkey_session='));
      assert.ok(cookie);
      assert.match(cookie, /Secure/);
      assert.match(cookie, /HttpOnly/);
      assert.match(cookie, /Path=\//);
      assert.doesNotMatch(cookie, /Domain=/i);
    } finally {
      await https.close();
    }
  });
});

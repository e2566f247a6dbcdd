/**
 * Connect links end to end (docs/web-ui.md POST /connect-links): the API makes a link, the owner
 * opens it, clicks Connect, approves on the emulator's consent page (driven over HTTP like a browser without
 * JavaScript), and Dropbox's redirect to /oauth/callback creates the connection. Single use, expiry (injected
 * clock), browser binding, cancel.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { driveConsent } from '../helpers/consent.js';
import { startBrowserLogin } from '../../src/server/oauth/flow.js';
import { makeServerRig, PUBLIC_URL, type ServerRig } from './rig.js';

let rig: ServerRig;
let admin: string;

before(async () => {
  rig = await makeServerRig();
  await rig.dropboxApp('main');
  admin = await rig.key(['admin'], '*');
});
after(async () => rig.close());

async function newLink(connection: string, extra: Record<string, unknown> = {}): Promise<{ path: string; url: string; expires_at: string }> {
  const res = await rig.call('POST', '/api/v1/connect-links', { key: admin, body: { connection, app: 'main', ...extra } });
  assert.equal(res.status, 201, await res.clone().text());
  const body = (await res.json()) as { url: string; expires_at: string };
  return { ...body, path: new URL(body.url).pathname };
}

/** Opens the link and clicks Connect; returns the Dropbox authorize URL and the browser's cookie. */
async function start(path: string, cookie?: string): Promise<{ authorize: string; cookie: string }> {
  const page = await rig.call('GET', path);
  assert.equal(page.status, 200);
  const html = await page.text();
  assert.match(html, /<form method="post" action="\/connect\/[A-Za-z0-9_-]{43}">/);
  assert.ok(!/<script>|\son[a-z]+=/i.test(html), "no inline script");
  const res = await rig.call('POST', path, cookie ? { headers: { Cookie: cookie } } : {});
  assert.equal(res.status, 303);
  const authorize = res.headers.get('location')!;
  assert.ok(authorize.startsWith(`${rig.emu.url}/oauth2/authorize?`), authorize);
  const setCookie = res.headers.getSetCookie().find((c) => c.startsWith('dropkey_oauth='));
  assert.ok(setCookie, 'a browser-binding cookie');
  assert.match(setCookie, /HttpOnly/i);
  assert.match(setCookie, /SameSite=Lax/i);
  return { authorize, cookie: setCookie.split(';')[0]! };
}

function callbackPath(location: string | undefined): string {
  assert.ok(location, 'the consent page redirected');
  const u = new URL(location);
  assert.equal(`${u.origin}${u.pathname}`, `${PUBLIC_URL}/oauth/callback`);
  return `${u.pathname}${u.search}`;
}

describe('connect links', () => {
  test('link → consent → callback creates the connection; the link and the callback are single-use', async () => {
    const account = await rig.emu.control.createAccount({ email: 'owner1@example.com' });
    const link = await newLink('owner1');
    const { authorize, cookie } = await start(link.path);
    const q = new URL(authorize).searchParams;
    assert.equal(q.get('code_challenge_method'), 'S256');
    assert.equal(q.get('token_access_type'), 'offline');
    assert.equal(q.get('redirect_uri'), `${PUBLIC_URL}/oauth/callback`);
    assert.ok((q.get('state') ?? '').length >= 32);
    const consent = await driveConsent(authorize, { account: 'owner1@example.com' });
    const cb = callbackPath(consent.location);
    const done = await rig.call('GET', cb, { headers: { Cookie: cookie } });
    const html = await done.text();
    assert.equal(done.status, 200, html);
    assert.match(html, /Dropbox is connected as owner1@example\.com/);

    const reader = await rig.key(['token:read'], ['owner1']);
    const info = (await (await rig.call('GET', '/api/v1/connections/owner1', { key: reader })).json()) as any;
    assert.equal(info.connection.account_id, account.account_id);
    assert.equal(info.connection.refreshable, true);
    const tok = (await (await rig.call('GET', '/api/v1/connections/owner1/token', { key: reader })).json()) as any;
    assert.equal((await rig.emu.rpc('users/get_current_account', undefined, tok.access_token)).json.email, 'owner1@example.com');

    const audit = await rig.serverStore.listAudit({ action: 'connection.created', target: 'owner1' });
    assert.equal(audit.length, 1);
    assert.match(audit[0]!.actor, /^link:/);
    assert.ok(rig.events.some((e) => e.type === 'connection.created' && e.connection === 'owner1' && e.data['email'] === 'owner1@example.com'));

    // Single use: the link is dead, and the same callback cannot be replayed.
    assert.equal((await rig.call('GET', link.path)).status, 410);
    assert.equal((await rig.call('POST', link.path)).status, 410);
    const replay = await rig.call('GET', cb, { headers: { Cookie: cookie } });
    assert.equal(replay.status, 410);
    assert.match(replay.headers.get('content-type') ?? '', /text\/html/);
  });

  test('a link expires after 30 minutes (injected clock), and a custom expires_in is honoured', async () => {
    const link = await newLink('late');
    rig.clock.now += 29 * 60_000;
    assert.equal((await rig.call('GET', link.path)).status, 200);
    rig.clock.now += 60_001;
    const res = await rig.call('GET', link.path);
    assert.equal(res.status, 410);
    assert.match(await res.text(), /expired/);
    const short = await newLink('late', { expires_in: 120 });
    assert.equal(new Date(short.expires_at).getTime(), rig.clock.now + 120_000);
  });

  test('a link started before expiry but finished after it is refused at the callback', async () => {
    await rig.emu.control.createAccount({ email: 'slow@example.com' });
    const link = await newLink('slow', { expires_in: 60 });
    const { authorize, cookie } = await start(link.path);
    const consent = await driveConsent(authorize, { account: 'slow@example.com' });
    rig.clock.now += 61_000;
    const res = await rig.call('GET', callbackPath(consent.location), { headers: { Cookie: cookie } });
    assert.equal(res.status, 410);
    assert.equal((await rig.dk.list()).some((c) => c.name === 'slow'), false);
  });

  test('the callback is bound to the browser that started it; a cancel at Dropbox keeps the link usable', async () => {
    await rig.emu.control.createAccount({ email: 'bound@example.com' });
    const link = await newLink('bound');
    // Another browser (no cookie, or a different one) cannot finish the login.
    let s = await start(link.path);
    let consent = await driveConsent(s.authorize, { account: 'bound@example.com' });
    let res = await rig.call('GET', callbackPath(consent.location), { headers: { Cookie: 'dropkey_oauth=' + 'x'.repeat(43) } });
    assert.equal(res.status, 403);
    assert.match(await res.text(), /another browser/);
    assert.equal((await rig.dk.list()).some((c) => c.name === 'bound'), false);

    // Cancel at Dropbox: the callback gets error=access_denied; nothing is created and the link still works.
    s = await start(link.path);
    consent = await driveConsent(s.authorize, { button: /cancel/i });
    res = await rig.call('GET', callbackPath(consent.location), { headers: { Cookie: s.cookie } });
    assert.equal(res.status, 400);
    // The owner has no dropkey command line: the page tells them to use the link again or ask for a new one.
    const cancelled = await res.text();
    assert.match(cancelled, /Open the link you were sent again/);
    assert.match(cancelled, /ask the admin who sent it for a new one/);
    assert.doesNotMatch(cancelled, /dropkey login|start the login again|log in again/i);
    assert.equal((await rig.call('GET', link.path)).status, 200, 'the link survives a cancelled consent');

    // The same browser can then finish.
    s = await start(link.path, s.cookie);
    consent = await driveConsent(s.authorize, { account: 'bound@example.com' });
    res = await rig.call('GET', callbackPath(consent.location), { headers: { Cookie: s.cookie } });
    assert.equal(res.status, 200, await res.clone().text());
    assert.equal((await rig.call('GET', link.path)).status, 410);
  });

  test('a callback forwarded to another browser is refused without using up the pending login', async () => {
    await rig.emu.control.createAccount({ email: 'forwarded@example.com' });
    const link = await newLink('forwarded');
    const s = await start(link.path);
    const consent = await driveConsent(s.authorize, { account: 'forwarded@example.com' });
    const cb = callbackPath(consent.location);
    for (const headers of [{ Cookie: 'dropkey_oauth=' + 'y'.repeat(43) }, undefined]) {
      const res = await rig.call('GET', cb, headers ? { headers } : {});
      assert.equal(res.status, 403);
      assert.match(await res.text(), /another browser/);
    }
    // The browser that started it still finishes with the same redirect.
    const res = await rig.call('GET', cb, { headers: { Cookie: s.cookie } });
    assert.equal(res.status, 200, await res.clone().text());
    assert.equal((await rig.dk.list()).some((c) => c.name === 'forwarded'), true);
    assert.equal((await rig.call('GET', cb, { headers: { Cookie: s.cookie } })).status, 410, 'still single-use');
  });

  test('unknown or malformed link tokens get a 404 page; the callback without state gets 410', async () => {
    assert.equal((await rig.call('GET', '/connect/abc')).status, 404);
    assert.equal((await rig.call('GET', `/connect/${'A'.repeat(43)}`)).status, 404);
    assert.equal((await rig.call('GET', '/oauth/callback')).status, 410);
    assert.equal((await rig.call('GET', '/oauth/callback?state=nope&code=x')).status, 410);
  });

  test('opening links is rate limited per client', async () => {
    let limited: Response | undefined;
    for (let i = 0; i < 100 && !limited; i++) {
      const res = await rig.call('GET', `/connect/${'B'.repeat(43)}`);
      if (res.status === 429) limited = res;
    }
    assert.ok(limited, 'got a 429');
    assert.ok(Number(limited.headers.get('retry-after')) >= 1);
    rig.clock.now += 120_000;
    assert.equal((await rig.call('GET', `/connect/${'B'.repeat(43)}`)).status, 404);
  });

  test('the logs contain no token, code, state or link token', async () => {
    const all = rig.logs.join('');
    for (const t of await rig.issuedTokens()) assert.ok(!all.includes(t), 'token in logs');
    assert.ok(!/\/connect\/[A-Za-z0-9_-]{43}/.test(all), 'link token in logs');
    assert.ok(!/code=|state=/.test(all), 'callback query in logs');
  });

  test('popup and redirect return modes (the UI flows) answer through the same callback', async () => {
    await rig.emu.control.createAccount({ email: 'pop@example.com' });
    const binding = 'p'.repeat(43);
    const cookie = `dropkey_oauth=${binding}`;
    let authorize = await startBrowserLogin(rig.app.services, { connection: 'popped', app: 'main', returnMode: 'popup', actor: 'admin:a@example.com', binding });
    let consent = await driveConsent(authorize, { account: 'pop@example.com' });
    let res = await rig.call('GET', callbackPath(consent.location), { headers: { Cookie: cookie } });
    assert.equal(res.status, 200);
    const html = await res.text();
    assert.match(html, /<script src="\/oauth\/popup\.js" defer><\/script>/);
    const data = JSON.parse(/data-result="([^"]*)"/.exec(html)![1]!.replace(/&quot;/g, '"').replace(/&amp;/g, '&'));
    assert.deepEqual(data, { ok: true, connection: 'popped', email: 'pop@example.com', created: true });
    const js = await rig.call('GET', '/oauth/popup.js');
    assert.match(js.headers.get('content-type') ?? '', /javascript/);
    assert.match(await js.text(), /postMessage\(result, window\.location\.origin\)/);

    // A failure in popup mode still answers with the popup page, carrying the error for the opener.
    authorize = await startBrowserLogin(rig.app.services, { connection: 'popped', app: 'main', returnMode: 'popup', actor: 'admin:a@example.com', binding });
    consent = await driveConsent(authorize, { button: /cancel/i });
    res = await rig.call('GET', callbackPath(consent.location), { headers: { Cookie: cookie } });
    assert.equal(res.status, 400);
    assert.match(await res.text(), /data-result="\{&quot;ok&quot;:false/);

    authorize = await startBrowserLogin(rig.app.services, { connection: 'popped', app: 'main', returnMode: 'redirect', returnTo: '/connections/popped', actor: 'admin:a@example.com', binding });
    consent = await driveConsent(authorize, { account: 'pop@example.com' });
    res = await rig.call('GET', callbackPath(consent.location), { headers: { Cookie: cookie } });
    assert.equal(res.status, 303);
    assert.equal(res.headers.get('location'), '/connections/popped?connected=popped');
    assert.ok(rig.events.some((e) => e.type === 'connection.reconnected' && e.connection === 'popped'));
    await assert.rejects(
      startBrowserLogin(rig.app.services, { connection: 'popped', app: 'main', returnMode: 'redirect', returnTo: '//evil.example/x', actor: 'a', binding }),
      { code: 'DROPKEY_BAD_INPUT' },
    );
  });
});

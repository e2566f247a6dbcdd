/**
 * A refresh asked for by an admin (POST /api/v1/connections/{name}/refresh, the web UI's "Refresh now") that fails
 * is reported as such: never a 2xx even while the old access token still works, the same connection events as the
 * token API (connection.refresh_failed, connection.needs_reauth, for webhooks), and the reconnect URL when Dropbox
 * rejected the refresh token. Against the emulator, on injected timers.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { hashPassword } from '../../src/server/security/secrets.js';
import { makeRig, PUBLIC_URL, type Instance, type Rig } from './webhooks-rig.js';
import type { ServerRig } from './rig.js';
import { csrfOf, textOf, UiClient } from './ui-client.js';

const EMAIL = 'admin@example.com';
const PASSWORD = 'correct horse battery staple';
let rig: Rig;
let inst: Instance;
let admin: string;
let browser: UiClient;

before(async () => {
  rig = await makeRig();
  inst = await rig.instance({ ui: true, start: false });
  admin = await inst.key(['admin', 'token:read'], '*');
  await inst.serverStore.createAdmin({ email: EMAIL, passwordHash: await hashPassword(PASSWORD, randomBytes) }, rig.timers.now());
  browser = new UiClient(inst as unknown as ServerRig);
  const signin = await browser.page('/signin');
  assert.equal((await browser.post('/signin', { _csrf: csrfOf(signin), email: EMAIL, password: PASSWORD })).status, 303);
});
after(async () => {
  await rig.close();
});

function eventsOf(name: string): [string, unknown][] {
  return inst.events.filter((e) => e.connection === name).map((e) => [e.type, e.data['detected_by']]);
}

interface ErrorAnswer {
  error: { code: string; message: string; hint?: string; details?: Record<string, unknown> };
}

describe('POST /api/v1/connections/{name}/refresh', () => {
  test('Dropbox down while the old token still works → 503 DROPKEY_DROPBOX_UNAVAILABLE, refreshed: false, one event', async () => {
    const c = await rig.connection(inst.dk, 'apidown');
    await rig.emu.control.fault({ route: 'oauth2/token', status: 503, count: 10 });
    try {
      const res = await inst.call('POST', '/api/v1/connections/apidown/refresh', { key: admin });
      const body = (await res.json()) as ErrorAnswer;
      assert.equal(res.status, 503, JSON.stringify(body));
      assert.equal(body.error.code, 'DROPKEY_DROPBOX_UNAVAILABLE');
      assert.match(body.error.message, /^Refreshing connection "apidown" failed: .* The current access token still works until \d{4}-/);
      assert.equal(body.error.details?.['refreshed'], false);
      assert.equal(typeof body.error.details?.['access_token_expires_at'], 'string');
      assert.ok(!JSON.stringify(body).includes(c.refreshToken) && !JSON.stringify(body).includes(c.accessToken));
    } finally {
      await rig.emu.control.clearFaults();
    }
    assert.deepEqual(eventsOf('apidown'), [['connection.refresh_failed', 'refresh_request']]);
    // Token readers are not affected: the old token is still handed out, and the connection stays active.
    const token = await inst.call('GET', '/api/v1/connections/apidown/token', { key: admin });
    assert.equal(token.status, 200);
    assert.equal(((await token.json()) as { access_token: string }).access_token, c.accessToken);
    const info = await inst.dk.get('apidown');
    assert.equal(info.state, 'active');
    assert.match(info.lastError ?? '', /Refreshing the access token failed/);

    // Once Dropbox is back, the same request refreshes (200, a new token) and lastError is cleared.
    const ok = await inst.call('POST', '/api/v1/connections/apidown/refresh', { key: admin });
    assert.equal(ok.status, 200);
    assert.equal(((await ok.json()) as { connection: { last_error: string | null } }).connection.last_error, null);
    assert.notEqual(await inst.dk.getAccessToken('apidown'), c.accessToken);
  });

  test('refresh token revoked at Dropbox → 409 DROPKEY_REAUTH_REQUIRED with the reconnect URL, needs_reauth once', async () => {
    const c = await rig.connection(inst.dk, 'apigone');
    await rig.emu.rpc('auth/token/revoke', undefined, c.accessToken);
    const res = await inst.call('POST', '/api/v1/connections/apigone/refresh', { key: admin });
    const body = (await res.json()) as ErrorAnswer;
    assert.equal(res.status, 409, JSON.stringify(body));
    assert.equal(body.error.code, 'DROPKEY_REAUTH_REQUIRED');
    assert.equal(body.error.details?.['reconnect_url'], `${PUBLIC_URL}/connections/apigone/reconnect`);
    const again = await inst.call('POST', '/api/v1/connections/apigone/refresh', { key: admin });
    assert.equal(again.status, 409);
    assert.deepEqual(eventsOf('apigone'), [['connection.needs_reauth', 'refresh_request']]);
  });
});

describe('web UI "Refresh now"', () => {
  test('Dropbox down → an error in plain words on the detail page, refresh_failed event detected by the UI', async () => {
    const c = await rig.connection(inst.dk, 'uidown');
    const detail = await browser.page('/connections/uidown');
    await rig.emu.control.fault({ route: 'oauth2/token', status: 503, count: 10 });
    let res: Response;
    try {
      res = await browser.post('/connections/uidown/refresh', { _csrf: csrfOf(detail) });
    } finally {
      await rig.emu.control.clearFaults();
    }
    // POST-redirect-GET: the failure is shown on the page the POST redirects to.
    assert.equal(res.status, 303);
    assert.equal(res.headers.get('location'), '/connections/uidown?refresh_failed=1');
    const text = textOf(await browser.page('/connections/uidown?refresh_failed=1'));
    assert.match(text, /Refreshing failed: Refreshing connection "uidown" failed: .* The current access token still works until/);
    assert.ok(!text.includes(c.accessToken) && !text.includes(c.refreshToken));
    assert.deepEqual(eventsOf('uidown'), [['connection.refresh_failed', 'ui']]);
    assert.equal(await inst.dk.getAccessToken('uidown'), c.accessToken, 'the old token is kept');
  });

  test('refresh token revoked → the page says to connect it again (with the link), needs_reauth event once', async () => {
    const c = await rig.connection(inst.dk, 'uigone');
    const detail = await browser.page('/connections/uigone');
    await rig.emu.rpc('auth/token/revoke', undefined, c.accessToken);
    const res = await browser.post('/connections/uigone/refresh', { _csrf: csrfOf(detail) });
    assert.equal(res.status, 303);
    const html = await browser.page(res.headers.get('location')!);
    const text = textOf(html);
    assert.match(text, /Refreshing failed: .*An admin must connect it again: http:\/\/127\.0\.0\.1:8999\/connections\/uigone\/reconnect/);
    assert.match(html, /<a class="fix" href="\/connections\/uigone\/reconnect">/, 'the fix is a link');
    // The page now shows the new state, and no countdown for a token that cannot be used.
    assert.match(text, /uigone needs re-auth/);
    assert.doesNotMatch(html, /class="countdown"/);
    assert.equal((await browser.post('/connections/uigone/refresh', { _csrf: csrfOf(detail) })).status, 303);
    assert.deepEqual(eventsOf('uigone'), [['connection.needs_reauth', 'ui']]);
    assert.equal((await inst.dk.get('uigone')).state, 'needs_reauth');
  });
});

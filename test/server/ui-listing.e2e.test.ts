/**
 * Connections at scale and the connection pages' details (docs/web-ui.md, docs/api.md): the list API and the web
 * UI's connections page come a page at a time (keyset cursor), search name, account and team, filter by state and
 * stay small whatever the number of connections; Test and Refresh answer with a redirect (a reload repeats
 * nothing); access-token-only connections say they cannot be renewed; only working connections count down; the
 * usage snippet names this server and the connection; the app page shows its scopes and connects an account.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { hashPassword } from '../../src/server/security/secrets.js';
import type { ConnectionState } from '../../src/store/types.js';
import { makeServerRig, PUBLIC_URL, type ServerRig } from './rig.js';
import { csrfOf, textOf, UiClient } from './ui-client.js';

const EMAIL = 'admin@example.com';
const PASSWORD = 'correct horse battery staple';

let rig: ServerRig;
let browser: UiClient;
let live: { accountId: string; email: string; refreshToken: string };

/** The seeded connections: c-000 … c-129, every 10th on team "Acme Corp", every 7th needing re-auth. */
const N = 130;
const nameOf = (i: number) => `c-${String(i).padStart(3, '0')}`;
const stateOf = (i: number): ConnectionState => (i % 7 === 0 ? 'needs_reauth' : 'active');

async function json(res: Response): Promise<any> {
  const text = await res.text();
  assert.match(res.headers.get('content-type') ?? '', /json/, text.slice(0, 200));
  return JSON.parse(text);
}

async function seed(from: number, to: number): Promise<void> {
  for (let i = from; i < to; i++) {
    await rig.store.createConnection({
      name: nameOf(i),
      app: 'main',
      accountId: `dbid:seed-${i}`,
      teamId: i % 10 === 0 ? 'dbtid:acme' : null,
      email: `owner${i}@example.com`,
      displayName: `Owner ${i}`,
      teamName: i % 10 === 0 ? 'Acme Corp' : null,
      scopes: ['files.content.read'],
      accessToken: `sl.seeded-access-${i}-${'A'.repeat(30)}`,
      accessTokenExpiresAt: rig.clock.now + 3 * 3600_000,
      refreshToken: i === 5 ? null : `seeded-refresh-${i}-${'R'.repeat(30)}`,
      state: stateOf(i),
      lastError: null,
      lastRefreshAt: null,
    });
  }
}

before(async () => {
  rig = await makeServerRig();
  await rig.dropboxApp('main');
  await seed(0, N);
  live = await rig.connection('live');
  await rig.serverStore.createAdmin({ email: EMAIL, passwordHash: await hashPassword(PASSWORD, randomBytes) }, rig.clock.now);
  browser = new UiClient(rig);
  const signin = await browser.page('/signin');
  assert.equal((await browser.post('/signin', { _csrf: csrfOf(signin), email: EMAIL, password: PASSWORD })).status, 303);
});
after(async () => rig.close());

const all = () => [...Array.from({ length: N }, (_, i) => nameOf(i)), 'live'].sort();

describe('GET /api/v1/connections pages and searches', () => {
  test('100 per page by default; next_cursor walks every connection once, in name order; null on the last page', async () => {
    const key = await rig.key(['token:read'], '*');
    const first = await json(await rig.call('GET', '/api/v1/connections', { key }));
    assert.equal(first.connections.length, 100);
    assert.equal(typeof first.next_cursor, 'string');
    const second = await json(await rig.call('GET', `/api/v1/connections?cursor=${first.next_cursor}`, { key }));
    assert.equal(second.next_cursor, null);
    assert.deepEqual([...first.connections, ...second.connections].map((c: any) => c.name), all());

    const seen: string[] = [];
    let cursor: string | null = null;
    do {
      const page: any = await json(await rig.call('GET', `/api/v1/connections?limit=7${cursor ? `&cursor=${cursor}` : ''}`, { key }));
      assert.ok(page.connections.length <= 7);
      seen.push(...page.connections.map((c: any) => c.name));
      cursor = page.next_cursor;
    } while (cursor);
    assert.deepEqual(seen, all());
    assert.ok(!/access_token|refresh_token|seeded-refresh|sl\.seeded/.test(JSON.stringify(first)), 'never a token');
    const five = first.connections.find((c: any) => c.name === 'c-005');
    assert.equal(five.refreshable, false, 'access-token-only');
  });

  test('q searches name, email, account id and team; state filters; both combine with paging', async () => {
    const key = await rig.key(['admin'], '*');
    const names = async (qs: string) => (await json(await rig.call('GET', `/api/v1/connections?${qs}`, { key }))).connections.map((c: any) => c.name);
    assert.deepEqual(await names('q=OWNER17%40example'), ['c-017'], 'email, case-insensitive');
    assert.deepEqual(await names('q=dbid%3Aseed-42'), ['c-042'], 'account id');
    assert.deepEqual(await names('q=c-12'), ['c-120', 'c-121', 'c-122', 'c-123', 'c-124', 'c-125', 'c-126', 'c-127', 'c-128', 'c-129'], 'name');
    const acme = await names('q=acme%20corp');
    assert.deepEqual(acme, Array.from({ length: 13 }, (_, i) => nameOf(i * 10)), 'team name');
    const reauth = await names('state=needs_reauth');
    assert.deepEqual(reauth, Array.from({ length: 19 }, (_, i) => nameOf(i * 7)));
    assert.deepEqual(await names('state=needs_reauth&q=acme'), ['c-000', 'c-070']);
    const p1 = await json(await rig.call('GET', '/api/v1/connections?q=acme&limit=5', { key }));
    const p2 = await json(await rig.call('GET', `/api/v1/connections?q=acme&limit=5&cursor=${p1.next_cursor}`, { key }));
    assert.deepEqual([...p1.connections, ...p2.connections].map((c: any) => c.name), acme.slice(0, 10));
    assert.deepEqual(await names('q=nobody-like-this'), []);
  });

  test('a key scoped to some connections pages and searches only those', async () => {
    const key = await rig.key(['proxy'], ['c-010', 'c-011', 'c-020', 'live']);
    const body = await json(await rig.call('GET', '/api/v1/connections?limit=2', { key }));
    assert.deepEqual(body.connections.map((c: any) => c.name), ['c-010', 'c-011']);
    const rest = await json(await rig.call('GET', `/api/v1/connections?limit=2&cursor=${body.next_cursor}`, { key }));
    assert.deepEqual(rest.connections.map((c: any) => c.name), ['c-020', 'live']);
    const acme = await json(await rig.call('GET', '/api/v1/connections?q=acme', { key }));
    assert.deepEqual(acme.connections.map((c: any) => c.name), ['c-010', 'c-020']);
  });

  test('bad limit, cursor or state: 400 DROPKEY_BAD_INPUT saying what is allowed', async () => {
    const key = await rig.key(['token:read'], '*');
    for (const [qs, re] of [
      ['limit=0', /limit must be a whole number from 1 to 1000/],
      ['limit=1001', /limit/],
      ['limit=ten', /limit/],
      ['cursor=not-a-cursor', /cursor is not one this server gave out/],
      ['state=sleeping', /state must be one of active, needs_reauth, revoked/],
      [`q=${'x'.repeat(201)}`, /at most 200 characters/],
    ] as const) {
      const res = await rig.call('GET', `/api/v1/connections?${qs}`, { key });
      assert.equal(res.status, 400, qs);
      const body = await json(res);
      assert.equal(body.error.code, 'DROPKEY_BAD_INPUT');
      assert.match(body.error.message + ' ' + (body.error.hint ?? ''), re);
    }
  });
});

describe('the connections page pages and searches', () => {
  const rowNames = (html: string) => [...html.matchAll(/<tr data-connection="([^"]+)"/g)].map((m) => m[1]!);

  test('50 rows a page with a Next link that continues where it stopped; the rows fragment follows the page', async () => {
    const html = await browser.page('/connections');
    const first = rowNames(html);
    assert.deepEqual(first, all().slice(0, 50));
    const next = /<a href="(\/connections\?cursor=[^"]+)" rel="next">Next page/.exec(html);
    assert.ok(next, 'a Next page link');
    const page2 = await browser.page(next[1]!.replace(/&amp;/g, '&'));
    assert.deepEqual(rowNames(page2), all().slice(50, 100));
    assert.match(textOf(page2), /First page/);
    const fragment = /data-fragment="([^"]+)"/.exec(page2)![1]!.replace(/&amp;/g, '&');
    const rows = await browser.get(fragment);
    assert.equal(rows.status, 200);
    assert.deepEqual(rowNames(await rows.text()), all().slice(50, 100), 'live updates reload the same page');
    const page3 = await browser.page(/<a href="(\/connections\?cursor=[^"]+)" rel="next">/.exec(page2)![1]!.replace(/&amp;/g, '&'));
    assert.deepEqual(rowNames(page3), all().slice(100));
    assert.doesNotMatch(page3, /rel="next"/, 'no Next link on the last page');
  });

  test('search and state filter; no match says so; a bad cursor is an error on the page', async () => {
    const team = await browser.page('/connections?q=Acme+Corp');
    assert.deepEqual(rowNames(team), Array.from({ length: 13 }, (_, i) => nameOf(i * 10)));
    assert.match(team, /<input type="search" name="q" value="Acme Corp"/, 'the search stays in the box');
    const reauth = await browser.page('/connections?state=needs_reauth&q=acme');
    assert.deepEqual(rowNames(reauth), ['c-000', 'c-070']);
    assert.match(reauth, /<option value="needs_reauth" selected>/);
    const email = await browser.page(`/connections?q=${encodeURIComponent(live.email)}`);
    assert.deepEqual(rowNames(email), ['live']);
    const none = await browser.page('/connections?q=zzz-nothing');
    assert.match(textOf(none), /No connection matches/);
    const bad = await browser.get('/connections?cursor=%25%25');
    assert.equal(bad.status, 400);
    assert.match(textOf(await bad.text()), /The cursor is not one this server gave out/);
  });

  test('a row needing re-auth has no countdown; an access-token-only one is flagged not renewable', async () => {
    const html = await browser.page('/connections?q=c-00');
    const row = (n: string) => new RegExp(`<tr data-connection="${n}">[\\s\\S]*?</tr>`).exec(html)![0];
    assert.doesNotMatch(row('c-000'), /countdown/, 'needs re-auth: nothing to count down');
    assert.match(textOf(row('c-000')), /needs re-auth .*reconnect first/);
    assert.match(row('c-001'), /<time class="countdown"/);
    assert.match(textOf(row('c-005')), /active not renewable/);
    assert.doesNotMatch(textOf(row('c-001')), /not renewable/);
  });

  test('the API keys page offers no checkbox per connection beyond 100: names are typed', async () => {
    const html = await browser.page('/api-keys');
    assert.doesNotMatch(html, /name="connections" value=/);
    assert.match(textOf(html), /Connection names \(comma-separated/);
    assert.ok(Buffer.byteLength(html) < 100 * 1024);
  });

  test('a page stays under 100 KB with 1,200 connections, the same size as with 130', async () => {
    const before = Buffer.byteLength(await browser.page('/connections'));
    await seed(N, 1200);
    try {
      const html = await browser.page('/connections');
      const size = Buffer.byteLength(html);
      assert.ok(size < 100 * 1024, `${size} bytes`);
      assert.ok(Math.abs(size - before) < 2048, `${before} → ${size} bytes: a page does not grow with N`);
      const api = await rig.call('GET', '/api/v1/connections', { key: await rig.key(['token:read'], '*') });
      assert.ok(Buffer.byteLength(await api.text()) < 100 * 1024);
    } finally {
      for (let i = N; i < 1200; i++) await rig.store.deleteConnection(nameOf(i));
    }
  });
});

describe('connection page', () => {
  test('Test answers with a redirect; the result shows once, a reload repeats nothing; a forged result is ignored', async () => {
    const detail = await browser.page('/connections/live');
    // Each test is audited once (connection.tested).
    const calls = async () => (await rig.serverStore.listAudit({ limit: 1000, action: 'connection.tested', target: 'live' })).length;
    const before = await calls();
    const res = await browser.post('/connections/live/test', { _csrf: csrfOf(detail) });
    assert.equal(res.status, 303);
    const to = res.headers.get('location')!;
    assert.equal(to, '/connections/live?tested=1');
    const shown = await browser.page(to);
    assert.match(textOf(shown), /Dropbox answered: .*live|Dropbox answered:/);
    assert.equal(await calls(), before + 1);
    const again = await browser.page(to);
    assert.doesNotMatch(textOf(again), /Dropbox answered:/, 'a reload shows the page, not the result again');
    assert.equal(await calls(), before + 1, 'and tests nothing');

    // A result cookie this server did not write for this session is not shown.
    const payload = Buffer.from(JSON.stringify({ k: 'ok', t: 'Forged result' })).toString('base64url');
    browser.jar.set('dropkey_flash', `${payload}.${'A'.repeat(43)}`);
    assert.doesNotMatch(textOf(await browser.page('/connections/live')), /Forged result/);
  });

  test('Refresh answers with a redirect to the page that says the token was renewed', async () => {
    const detail = await browser.page('/connections/live');
    rig.clock.now += 60_000;
    const res = await browser.post('/connections/live/refresh', { _csrf: csrfOf(detail) });
    assert.equal(res.status, 303);
    assert.equal(res.headers.get('location'), '/connections/live?refreshed=1');
    assert.match(textOf(await browser.page('/connections/live?refreshed=1')), /The access token was renewed/);
  });

  test('the usage snippet: token API and proxy, curl and Python, this server and this connection, no secret', async () => {
    const html = await browser.page('/connections/live');
    const curl = textOf(/<pre class="snippet" id="usage-curl">([\s\S]*?)<\/pre>/.exec(html)![1]!);
    const python = textOf(/<pre class="snippet" id="usage-python">([\s\S]*?)<\/pre>/.exec(html)![1]!);
    assert.match(curl, new RegExp(`curl -s -H "Authorization: Bearer \\$DROPKEY_API_KEY" \\\\ ${PUBLIC_URL}/api/v1/connections/live/token`));
    assert.match(curl, new RegExp(`${PUBLIC_URL}/proxy/live/2/users/get_current_account`));
    assert.match(python, /import os, requests/);
    assert.match(python, new RegExp(`BASE = "${PUBLIC_URL}"`));
    assert.match(python, /\{BASE\}\/api\/v1\/connections\/live\/token/);
    assert.match(python, /\{BASE\}\/proxy\/live\/2\/users\/get_current_account/);
    assert.ok(!html.includes(live.refreshToken), 'no refresh token');
    const token = (await rig.store.getConnection('live'))!.accessToken!;
    assert.ok(!html.includes(token), 'no access token');
    assert.doesNotMatch(curl + python, /dk_[A-Za-z0-9_-]{20}/, 'no API key');
  });

  test('an access-token-only connection says it cannot be renewed; one needing re-auth shows no expiry countdown', async () => {
    const five = await browser.page('/connections/c-005');
    assert.match(textOf(five), /c-005 active not renewable/);
    assert.match(textOf(five), /Renewable no ?: only an access token is stored/);
    const zero = await browser.page('/connections/c-007');
    assert.match(textOf(zero), /c-007 needs re-auth/);
    assert.doesNotMatch(zero, /class="countdown"/);
    assert.match(textOf(zero), /Access token expires — \(reconnect first\)/);
  });

  test('a revoke that fails shows the state the connection is in now', async () => {
    // Dropbox refuses to revoke (an outage): the connection stays, the error and its current state are shown.
    const detail = await browser.page('/connections/c-003');
    await rig.emu.control.fault({ route: 'auth/token/revoke', status: 503, count: 20 });
    let res: Response;
    try {
      res = await browser.post('/connections/c-003/revoke', { _csrf: csrfOf(detail), confirmed: 'yes' });
    } finally {
      await rig.emu.control.clearFaults();
    }
    assert.equal(res.status, 303);
    assert.equal(res.headers.get('location'), '/connections/c-003?revoke_failed=1');
    // Meanwhile the connection changed (another process found its grant gone): the page shows what is stored now.
    await rig.store.updateConnection('c-003', { state: 'needs_reauth', lastError: 'Dropbox rejected the refresh token' });
    const page = await browser.page('/connections/c-003?revoke_failed=1');
    const text = textOf(page);
    assert.match(text, /Revoking failed:/);
    assert.match(text, /c-003 needs re-auth/);
    assert.doesNotMatch(page, /class="countdown"/);
    assert.ok(await rig.store.getConnection('c-003'), 'kept');
  });
});

describe('app page', () => {
  test('shows the scopes the app asks for and connects an account with it', async () => {
    const html = await browser.page('/apps/main');
    const scopes = /<ul class="scopes" id="app-scopes">([\s\S]*?)<\/ul>/.exec(html);
    assert.ok(scopes, 'the scopes are listed');
    const app = (await rig.store.getApp('main'))!;
    assert.ok(app.scopes.length > 0);
    for (const s of app.scopes) assert.ok(scopes[1]!.includes(`<code>${s}</code>`), s);
    assert.match(html, /<button type="submit" class="primary">Connect an account<\/button>/);
    const res = await browser.post('/connections/connect', { _csrf: csrfOf(html), mode: 'redirect', connection: 'from_app_page', app: 'main' });
    assert.equal(res.status, 303);
    const to = new URL(res.headers.get('location')!);
    assert.equal(to.searchParams.get('client_id'), app.key);
  });

  test("names the app's first 20 connections and links to the rest: the page stays small with 1,200; app filters the list and the API", async () => {
    await rig.dropboxApp('spare');
    await rig.store.createConnection({ ...(await rig.store.getConnection('c-001'))!, name: 'spare-1', app: 'spare' });
    await seed(N, 1200);
    try {
      const html = await browser.page('/apps/main');
      assert.ok(Buffer.byteLength(html) < 100 * 1024, `${Buffer.byteLength(html)} bytes`);
      const used = /Used by ([\s\S]*?)<\/p>/.exec(html)![1]!;
      assert.equal((used.match(/<a href="\/connections\/c-/g) ?? []).length, 20);
      assert.match(used, /<a href="\/connections\?app=main">all connections of main<\/a>/);
      assert.match(textOf(await browser.page('/apps/spare')), /Used by spare-1 ?\./);

      const list = await browser.page('/connections?app=spare');
      assert.match(textOf(list), /Connected Dropbox accounts of app spare/);
      assert.deepEqual([...list.matchAll(/<a href="\/connections\/([^"?]+)"/g)].map((m) => m[1]), ['spare-1']);
      const key = await rig.key(['admin'], '*');
      const api = await json(await rig.call('GET', '/api/v1/connections?app=spare', { key }));
      assert.deepEqual(api.connections.map((c: any) => c.name), ['spare-1']);
      const main = await json(await rig.call('GET', '/api/v1/connections?app=main&q=c-11&limit=3', { key }));
      assert.deepEqual(main.connections.map((c: any) => c.name), ['c-110', 'c-1100', 'c-1101']);
      const bad = await rig.call('GET', '/api/v1/connections?app=no%20such', { key });
      assert.equal(bad.status, 400);
      assert.match((await json(bad)).error.message, /app must be an app name/);
    } finally {
      for (let i = N; i < 1200; i++) await rig.store.deleteConnection(nameOf(i));
      await rig.store.deleteConnection('spare-1');
    }
  });

  test('the master key page explains the key file as well as DROPKEY_MASTER_KEY', async () => {
    const text = textOf(await browser.page('/master-key'));
    assert.match(text, /Key in DROPKEY_MASTER_KEY/);
    assert.match(text, /Key file .*master\.key/);
  });
});

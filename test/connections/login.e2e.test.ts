/**
 * The login helpers end to end against a listening emulator: the loopback flow (consent driven over HTTP),
 * the no-redirect flow (the code shown on Dropbox's page), reconnecting an existing name, and refusals.
 */
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { DropkeyError, ErrorCodes } from '../../src/errors.js';
import { driveConsent } from '../helpers/consent.js';
import { makeRig, type Rig } from './setup.js';
import { adviceText } from '../../src/cli/fix.js';

const REDIRECT = 'http://127.0.0.1:53682/callback';
let rig: Rig;
let app: Awaited<ReturnType<Rig['appWithAccount']>>;

before(async () => {
  rig = await makeRig({ listen: true, dropkey: { fetch: globalThis.fetch } });
  app = await rig.appWithAccount({ name: 'web' });
});
after(() => rig.close());

test('startLogin: PKCE S256, offline access and a state, always', async () => {
  const p = await rig.dk.startLogin({ app: 'web', connection: 'dropbox_default', redirectUri: REDIRECT });
  const u = new URL(p.authorizeUrl);
  assert.equal(`${u.origin}${u.pathname}`, `${rig.emu.url}/oauth2/authorize`);
  const q = u.searchParams;
  assert.equal(q.get('client_id'), app.key);
  assert.equal(q.get('response_type'), 'code');
  assert.equal(q.get('token_access_type'), 'offline');
  assert.equal(q.get('code_challenge_method'), 'S256');
  assert.match(q.get('code_challenge') ?? '', /^[A-Za-z0-9_-]{43}$/);
  assert.equal(q.get('state'), p.state);
  assert.equal(q.get('redirect_uri'), REDIRECT);
  assert.equal(q.get('scope'), 'account_info.read files.metadata.read files.content.read files.content.write');
  assert.equal(p.connection, 'dropbox_default');
  const p2 = await rig.dk.startLogin({ app: 'web', redirectUri: REDIRECT });
  assert.notEqual(p2.state, p.state);
  assert.notEqual(p2.codeVerifier, p.codeVerifier);
  assert.equal(p2.connection, 'default');
});

test('loopback flow: consent → callback URL → a validated, stored connection', async () => {
  const pending = await rig.dk.startLogin({ app: 'web', connection: 'dropbox_default', redirectUri: REDIRECT });
  const consent = await driveConsent(pending.authorizeUrl, { account: app.email });
  assert.ok(consent.location?.startsWith(REDIRECT), `redirected to ${consent.location}`);
  const r = await rig.dk.finishLogin({ pending, callbackUrl: consent.location! });
  assert.equal(r.created, true);
  assert.equal(r.connection.name, 'dropbox_default');
  assert.equal(r.connection.refreshable, true);
  assert.equal(r.connection.accountId, app.accountId);
  assert.ok(r.connection.email);
  assert.ok(r.connection.scopes.includes('files.content.write'));
  const t = await rig.dk.getAccessToken('dropbox_default');
  assert.equal((await rig.emu.rpc('users/get_current_account', undefined, t)).status, 200);
  // The same callback cannot be used twice: codes are single-use.
  await assert.rejects(rig.dk.finishLogin({ pending, callbackUrl: consent.location! }), (e: unknown) => e instanceof DropkeyError && e.code === ErrorCodes.OAUTH_FAILED);
});

test('no-redirect flow: the pasted code; logging in again reconnects the same name', async () => {
  const before = (await rig.stored('dropbox_default'))!;
  const pending = await rig.dk.startLogin({ app: 'web', connection: 'dropbox_default' });
  assert.equal(new URL(pending.authorizeUrl).searchParams.get('redirect_uri'), null);
  const consent = await driveConsent(pending.authorizeUrl, { account: app.email });
  const code = /<code id="auth-code">([^<]+)<\/code>/.exec(consent.finalHtml)?.[1];
  assert.ok(code, 'the emulator shows the code');
  const r = await rig.dk.finishLogin({ pending, code: `  ${code}\n` });
  assert.equal(r.created, false);
  assert.equal(r.connection.name, 'dropbox_default');
  const after = (await rig.stored('dropbox_default'))!;
  assert.notEqual(after.refreshToken, before.refreshToken, 'the new grant replaces the old one');
  assert.equal((await rig.dk.list()).filter((c) => c.name === 'dropbox_default').length, 1);
});

test('a callback from another login (state mismatch) or a denial stores nothing', async () => {
  const pending = await rig.dk.startLogin({ app: 'web', connection: 'other', redirectUri: REDIRECT });
  const consent = await driveConsent(pending.authorizeUrl, { account: app.email });
  const forged = consent.location!.replace(/state=[^&]+/, 'state=forged');
  await assert.rejects(rig.dk.finishLogin({ pending, callbackUrl: forged }), (e: unknown) => e instanceof DropkeyError && e.code === ErrorCodes.OAUTH_FAILED && /state/.test(e.message));
  const denied = await driveConsent((await rig.dk.startLogin({ app: 'web', connection: 'other', redirectUri: REDIRECT })).authorizeUrl, { button: /cancel/i });
  assert.match(denied.location ?? '', /error=access_denied/);
  await assert.rejects(rig.dk.get('other'), (e: unknown) => e instanceof DropkeyError && e.code === ErrorCodes.NOT_FOUND);
});

test('bad login input is refused with the next step', async () => {
  await assert.rejects(rig.dk.startLogin({ app: 'nope' }), (e: unknown) => e instanceof DropkeyError && e.code === ErrorCodes.NOT_FOUND && /dropkey app add/.test(adviceText(e)));
  await assert.rejects(rig.dk.startLogin({ app: 'web', redirectUri: 'http://example.com/cb' }), (e: unknown) => e instanceof DropkeyError && e.code === ErrorCodes.BAD_INPUT);
  await assert.rejects(rig.dk.startLogin({ app: 'web', connection: 'no spaces' }), (e: unknown) => e instanceof DropkeyError && e.code === ErrorCodes.BAD_INPUT);
  const pending = await rig.dk.startLogin({ app: 'web' });
  await assert.rejects(rig.dk.finishLogin({ pending }), (e: unknown) => e instanceof DropkeyError && e.code === ErrorCodes.BAD_INPUT);
});

test('a redirect URI mismatch at the code exchange is remembered, and doctor explains it', async () => {
  const pending = await rig.dk.startLogin({ app: 'web', connection: 'dropbox_default', redirectUri: REDIRECT });
  const consent = await driveConsent(pending.authorizeUrl, { account: app.email });
  const before = (await rig.stored('dropbox_default'))!;
  await assert.rejects(
    rig.dk.finishLogin({ pending: { ...pending, redirectUri: 'http://127.0.0.1:9999/callback' }, callbackUrl: consent.location! }),
    (e: unknown) => e instanceof DropkeyError && e.code === ErrorCodes.OAUTH_FAILED && /redirect/i.test(e.message),
  );
  const after = (await rig.stored('dropbox_default'))!;
  assert.equal(after.refreshToken, before.refreshToken, 'the existing connection is untouched');
  assert.equal(after.state, 'active');
  const report = await rig.dk.doctor({ connection: 'dropbox_default' });
  assert.ok(report.findings.some((f) => f.id === 'redirect_uri_mismatch'), JSON.stringify(report.findings));
});

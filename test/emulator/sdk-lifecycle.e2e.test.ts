/**
 * The official JS SDK (dropbox@10.34.0, unmodified) runs a whole connection lifecycle against the emulator,
 * reaching it only through its `fetch` option (https://github.com/dropbox/dropbox-sdk-js, docs/emulator.md ("Pointing clients at it")): PKCE authorize URL → consent over HTTP →
 * code exchange → account → upload → list → 20 MiB upload session → download → expiry → automatic refresh →
 * revoke → 401 (docs/emulator.md).
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { Dropbox, DropboxAuth, DropboxResponseError } from 'dropbox';
import { startEmulator, type StartedEmulator, type AppSpec, type CreatedAccount } from '../helpers/emulator.js';
import { emulatorFetch } from '../helpers/dropbox-sdk.js';
import { driveConsent, toEmulatorUrl, textOf } from '../helpers/consent.js';
import { dropboxContentHash, patternBytes } from '../helpers/content-hash.js';

// A loopback redirect URI with nothing listening: the consent driver only reads the Location header.
const REDIRECT = 'http://127.0.0.1:53682/callback';
const MiB = 1024 * 1024;

let emu: StartedEmulator;
let app: AppSpec;
let account: CreatedAccount;

before(async () => {
  emu = await startEmulator();
  app = await emu.control.createApp({
    name: 'Lifecycle Test App',
    redirect_uris: [REDIRECT],
    scopes: ['account_info.read', 'files.metadata.read', 'files.content.read', 'files.content.write'],
  });
  account = await emu.control.createAccount({ email: 'ada@example.com', given_name: 'Ada', surname: 'Lovelace' });
});
after(async () => {
  await emu?.close();
});

async function expectSdkError(p: Promise<unknown>): Promise<DropboxResponseError<any>> {
  try {
    await p;
  } catch (err) {
    assert.ok(err instanceof DropboxResponseError, `expected DropboxResponseError, got ${String(err)}`);
    return err;
  }
  assert.fail('the call should have failed');
}

test('official JS SDK lifecycle: PKCE, files, 20 MiB session, refresh through the clock, revoke', async () => {
  const fetch = emulatorFetch(emu.url);
  // Public client: PKCE with no secret, as a CLI or desktop app would (Dropbox docs: oauth2/token, dropbox-sdk-js).
  const auth = new DropboxAuth({ clientId: app.key, fetch });
  const state = 'st-' + 'x'.repeat(20);
  const authUrl = String(await auth.getAuthenticationUrl(REDIRECT, state, 'code', 'offline', undefined, 'none', true));
  assert.match(authUrl, /^https:\/\/dropbox\.com\/oauth2\/authorize\?/);
  assert.match(authUrl, /code_challenge_method=S256&code_challenge=[A-Za-z0-9_-]{43}$/);

  // Consent over plain HTTP: the page names the app; Allow redirects to the registered URI with code and state.
  const consent = await driveConsent(toEmulatorUrl(authUrl, emu.url), { account: account.account_id });
  assert.equal(consent.pageStatus, 200);
  assert.ok(textOf(consent.page).includes(app.name), 'the consent page shows the app name');
  assert.ok(consent.status >= 300 && consent.status < 400, `Allow should redirect, got ${consent.status}`);
  assert.ok(consent.location, 'redirect has a Location');
  const back = new URL(consent.location);
  assert.equal(`${back.origin}${back.pathname}`, REDIRECT);
  assert.equal(back.searchParams.get('state'), state);
  const code = back.searchParams.get('code');
  assert.ok(code, `redirect carries a code: ${consent.location}`);
  assert.equal(back.searchParams.get('error'), null);

  // Code exchange: the SDK sends everything in the query string with an empty body (docs/emulator.md).
  const exchanged = await auth.getAccessTokenFromCode(REDIRECT, code);
  const tok = exchanged.result as any;
  assert.equal(exchanged.status, 200);
  assert.match(tok.access_token, /^sl\./);
  assert.equal(tok.token_type, 'bearer');
  assert.equal(typeof tok.expires_in, 'number');
  assert.ok(tok.expires_in > 300, 'expires_in leaves room beyond the SDK refresh margin');
  assert.equal(typeof tok.refresh_token, 'string');
  assert.equal(tok.account_id, account.account_id);
  assert.equal(typeof tok.uid, 'string');
  for (const s of app.scopes) assert.ok(String(tok.scope).split(' ').includes(s), `granted scope ${s}`);

  auth.setAccessToken(tok.access_token);
  auth.setRefreshToken(tok.refresh_token);
  const expiresAt = new Date(Date.now() + tok.expires_in * 1000);
  auth.setAccessTokenExpiresAt(expiresAt);
  const dbx = new Dropbox({ auth });

  const me = await dbx.usersGetCurrentAccount();
  assert.equal(me.result.account_id, account.account_id);
  assert.equal(me.result.account_id.length, 40);
  assert.equal(me.result.email, 'ada@example.com');
  assert.equal(me.result.name.given_name, 'Ada');
  assert.equal(me.result.name.surname, 'Lovelace');

  const small = Buffer.from('hello from the official SDK\n');
  const up = await dbx.filesUpload({ path: '/SDK Test/Hello.txt', contents: small });
  assert.equal(up.result.name, 'Hello.txt');
  assert.equal(up.result.path_lower, '/sdk test/hello.txt');
  assert.equal(up.result.size, small.length);
  assert.equal(up.result.content_hash, dropboxContentHash(small));

  const listed = await dbx.filesListFolder({ path: '/sdk test' });
  const names = listed.result.entries.map((e) => `${e['.tag']}:${e.name}`);
  assert.deepEqual(names, ['file:Hello.txt']);
  assert.equal(listed.result.has_more, false);
  assert.ok(listed.result.cursor.length > 0);

  // 20 MiB through an upload session: 8 MiB start, 8 MiB append, 4 MiB finish.
  const big = patternBytes(20 * MiB, 2026);
  const start = await dbx.filesUploadSessionStart({ close: false, contents: big.subarray(0, 8 * MiB) });
  const sessionId = start.result.session_id;
  assert.equal(typeof sessionId, 'string');
  await dbx.filesUploadSessionAppendV2({ cursor: { session_id: sessionId, offset: 8 * MiB }, close: false, contents: big.subarray(8 * MiB, 16 * MiB) });
  const fin = await dbx.filesUploadSessionFinish({
    cursor: { session_id: sessionId, offset: 16 * MiB },
    commit: { path: '/SDK Test/big.bin', mode: { '.tag': 'add' }, autorename: false, mute: false },
    contents: big.subarray(16 * MiB),
  });
  assert.equal(fin.result.size, big.length);
  assert.equal(fin.result.content_hash, dropboxContentHash(big));

  const down = await dbx.filesDownload({ path: '/SDK Test/big.bin' });
  const bytes = (down.result as any).fileBinary as Buffer;
  assert.ok(Buffer.isBuffer(bytes));
  assert.equal(bytes.length, big.length);
  assert.ok(bytes.equals(big), 'downloaded bytes match');
  assert.equal(down.result.content_hash, dropboxContentHash(big));
  assert.equal(down.result.size, big.length);

  // Expiry through the emulator's clock, not a sleep. The server now rejects the old token...
  const advance = tok.expires_in + 60;
  await emu.control.advanceClock(advance);
  const stale = await emu.rpc('users/get_current_account', undefined, tok.access_token);
  assert.equal(stale.status, 401);
  assert.equal(stale.json?.error?.['.tag'], 'expired_access_token');
  // ...and the client's clock moves by the same amount (its expiry date is now in the past), as after real waiting.
  auth.setAccessTokenExpiresAt(new Date(expiresAt.getTime() - advance * 1000));
  await emu.control.clearRequests();
  const again = await dbx.usersGetCurrentAccount();
  assert.equal(again.result.account_id, account.account_id);
  const refreshed = auth.getAccessToken();
  assert.notEqual(refreshed, tok.access_token, 'the SDK refreshed its access token');
  assert.match(refreshed, /^sl\./);
  assert.equal(auth.getRefreshToken(), tok.refresh_token, 'refresh tokens are not rotated (Dropbox docs: oauth2/token)');
  const log = await emu.control.requests();
  const tokenIdx = log.findIndex((r) => r.method === 'POST' && /^\/(1\/)?oauth2\/token/.test(r.path));
  const apiIdx = log.findIndex((r) => /^\/2\/users\/get_current_account/.test(r.path));
  assert.ok(tokenIdx >= 0, `a refresh was logged: ${JSON.stringify(log.map((r) => `${r.method} ${r.path}`))}`);
  assert.ok(apiIdx > tokenIdx, 'the refresh came before the API call (log is oldest first)');
  assert.equal(log[tokenIdx]!.status, 200);
  assert.equal(log[apiIdx]!.status, 200);
  const logText = JSON.stringify(log);
  for (const secret of [refreshed, tok.refresh_token, tok.access_token]) {
    assert.ok(!logText.includes(secret), 'the request log never holds a raw token');
  }

  // Revoke: the access token, its refresh token and every token minted from it stop working (Dropbox docs: auth/token/revoke).
  await dbx.authTokenRevoke();
  const after401 = await expectSdkError(dbx.usersGetCurrentAccount());
  assert.equal(after401.status, 401);
  assert.equal(after401.error.error['.tag'], 'invalid_access_token');
  assert.match(after401.error.error_summary, /^invalid_access_token\//);
  const noRefresh = await expectSdkError(Promise.resolve(auth.refreshAccessToken()));
  assert.equal(noRefresh.status, 400);
  assert.equal(noRefresh.error.error, 'invalid_grant');

  // A code is single-use (Dropbox docs: oauth2/authorize, Dropbox docs: oauth2/token). Checked last: RFC 6749 §4.1.2 lets a server revoke tokens from a reused code.
  const reuse = await expectSdkError(auth.getAccessTokenFromCode(REDIRECT, code));
  assert.equal(reuse.status, 400);
  assert.equal(reuse.error.error, 'invalid_grant');
});

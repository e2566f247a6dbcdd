/**
 * dropkey's protocol layers (src/oauth, src/dropbox) against the emulator over real HTTP on 127.0.0.1:0:
 * authorization code + PKCE through the consent page, refresh, revoke, and the API client's rpc / upload /
 * download and failure policy. Only the documented wire contract is relied on (https://www.dropbox.com/developers/documentation/http/documentation).
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { Readable } from 'node:stream';
import { startEmulator, type StartedEmulator } from '../../test/helpers/emulator.js';
import { driveConsent } from '../../test/helpers/consent.js';
import { buildAuthorizeUrl, parseCallback } from './authorize.js';
import { codeChallengeS256, generateCodeVerifier, generateState } from './pkce.js';
import { exchangeCode, refreshAccessToken, revokeToken, type FetchLike, type TokenSet } from './token.js';
import { dropboxUrlsFromBase, type DropboxUrls } from '../dropbox/hosts.js';
import { DropboxClient } from '../dropbox/client.js';
import { contentHash } from '../dropbox/content-hash.js';
import { isRetryable } from '../dropbox/errors.js';
import { DropboxApiError, DropkeyError, ErrorCodes } from '../errors.js';

const REDIRECT = 'http://127.0.0.1:53682/callback';
const SCOPES = ['account_info.read', 'files.metadata.read', 'files.content.read', 'files.content.write'];
const NOW = 1_800_000_000_000;
const now = () => NOW;

let emu: StartedEmulator;
let urls: DropboxUrls;
let app: { key: string; secret?: string };
let account: { account_id: string; email?: string };
const f: FetchLike = (input, init) => fetch(input, init);

before(async () => {
  emu = await startEmulator();
  urls = dropboxUrlsFromBase(emu.url);
  app = await emu.control.createApp({ redirect_uris: [REDIRECT], scopes: SCOPES });
  account = await emu.control.createAccount({ email: `h5-${process.pid}@example.com` });
});
after(async () => {
  await emu?.close();
});

/** Runs the consent page for a fresh state/verifier and returns the code from the redirect. */
async function authorize(opts: { redirectUri?: string; button?: RegExp } = {}) {
  const verifier = generateCodeVerifier();
  const state = generateState();
  const url = buildAuthorizeUrl({
    urls,
    clientId: app.key,
    state,
    codeChallenge: codeChallengeS256(verifier),
    scopes: SCOPES,
    tokenAccessType: 'offline',
    ...(opts.redirectUri === undefined ? { redirectUri: REDIRECT } : { redirectUri: opts.redirectUri }),
  });
  const consent = await driveConsent(url, { account: account.account_id, ...(opts.button ? { button: opts.button } : {}) });
  assert.ok(consent.location, `consent gave no redirect (status ${consent.status})`);
  assert.ok(consent.location.startsWith(`${REDIRECT}?`), consent.location);
  return { verifier, state, location: consent.location };
}

let tokens: TokenSet;

test('code + PKCE exchange with a secret app (HTTP Basic)', async () => {
  const { verifier, state, location } = await authorize();
  const { code } = parseCallback(location, state);
  tokens = await exchangeCode({
    urls,
    fetch: f,
    now,
    client: { clientId: app.key, clientSecret: app.secret },
    code,
    codeVerifier: verifier,
    redirectUri: REDIRECT,
  });
  assert.match(tokens.accessToken, /^sl\./);
  assert.equal(typeof tokens.refreshToken, 'string');
  assert.equal(tokens.accountId, account.account_id);
  assert.deepEqual([...tokens.scopes].sort(), [...SCOPES].sort());
  assert.ok(tokens.expiresAt! > NOW && tokens.expiresAt! <= NOW + 4 * 3600_000, 'expiry from the injected clock');
  assert.equal(tokens.tokenType, 'bearer');
});

test('a code works once', async () => {
  // A separate login: RFC 6749 §4.1.2 lets a server revoke what a replayed code produced.
  const { verifier, state, location } = await authorize();
  const { code } = parseCallback(location, state);
  const o = { urls, fetch: f, now, client: { clientId: app.key, clientSecret: app.secret }, code, codeVerifier: verifier, redirectUri: REDIRECT };
  await exchangeCode(o);
  await assert.rejects(
    exchangeCode(o),
    (e: unknown) => e instanceof DropboxApiError && e.code === ErrorCodes.OAUTH_FAILED && e.summary === 'invalid_grant',
  );
});

test('PKCE-only client (no secret), then refresh with client_id alone', async () => {
  const { verifier, state, location } = await authorize();
  const set = await exchangeCode({
    urls,
    fetch: f,
    now,
    client: { clientId: app.key },
    code: parseCallback(location, state).code,
    codeVerifier: verifier,
    redirectUri: REDIRECT,
  });
  const refreshed = await refreshAccessToken({ urls, fetch: f, now, client: { clientId: app.key }, refreshToken: set.refreshToken! });
  assert.notEqual(refreshed.accessToken, set.accessToken);
  assert.equal(refreshed.refreshToken, set.refreshToken);
});

test('token-endpoint failures map to the right codes', async () => {
  // redirect_uri differs from the authorize step.
  const a = await authorize();
  await assert.rejects(
    exchangeCode({ urls, fetch: f, now, client: { clientId: app.key, clientSecret: app.secret }, code: parseCallback(a.location, a.state).code, codeVerifier: a.verifier, redirectUri: 'http://127.0.0.1:1/other' }),
    (e: unknown) => e instanceof DropboxApiError && e.code === ErrorCodes.OAUTH_FAILED && e.details?.['reason'] === 'redirect_uri_mismatch',
  );
  // Wrong secret.
  await assert.rejects(
    refreshAccessToken({ urls, fetch: f, now, client: { clientId: app.key, clientSecret: 'wrongsecret0000' }, refreshToken: tokens.refreshToken! }),
    (e: unknown) => e instanceof DropboxApiError && e.code === ErrorCodes.INVALID_CLIENT && !e.message.includes('wrongsecret'),
  );
  // Unknown refresh token.
  await assert.rejects(
    refreshAccessToken({ urls, fetch: f, now, client: { clientId: app.key, clientSecret: app.secret }, refreshToken: 'x'.repeat(64) }),
    (e: unknown) => e instanceof DropboxApiError && e.code === ErrorCodes.REAUTH_REQUIRED && e.summary === 'invalid_grant',
  );
  // Server error on the token endpoint: retryable.
  await emu.control.fault({ route: 'oauth2/token', status: 503, count: 1 });
  await assert.rejects(
    refreshAccessToken({ urls, fetch: f, now, client: { clientId: app.key, clientSecret: app.secret }, refreshToken: tokens.refreshToken! }),
    (e: unknown) => e instanceof DropkeyError && e.code === ErrorCodes.DROPBOX_UNAVAILABLE && isRetryable(e),
  );
  // Cancel on the consent page.
  const c = await authorize({ button: /cancel|deny/i });
  assert.throws(() => parseCallback(c.location, c.state), (e: unknown) => e instanceof DropkeyError && e.details?.['reason'] === 'access_denied');
});

function clientWith(getAccessToken: (o: { forceRefresh?: boolean }) => Promise<string>, waits: number[] = []) {
  return new DropboxClient({
    urls,
    fetch: f,
    getAccessToken,
    sleep: async (ms) => void waits.push(ms),
    random: () => 0,
  });
}

test('client: get_current_account, upload, download (full and range)', async () => {
  const c = clientWith(async () => tokens.accessToken);
  const me = await c.rpc<{ account_id: string; email: string }>('users/get_current_account');
  assert.equal(me.account_id, account.account_id);

  const bytes = new TextEncoder().encode('héllo from dropkey 😀 '.repeat(100));
  const path = '/dropkey-h5/ünïcode 😀.txt';
  const meta = await c.upload<{ path_display: string; size: number; content_hash: string }>(
    'files/upload',
    { path, mode: 'overwrite', autorename: false, mute: true },
    bytes,
  );
  assert.equal(meta.path_display, path);
  assert.equal(meta.size, bytes.byteLength);
  assert.equal(meta.content_hash, contentHash(bytes));

  const d = await c.download<{ size: number; name: string }>('files/download', { path });
  assert.equal(d.status, 200);
  assert.equal(d.result.name, 'ünïcode 😀.txt');
  assert.deepEqual(new Uint8Array(await new Response(d.body).arrayBuffer()), bytes);

  const r = await c.download('files/download', { path }, { range: { start: 1, end: 4 } });
  assert.equal(r.status, 206);
  assert.deepEqual(new Uint8Array(await new Response(r.body).arrayBuffer()), bytes.slice(1, 5));

  // A streamed (chunked) body, sent once.
  const streamed = await c.upload<{ size: number; content_hash: string }>(
    'files/upload',
    { path: '/dropkey-h5/streamed.bin', mode: 'overwrite' },
    Readable.from([bytes.slice(0, 1000), bytes.slice(1000)]),
  );
  assert.equal(streamed.size, bytes.byteLength);
  assert.equal(streamed.content_hash, contentHash(bytes));

  await assert.rejects(c.rpc('files/get_metadata', { path: '/dropkey-h5/missing' }), (e: unknown) =>
    e instanceof DropboxApiError && e.status === 409 && /not_found/.test(e.summary),
  );
});

test('client: expired token → one refresh and a retry; 503 and 429 retried with the injected sleep', async () => {
  let current = tokens;
  const calls: Array<{ forceRefresh?: boolean }> = [];
  const waits: number[] = [];
  const c = clientWith(async (o) => {
    calls.push(o);
    if (o.forceRefresh) {
      current = await refreshAccessToken({ urls, fetch: f, now, client: { clientId: app.key, clientSecret: app.secret }, refreshToken: current.refreshToken! });
    }
    return current.accessToken;
  }, waits);

  await emu.control.advanceClock(5 * 3600); // past the 4-hour lifetime
  const me = await c.rpc<{ account_id: string }>('users/get_current_account');
  assert.equal(me.account_id, account.account_id);
  assert.equal(calls.filter((x) => x.forceRefresh).length, 1);
  assert.notEqual(current.accessToken, tokens.accessToken);

  await emu.control.fault({ route: 'users/get_current_account', status: 503, count: 2 });
  await c.rpc('users/get_current_account');
  assert.equal(waits.length, 2);
  await emu.control.fault({ route: 'users/get_current_account', status: 429, retry_after: 2, count: 1 });
  await c.rpc('users/get_current_account');
  assert.equal(waits.at(-1), 2000);
  await emu.control.call('POST', '/_emulator/faults', { route: 'users/get_current_account', reset_connection: true, count: 1 });
  await c.rpc('users/get_current_account');
  assert.equal(waits.length, 4);
  tokens = current;
});

test('revoke: the access token and its refresh token stop working', async () => {
  assert.deepEqual(await revokeToken({ urls, fetch: f, accessToken: tokens.accessToken }), { alreadyInvalid: false });
  await assert.rejects(
    refreshAccessToken({ urls, fetch: f, now, client: { clientId: app.key, clientSecret: app.secret }, refreshToken: tokens.refreshToken! }),
    (e: unknown) => e instanceof DropboxApiError && e.code === ErrorCodes.REAUTH_REQUIRED,
  );
  assert.deepEqual(await revokeToken({ urls, fetch: f, accessToken: tokens.accessToken }), { alreadyInvalid: true });
});

/**
 * oauth4webapi, a spec-strict OAuth 2 client, completes authorization code + PKCE and a refresh against the
 * emulator (docs/emulator.md). Dropbox publishes no discovery document, so the AuthorizationServer
 * metadata is written by hand from https://www.dropbox.com/developers/documentation/http/documentation, https://developers.dropbox.com/oauth-guide with the emulator's base URL.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import * as oauth from 'oauth4webapi';
import { startEmulator, type StartedEmulator, type AppSpec, type CreatedAccount } from '../helpers/emulator.js';
import { driveConsent } from '../helpers/consent.js';

const REDIRECT = 'http://127.0.0.1:53682/oauth/callback';

// TEST-ONLY: the emulator listens on plain http://127.0.0.1. oauth4webapi refuses non-https endpoints unless this
// is set; never copy this into production code (real Dropbox is https-only).
const INSECURE_LOOPBACK_ONLY = { [oauth.allowInsecureRequests]: true } as const;

let emu: StartedEmulator;
let as: oauth.AuthorizationServer;
let publicApp: AppSpec;
let secretApp: AppSpec;
let account: CreatedAccount;

before(async () => {
  emu = await startEmulator();
  as = {
    issuer: emu.url,
    authorization_endpoint: `${emu.url}/oauth2/authorize`,
    token_endpoint: `${emu.url}/oauth2/token`,
    code_challenge_methods_supported: ['S256'],
  };
  const scopes = ['account_info.read', 'files.metadata.read'];
  publicApp = await emu.control.createApp({ name: 'oauth4webapi public', redirect_uris: [REDIRECT], scopes });
  secretApp = await emu.control.createApp({ name: 'oauth4webapi confidential', redirect_uris: [REDIRECT], scopes });
  account = await emu.control.createAccount({ email: 'strict@example.com', given_name: 'Strict', surname: 'Client' });
});
after(async () => {
  await emu?.close();
});

async function authorize(app: AppSpec, codeChallenge: string, state: string): Promise<URL> {
  const u = new URL(as.authorization_endpoint!);
  u.searchParams.set('client_id', app.key);
  u.searchParams.set('response_type', 'code');
  u.searchParams.set('redirect_uri', REDIRECT);
  u.searchParams.set('token_access_type', 'offline');
  u.searchParams.set('code_challenge', codeChallenge);
  u.searchParams.set('code_challenge_method', 'S256');
  u.searchParams.set('state', state);
  const consent = await driveConsent(u.href, { account: 'strict@example.com' });
  assert.ok(consent.location, `Allow redirects (status ${consent.status})`);
  return new URL(consent.location);
}

for (const variant of ['public client (PKCE, no secret)', 'confidential client (PKCE + HTTP Basic)'] as const) {
  test(`oauth4webapi: code + PKCE and refresh, ${variant}`, async () => {
    const isPublic = variant.startsWith('public');
    const app = isPublic ? publicApp : secretApp;
    const client: oauth.Client = { client_id: app.key };
    const clientAuth = isPublic ? oauth.None() : oauth.ClientSecretBasic(app.secret!);

    const verifier = oauth.generateRandomCodeVerifier();
    const challenge = await oauth.calculatePKCECodeChallenge(verifier);
    const state = oauth.generateRandomState();
    const callback = await authorize(app, challenge, state);
    const params = oauth.validateAuthResponse(as, client, callback, state);

    const codeRes = await oauth.authorizationCodeGrantRequest(as, client, clientAuth, params, REDIRECT, verifier, INSECURE_LOOPBACK_ONLY);
    assert.equal(codeRes.headers.get('content-type'), 'application/json');
    const tokens = await oauth.processAuthorizationCodeResponse(as, client, codeRes);
    assert.equal(tokens.token_type, 'bearer');
    assert.match(tokens.access_token, /^sl\./);
    assert.equal(typeof tokens.expires_in, 'number');
    assert.equal(typeof tokens.refresh_token, 'string');
    assert.equal(tokens['account_id'] as string, account.account_id);
    assert.equal(typeof tokens['uid'], 'string');

    const me = await emu.rpc('users/get_current_account', undefined, tokens.access_token);
    assert.equal(me.status, 200, me.text);
    assert.equal(me.json.account_id, account.account_id);

    const refreshRes = await oauth.refreshTokenGrantRequest(as, client, clientAuth, tokens.refresh_token!, INSECURE_LOOPBACK_ONLY);
    const refreshed = await oauth.processRefreshTokenResponse(as, client, refreshRes);
    assert.equal(refreshed.token_type, 'bearer');
    assert.match(refreshed.access_token, /^sl\./);
    assert.notEqual(refreshed.access_token, tokens.access_token);
    assert.equal(typeof refreshed.expires_in, 'number');
    assert.equal(refreshed.refresh_token, undefined, 'a refresh returns no new refresh token (Dropbox docs: oauth2/token)');
    const me2 = await emu.rpc('users/get_current_account', undefined, refreshed.access_token);
    assert.equal(me2.status, 200, me2.text);

    // The code is single-use: oauth4webapi surfaces Dropbox's RFC 6749 error body.
    const replay = await oauth.authorizationCodeGrantRequest(as, client, clientAuth, params, REDIRECT, verifier, INSECURE_LOOPBACK_ONLY);
    await assert.rejects(oauth.processAuthorizationCodeResponse(as, client, replay), (err: unknown) => {
      assert.ok(err instanceof oauth.ResponseBodyError, String(err));
      assert.equal(err.status, 400);
      assert.equal(err.error, 'invalid_grant');
      return true;
    });
  });
}

test('oauth4webapi: a wrong PKCE verifier is refused with invalid_grant', async () => {
  const client: oauth.Client = { client_id: publicApp.key };
  const verifier = oauth.generateRandomCodeVerifier();
  const state = oauth.generateRandomState();
  const callback = await authorize(publicApp, await oauth.calculatePKCECodeChallenge(verifier), state);
  const params = oauth.validateAuthResponse(as, client, callback, state);
  const res = await oauth.authorizationCodeGrantRequest(as, client, oauth.None(), params, REDIRECT, oauth.generateRandomCodeVerifier(), INSECURE_LOOPBACK_ONLY);
  await assert.rejects(oauth.processAuthorizationCodeResponse(as, client, res), (err: unknown) => {
    assert.ok(err instanceof oauth.ResponseBodyError, String(err));
    assert.equal(err.status, 400);
    assert.equal(err.error, 'invalid_grant');
    return true;
  });
});

test('oauth4webapi: an unknown refresh token is refused with invalid_grant', async () => {
  const client: oauth.Client = { client_id: publicApp.key };
  const res = await oauth.refreshTokenGrantRequest(as, client, oauth.None(), 'not-a-real-refresh-token-AAAAAAAAAAAAAAAAAAAAA', INSECURE_LOOPBACK_ONLY);
  await assert.rejects(oauth.processRefreshTokenResponse(as, client, res), (err: unknown) => {
    assert.ok(err instanceof oauth.ResponseBodyError, String(err));
    assert.equal(err.status, 400);
    assert.equal(err.error, 'invalid_grant');
    return true;
  });
});

import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  authorizationCodeRequest,
  exchangeCode,
  processTokenResponse,
  refreshAccessToken,
  refreshTokenRequest,
  revokeRequest,
  revokeToken,
  type FetchLike,
} from './token.js';
import { DropboxApiError, DropkeyError, ErrorCodes } from '../errors.js';
import { isRetryable, retryAfterOf } from '../dropbox/errors.js';
import { DROPBOX_URLS } from '../dropbox/hosts.js';
import { fixCommand } from '../cli/fix.js';

const urls = DROPBOX_URLS;
const SECRET = 'sec7ret7value77';
const REFRESH = 'nBiM85CZALsAAAAAAAAAAQXHBoNpNutK4ngsXHsqW4iGz9tisb3JyjGqikMJIYbd';
const NOW = 1_700_000_000_000;
const now = () => NOW;

function json(status: number, body: unknown, headers: Record<string, string> = {}): Response {
  return new Response(JSON.stringify(body), {
    status,
    headers: { 'content-type': 'application/json', ...headers },
  });
}

const DOC_EXAMPLE = {
  access_token: 'sl.u.AbX9y6Fe3AuH5o66-gmJpR032jwAwQPIVVzWXZNkdzcYT02akC2de219dZi6gxYPVnYPrpvISRSf9lxKWJzYLjtMPH',
  expires_in: 14400,
  token_type: 'bearer',
  scope: 'account_info.read files.content.read files.content.write files.metadata.read',
  refresh_token: REFRESH,
  account_id: 'dbid:AAH4f99T0taONIb-OurWxbNQ6ywGRopQngc',
  uid: '12345',
};

test('code request with a secret: HTTP Basic, no client_id in the body', () => {
  const r = authorizationCodeRequest({
    urls,
    client: { clientId: 'key1', clientSecret: SECRET },
    code: 'the-code',
    codeVerifier: 'v'.repeat(64),
    redirectUri: 'http://127.0.0.1:5000/cb',
  });
  assert.equal(r.url, 'https://api.dropboxapi.com/oauth2/token');
  assert.equal(r.init.method, 'POST');
  assert.equal(r.init.headers['content-type'], 'application/x-www-form-urlencoded');
  assert.equal(r.init.headers['authorization'], `Basic ${Buffer.from(`key1:${SECRET}`).toString('base64')}`);
  const body = new URLSearchParams(String(r.init.body));
  assert.equal(body.get('grant_type'), 'authorization_code');
  assert.equal(body.get('code'), 'the-code');
  assert.equal(body.get('code_verifier'), 'v'.repeat(64));
  assert.equal(body.get('redirect_uri'), 'http://127.0.0.1:5000/cb');
  assert.equal(body.has('client_id'), false);
  assert.equal(body.has('client_secret'), false);
});

test('code request for a PKCE-only app: client_id + code_verifier, no Authorization', () => {
  const r = authorizationCodeRequest({ urls, client: { clientId: 'key1' }, code: 'c', codeVerifier: 'v'.repeat(43) });
  assert.equal(r.init.headers['authorization'], undefined);
  const body = new URLSearchParams(String(r.init.body));
  assert.equal(body.get('client_id'), 'key1');
  assert.equal(body.get('code_verifier'), 'v'.repeat(43));
  assert.equal(body.has('redirect_uri'), false);
  assert.throws(() => authorizationCodeRequest({ urls, client: { clientId: 'key1' }, code: 'c' }), DropkeyError);
  assert.throws(() => authorizationCodeRequest({ urls, client: { clientId: 'k', clientSecret: 's' }, code: '' }), DropkeyError);
});

test('refresh request shapes', () => {
  const a = refreshTokenRequest({ urls, client: { clientId: 'key1', clientSecret: SECRET }, refreshToken: REFRESH });
  const ab = new URLSearchParams(String(a.init.body));
  assert.equal(ab.get('grant_type'), 'refresh_token');
  assert.equal(ab.get('refresh_token'), REFRESH);
  assert.equal(ab.has('client_id'), false);
  assert.ok(a.init.headers['authorization']?.startsWith('Basic '));
  const b = refreshTokenRequest({ urls, client: { clientId: 'key1' }, refreshToken: REFRESH, scopes: ['a.b', 'c.d'] });
  const bb = new URLSearchParams(String(b.init.body));
  assert.equal(bb.get('client_id'), 'key1');
  assert.equal(bb.get('scope'), 'a.b c.d');
  assert.equal(b.init.headers['authorization'], undefined);
  assert.throws(() => refreshTokenRequest({ urls, client: { clientId: 'k' }, refreshToken: '' }), DropkeyError);
});

test('revoke request: Bearer, no body', () => {
  const r = revokeRequest({ urls, accessToken: 'sl.abc' });
  assert.equal(r.url, 'https://api.dropboxapi.com/2/auth/token/revoke');
  assert.equal(r.init.headers['authorization'], 'Bearer sl.abc');
  assert.equal(r.init.body, undefined);
  assert.equal(r.init.headers['content-type'], undefined);
});

test('processTokenResponse: the documented example', async () => {
  const set = await processTokenResponse(json(200, DOC_EXAMPLE), { grant: 'authorization_code', now });
  assert.deepEqual(set, {
    accessToken: DOC_EXAMPLE.access_token,
    refreshToken: REFRESH,
    expiresAt: NOW + 14_400_000,
    scopes: ['account_info.read', 'files.content.read', 'files.content.write', 'files.metadata.read'],
    accountId: DOC_EXAMPLE.account_id,
    uid: '12345',
    tokenType: 'bearer',
  });
});

test('processTokenResponse: team_id, no uid, no scope, Bearer capitalised, legacy (no expiry)', async () => {
  const set = await processTokenResponse(
    json(200, { access_token: 'tok', token_type: 'Bearer', team_id: 'dbtid:AAA' }),
    { grant: 'authorization_code', now },
  );
  assert.equal(set.teamId, 'dbtid:AAA');
  assert.equal(set.accountId, undefined);
  assert.equal(set.uid, undefined);
  assert.deepEqual(set.scopes, []);
  assert.equal(set.expiresAt, undefined);
});

test('processTokenResponse: refresh answer without ids is fine', async () => {
  const set = await processTokenResponse(json(200, { access_token: 'sl.B2M8', token_type: 'bearer', expires_in: 14400 }), {
    grant: 'refresh_token',
    now,
  });
  assert.equal(set.accessToken, 'sl.B2M8');
  assert.equal(set.refreshToken, undefined);
});

test('processTokenResponse: invalid bodies are refused without echoing tokens', async () => {
  const bad: Array<[string, unknown]> = [
    ['not json', 'hello'],
    ['no access_token', { token_type: 'bearer', account_id: 'a' }],
    ['token_type', { access_token: 'SECRETTOKEN1', token_type: 'mac', account_id: 'a' }],
    ['expires_in', { access_token: 'SECRETTOKEN1', token_type: 'bearer', expires_in: -1, account_id: 'a' }],
    ['refresh_token', { access_token: 'SECRETTOKEN1', token_type: 'bearer', refresh_token: '', account_id: 'a' }],
    ['scope', { access_token: 'SECRETTOKEN1', token_type: 'bearer', scope: ['a'], account_id: 'a' }],
    ['neither', { access_token: 'SECRETTOKEN1', token_type: 'bearer' }],
  ];
  for (const [name, body] of bad) {
    const res = typeof body === 'string' ? new Response(body, { status: 200 }) : json(200, body);
    await assert.rejects(processTokenResponse(res, { grant: 'authorization_code', now }), (e: unknown) => {
      assert.ok(e instanceof DropboxApiError, name);
      assert.equal(e.code, ErrorCodes.OAUTH_FAILED, name);
      assert.ok(!e.message.includes('SECRETTOKEN1'), name);
      assert.ok(!JSON.stringify(e).includes('SECRETTOKEN1'), name);
      return true;
    });
  }
});

async function failure(res: Response, grant: 'authorization_code' | 'refresh_token' = 'refresh_token', secrets: string[] = []) {
  try {
    await processTokenResponse(res, { grant, now, secrets });
  } catch (e) {
    assert.ok(e instanceof DropboxApiError);
    return e;
  }
  assert.fail('expected rejection');
}

// Every row of https://www.dropbox.com/developers/documentation/http/documentation#oauth2-token's error table.
test('error: bad/used/expired code → OAUTH_FAILED, summary invalid_grant', async () => {
  const e = await failure(
    json(400, { error: 'invalid_grant', error_description: "code doesn't exist or has expired" }),
    'authorization_code',
  );
  assert.equal(e.code, ErrorCodes.OAUTH_FAILED);
  assert.equal(e.summary, 'invalid_grant');
  assert.equal(e.status, 400);
  assert.match(e.message, /code/);
  assert.match(e.fix ? fixCommand(e.fix) : '', /dropkey login/);
});

test('error: redirect_uri mismatch → OAUTH_FAILED with the fix', async () => {
  const e = await failure(json(400, { error: 'invalid_grant', error_description: 'redirect_uri mismatch' }), 'authorization_code');
  assert.equal(e.code, ErrorCodes.OAUTH_FAILED);
  assert.equal(e.details?.['reason'], 'redirect_uri_mismatch');
  assert.match(e.hint ?? '', /Redirect URIs/);
});

test('error: revoked refresh token → REAUTH_REQUIRED', async () => {
  const e = await failure(json(400, { error: 'invalid_grant', error_description: 'refresh token is invalid or revoked' }));
  assert.equal(e.code, ErrorCodes.REAUTH_REQUIRED);
  assert.equal(e.summary, 'invalid_grant');
  assert.match(e.fix ? fixCommand(e.fix) : '', /dropkey login/);
  assert.equal(isRetryable(e), false);
});

test('error: missing field / unknown field / unsupported grant → OAUTH_FAILED', async () => {
  for (const body of [
    { error: 'invalid_request', error_description: 'missing required field "code"' },
    { error: 'invalid_request', error_description: 'unknown field "client_id"' },
    { error: 'unsupported_grant_type' },
  ]) {
    const e = await failure(json(400, body), 'authorization_code');
    assert.equal(e.code, ErrorCodes.OAUTH_FAILED);
    assert.equal(e.summary, body.error);
  }
});

test('error: invalid_client (both shapes, 400 or 401) → INVALID_CLIENT in plain words', async () => {
  for (const res of [
    json(400, { error: 'invalid_client: Invalid client_id or client_secret' }),
    json(400, { error: 'invalid_client', error_description: 'Invalid client_id or client_secret' }),
    json(401, { error: 'invalid_client' }),
  ]) {
    const e = await failure(res);
    assert.equal(e.code, ErrorCodes.INVALID_CLIENT);
    assert.equal(e.summary, 'invalid_client');
    assert.match(e.message, /app key or secret/);
    // The app exists: registering it again would fail. The caller, which knows the app, adds the fix.
    assert.equal(e.fix, undefined);
    assert.match(e.hint ?? '', /store them in place of the old ones/);
  }
});

test('error: 5xx, 429 and non-JSON → DROPBOX_UNAVAILABLE, retryable, Retry-After', async () => {
  const a = await failure(
    json(500, { error: 'The server has either erred or is incapable of performing the requested operation.' }),
  );
  assert.equal(a.code, ErrorCodes.DROPBOX_UNAVAILABLE);
  assert.ok(isRetryable(a));
  const b = await failure(new Response('busy', { status: 429, headers: { 'retry-after': '7' } }));
  assert.equal(b.code, ErrorCodes.DROPBOX_UNAVAILABLE);
  assert.equal(retryAfterOf(b), 7);
  const c = await failure(json(429, { error: { reason: { '.tag': 'too_many_requests' }, retry_after: 3 } }));
  assert.equal(retryAfterOf(c), 3);
  const d = await failure(new Response('<html>bad gateway</html>', { status: 502 }));
  assert.ok(isRetryable(d));
});

test('error messages never contain the secrets sent', async () => {
  const e = await failure(
    json(400, { error: 'invalid_request', error_description: `bad value ${REFRESH} and ${SECRET}` }),
    'refresh_token',
    [REFRESH, SECRET],
  );
  const all = `${e.message} ${e.hint} ${JSON.stringify(e)}`;
  assert.ok(!all.includes(REFRESH));
  assert.ok(!all.includes(SECRET));
});

function recordingFetch(responses: Array<Response | Error>) {
  const calls: Request[] = [];
  const f: FetchLike = async (input, init) => {
    calls.push(new Request(input, init));
    const r = responses.shift();
    if (!r) throw new Error('unexpected request');
    if (r instanceof Error) throw r;
    return r;
  };
  return { f, calls };
}

test('facade: exchangeCode sends the request and returns tokens', async () => {
  const { f, calls } = recordingFetch([json(200, DOC_EXAMPLE)]);
  const set = await exchangeCode({
    urls,
    fetch: f,
    now,
    client: { clientId: 'key1' },
    code: 'abc',
    codeVerifier: 'v'.repeat(50),
    redirectUri: 'http://127.0.0.1:1/cb',
  });
  assert.equal(set.refreshToken, REFRESH);
  assert.equal(calls.length, 1);
  const body = new URLSearchParams(await calls[0]!.text());
  assert.equal(body.get('client_id'), 'key1');
  assert.equal(body.get('code'), 'abc');
});

test('facade: refresh keeps the old refresh token when none is returned', async () => {
  const { f } = recordingFetch([json(200, { access_token: 'sl.new', token_type: 'bearer', expires_in: 100 })]);
  const set = await refreshAccessToken({ urls, fetch: f, now, client: { clientId: 'k', clientSecret: SECRET }, refreshToken: REFRESH });
  assert.equal(set.accessToken, 'sl.new');
  assert.equal(set.refreshToken, REFRESH);
  assert.equal(set.expiresAt, NOW + 100_000);
});

test('facade: network failure → retryable DROPBOX_UNAVAILABLE; timeout too', async () => {
  const { f } = recordingFetch([new TypeError('fetch failed')]);
  await assert.rejects(
    refreshAccessToken({ urls, fetch: f, now, client: { clientId: 'k' }, refreshToken: REFRESH }),
    (e: unknown) => e instanceof DropkeyError && e.code === ErrorCodes.DROPBOX_UNAVAILABLE && isRetryable(e),
  );
  const hanging: FetchLike = (_i, init) =>
    new Promise((_res, rej) => init?.signal?.addEventListener('abort', () => rej(init.signal?.reason)));
  await assert.rejects(
    refreshAccessToken({ urls, fetch: hanging, now, client: { clientId: 'k' }, refreshToken: REFRESH, timeoutMs: 20 }),
    (e: unknown) => e instanceof DropkeyError && e.code === ErrorCodes.DROPBOX_UNAVAILABLE && /timed out/.test(e.message),
  );
  const ac = new AbortController();
  const p = refreshAccessToken({ urls, fetch: hanging, now, client: { clientId: 'k' }, refreshToken: REFRESH, signal: ac.signal });
  ac.abort();
  await assert.rejects(p, (e: unknown) => e instanceof DropkeyError && e.code === ErrorCodes.CANCELLED);
});

test('facade: revoke', async () => {
  const ok = recordingFetch([json(200, null)]);
  assert.deepEqual(await revokeToken({ urls, fetch: ok.f, accessToken: 'sl.x' }), { alreadyInvalid: false });
  const gone = recordingFetch([
    json(401, { error_summary: 'invalid_access_token/..', error: { '.tag': 'invalid_access_token' } }),
  ]);
  assert.deepEqual(await revokeToken({ urls, fetch: gone.f, accessToken: 'sl.x' }), { alreadyInvalid: true });
  const bad = recordingFetch([new Response('oops', { status: 503 })]);
  await assert.rejects(revokeToken({ urls, fetch: bad.f, accessToken: 'sl.x' }), (e: unknown) => isRetryable(e));
});

test('revoke: only Dropbox\'s own answer (200, JSON null) counts; a portal or a wrong URL keeps the connection', async () => {
  const answers: Array<[Response, RegExp]> = [
    [new Response('<html>Welcome to the hotel Wi-Fi</html>', { status: 200, headers: { 'content-type': 'text/html' } }), /HTTP 200 text\/html.*Welcome to the hotel/],
    [new Response(null, { status: 204 }), /HTTP 204/],
    [json(200, { ok: true }), /HTTP 200 application\/json.*"ok":true/],
    [new Response('null', { status: 200, headers: { 'content-type': 'text/plain' } }), /HTTP 200 text\/plain/],
    [new Response('', { status: 200, headers: { 'content-type': 'application/json' } }), /HTTP 200 application\/json, empty body/],
  ];
  for (const [res, said] of answers) {
    const { f } = recordingFetch([res]);
    await assert.rejects(revokeToken({ urls, fetch: f, accessToken: 'sl.secret-token-value' }), (e: unknown) => {
      assert.ok(e instanceof DropkeyError, String(e));
      assert.equal(e.code, ErrorCodes.DROPBOX_API);
      assert.match(e.message, said);
      assert.match(e.message, /not Dropbox's answer/);
      assert.equal(isRetryable(e), false, 'a wrong server does not get better by retrying');
      assert.match(e.hint ?? '', /DROPKEY_DROPBOX_URL/);
      assert.doesNotMatch(JSON.stringify(e) + e.message, /secret-token-value/);
      return true;
    });
  }
  // Dropbox's own answer, with or without a charset.
  const real = recordingFetch([new Response('null', { status: 200, headers: { 'content-type': 'application/json; charset=utf-8' } })]);
  assert.deepEqual(await revokeToken({ urls, fetch: real.f, accessToken: 'sl.x' }), { alreadyInvalid: false });
});

test('tokens from the token endpoint must look like tokens (characters, length) before anyone stores them', async () => {
  const bad: Array<[string, Record<string, unknown>]> = [
    ['access_token', { access_token: 'sl.good\nX-Injected: 1' }],
    ['access_token', { access_token: 'sl.\u001b]52;c;cHduZWQ=\u0007' }],
    ['access_token', { access_token: 'sl.with space' }],
    ['access_token', { access_token: `sl.${'a'.repeat(9000)}` }],
    ['refresh_token', { refresh_token: 'rt with\ttab' }],
    ['refresh_token', { refresh_token: 'x'.repeat(9000) }],
    ['id_token', { id_token: 'eyJ.x\n.y' }],
  ];
  for (const [field, patch] of bad) {
    const res = json(200, { ...DOC_EXAMPLE, ...patch });
    await assert.rejects(processTokenResponse(res, { grant: 'authorization_code', now }), (e: unknown) => {
      assert.ok(e instanceof DropboxApiError, String(e));
      assert.equal(e.code, ErrorCodes.OAUTH_FAILED);
      assert.match(e.message, new RegExp(`${field} is not a token`));
      assert.doesNotMatch(e.message, /Injected|cHduZWQ|aaaaaaaa|xxxxxxxx/);
      return true;
    });
  }
  // What Dropbox really sends passes (the documented example, a JWT id_token).
  const ok = await processTokenResponse(json(200, { ...DOC_EXAMPLE, id_token: 'eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ4In0.c2ln-_' }), { grant: 'authorization_code', now });
  assert.equal(ok.accessToken, DOC_EXAMPLE.access_token);
});

test('a redirect from the token endpoint is reported as a redirect, with where it pointed, and never followed', async () => {
  const { f, calls } = recordingFetch([new Response('', { status: 302, headers: { location: 'https://login.example.net/portal?next=x' } })]);
  await assert.rejects(refreshAccessToken({ urls, fetch: f, now, client: { clientId: 'k', clientSecret: SECRET }, refreshToken: REFRESH }), (e: unknown) => {
    assert.ok(e instanceof DropkeyError, String(e));
    assert.equal(e.code, ErrorCodes.OAUTH_FAILED);
    assert.match(e.message, /redirect \(HTTP 302\) to https:\/\/login\.example\.net\/portal/);
    assert.doesNotMatch(e.message, /fetch failed/);
    assert.match(e.hint ?? '', /DROPKEY_DROPBOX_URL/);
    assert.equal(isRetryable(e), false);
    return true;
  });
  assert.equal(calls[0]!.redirect, 'manual', 'the refresh token and secret are never re-sent to wherever it points');
});

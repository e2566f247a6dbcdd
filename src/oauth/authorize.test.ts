import { test } from 'node:test';
import assert from 'node:assert/strict';
import { buildAuthorizeUrl, parseCallback } from './authorize.js';
import { DropkeyError, ErrorCodes } from '../errors.js';
import { DROPBOX_URLS, dropboxUrlsFromBase } from '../dropbox/hosts.js';

const CHALLENGE = 'E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM';
const base = {
  urls: DROPBOX_URLS,
  clientId: 'abc123key',
  state: 'st+/=&ate',
  codeChallenge: CHALLENGE,
  tokenAccessType: 'offline' as const,
};

test('authorize URL: required params, S256, encoding', () => {
  const u = buildAuthorizeUrl({
    ...base,
    redirectUri: 'http://127.0.0.1:53682/callback?x=1&y=2',
    scopes: ['files.content.read', 'account_info.read'],
  });
  assert.ok(u.startsWith('https://www.dropbox.com/oauth2/authorize?client_id=abc123key&response_type=code&'));
  const p = new URL(u).searchParams;
  assert.equal(p.get('response_type'), 'code');
  assert.equal(p.get('code_challenge_method'), 'S256');
  assert.equal(p.get('code_challenge'), CHALLENGE);
  assert.equal(p.get('token_access_type'), 'offline');
  assert.equal(p.get('state'), 'st+/=&ate');
  assert.equal(p.get('redirect_uri'), 'http://127.0.0.1:53682/callback?x=1&y=2');
  assert.equal(p.get('scope'), 'files.content.read account_info.read');
  // Spaces as %20, reserved characters percent-encoded.
  assert.ok(u.includes('scope=files.content.read%20account_info.read'));
  assert.ok(u.includes('state=st%2B%2F%3D%26ate'));
  assert.ok(u.includes('redirect_uri=http%3A%2F%2F127.0.0.1%3A53682%2Fcallback%3Fx%3D1%26y%3D2'));
  for (const absent of ['include_granted_scopes', 'force_reapprove', 'require_role', 'locale']) {
    assert.equal(p.has(absent), false, absent);
  }
});

test('authorize URL: no redirect_uri for the no-redirect flow; optional params', () => {
  const u = buildAuthorizeUrl({
    ...base,
    urls: dropboxUrlsFromBase('http://127.0.0.1:9999/'),
    scopes: ['team_info.read'],
    includeGrantedScopes: 'team',
    forceReapprove: true,
    requireRole: 'work',
    locale: 'pt-BR',
    tokenAccessType: 'online',
  });
  const url = new URL(u);
  assert.equal(url.origin + url.pathname, 'http://127.0.0.1:9999/oauth2/authorize');
  const p = url.searchParams;
  assert.equal(p.has('redirect_uri'), false);
  assert.equal(p.get('include_granted_scopes'), 'team');
  assert.equal(p.get('force_reapprove'), 'true');
  assert.equal(p.get('require_role'), 'work');
  assert.equal(p.get('locale'), 'pt-BR');
  assert.equal(p.get('token_access_type'), 'online');
});

test('authorize URL: bad input refused', () => {
  assert.throws(() => buildAuthorizeUrl({ ...base, state: 'x'.repeat(501) }), DropkeyError);
  assert.throws(() => buildAuthorizeUrl({ ...base, state: 'é'.repeat(251) }), DropkeyError); // 502 bytes
  assert.doesNotThrow(() => buildAuthorizeUrl({ ...base, state: 'x'.repeat(500) }));
  assert.throws(() => buildAuthorizeUrl({ ...base, includeGrantedScopes: 'user' }), DropkeyError);
  assert.throws(() => buildAuthorizeUrl({ ...base, clientId: '' }), DropkeyError);
  assert.throws(() => buildAuthorizeUrl({ ...base, codeChallenge: 'plain' }), DropkeyError);
  assert.throws(() => buildAuthorizeUrl({ ...base, scopes: ['a b'] }), DropkeyError);
});

function oauthFailure(fn: () => unknown): DropkeyError {
  try {
    fn();
  } catch (e) {
    assert.ok(e instanceof DropkeyError);
    assert.equal(e.code, ErrorCodes.OAUTH_FAILED);
    return e;
  }
  assert.fail('expected an error');
}

test('callback: code returned for matching state, from URL, path or query', () => {
  const st = 'state-123_abc';
  assert.deepEqual(parseCallback(`http://127.0.0.1:1/cb?code=C0DE&state=${st}`, st), { code: 'C0DE', state: st });
  assert.deepEqual(parseCallback(`/cb?code=C0DE&state=${st}`, st).code, 'C0DE');
  assert.deepEqual(parseCallback(`?code=C0DE&state=${st}`, st).code, 'C0DE');
  assert.deepEqual(parseCallback(`code=C0DE&state=${st}`, st).code, 'C0DE');
  assert.deepEqual(parseCallback(new URL(`http://x/cb?state=${st}&code=A%2BB`), st).code, 'A+B');
});

test('callback: state mismatch / missing', () => {
  const e = oauthFailure(() => parseCallback('?code=C&state=Xq7ForeignState', 'Zr9ExpectedState'));
  assert.equal(e.details?.['reason'], 'state_mismatch');
  assert.ok(!e.message.includes('Zr9ExpectedState') && !e.message.includes('Xq7ForeignState'));
  assert.equal(oauthFailure(() => parseCallback('?code=C', 'expected')).details?.['reason'], 'state_missing');
  assert.equal(
    oauthFailure(() => parseCallback(`?code=C&state=${'e'.repeat(600)}`, 'expected')).details?.['reason'],
    'state_mismatch',
  );
  // An error redirect with a foreign state is refused as a mismatch before its error is trusted.
  assert.equal(
    oauthFailure(() => parseCallback('?error=access_denied&state=zzz', 'expected')).details?.['reason'],
    'state_mismatch',
  );
});

test('callback: access_denied says you clicked Cancel; other errors carry Dropbox text', () => {
  const e = oauthFailure(() =>
    parseCallback('?error=access_denied&error_description=The+user+chose+not+to+give+your+app+access&state=s1', 's1'),
  );
  assert.match(e.message, /clicked Cancel/);
  assert.match(e.message, /chose not to give/);
  assert.equal(e.details?.['reason'], 'access_denied');
  const o = oauthFailure(() => parseCallback('?error=server_error&state=s1', 's1'));
  assert.match(o.message, /server_error/);
  assert.equal(o.details?.['reason'], 'provider_error');
  assert.equal(oauthFailure(() => parseCallback('?state=s1', 's1')).details?.['reason'], 'code_missing');
});

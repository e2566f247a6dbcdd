import { test } from 'node:test';
import assert from 'node:assert/strict';
import { cleanSummary, decodeDropboxError, errorTag, isRetryable, parseRetryAfter, redactSecrets, retryAfterOf } from './errors.js';
import { ErrorCodes } from '../errors.js';
import { httpHeaderSafeJson } from './header-json.js';
import { fixCommand } from '../cli/fix.js';

function decode(status: number, body: unknown, headers: Record<string, string> = {}, route = 'files/upload', secrets: string[] = []) {
  const text = typeof body === 'string' ? body : JSON.stringify(body);
  return decodeDropboxError({ status, headers: new Headers(headers), text, route, secrets });
}

test('400 plain text: team token without Select-User → plain words and the fix', () => {
  const e = decode(
    400,
    'Error in call to API function "users/get_current_account": This API function operates on a single Dropbox account, but the OAuth 2 access token you provided is for an entire Dropbox Business team.  Since your API app key has team member file access permissions, you can operate on a team member\'s Dropbox by providing the "Dropbox-API-Select-User" HTTP header or "select_user" URL parameter to specify the exact user <https://www.dropbox.com/developers/documentation/http/teams>.',
    { 'content-type': 'text/plain; charset=utf-8' },
    'users/get_current_account',
  );
  assert.equal(e.status, 400);
  assert.equal(e.code, ErrorCodes.DROPBOX_API);
  assert.equal(e.details?.['reason'], 'team_token_without_select_user');
  assert.match(e.message, /whole Business team/);
  assert.match(e.hint ?? '', /Select-User/);
  assert.equal(isRetryable(e), false);
});

test('400: user token on a team route; malformed token (echoed value redacted); generic bad input', () => {
  const a = decode(400, 'Error in call to API function "team/get_info": This is a DfB team management function.  The OAuth 2 access token you provided is for a specific Dropbox user account and does not work with this function.', {}, 'team/get_info');
  assert.equal(a.details?.['reason'], 'user_token_on_team_route');
  assert.match(a.fix ? fixCommand(a.fix) : '', /--team/);
  const b = decode(400, 'Error in call to API function "files/list_folder": Invalid authorization value in HTTP header "Authorization": "sl.Bl1234567890abcdef".  Expecting "Bearer <oauth2-access-token>".');
  assert.equal(b.details?.['reason'], 'malformed_token');
  assert.ok(!JSON.stringify(b).includes('sl.Bl1234567890abcdef'));
  const c = decode(400, 'Error in call to API function "files/upload": HTTP header "Dropbox-API-Arg": path: The root folder is unsupported.');
  assert.match(c.message, /bad input: HTTP header "Dropbox-API-Arg": path: The root folder is unsupported\./);
});

test('401 AuthError tags', () => {
  const scope = decode(401, { error_summary: 'missing_scope/', error: { '.tag': 'missing_scope', required_scope: 'files.content.write' } });
  assert.equal(
    scope.message,
    "the token lacks the scope files.content.write: enable it in the App Console's Permissions tab, then log in again (scopes are fixed at login)",
  );
  assert.equal(scope.fix ? fixCommand(scope.fix) : '', 'dropkey login');
  assert.equal(scope.details?.['requiredScope'], 'files.content.write');
  assert.equal(errorTag(scope), 'missing_scope');
  assert.equal(scope.summary, 'missing_scope/');

  const expired = decode(401, { error_summary: 'expired_access_token/', error: { '.tag': 'expired_access_token' } });
  assert.equal(expired.code, ErrorCodes.TOKEN_EXPIRED);
  const invalid = decode(401, { error_summary: 'invalid_access_token/...', error: { '.tag': 'invalid_access_token' } });
  assert.match(invalid.message, /revoked/);
  assert.match(invalid.fix ? fixCommand(invalid.fix) : '', /dropkey doctor/);
  for (const tag of ['invalid_select_user', 'invalid_select_admin', 'user_suspended', 'route_access_denied', 'other']) {
    const e = decode(401, { error_summary: `${tag}/`, error: { '.tag': tag } });
    assert.equal(e.status, 401);
    assert.equal(errorTag(e), tag);
    assert.ok(e.message.length > 10);
  }
});

test('403, 409 with user_message, 422', () => {
  const a = decode(403, { error_summary: 'team_access_denied/', error: { '.tag': 'team_access_denied' } });
  assert.match(a.message, /team's settings/);
  const b = decode(409, {
    error_summary: 'path/conflict/file/..',
    error: { '.tag': 'path', path: { '.tag': 'conflict', conflict: { '.tag': 'file' } } },
    user_message: { text: 'There is already a file here.', locale: 'en' },
  });
  assert.equal(b.code, ErrorCodes.DROPBOX_API);
  assert.equal(b.summary, 'path/conflict/file/..');
  assert.match(b.message, /already exists.*path\/conflict\/file\).*There is already a file here/);
  assert.deepEqual(b.error, { '.tag': 'path', path: { '.tag': 'conflict', conflict: { '.tag': 'file' } } });
  const c = decode(422, { error_summary: 'invalid_root/..', error: { '.tag': 'invalid_root', invalid_root: { '.tag': 'user' } } });
  assert.match(c.message, /Path-Root/);
});

test('429 JSON and plain text; 5xx; request id kept', () => {
  const a = decode(429, { error_summary: 'too_many_requests/', error: { reason: { '.tag': 'too_many_requests' }, retry_after: 4 } }, { 'retry-after': '9' });
  assert.equal(a.code, ErrorCodes.DROPBOX_UNAVAILABLE);
  assert.equal(retryAfterOf(a), 4);
  const b = decode(429, 'slow down', { 'retry-after': '2' });
  assert.equal(b.summary, 'too_many_requests');
  assert.equal(retryAfterOf(b), 2);
  const c = decode(503, '', { 'x-dropbox-request-id': 'req-1' });
  assert.ok(isRetryable(c));
  assert.equal(c.details?.['requestId'], 'req-1');
  assert.equal(retryAfterOf(c), undefined);
});

test('parseRetryAfter, cleanSummary, redactSecrets', () => {
  assert.equal(parseRetryAfter(new Headers({ 'retry-after': '5' })), 5);
  assert.equal(parseRetryAfter(new Headers({ 'retry-after': 'soon' })), undefined);
  assert.equal(parseRetryAfter(new Headers({ 'retry-after': new Date(10_000).toUTCString() }), undefined, () => 4_000), 6);
  assert.equal(parseRetryAfter(new Headers(), { error: { retry_after: 0 } }), 0);
  assert.equal(cleanSummary('path/not_found/..'), 'path/not_found');
  assert.equal(cleanSummary('missing_scope/'), 'missing_scope');
  assert.equal(redactSecrets('a TOKEN123 b', ['TOKEN123']), 'a [redacted] b');
  assert.equal(redactSecrets('Authorization: Bearer abcdefghijkl'), 'Authorization: Bearer [redacted]');
});

test('header-safe JSON escapes 0x7F and non-ASCII, astral chars as surrogate pairs', () => {
  assert.equal(httpHeaderSafeJson({ p: 'a\u007fé€😀' }), '{"p":"a\\u007f\\u00e9\\u20ac\\ud83d\\ude00"}');
  assert.equal(httpHeaderSafeJson(undefined), 'null');
  const s = httpHeaderSafeJson({ path: '/日本/ü\n"q"' });
  assert.match(s, /^[\x20-\x7e]*$/);
  assert.deepEqual(JSON.parse(s), { path: '/日本/ü\n"q"' });
});

test('plain-text 401/403 bodies are not mistaken for union tags', () => {
  const e = decode(401, 'Unauthorized');
  assert.equal(e.summary, 'http_401');
  assert.equal(errorTag(e), undefined);
  assert.match(e.message, /unknown reason/);
  assert.equal(decode(403, 'Forbidden').summary, 'http_403');
});

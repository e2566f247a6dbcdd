import { test } from 'node:test';
import assert from 'node:assert/strict';
import ini from 'ini';
import { formatAirflowJson, formatAirflowUri, formatEnv, formatJson, formatRclone, rfc3339, type ExportInput } from './export-formats.js';

const base: ExportInput = {
  connection: 'default',
  appKey: 'k3y',
  appSecret: 's3cr3t/+=',
  accessToken: 'sl.u.AbC-def_123',
  expiresAt: Date.UTC(2026, 0, 2, 3, 4, 5, 678),
  refreshToken: 'rEfReSh-token_1',
  scopes: ['account_info.read', 'files.content.read'],
  accountId: 'dbid:abc',
  teamId: null,
  email: 'a@example.com',
};

test('rfc3339 drops milliseconds and stays UTC', () => {
  assert.equal(rfc3339(base.expiresAt!), '2026-01-02T03:04:05Z');
});

test('env: parseable dotenv lines, refresh token and secret included only when present', () => {
  const parse = (s: string) => Object.fromEntries(s.trim().split('\n').map((l) => [l.slice(0, l.indexOf('=')), l.slice(l.indexOf('=') + 1)]));
  const env = parse(formatEnv(base));
  assert.equal(env['DROPBOX_ACCESS_TOKEN'], base.accessToken);
  assert.equal(env['DROPBOX_REFRESH_TOKEN'], base.refreshToken);
  assert.equal(env['DROPBOX_APP_KEY'], 'k3y');
  assert.equal(env['DROPBOX_APP_SECRET'], 's3cr3t/+=');
  assert.equal(env['DROPBOX_ACCESS_TOKEN_EXPIRES_AT'], '2026-01-02T03:04:05Z');
  const pkce = parse(formatEnv({ ...base, appSecret: null, refreshToken: null, expiresAt: null }));
  assert.deepEqual(Object.keys(pkce), ['DROPBOX_ACCESS_TOKEN', 'DROPBOX_APP_KEY']);
});

test('env: a value with shell metacharacters is double-quoted and escaped', () => {
  assert.match(formatEnv({ ...base, accessToken: 'a b"$c' }), /^DROPBOX_ACCESS_TOKEN="a b\\"\\\$c"$/m);
});

test('json: expires_in counts from the injected clock', () => {
  const j = JSON.parse(formatJson(base, base.expiresAt! - 60_500));
  assert.equal(j.expires_in, 60);
  assert.equal(j.refresh_token, base.refreshToken);
  assert.equal(j.scope, 'account_info.read files.content.read');
  assert.equal(j.token_type, 'bearer');
});

test('rclone: an INI section whose token is JSON with the refresh token and RFC 3339 expiry', () => {
  const conf = ini.parse(formatRclone(base, 'dropbox'));
  const sec = conf['dropbox'];
  assert.equal(sec.type, 'dropbox');
  assert.equal(sec.client_id, 'k3y');
  assert.equal(sec.client_secret, 's3cr3t/+=');
  const token = JSON.parse(sec.token);
  assert.deepEqual(token, { access_token: base.accessToken, token_type: 'bearer', refresh_token: base.refreshToken, expiry: '2026-01-02T03:04:05Z' });
});

test('rclone: no client_secret line for a PKCE-only app', () => {
  assert.doesNotMatch(formatRclone({ ...base, appSecret: null }, 'x'), /client_secret/);
});

test('airflow URI: password is the access token, extras carry refresh token and app credentials', () => {
  const u = new URL(formatAirflowUri({ ...base, accessToken: 'sl.a/b+c=' }, 'http://127.0.0.1:8123'));
  assert.equal(u.hostname, '127.0.0.1');
  assert.equal(u.port, '8123');
  assert.equal(u.protocol, 'dropbox:');
  assert.equal(decodeURIComponent(u.password), 'sl.a/b+c=');
  assert.equal(u.username, '');
  assert.equal(u.searchParams.get('refresh_token'), base.refreshToken);
  assert.equal(u.searchParams.get('app_key'), 'k3y');
  assert.equal(u.searchParams.get('app_secret'), 's3cr3t/+=');
});

test('airflow JSON: keyed by connection id, in the shape airflow connections import reads', () => {
  const j = JSON.parse(formatAirflowJson(base, 'dropbox_default', 'https://api.dropboxapi.com'));
  assert.deepEqual(Object.keys(j), ['dropbox_default']);
  assert.equal(j.dropbox_default.conn_type, 'dropbox');
  assert.equal(j.dropbox_default.host, 'api.dropboxapi.com');
  assert.equal(j.dropbox_default.port, undefined);
  assert.equal(j.dropbox_default.password, base.accessToken);
  assert.equal(j.dropbox_default.extra.refresh_token, base.refreshToken);
});

import { test } from 'node:test';
import assert from 'node:assert/strict';
import ini from 'ini';
import { renderRclone } from './rclone.js';
import type { TokenSnapshot } from './types.js';

const snap = (n: number, extra: Partial<TokenSnapshot> = {}): TokenSnapshot => ({
  connection: 'backup',
  accessToken: `sl.token-${n}`,
  expiresAt: new Date(Date.UTC(2026, 0, 2, 3 + n, 0, 0)),
  scopes: ['files.content.read'],
  account: { id: 'dbid:1', email: 'a@example.com', name: 'A' },
  team: null,
  appKey: 'k3y',
  ...extra,
});

const CONF = `# my rclone config ; keep me
[s3]
type = s3
provider = AWS
access_key_id = AKIA
; a comment inside s3

[dropbox]
type = dropbox
# the token below is rewritten
token = {"access_token":"old","token_type":"bearer","expiry":"2020-01-01T00:00:00Z"}
chunk_size = 48Mi

[gdrive]
type = drive
token = {"access_token":"g","token_type":"Bearer"}
`;

test('rclone: only the token line of the named remote changes, over 10 renders', () => {
  let text = CONF;
  for (let n = 1; n <= 10; n++) text = renderRclone(text, snap(n), { remote: 'dropbox', includeRefreshToken: false });
  const want = CONF.replace(/^token = \{"access_token":"old".*$/m, 'token = {"access_token":"sl.token-10","token_type":"bearer","expiry":"2026-01-02T13:00:00Z"}');
  assert.equal(text, want);
  const conf = ini.parse(text);
  assert.equal(conf['dropbox'].chunk_size, '48Mi');
  assert.deepEqual(JSON.parse(conf['dropbox'].token), { access_token: 'sl.token-10', token_type: 'bearer', expiry: '2026-01-02T13:00:00Z' });
  assert.doesNotMatch(text, /refresh_token|client_secret/);
});

test('rclone: a missing remote is appended as type dropbox, a missing file created', () => {
  const out = renderRclone(CONF, snap(1), { remote: 'dbx work', includeRefreshToken: false });
  assert.ok(out.startsWith(CONF));
  assert.equal(out.slice(CONF.length), '\n[dbx work]\ntype = dropbox\ntoken = {"access_token":"sl.token-1","token_type":"bearer","expiry":"2026-01-02T04:00:00Z"}\n');
  const fresh = renderRclone(null, snap(1), { remote: 'dropbox', includeRefreshToken: false });
  assert.equal(fresh, '[dropbox]\ntype = dropbox\ntoken = {"access_token":"sl.token-1","token_type":"bearer","expiry":"2026-01-02T04:00:00Z"}\n');
});

test('rclone: an unknown expiry without a refresh token is Go\'s zero time (never refreshed by rclone)', () => {
  const out = renderRclone(null, snap(1, { expiresAt: null }), { remote: 'd', includeRefreshToken: false });
  assert.match(out, /"expiry":"0001-01-01T00:00:00Z"/);
});

test('rclone: includeRefreshToken writes refresh token and app credentials for a self-refreshing mount', () => {
  const s = snap(1, { longLived: { refreshToken: 'rt-1', appSecret: 'sec' } });
  const out = renderRclone(CONF, s, { remote: 'dropbox', includeRefreshToken: true });
  const sec = ini.parse(out)['dropbox'];
  assert.equal(sec.client_id, 'k3y');
  assert.equal(sec.client_secret, 'sec');
  assert.equal(JSON.parse(sec.token).refresh_token, 'rt-1');
  // Switching back to the default takes the secret and refresh token out again.
  const back = renderRclone(out, snap(2), { remote: 'dropbox', includeRefreshToken: false });
  assert.doesNotMatch(back, /rt-1|client_secret|sec\b/);
  assert.throws(() => renderRclone(CONF, snap(1), { remote: 'dropbox', includeRefreshToken: true }), /does not hand it out/);
});

test('rclone: CRLF files keep their line endings', () => {
  const crlf = CONF.replace(/\n/g, '\r\n');
  const out = renderRclone(crlf, snap(1), { remote: 'new', includeRefreshToken: false });
  assert.doesNotMatch(out.replace(/\r\n/g, ''), /\n/);
  assert.ok(out.startsWith(crlf));
});

test('rclone: a remote of another type, an encrypted or broken file is refused', () => {
  assert.throws(() => renderRclone(CONF, snap(1), { remote: 's3', includeRefreshToken: false }), (e: any) => e.code === 'DROPKEY_BAD_INPUT' && /type s3/.test(e.message));
  assert.throws(() => renderRclone('# Encrypted rclone configuration File\n\nRCLONE_ENCRYPT_V0:\nabc\n', snap(1), { remote: 'd', includeRefreshToken: false }), /encrypted/);
  assert.throws(() => renderRclone('[a]\nthis line has no equals\n', snap(1), { remote: 'a', includeRefreshToken: false }), /line 2/);
});

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { parseDotenv } from '../../formats/dotenv.js';
import { renderEnv } from './env.js';
import { renderJson } from './json.js';
import { renderToken } from './token.js';
import type { TokenSnapshot } from './types.js';

const snap = (n: number, extra: Partial<TokenSnapshot> = {}): TokenSnapshot => ({
  connection: 'backup',
  accessToken: `sl.token-${n}`,
  expiresAt: new Date(Date.UTC(2026, 0, 2, 3 + n, 0, 0)),
  scopes: ['files.content.read', 'account_info.read'],
  account: { id: 'dbid:1', email: 'a@example.com', name: 'Ann' },
  team: { id: 'dbtid:9', name: 'Acme' },
  appKey: 'k3y',
  ...extra,
});

test('token: the bare token and a newline; an old token file is replaced, anything else refused', () => {
  assert.equal(renderToken(null, snap(1), {}), 'sl.token-1\n');
  assert.equal(renderToken('sl.token-1\n', snap(2), {}), 'sl.token-2\n');
  assert.equal(renderToken('', snap(2), {}), 'sl.token-2\n');
  assert.throws(() => renderToken('#!/bin/sh\nrm -rf /tmp/x\n', snap(2), {}), (e: any) => e.code === 'DROPKEY_BAD_INPUT' && /not overwritten/.test(e.message));
});

test('json: token, expiry, account, team and scopes; a foreign JSON file is refused', () => {
  const j = JSON.parse(renderJson(null, snap(1), {}));
  assert.deepEqual(j, {
    connection: 'backup',
    access_token: 'sl.token-1',
    token_type: 'bearer',
    expires_at: '2026-01-02T04:00:00Z',
    scopes: ['files.content.read', 'account_info.read'],
    account_id: 'dbid:1',
    email: 'a@example.com',
    display_name: 'Ann',
    team_id: 'dbtid:9',
    team_name: 'Acme',
    app_key: 'k3y',
  });
  const again = JSON.parse(renderJson(JSON.stringify(j), snap(2, { team: null, expiresAt: null }), {}));
  assert.equal(again.access_token, 'sl.token-2');
  assert.equal(again.expires_at, null);
  assert.equal(again.team_id, null);
  assert.throws(() => renderJson('{"dependencies": {}}', snap(2), {}), (e: any) => e.code === 'DROPKEY_BAD_INPUT');
  assert.throws(() => renderJson('not json', snap(2), {}), (e: any) => e.code === 'DROPKEY_BAD_INPUT');
});

test('env: chosen variable names and the expiry; other lines, comments and export prefixes kept over 10 rewrites', () => {
  const original = '# backup settings\nexport DPBX_ACCESS_TOKEN=old\nBACKUP_TARGET=dpbx:///backups\n\nOTHER="a # b"\n';
  let text = original;
  const options = { variables: ['DPBX_ACCESS_TOKEN', 'DROPBOX_ACCESS_TOKEN'], expiryVariable: 'DROPBOX_ACCESS_TOKEN_EXPIRES_AT' };
  for (let n = 1; n <= 10; n++) text = renderEnv(text, snap(n), options);
  assert.equal(
    text,
    '# backup settings\nexport DPBX_ACCESS_TOKEN=sl.token-10\nBACKUP_TARGET=dpbx:///backups\n\nOTHER="a # b"\n' +
      'DROPBOX_ACCESS_TOKEN=sl.token-10\nDROPBOX_ACCESS_TOKEN_EXPIRES_AT=2026-01-02T13:00:00Z\n',
  );
  const vars = parseDotenv(text);
  assert.equal(vars['OTHER'], 'a # b');
  // No expiry known: the old expiry line goes rather than lie.
  const noExpiry = renderEnv(text, snap(11, { expiresAt: null }), options);
  assert.equal(parseDotenv(noExpiry)['DROPBOX_ACCESS_TOKEN_EXPIRES_AT'], undefined);
  assert.equal(renderEnv(null, snap(1), { variables: ['DROPBOX_ACCESS_TOKEN'], expiryVariable: null }), 'DROPBOX_ACCESS_TOKEN=sl.token-1\n');
  assert.throws(() => renderEnv('this is not dotenv\n', snap(1), options), (e: any) => e.code === 'DROPKEY_BAD_INPUT' && /line 1/.test(e.message));
});

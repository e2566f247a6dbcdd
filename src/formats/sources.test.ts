import { test } from 'node:test';
import assert from 'node:assert/strict';
import { airflowEnvCredential, airflowFileCredential, airflowUriCredential, dbxcliCredential, dotenvCredential, rcloneCredential } from './sources.js';

test('rclone: the only Dropbox remote by default; client_id/secret and the token JSON', () => {
  const conf = '[s3]\ntype = s3\n[dbx]\ntype = dropbox\nclient_id = k3y\nclient_secret = s3c\ntoken = {"access_token":"sl.a","token_type":"bearer","refresh_token":"rt","expiry":"2026-01-01T00:00:00Z"}\n';
  assert.deepEqual(rcloneCredential(conf, undefined), { source: 'rclone remote "dbx"', refreshToken: 'rt', accessToken: 'sl.a', appKey: 'k3y', appSecret: 's3c', name: 'dbx' });
  assert.equal(rcloneCredential('[d]\ntype = dropbox\ntoken = {"access_token":"sl.a"}\n', 'd').appKey, null, 'an empty client_id is rclone\'s own app');
  assert.throws(() => rcloneCredential(`${conf}[dbx2]\ntype = dropbox\ntoken = {}\n`, undefined), /several Dropbox remotes \(dbx, dbx2\)/);
  assert.throws(() => rcloneCredential(conf, 's3'), /type s3, not dropbox/);
  assert.throws(() => rcloneCredential(conf, 'nope'), (e: any) => /no remote named "nope"/.test(e.message) && /s3, dbx/.test(e.hint));
  assert.throws(() => rcloneCredential('[d]\ntype = dropbox\n', 'd'), /has no token/);
});

test('airflow: extras written by dropkey export, the login/password-as-app-credentials style, a token in login', () => {
  const exported = airflowUriCredential('dropbox://:sl.acc@api.dropboxapi.com/?refresh_token=rt&app_key=k3y&app_secret=s3c&expires_at=2026-01-01T00%3A00%3A00Z', 'x');
  assert.deepEqual([exported.refreshToken, exported.appKey, exported.appSecret], ['rt', 'k3y', 's3c']);
  const hookStyle = airflowFileCredential('{"dropbox_default": {"conn_type": "dropbox", "login": "abcdefghij12345", "password": "s3c", "extra": "{\\"refresh_token\\": \\"rt\\"}"}}', 'json', 'dropbox_default');
  assert.deepEqual([hookStyle.refreshToken, hookStyle.appKey, hookStyle.appSecret, hookStyle.accessToken], ['rt', 'abcdefghij12345', 's3c', null]);
  const loginToken = airflowFileCredential('dropbox_default:\n  conn_type: dropbox\n  login: sl.pasted\n', 'yaml', 'dropbox_default');
  assert.deepEqual([loginToken.refreshToken, loginToken.accessToken], [null, 'sl.pasted']);
  assert.equal(airflowEnvCredential('{"conn_type": "dropbox", "password": "sl.p"}', 'AIRFLOW_CONN_MY_DBX').name, 'my_dbx');
  assert.throws(() => airflowFileCredential('A=mysql://h\n', 'env', 'dropbox_default'), (e: any) => /no connection "dropbox_default"/.test(e.message) && /A/.test(e.hint));
  assert.throws(() => airflowUriCredential('mysql://u:p@h/', 'x'), /conn_type mysql, not dropbox/);
  assert.throws(() => airflowUriCredential('dropbox://h/', 'x'), /no refresh token and no access token/);
});

test('dotenv: the export\'s names, duplicity\'s, and a prefix', () => {
  const c = dotenvCredential('DROPBOX_REFRESH_TOKEN=rt\nDROPBOX_APP_KEY=k3y\nDROPBOX_APP_SECRET="s 3c"\n');
  assert.deepEqual([c.refreshToken, c.appKey, c.appSecret, c.accessToken], ['rt', 'k3y', 's 3c', null]);
  assert.equal(dotenvCredential('DPBX_ACCESS_TOKEN=sl.d\n').accessToken, 'sl.d');
  assert.equal(dotenvCredential('R_DROPBOX_REFRESH_TOKEN=rt\nDROPBOX_REFRESH_TOKEN=other\n', 'R_').refreshToken, 'rt');
  assert.throws(() => dotenvCredential('A=1\n'), /no refresh token and no access token/);
});

test('dbxcli: domain "" and token type; its app keys, or the ones its environment variables set', () => {
  const text = JSON.stringify({ '': { personal: 'sl.p', teamManage: 'sl.m' }, 'dropbox-test.example': { personal: 'sl.x' } });
  assert.deepEqual(dbxcliCredential(text), { source: 'dbxcli personal token', refreshToken: null, accessToken: 'sl.p', appKey: 'mvhz183vwqibe7q', appSecret: null, name: 'dbxcli', team: false });
  const team = dbxcliCredential(text, { tokenType: 'teamManage', env: { DROPBOX_MANAGE_APP_KEY: 'own' } });
  assert.deepEqual([team.accessToken, team.appKey, team.team], ['sl.m', 'own', true]);
  assert.equal(dbxcliCredential(text, { domain: 'dropbox-test.example' }).accessToken, 'sl.x');
  assert.throws(() => dbxcliCredential(text, { tokenType: 'teamAccess' }), /no teamAccess token/);
  assert.throws(() => dbxcliCredential('nope'), /not JSON/);
});

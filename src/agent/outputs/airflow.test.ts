import { test } from 'node:test';
import assert from 'node:assert/strict';
import { parse as parseYaml } from 'yaml';
import { renderAirflow } from './airflow.js';
import type { AirflowOutputOptions, TokenSnapshot } from './types.js';
import { AIRFLOW_FILES, aroundDropboxEntry } from './airflow.test-support.js';
import { airflowConnectionFrom, readAirflowFile, type AirflowForm } from '../../formats/airflow.js';

const snap = (n: number, extra: Partial<TokenSnapshot> = {}): TokenSnapshot => ({
  connection: 'backup',
  accessToken: `sl.token-${n}`,
  expiresAt: new Date(Date.UTC(2026, 0, 2, 3 + n, 0, 0)),
  scopes: ['account_info.read', 'files.content.read'],
  account: { id: 'dbid:1', email: 'a@example.com', name: 'A' },
  team: null,
  appKey: 'k3y',
  ...extra,
});

for (const form of ['json', 'yaml', 'env'] as const) {
  for (const field of ['password', 'login'] as const) {
    test(`airflow ${form} (${field}): 10 renders keep the three other connections byte-for-byte`, () => {
      const { text: orig, others } = AIRFLOW_FILES[form];
      const opts: AirflowOutputOptions = { connId: 'dropbox_default', form, field };
      let text = orig;
      for (let n = 1; n <= 10; n++) text = renderAirflow(text, snap(n), opts);
      const before = readAirflowFile(orig, form);
      const after = readAirflowFile(text, form);
      for (const o of others) assert.deepEqual(after.get(o), before.get(o), o);
      const [head, tail] = aroundDropboxEntry(form);
      assert.ok(text.startsWith(head), 'the text before the entry is unchanged');
      assert.ok(text.endsWith(tail), 'the text after the entry is unchanged');
      const c = airflowConnectionFrom(after.get('dropbox_default'), 'dropbox_default', 'test');
      assert.equal(c.conn_type, 'dropbox');
      assert.equal(c[field], 'sl.token-10');
      assert.equal(c.extra['expires_at'], '2026-01-02T13:00:00Z');
      assert.equal(c.extra['account_id'], 'dbid:1');
      assert.equal(c.extra['scope'], 'account_info.read files.content.read');
      assert.equal(c.extra['folder'], '/backups', 'extras of the user survive');
      assert.equal(c.extra['refresh_token'], undefined, 'a refresh token left by an export is removed');
      assert.doesNotMatch(text, /"rt"|refresh_token/);
      if (form === 'json') JSON.parse(text);
      if (form === 'yaml') parseYaml(text);
    });
  }
}

test('airflow: the other connections are byte-for-byte identical (exact text comparison)', () => {
  const json = renderAirflow(AIRFLOW_FILES.json.text, snap(1), { connId: 'dropbox_default', form: 'json', field: 'password' });
  const start = AIRFLOW_FILES.json.text.indexOf('"dropbox_default"');
  const end = AIRFLOW_FILES.json.text.indexOf(',\n    "CONN_C"');
  assert.equal(json.slice(0, start), AIRFLOW_FILES.json.text.slice(0, start));
  assert.ok(json.endsWith(AIRFLOW_FILES.json.text.slice(end)));
  const yaml = renderAirflow(AIRFLOW_FILES.yaml.text, snap(1), { connId: 'dropbox_default', form: 'yaml', field: 'login' });
  const ys = AIRFLOW_FILES.yaml.text.indexOf('dropbox_default:');
  const ye = AIRFLOW_FILES.yaml.text.indexOf('\nCONN_C:');
  assert.equal(yaml.slice(0, ys), AIRFLOW_FILES.yaml.text.slice(0, ys));
  assert.ok(yaml.endsWith(AIRFLOW_FILES.yaml.text.slice(ye)));
  assert.match(yaml, /^dropbox_default:\n  conn_type: 'dropbox'\n  login: 'sl\.token-1'\n  extra_dejson:\n    folder: '\/backups'\n    expires_at: '2026-01-02T04:00:00Z'\n/m);
});

test('airflow: a new connection in each form, and in a missing file', () => {
  const s = snap(1);
  const json = renderAirflow(null, s, { connId: 'dropbox_default', form: 'json', field: 'password' });
  assert.deepEqual(JSON.parse(json), {
    dropbox_default: {
      conn_type: 'dropbox',
      password: 'sl.token-1',
      extra_dejson: { expires_at: '2026-01-02T04:00:00Z', account_id: 'dbid:1', email: 'a@example.com', scope: 'account_info.read files.content.read', app_key: 'k3y' },
    },
  });
  const yaml = renderAirflow(null, s, { connId: 'dropbox_default', form: 'yaml', field: 'login' });
  assert.equal(parseYaml(yaml).dropbox_default.login, 'sl.token-1');
  assert.match(renderAirflow(null, s, { connId: 'on', form: 'yaml', field: 'login' }), /^'on':\n/, 'a key YAML 1.1 reads as a boolean is quoted');
  const env = renderAirflow('CONN_A=mysql://host_a', s, { connId: 'dropbox_default', form: 'env', field: 'password' });
  assert.equal(env, 'CONN_A=mysql://host_a\ndropbox_default=dropbox://:sl.token-1@/?expires_at=2026-01-02T04%3A00%3A00Z&account_id=dbid%3A1&email=a%40example.com&scope=account_info.read+files.content.read&app_key=k3y\n');
  const added = renderAirflow(AIRFLOW_FILES.json.text, s, { connId: 'other_dbx', form: 'json', field: 'password' });
  assert.ok(added.startsWith(AIRFLOW_FILES.json.text.slice(0, AIRFLOW_FILES.json.text.lastIndexOf('\n}'))));
  assert.equal(JSON.parse(added).other_dbx.password, 'sl.token-1');
  assert.match(added, /\n    "other_dbx": \{\n        "conn_type"/);
});

test('airflow: a URI entry in JSON or YAML stays a URI; the login case puts the token in userinfo', () => {
  const json = renderAirflow('{"dropbox_default": "dropbox://:x@/?folder=a"}', snap(1), { connId: 'dropbox_default', form: 'json', field: 'login' });
  const uri = JSON.parse(json).dropbox_default as string;
  assert.match(uri, /^dropbox:\/\/sl\.token-1:x@\/\?folder=a&expires_at=/);
});

test('airflow: damaged or foreign entries are refused, not overwritten', () => {
  const o = (form: AirflowForm): AirflowOutputOptions => ({ connId: 'dropbox_default', form, field: 'password' });
  assert.throws(() => renderAirflow('{"a": ', snap(1), o('json')), (e: any) => e.code === 'DROPKEY_BAD_INPUT' && /not valid JSON/.test(e.message));
  assert.throws(() => renderAirflow('[1]', snap(1), o('json')), /one JSON object/);
  assert.throws(() => renderAirflow('a: [b\n', snap(1), o('yaml')), /not valid YAML/);
  assert.throws(() => renderAirflow('CONN_A\n', snap(1), o('env')), /line 1/);
  assert.throws(() => renderAirflow('{"dropbox_default": {"conn_type": "mysql"}}', snap(1), o('json')), /conn_type mysql/);
  assert.throws(() => renderAirflow('{"dropbox_default": {"bogus": 1}}', snap(1), o('json')), /bogus/);
  assert.throws(() => renderAirflow('dropbox_default=a\ndropbox_default=b\n', snap(1), o('env')), /twice/);
});

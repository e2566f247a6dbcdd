import { test } from 'node:test';
import assert from 'node:assert/strict';
import { parseDotenv, setDotenv } from './dotenv.js';
import { airflowConnectionFromEnv, airflowUri, parseAirflowUri } from './airflow.js';
import { parseJsonObject, setJsonMember } from './json-members.js';
import { parseRcloneConf, parseRcloneToken, rcloneRemote, rcloneRemoteNames, setRcloneRemote } from './rclone-conf.js';

test('dotenv: reads export prefixes, quotes, escapes and trailing comments', () => {
  const env = parseDotenv(`# c\nexport A=1\nB='x #y'\nC="a\\nb \\"q\\""\nD=plain # note\n\nE=\n`);
  assert.deepEqual(env, { A: '1', B: 'x #y', C: 'a\nb "q"', D: 'plain', E: '' });
});

test('dotenv: setDotenv rewrites in place, keeps everything else, appends new names', () => {
  const src = '# keep\r\nexport DROPBOX_ACCESS_TOKEN=old\r\nOTHER="x y"\r\n';
  const out = setDotenv(src, { DROPBOX_ACCESS_TOKEN: 'new', DPBX_ACCESS_TOKEN: 'new', GONE: null });
  assert.equal(out, '# keep\r\nexport DROPBOX_ACCESS_TOKEN=new\r\nOTHER="x y"\r\nDPBX_ACCESS_TOKEN=new\r\n');
  assert.equal(setDotenv('A=1\nA=2\nB=3', { A: '9' }), 'A=9\nB=3');
  assert.equal(parseDotenv(setDotenv('', { A: 'sp ace"$' })).A, 'sp ace"$');
  assert.throws(() => setDotenv('', { 'bad name': 'x' }), /variable name/);
});

test('airflow URI: parse and print agree with Airflow\'s get_uri rules', () => {
  const c = parseAirflowUri('my-conn-type://my-login:my-pa%2Fssword@my-host:5432/my-schema?param1=val1&param2=val2');
  assert.deepEqual(c, { conn_type: 'my_conn_type', host: 'my-host', login: 'my-login', password: 'my-pa/ssword', schema: 'my-schema', port: 5432, extra: { param1: 'val1', param2: 'val2' } });
  assert.equal(airflowUri(c), 'my-conn-type://my-login:my-pa%2Fssword@my-host:5432/my-schema?param1=val1&param2=val2');
  const nested = { ...c, extra: { a: { b: 1 } } };
  assert.deepEqual(parseAirflowUri(airflowUri(nested)).extra, { a: { b: 1 } });
  assert.equal(parseAirflowUri('dropbox://:tok@/').password, 'tok');
  assert.equal(parseAirflowUri('dropbox://:tok@/').login, null);
  assert.equal(parseAirflowUri('dropbox://tok@/').login, 'tok');
  assert.throws(() => parseAirflowUri('not a uri'), /SCHEME/);
});

test('AIRFLOW_CONN_*: URI or JSON', () => {
  assert.equal(airflowConnectionFromEnv('{"conn_type": "dropbox", "login": "t", "extra": {"x": "1"}}', 'AIRFLOW_CONN_X').login, 't');
  assert.equal(airflowConnectionFromEnv('{"conn_type": "dropbox", "extra": "{\\"x\\": \\"1\\"}"}', 'AIRFLOW_CONN_X').extra['x'], '1');
  assert.equal(airflowConnectionFromEnv('dropbox://:p@/', 'AIRFLOW_CONN_X').password, 'p');
});

test('json members: replace one member, add one, keep every other byte', () => {
  const src = '{\n\t"a": [1, {"b": "}"}],\n\t"k\\u0031": "x" ,\n\t"z": null\n}';
  const o = parseJsonObject(src, 't');
  assert.deepEqual(o.members.map((m) => m.key), ['a', 'k1', 'z']);
  assert.equal(setJsonMember(o, 'k1', 'y'), src.replace('"x"', '"y"'));
  assert.equal(setJsonMember(o, 'n', { q: 1 }), src.replace('null\n}', 'null,\n\t"n": {\n\t\t"q": 1\n\t}\n}'));
  assert.equal(setJsonMember(parseJsonObject('{}', 't'), 'n', 1), '{\n  "n": 1\n}');
});

test('rclone.conf: read remotes, quoted values, keys before any section, repeated sections', () => {
  const conf = parseRcloneConf('\uFEFFstray = 1\n[a]\ntype = dropbox\ntoken = "{}"\nx: y\n[b]\ntype=drive\n[a]\nx = z\n');
  assert.deepEqual(rcloneRemoteNames(conf), ['a', 'b', 'a']);
  assert.deepEqual(rcloneRemote(conf, 'a'), { type: 'dropbox', token: '{}', x: 'z' });
  assert.deepEqual(rcloneRemote(conf, 'b'), { type: 'drive' });
  assert.equal(rcloneRemote(conf, 'c'), null);
  assert.equal(setRcloneRemote('[a]\n  type = dropbox\n', 'a', { token: 't' }, {}), '[a]\n  type = dropbox\ntoken = t\n');
  assert.equal(setRcloneRemote('[a]\ntoken = 1\ntoken = 2\n', 'a', { token: '3' }, {}), '[a]\ntoken = 3\n');
  assert.equal(setRcloneRemote('[a]\ns = 1\n[b]\n[a]\nt = 2\n', 'a', { s: null, t: '3', u: '4' }, {}), '[a]\n[b]\n[a]\nt = 3\nu = 4\n');
  assert.deepEqual(parseRcloneToken('{"access_token":"a","refresh_token":"r","expiry":"0001-01-01T00:00:00Z"}', 'a'), { accessToken: 'a', refreshToken: 'r', expiresAt: null });
  assert.throws(() => parseRcloneToken('nope', 'a'), /not JSON/);
});

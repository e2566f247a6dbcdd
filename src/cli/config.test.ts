import { test } from 'node:test';
import assert from 'node:assert/strict';
import { intOption, loadConfig, parseOptions, redirectUriFor, scopeList } from './config.js';
import { isDropkeyError } from '../errors.js';

test('loadConfig reads home, master key, URLs and the default connection from the given env only', async () => {
  // The master key is checked now (a valid one: 64 hex digits).
  const key = 'ab'.repeat(32);
  const c = await loadConfig({ DROPKEY_HOME: '/tmp/x', DROPKEY_MASTER_KEY: key, DROPKEY_DROPBOX_URL: 'http://127.0.0.1:9/', DROPKEY_CONNECTION: 'dropbox_default' });
  assert.equal(c.home, '/tmp/x');
  assert.equal(c.masterKey, key);
  assert.equal(c.connection, 'dropbox_default');
  assert.equal(c.urls.token, 'http://127.0.0.1:9/oauth2/token');
  assert.equal(c.urls.api, 'http://127.0.0.1:9');
  const d = await loadConfig({ DROPKEY_HOME: '/tmp/x', DROPKEY_CONNECTION: '  ' });
  assert.equal(d.connection, 'default');
  assert.equal(d.masterKey, undefined);
  assert.equal(d.urls.api, 'https://api.dropboxapi.com');
});

test('parseOptions: unknown flags are usage errors naming the flag', () => {
  assert.throws(() => parseOptions('token', ['--bogus'], { json: { type: 'boolean' } }), (e: unknown) => {
    assert.ok(isDropkeyError(e));
    assert.equal(e.code, 'DROPKEY_BAD_INPUT');
    assert.match(e.message, /--bogus/);
    assert.match(e.hint ?? '', /dropkey token --help/);
    return true;
  });
  assert.throws(() => parseOptions('token', ['--connection'], { connection: { type: 'string' } }), /--connection.*needs a value/);
  assert.throws(() => parseOptions('token', ['extra'], {}), /unexpected argument "extra"/);
  assert.deepEqual(parseOptions('app remove', ['x'], {}, { positionals: 1 }).positionals, ['x']);
});

test('intOption and scopeList', () => {
  assert.equal(intOption('t', 'min-valid', '60'), 60);
  assert.throws(() => intOption('t', 'min-valid', '-1'), /whole number/);
  assert.throws(() => intOption('login', 'port', '70000', { max: 65535 }), /between 0 and 65535/);
  assert.deepEqual(scopeList(['a b', 'c,a']), ['a', 'b', 'c']);
  assert.equal(scopeList([]), undefined);
  assert.equal(redirectUriFor(53682), 'http://127.0.0.1:53682/callback');
});

test('parseOptions: a value given to a flag that takes none, and a dash-leading value, are named as such', () => {
  assert.throws(() => parseOptions('app list', ['--json=3'], { json: { type: 'boolean' } }), /app list: option "--json" takes no value/);
  assert.throws(
    () => parseOptions('token', ['--min-valid', '-5'], { 'min-valid': { type: 'string' } }),
    /option "--min-valid" needs a value \(a value that starts with "-" must be written --min-valid=VALUE\)/,
  );
});

test('loadConfig refuses Dropbox URLs that are not http(s), naming every bad variable at once', async () => {
  await assert.rejects(
    loadConfig({ DROPKEY_HOME: '/tmp/x', DROPKEY_DROPBOX_URL: 'notaurl', DROPKEY_DROPBOX_TOKEN_URL: 'ftp://h/t', DROPKEY_DROPBOX_API_URL: 'https://ok.example' }),
    (e: unknown) => {
      assert.ok(isDropkeyError(e));
      assert.equal(e.code, 'DROPKEY_BAD_INPUT');
      assert.match(e.message, /DROPKEY_DROPBOX_URL="notaurl"/);
      assert.match(e.message, /DROPKEY_DROPBOX_TOKEN_URL="ftp:\/\/h\/t"/);
      assert.doesNotMatch(e.message, /DROPKEY_DROPBOX_API_URL/);
      assert.match(e.hint ?? '', /unset the variable/);
      return true;
    },
  );
  // Empty means unset, as for the other variables.
  assert.equal((await loadConfig({ DROPKEY_HOME: '/tmp/x', DROPKEY_DROPBOX_URL: '' })).urls.api, 'https://api.dropboxapi.com');
});

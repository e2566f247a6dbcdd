/** The consent driver's HTML form handling: what a browser would submit, whatever the markup style. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { parseForms, formEntries, toEmulatorUrl } from './consent.js';
import { rewriteDropboxUrl } from './dropbox-sdk.js';

const PAGE = `<html><body><h1>Before you connect this app</h1>
<FORM method="POST" action='/oauth2/authorize/decide'>
<input type=hidden name="csrf" value="a&amp;b">
<label><input type="radio" name="account" value="dbid:AAA" checked> ann@example.com</label>
<label><input type="radio" name="account" value="dbid:BBB"> bob@example.com</label>
<select name=who><option value=1>One<option value="2" selected>Two</select>
<input type="checkbox" name="remember" value="yes">
<input type="text" name="note" value="x" disabled>
<button type="submit" name="decision" value="allow">Allow</button>
<button name="decision" value="cancel">Cancel</button>
</FORM>
<form action="/other"><input type="submit" value="Nope"></form></body></html>`;

test('parses forms regardless of case, quoting and entity encoding', () => {
  const forms = parseForms(PAGE);
  assert.equal(forms.length, 2);
  assert.equal(forms[0]!.method, 'post');
  assert.equal(forms[0]!.action, '/oauth2/authorize/decide');
  assert.equal(forms[1]!.method, 'get');
});

test('submits like a browser: hidden fields, one radio, selected option, only the clicked button', () => {
  const form = parseForms(PAGE)[0]!;
  const allow = form.controls.find((c) => c.text === 'Allow')!;
  assert.deepEqual(formEntries(form, allow), [['csrf', 'a&b'], ['account', 'dbid:AAA'], ['who', '2'], ['decision', 'allow']]);
  // Choosing another account by its email (the radio's label) or its id.
  assert.deepEqual(formEntries(form, allow, 'bob@example.com')[1], ['account', 'dbid:BBB']);
  assert.deepEqual(formEntries(form, allow, 'dbid:BBB')[1], ['account', 'dbid:BBB']);
  const cancel = form.controls.find((c) => c.text === 'Cancel')!;
  assert.deepEqual(formEntries(form, cancel).at(-1), ['decision', 'cancel']);
});

test('rewrites every Dropbox host to the local base and nothing else', () => {
  const base = 'http://127.0.0.1:1234';
  assert.equal(rewriteDropboxUrl('https://api.dropboxapi.com/2/files/upload', base), `${base}/2/files/upload`);
  assert.equal(rewriteDropboxUrl('https://content.dropboxapi.com/2/files/download', base), `${base}/2/files/download`);
  assert.equal(rewriteDropboxUrl('https://notify.dropboxapi.com/2/files/list_folder/longpoll', base), `${base}/2/files/list_folder/longpoll`);
  assert.equal(rewriteDropboxUrl('https://api.dropboxapi.com/oauth2/token?x=1', base), `${base}/oauth2/token?x=1`);
  assert.equal(toEmulatorUrl('https://dropbox.com/oauth2/authorize?a=b', base), `${base}/oauth2/authorize?a=b`);
  assert.equal(toEmulatorUrl('https://www.dropbox.com/oauth2/authorize', base), `${base}/oauth2/authorize`);
  assert.equal(rewriteDropboxUrl('https://api.dropboxapi.com.evil.example/x', base), 'https://api.dropboxapi.com.evil.example/x');
});

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { DropkeyError, ErrorCodes } from '../errors.js';
import { HttpError, mapError, ServerErrorCodes } from './errors.js';
import { html } from './html.js';

test('every domain code maps to an HTTP status; REAUTH_REQUIRED is 409', () => {
  const statuses = Object.values(ErrorCodes).map((code) => mapError(new DropkeyError(code, 'm')).status);
  assert.ok(statuses.every((s) => s >= 400 && s < 600));
  assert.equal(mapError(new DropkeyError(ErrorCodes.REAUTH_REQUIRED, 'm')).status, 409);
  assert.equal(mapError(new DropkeyError(ErrorCodes.NOT_FOUND, 'm')).status, 404);
  assert.equal(mapError(new HttpError(ServerErrorCodes.FORBIDDEN, 'no')).status, 403);
});

test('unknown errors reveal nothing; upstream text with tokens is masked', () => {
  const m = mapError(new Error('secret sl.AAAAAAAAAAAAAAAA inside'));
  assert.equal(m.status, 500);
  assert.equal(m.unexpected, true);
  assert.ok(!JSON.stringify(m.body).includes('sl.AAAA'));
  const d = mapError(new DropkeyError(ErrorCodes.DROPBOX_API, 'Dropbox said Bearer sl.BBBBBBBBBBBBBBBBBB'));
  assert.ok(!d.body.message.includes('sl.BBBB'));
  // The server's one escaping function (hono's html helper) escapes all five markup characters.
  assert.equal(String(html`${`<a href="x">'&`}`), '&lt;a href=&quot;x&quot;&gt;&#39;&amp;');
});

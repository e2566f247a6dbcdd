import { test } from 'node:test';
import assert from 'node:assert/strict';
import { PassThrough } from 'node:stream';
import { createAgentLogger } from './log.js';

function capture() {
  const stream = new PassThrough();
  let text = '';
  stream.on('data', (d) => (text += d));
  return { stream, text: () => text };
}

test('text logs: one plain line per entry, with its fields; JSON logs: one object per line; tokens masked in both', () => {
  const token = `sl.${'A'.repeat(140)}`;
  const text = capture();
  createAgentLogger({ stream: text.stream, format: 'text' }).warn({ connection: 'backup', path: '/files/t', attempt: 2 }, `getting a token failed: bad ${token}`);
  assert.match(text.text(), /^\d{4}-\d\d-\d\dT[\d:.]+Z WARN {2}getting a token failed: bad sl\.\S* \(connection=backup, path=\/files\/t, attempt=2\)\n$/);
  assert.ok(!text.text().includes(token));
  const json = capture();
  createAgentLogger({ stream: json.stream, format: 'json', level: 'debug' }).debug({ connection: 'backup', access_token: token }, 'wrote');
  const o = JSON.parse(json.text());
  assert.equal(o.msg, 'wrote');
  assert.equal(o.connection, 'backup');
  assert.ok(!json.text().includes(token));
});

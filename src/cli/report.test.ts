import { test } from 'node:test';
import assert from 'node:assert/strict';
import { PassThrough } from 'node:stream';
import { DropkeyError, ErrorCodes } from '../errors.js';
import { reportError } from './report.js';
import { oneLineSafe, table, terminalSafe } from './output.js';

test('error messages quoting Dropbox reach the terminal without control characters', () => {
  const stderr = new PassThrough();
  let out = '';
  stderr.on('data', (d: Buffer) => (out += d.toString()));
  const err = new DropkeyError(ErrorCodes.DROPBOX_API, 'Dropbox said: \u001b]52;c;cHduZWQ=\u0007 \u009b2J bad', { hint: 'line one\nline two\u001b[0m' });
  assert.equal(reportError(err, { stderr, env: {} }), 1);
  assert.equal(out, 'dropkey: Dropbox said: ]52;c;cHduZWQ= 2J bad\n  line one\n  line two[0m\n');
});

test('terminalSafe keeps text, tabs and line breaks; oneLineSafe and table cells also fold line breaks', () => {
  assert.equal(terminalSafe('a\tb\nc\u0007\u007f\u202e'), 'a\tb\nc');
  assert.equal(oneLineSafe('a\r\nb'), 'a b');
  assert.equal(table(['A', 'B'], [['x\ny', 'z\u001b']]), 'A    B\nx y  z\n');
});

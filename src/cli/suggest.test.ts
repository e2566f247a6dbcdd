import { test } from 'node:test';
import assert from 'node:assert/strict';
import { closest, didYouMean, editDistance } from './suggest.js';
import { parseOptions, unknownSubcommand } from './config.js';
import { commands } from './cli.js';

test('edit distance counts an adjacent swap as one edit', () => {
  assert.equal(editDistance('token', 'token'), 0);
  assert.equal(editDistance('tokn', 'token'), 1);
  assert.equal(editDistance('tokne', 'token'), 1);
  assert.equal(editDistance('', 'abc'), 3);
});

test('did you mean: the closest command, only when it is plausibly a typo', () => {
  const names = Object.keys(commands);
  assert.equal(closest('tokn', names), 'token');
  assert.equal(closest('lgoin', names), 'login');
  assert.equal(closest('emulater', names), 'emulator');
  assert.equal(closest('serv', names), 'serve');
  assert.equal(closest('apikeys', names), 'apikey');
  assert.equal(closest('xyzzy', names), undefined);
  assert.equal(closest('ls', names), undefined);
  assert.equal(didYouMean('revok', names), ' (did you mean "revoke"?)');
  assert.equal(didYouMean('frobnicate', names), '');
});

test('did you mean: mistyped flags and subcommands', () => {
  assert.throws(() => parseOptions('token', ['--conection', 'x'], { connection: { type: 'string' }, json: { type: 'boolean' } }), /token: unknown option "--conection" \(did you mean "--connection"\?\)/);
  assert.throws(() => parseOptions('list', ['--jsn'], { json: { type: 'boolean' } }), /unknown option "--jsn" \(did you mean "--json"\?\)/);
  assert.throws(() => parseOptions('list', ['--jsno=1'], { json: { type: 'boolean' } }), /unknown option "--jsno" \(did you mean "--json"\?\)/);
  assert.throws(() => parseOptions('list', ['--frobnicate'], { json: { type: 'boolean' } }), (e: Error) => !/did you mean/.test(e.message));
  assert.match(unknownSubcommand('keys', 'rotat', ['status', 'rotate', 'prune', 'generate']).message, /keys: unknown subcommand "rotat" \(did you mean "rotate"\?\) \(use status, rotate, prune or generate\)/);
  assert.match(unknownSubcommand('app', undefined, ['add', 'update', 'list', 'remove']).message, /app: missing subcommand \(add, update, list or remove\)/);
});

test('every command in the table exports its summary, usage and options', async () => {
  for (const [name, load] of Object.entries(commands)) {
    const c = (await load()).default;
    assert.ok(c.summary.length > 10 && !c.summary.includes('\n'), name);
    assert.match(c.usage, new RegExp(`dropkey ${name}`), name);
    assert.equal(typeof c.options, 'object', name);
  }
});

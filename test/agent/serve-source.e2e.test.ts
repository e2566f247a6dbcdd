/**
 * The agent's remote source (ServeSource) against a real `dropkey serve` app: the server's structured `fix` reaches
 * the agent's error, so the agent log names the same next step as the server's API and UI.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fixFromJson, ServeSource } from '../../src/agent/sources.js';
import { adviceLines } from '../../src/cli/fix.js';
import { DropkeyError } from '../../src/errors.js';
import { makeServerRig, PUBLIC_URL, type ServerRig } from '../server/rig.js';

let rig: ServerRig;
let dir: string;
before(async () => {
  rig = await makeServerRig();
  await rig.dropboxApp('main');
  dir = mkdtempSync(join(tmpdir(), 'dropkey-serve-source-'));
});
after(async () => {
  await rig.close();
  rmSync(dir, { recursive: true, force: true });
});

function sourceWith(key: string): ServeSource {
  const file = join(dir, `key-${Math.random().toString(36).slice(2)}`);
  writeFileSync(file, `${key}\n`);
  const viaApp = ((input: string | URL | Request, init?: RequestInit) => Promise.resolve(rig.app.request(String(input), init))) as typeof fetch;
  return new ServeSource({ url: PUBLIC_URL, apiKeyFile: file, fetch: viaApp });
}

const opts = { minValidSeconds: 60, longLived: false };

test('a connection needing re-authorisation: the agent error carries the server fix (log in to that connection)', async () => {
  await rig.connection('gamma');
  const key = await rig.key(['token:read'], ['gamma']);
  const source = sourceWith(key);
  const first = await source.fetch('gamma', opts);
  assert.equal((await rig.emu.rpc('auth/token/revoke', undefined, first.accessToken)).status, 200);
  await rig.advance(4 * 3600);
  const err = await source.fetch('gamma', opts).then(
    () => assert.fail('expected a failure'),
    (e: unknown) => e,
  );
  assert.ok(err instanceof DropkeyError);
  assert.equal(err.code, 'DROPKEY_REAUTH_REQUIRED');
  // What the server said, as data and as the CLI renders it.
  const served = await (await rig.call('GET', '/api/v1/connections/gamma/token', { key })).json();
  assert.ok(served.error.fix, 'the server gives a fix');
  assert.deepEqual(err.fix, served.error.fix);
  assert.match(adviceLines(err).join('\n'), /dropkey login .*gamma/);
});

test('a refused key: the fix is to create an API key', async () => {
  const source = sourceWith('dk_not_a_real_key_at_all_0000000000000000');
  const err = await source.fetch('gamma', opts).then(
    () => assert.fail('expected a failure'),
    (e: unknown) => e,
  );
  assert.ok(err instanceof DropkeyError);
  assert.equal(err.code, 'DROPKEY_BAD_INPUT');
  assert.equal(err.fix?.action, 'apikey-create');
});

test('fixFromJson keeps well-formed fixes and drops anything else', () => {
  assert.deepEqual(fixFromJson({ action: 'login', connection: 'a', addScopes: ['files.metadata.read'] }), { action: 'login', connection: 'a', addScopes: ['files.metadata.read'] });
  assert.deepEqual(fixFromJson({ action: 'revoke', connections: ['a', 'b'], force: true }), { action: 'revoke', connections: ['a', 'b'], force: true });
  assert.deepEqual(fixFromJson({ action: 'list-apps', extra: 'dropped' }), { action: 'list-apps' });
  assert.deepEqual(fixFromJson({ action: 'app-update', app: 'x', field: 'secret' }), { action: 'app-update', app: 'x', field: 'secret' });
  for (const bad of [
    undefined,
    null,
    'login',
    [],
    { action: 'rm -rf' },
    { action: 'login', connection: 'a\nb' },
    { action: 'login', connection: '\u001b]52;c;x\u0007' },
    { action: 'login', addScopes: 'files.metadata.read' },
    { action: 'import', token: 'password' },
    { action: 'revoke' },
    { action: 'app-update', app: 'x', field: 'everything' },
    { action: 'app-remove' },
  ]) {
    assert.equal(fixFromJson(bad), undefined, JSON.stringify(bad));
  }
});

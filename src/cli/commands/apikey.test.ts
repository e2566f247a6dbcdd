/**
 * `dropkey apikey create` scopes: the key's connections are exactly what was asked for. Run in-process on a
 * temporary SQLite home (no ports).
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir, userInfo } from 'node:os';
import { join } from 'node:path';
import { PassThrough } from 'node:stream';
import { after, test } from 'node:test';
import { run } from '../index.js';

const home = mkdtempSync(join(tmpdir(), 'dropkey-apikey-'));
const env = { DROPKEY_HOME: home, DROPKEY_MASTER_KEY: randomBytes(32).toString('base64') };
after(() => rmSync(home, { recursive: true, force: true }));

async function cli(args: string[]): Promise<{ code: number; out: string; err: string }> {
  let out = '';
  let err = '';
  const stdout = new PassThrough().on('data', (d) => (out += d));
  const stderr = new PassThrough().on('data', (d) => (err += d));
  const code = await run(args, { env, cwd: home, stdin: new PassThrough(), stdout, stderr, signal: new AbortController().signal });
  return { code, out, err };
}

async function scopeOf(name: string): Promise<unknown> {
  const list = JSON.parse((await cli(['apikey', 'list', '--json'])).out) as { name: string; connections: unknown }[];
  return list.find((k) => k.name === name)?.connections;
}

test('"*" mixed with connection names is refused, never widened to every connection', async () => {
  for (const args of [
    ['--connection', 'alpha', '--connection', '*'],
    ['--connection', 'alpha,*'],
  ]) {
    const r = await cli(['apikey', 'create', '--name', 'mixed', '--permission', 'proxy', ...args]);
    assert.equal(r.code, 2, `${args.join(' ')}: ${r.err}`);
    assert.match(r.err, /cannot be combined/);
  }
  assert.equal(await scopeOf('mixed'), undefined, 'no key was created');
});

test('named connections stay named (deduplicated, comma lists allowed); "*" alone or --all-connections is every one', async () => {
  assert.equal((await cli(['apikey', 'create', '--name', 'two', '--permission', 'proxy', '--connection', 'alpha,beta', '--connection', 'alpha'])).code, 0);
  assert.deepEqual(await scopeOf('two'), ['alpha', 'beta']);
  assert.equal((await cli(['apikey', 'create', '--name', 'star', '--permission', 'proxy', '--connection', '*'])).code, 0);
  assert.equal(await scopeOf('star'), '*');
  assert.equal((await cli(['apikey', 'create', '--name', 'all', '--permission', 'proxy', '--all-connections'])).code, 0);
  assert.equal(await scopeOf('all'), '*');
});

test('create and revoke go through the server\'s ApiKeyService: the same audit entries and the same name check', async () => {
  assert.equal((await cli(['apikey', 'create', '--name', 'audited', '--permission', 'token:read', '--connection', 'alpha'])).code, 0);
  assert.equal((await cli(['apikey', 'revoke', 'audited'])).code, 0);
  const bad = await cli(['apikey', 'revoke', 'no such/key']);
  assert.notEqual(bad.code, 0);
  assert.match(bad.err, /Invalid API key name/);
  const { openServerStores } = await import('../../server/main.js');
  const { readConfig } = await import('../../config.js');
  const stores = await openServerStores(await readConfig(env));
  try {
    const entries = (await stores.server.listAudit({ target: 'audited', limit: 10 })).reverse();
    // The CLI's actor is the OS user who ran it, as for every CLI action (src/cli/activity.ts).
    const actor = `cli:${userInfo().username}`;
    assert.deepEqual(entries.map((e) => [e.actor, e.action]), [[actor, 'apikey.created'], [actor, 'apikey.revoked']]);
    const [created, revoked] = entries;
    assert.deepEqual(created!.details, { permissions: ['token:read'], connections: ['alpha'], prefix: created!.details['prefix'] });
    assert.match(String(created!.details['prefix']), /^dk_/);
    assert.deepEqual(revoked!.details, { prefix: created!.details['prefix'] });
  } finally {
    await stores.close();
  }
});

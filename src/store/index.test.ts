import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { DropkeyError, ErrorCodes } from '../errors.js';
import { sampleApp, sampleConnection } from './contract/core.test-support.js';
import { isVersionConflict, openStore, resolveHome, selectDriver, storePaths } from './index.js';

function home(): string {
  return join(mkdtempSync(join(tmpdir(), 'dropkey-home-')), 'data');
}

const quiet = { warn: () => {} };

function code(c: string, re?: RegExp) {
  return (e: unknown) => {
    assert.ok(e instanceof DropkeyError, String(e));
    assert.equal(e.code, c, e.message);
    if (re) assert.match(`${e.message}\n${e.hint ?? ''}`, re);
    return true;
  };
}

describe('resolveHome', () => {
  const opts = { homedir: '/home/ann', cwd: '/work' };
  it('prefers DROPKEY_HOME (relative ones resolve against cwd)', () => {
    assert.equal(resolveHome({ DROPKEY_HOME: '/srv/dk', XDG_DATA_HOME: '/x' }, 'linux', opts), '/srv/dk');
    assert.equal(resolveHome({ DROPKEY_HOME: 'data' }, 'linux', opts), '/work/data');
  });
  it('then $XDG_DATA_HOME/dropkey, ignoring relative values as the XDG spec says', () => {
    assert.equal(resolveHome({ XDG_DATA_HOME: '/x/share' }, 'linux', opts), '/x/share/dropkey');
    assert.equal(resolveHome({ XDG_DATA_HOME: 'rel/share' }, 'linux', opts), '/home/ann/.local/share/dropkey');
    assert.equal(resolveHome({ DROPKEY_HOME: '  ', XDG_DATA_HOME: '' }, 'linux', opts), '/home/ann/.local/share/dropkey');
  });
  it('then the platform default', () => {
    assert.equal(resolveHome({}, 'linux', opts), '/home/ann/.local/share/dropkey');
    assert.equal(resolveHome({}, 'freebsd', opts), '/home/ann/.local/share/dropkey');
    assert.equal(resolveHome({}, 'darwin', opts), '/home/ann/Library/Application Support/dropkey');
    assert.equal(resolveHome({ XDG_DATA_HOME: '/x' }, 'darwin', opts), '/x/dropkey');
  });
});

describe('selectDriver', () => {
  const paths = storePaths('/data');
  it('uses SQLite in the data directory by default, or a file: URL', () => {
    assert.deepEqual(selectDriver(undefined, paths), { kind: 'sqlite', path: '/data/dropkey.db' });
    assert.deepEqual(selectDriver('', paths), { kind: 'sqlite', path: '/data/dropkey.db' });
    assert.deepEqual(selectDriver('file:///srv/other.db', paths), { kind: 'sqlite', path: '/srv/other.db' });
  });
  it('refuses schemes it does not support, and non-URLs, without echoing credentials', () => {
    assert.throws(() => selectDriver('mysql://u:pw-secret@db/dropkey', paths), (e: unknown) => {
      code(ErrorCodes.BAD_INPUT, /mysql:/)(e);
      assert.equal(`${(e as Error).message}${(e as DropkeyError).hint}${JSON.stringify(e)}`.includes('pw-secret'), false);
      return true;
    });
    assert.throws(() => selectDriver('not a url', paths), code(ErrorCodes.BAD_INPUT, /not a URL/));
  });
});

describe('openStore', () => {
  it('creates home/master.key (0600) and home/dropkey.db on first use, and reopens them', async () => {
    const h = home();
    try {
      const s = await openStore({ home: h, ...quiet });
      await s.createApp(sampleApp());
      await s.close();
      assert.equal(statSync(h).mode & 0o777, 0o700);
      assert.equal(statSync(join(h, 'master.key')).mode & 0o777, 0o600);
      assert.equal(statSync(join(h, 'dropkey.db')).mode & 0o777, 0o600);
      const s2 = await openStore({ home: h, ...quiet });
      assert.equal((await s2.getApp('backup'))!.secret, sampleApp().secret);
      await s2.close();
    } finally {
      rmSync(join(h, '..'), { recursive: true, force: true });
    }
  });

  it('with DROPKEY_MASTER_KEY, writes no key file; without it later, refuses instead of creating a new key', async () => {
    const h = home();
    try {
      const key = randomBytes(32).toString('base64');
      const s = await openStore({ home: h, masterKey: key, ...quiet });
      await s.createApp(sampleApp());
      await s.close();
      assert.equal(existsSync(join(h, 'master.key')), false);
      await assert.rejects(openStore({ home: h, ...quiet }), code(ErrorCodes.KEY_ERROR, /missing.*encrypted secrets[\s\S]*DROPKEY_MASTER_KEY/));
      assert.equal(existsSync(join(h, 'master.key')), false, 'no new key was made');
      await assert.rejects(openStore({ home: h, masterKey: randomBytes(32).toString('hex'), ...quiet }), code(ErrorCodes.KEY_ERROR, /DROPKEY_MASTER_KEY/));
      const again = await openStore({ home: h, masterKey: Buffer.from(key, 'base64').toString('hex'), ...quiet });
      assert.equal((await again.getApp('backup'))!.secret, sampleApp().secret, 'the same key in hex works too');
      await again.close();
    } finally {
      rmSync(join(h, '..'), { recursive: true, force: true });
    }
  });

  it('the key file’s key works as DROPKEY_MASTER_KEY (same key id)', async () => {
    const h = home();
    try {
      const s = await openStore({ home: h, ...quiet });
      await s.createApp(sampleApp());
      await s.close();
      const fileKey = JSON.parse(readFileSync(join(h, 'master.key'), 'utf8')).keys[0].key as string;
      const s2 = await openStore({ home: h, masterKey: fileKey, ...quiet });
      assert.equal((await s2.getApp('backup'))!.secret, sampleApp().secret);
      await s2.close();
    } finally {
      rmSync(join(h, '..'), { recursive: true, force: true });
    }
  });

  it('refuses a corrupt key file, leaves it and the database untouched, and does not start a new key', async () => {
    const h = home();
    try {
      const s = await openStore({ home: h, ...quiet });
      await s.createConnection({ ...sampleConnection(), app: (await s.createApp(sampleApp())).name });
      await s.close();
      const keyPath = join(h, 'master.key');
      const original = readFileSync(keyPath);
      writeFileSync(keyPath, original.subarray(0, original.length - 30));
      const damaged = readFileSync(keyPath);
      const db = readFileSync(join(h, 'dropkey.db'));
      await assert.rejects(openStore({ home: h, ...quiet }), code(ErrorCodes.KEY_ERROR, /not usable[\s\S]*will not replace it/));
      assert.deepEqual(readFileSync(keyPath), damaged);
      assert.deepEqual(readFileSync(join(h, 'dropkey.db')), db);
      writeFileSync(keyPath, original);
      const s2 = await openStore({ home: h, ...quiet });
      assert.equal((await s2.getConnection('default'))!.refreshToken, sampleConnection().refreshToken, 'restoring the key file restores access');
      await s2.close();
    } finally {
      rmSync(join(h, '..'), { recursive: true, force: true });
    }
  });

  it('warns once about a data directory others can write to', async () => {
    const h = home();
    try {
      const { mkdirSync, chmodSync } = await import('node:fs');
      mkdirSync(h);
      chmodSync(h, 0o777);
      const warnings: string[] = [];
      const s = await openStore({ home: h, warn: (m) => warnings.push(m) });
      await s.close();
      assert.equal(warnings.length, 1, warnings.join('\n'));
      assert.match(warnings[0]!, /writable by other users/);
    } finally {
      rmSync(join(h, '..'), { recursive: true, force: true });
    }
  });

  it('refuses a bad DROPKEY_MASTER_KEY before touching the data directory', async () => {
    const h = home();
    try {
      await assert.rejects(openStore({ home: h, masterKey: 'too-short', ...quiet }), code(ErrorCodes.KEY_ERROR, /32/));
      assert.equal(existsSync(h), false);
    } finally {
      rmSync(join(h, '..'), { recursive: true, force: true });
    }
  });

  it('isVersionConflict recognises optimistic-concurrency failures only', async () => {
    const h = home();
    try {
      const s = await openStore({ home: h, ...quiet });
      await s.createApp(sampleApp());
      await s.createConnection(sampleConnection());
      const err = await s.updateConnection('default', { email: null }, { expectedVersion: 7 }).catch((e: unknown) => e);
      assert.equal(isVersionConflict(err), true);
      const other = await s.updateConnection('ghost', { email: null }).catch((e: unknown) => e);
      assert.equal(isVersionConflict(other), false);
      await s.close();
      assert.deepEqual(readdirSync(h).sort(), ['dropkey.db', 'master.key']);
    } finally {
      rmSync(join(h, '..'), { recursive: true, force: true });
    }
  });
});

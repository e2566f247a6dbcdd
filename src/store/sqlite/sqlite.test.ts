import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import Database from 'better-sqlite3';
import { DropkeyError, ErrorCodes } from '../../errors.js';
import { sampleApp, sampleConnection } from '../contract/core.test-support.js';
import { Keyring } from '../cipher.js';
import { openDriver, type SqliteDriverOptions } from './index.js';
import { migrations } from './migrations.js';
import { openDatabase, parseStringList, SqliteHandle } from './db.js';

/** The core store alone, on a driver of its own (its close() closes the handle). */
async function openSqliteStore(o: Omit<SqliteDriverOptions, 'location'> & { path: string }) {
  const { path, ...rest } = o;
  return (await openDriver({ location: path, ...rest })).core;
}

function tempDir(): string {
  return mkdtempSync(join(tmpdir(), 'dropkey-sqlite-'));
}

describe('sqlite driver', () => {
  it('reads a JSON-text list column leniently: strings kept, anything else dropped, a damaged value is empty', () => {
    assert.deepEqual(parseStringList('["connection.created","connection.revoked"]'), ['connection.created', 'connection.revoked']);
    assert.deepEqual(parseStringList('["a",1,null,"b"]'), ['a', 'b']);
    assert.deepEqual(parseStringList('{"a":1}'), []);
    assert.deepEqual(parseStringList('not json'), []);
  });

  it('the read path prepares its statements once per handle: reads after the first compile nothing', async () => {
    const dir = tempDir();
    try {
      const db = openDatabase(join(dir, 'x.db'), { timeout: 1000 });
      let prepares = 0;
      const prepare = db.prepare.bind(db);
      db.prepare = ((sql: string) => {
        prepares++;
        return prepare(sql);
      }) as typeof db.prepare;
      const h = new SqliteHandle(db, join(dir, 'x.db'), 1000);
      h.db.exec('CREATE TABLE t (k TEXT PRIMARY KEY, v TEXT)');
      h.db.exec("INSERT INTO t VALUES ('a', '1'), ('b', '2')");
      const read = (k: string) => (h.prepared('SELECT v FROM t WHERE k = ?').get(k) as { v: string } | undefined)?.v;
      assert.deepEqual([read('a'), read('b'), read('a'), read('c')], ['1', '2', '1', undefined]);
      assert.equal(prepares, 1, 'one prepare for four reads');
      assert.strictEqual(h.prepared('SELECT v FROM t WHERE k = ?'), h.prepared('SELECT v FROM t WHERE k = ?'));
      h.close();
      assert.throws(() => h.run('read', () => read('a')), { code: 'DROPKEY_INTERNAL' });
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('creates the directory 0700 and the database (and its WAL/SHM files) 0600', async () => {
    const dir = tempDir();
    try {
      const path = join(dir, 'nested', 'home', 'dropkey.db');
      const s = await openSqliteStore({ path, keyring: Keyring.generate() });
      await s.createApp(sampleApp());
      assert.equal(statSync(join(dir, 'nested', 'home')).mode & 0o777, 0o700);
      assert.equal(statSync(path).mode & 0o777, 0o600);
      assert.equal(statSync(`${path}-wal`).mode & 0o777, 0o600);
      assert.equal(statSync(`${path}-shm`).mode & 0o777, 0o600);
      await s.close();
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('records migrations once, uses WAL and foreign keys, and reopening applies nothing again', async () => {
    const dir = tempDir();
    try {
      const path = join(dir, 'dropkey.db');
      const keyring = Keyring.generate();
      await (await openSqliteStore({ path, keyring, clock: () => 1234 })).close();
      await (await openSqliteStore({ path, keyring, clock: () => 9999 })).close();
      const db = new Database(path, { readonly: true });
      const rows = db.prepare('SELECT version, applied_at FROM schema_migrations ORDER BY version').all();
      assert.deepEqual(rows, migrations.map((m) => ({ version: m.version, applied_at: 1234 })));
      assert.equal(db.pragma('journal_mode', { simple: true }), 'wal');
      db.close();
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('another component can keep its own migrations in the same file without confusing the one migrator', async () => {
    const dir = tempDir();
    try {
      const path = join(dir, 'dropkey.db');
      const keyring = Keyring.generate();
      await (await openSqliteStore({ path, keyring })).close();
      const db = new Database(path);
      db.exec('CREATE TABLE server_schema_migrations (version INTEGER PRIMARY KEY) STRICT; INSERT INTO server_schema_migrations VALUES (7);');
      db.exec('CREATE TABLE server_things (id TEXT PRIMARY KEY) STRICT;');
      db.close();
      const s = await openSqliteStore({ path, keyring });
      await s.createApp(sampleApp());
      await s.close();
      const after = new Database(path, { readonly: true });
      assert.deepEqual(after.prepare('SELECT version FROM server_schema_migrations').all(), [{ version: 7 }], 'left alone');
      after.close();
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('refuses a database written by a newer dropkey, without touching it', async () => {
    const dir = tempDir();
    try {
      const path = join(dir, 'dropkey.db');
      const keyring = Keyring.generate();
      await (await openSqliteStore({ path, keyring })).close();
      const db = new Database(path);
      db.prepare('INSERT INTO schema_migrations (version, name, applied_at) VALUES (999, ?, 0)').run('from the future');
      db.close();
      await assert.rejects(openSqliteStore({ path, keyring }), (e: unknown) => {
        assert.ok(e instanceof DropkeyError && e.code === ErrorCodes.STORE);
        assert.match(e.message, /newer dropkey/);
        assert.match(e.hint ?? '', /upgrade/);
        return true;
      });
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('refuses to open with a different master key, naming the key ids and the fix', async () => {
    const dir = tempDir();
    try {
      const path = join(dir, 'dropkey.db');
      const right = Keyring.generate();
      const s = await openSqliteStore({ path, keyring: right });
      await s.createApp(sampleApp());
      await s.close();
      const wrong = Keyring.generate({ kind: 'env' });
      await assert.rejects(openSqliteStore({ path, keyring: wrong }), (e: unknown) => {
        assert.ok(e instanceof DropkeyError && e.code === ErrorCodes.KEY_ERROR);
        assert.ok(e.message.includes(right.activeKeyId), e.message);
        assert.ok(e.message.includes(wrong.activeKeyId), e.message);
        assert.match(e.hint ?? '', /DROPKEY_MASTER_KEY/);
        return true;
      });
      const again = await openSqliteStore({ path, keyring: right });
      assert.equal((await again.getApp('backup'))!.secret, sampleApp().secret, 'nothing was lost');
      await again.close();
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('stores only ciphertext in secret columns, and the schema refuses plaintext there', async () => {
    const dir = tempDir();
    try {
      const path = join(dir, 'dropkey.db');
      const s = await openSqliteStore({ path, keyring: Keyring.generate() });
      await s.createApp(sampleApp());
      await s.createConnection(sampleConnection());
      await s.close();
      const db = new Database(path);
      const c = db.prepare('SELECT access_token_enc, refresh_token_enc FROM connections').get() as Record<string, string>;
      assert.match(c['access_token_enc']!, /^dk1\.k[0-9a-f]{16}\.[\w-]{16}\.[\w-]+$/);
      assert.match(c['refresh_token_enc']!, /^dk1\./);
      assert.throws(() => db.prepare("UPDATE connections SET refresh_token_enc = 'plain-refresh-token'").run(), /CHECK constraint/);
      db.close();
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('a ciphertext moved to another row or field fails authentication instead of decrypting', async () => {
    const dir = tempDir();
    try {
      const path = join(dir, 'dropkey.db');
      const keyring = Keyring.generate();
      const s = await openSqliteStore({ path, keyring });
      await s.createApp(sampleApp());
      await s.createConnection(sampleConnection('one'));
      await s.createConnection(sampleConnection('two'));
      const db = new Database(path);
      // An attacker with write access to the file swaps connection two's refresh token for connection one's.
      db.prepare("UPDATE connections SET refresh_token_enc = (SELECT refresh_token_enc FROM connections WHERE name = 'one') WHERE name = 'two'").run();
      await assert.rejects(s.getConnection('two'), (e: unknown) => e instanceof DropkeyError && e.code === ErrorCodes.KEY_ERROR && /authentication/.test(e.message));
      // ...or moves the access token into the refresh token field of the same row.
      db.prepare("UPDATE connections SET refresh_token_enc = access_token_enc WHERE name = 'one'").run();
      await assert.rejects(s.getConnection('one'), (e: unknown) => e instanceof DropkeyError && e.code === ErrorCodes.KEY_ERROR);
      db.close();
      await s.close();
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('re-encrypts every secret under a new active key while the old key stays readable (rotation)', async () => {
    const dir = tempDir();
    try {
      const path = join(dir, 'dropkey.db');
      const old = Keyring.generate();
      const s1 = await openSqliteStore({ path, keyring: old });
      await s1.createApp(sampleApp());
      await s1.createConnection(sampleConnection('one'));
      await s1.createConnection(sampleConnection('two', 'backup', { accessToken: null }));
      await s1.close();

      const both = old.withNewActiveKey();
      const s2 = await openSqliteStore({ path, keyring: both });
      const before = await s2.getConnection('one');
      assert.deepEqual(await s2.reencryptSecrets(), { rewritten: 5, remaining: 0 }); // app secret, 3 tokens, key check
      assert.deepEqual(await s2.reencryptSecrets(), { rewritten: 0, remaining: 0 });
      assert.deepEqual(await s2.getConnection('one'), before, 'plaintext and version unchanged');
      await s2.close();

      const onlyNew = both.withoutKey(old.activeKeyId);
      const s3 = await openSqliteStore({ path, keyring: onlyNew });
      assert.equal((await s3.getConnection('two'))!.refreshToken, sampleConnection('two').refreshToken);
      assert.equal((await s3.getApp('backup'))!.secret, sampleApp().secret);
      await s3.close();
      const db = new Database(path, { readonly: true });
      const dump = JSON.stringify(db.prepare('SELECT * FROM connections').all()) + JSON.stringify(db.prepare('SELECT * FROM apps').all());
      assert.equal(dump.includes(old.activeKeyId), false, 'no ciphertext under the old key id remains');
      db.close();
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('turns a damaged database file into a STORE error with a restore hint, leaving the file alone', async () => {
    const dir = tempDir();
    try {
      const path = join(dir, 'dropkey.db');
      const junk = Buffer.from('this is not a database, but it is long enough to look like a header... '.repeat(20));
      writeFileSync(path, junk, { mode: 0o600 });
      await assert.rejects(openSqliteStore({ path, keyring: Keyring.generate() }), (e: unknown) => {
        assert.ok(e instanceof DropkeyError && e.code === ErrorCodes.STORE, String(e));
        assert.match(e.hint ?? '', /restore/);
        assert.ok(e.cause, 'the driver error is kept as cause');
        return true;
      });
      assert.deepEqual(Buffer.from(await import('node:fs').then((f) => f.readFileSync(path))), junk);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('a database busy beyond busy_timeout is a retryable STORE error; a lock waiter keeps waiting through it', async () => {
    const dir = tempDir();
    try {
      const path = join(dir, 'dropkey.db');
      const s = await openSqliteStore({ path, keyring: Keyring.generate(), busyTimeoutMs: 20 });
      await s.createApp(sampleApp());
      const other = new Database(path); // another process in the middle of a long write
      other.exec('BEGIN IMMEDIATE');
      await assert.rejects(s.updateApp('backup', { key: 'k2' }), (e: unknown) => {
        assert.ok(e instanceof DropkeyError && e.code === ErrorCodes.STORE, String(e));
        assert.match(e.message, /busy/);
        assert.equal(e.details?.['retryable'], true);
        assert.equal(e.details?.['operation'], 'update an app');
        return true;
      });
      await assert.rejects(s.withLock('k', { ttlMs: 1000, waitMs: 0 }, async () => 'no'), (e: unknown) => e instanceof DropkeyError && e.code === ErrorCodes.LOCK_TIMEOUT);
      const waiting = s.withLock('k', { ttlMs: 1000, waitMs: 10_000 }, async () => 'got it');
      setTimeout(() => other.exec('COMMIT'), 30);
      assert.equal(await waiting, 'got it');
      other.close();
      await s.close();
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('a closed store refuses further calls clearly', async () => {
    const dir = tempDir();
    try {
      const s = await openSqliteStore({ path: join(dir, 'dropkey.db'), keyring: Keyring.generate() });
      await s.close();
      await s.close(); // idempotent
      await assert.rejects(s.listApps(), /closed/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

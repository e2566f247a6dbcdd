/**
 * docs/deploying.md ("What the cluster guarantees"): after `dropkey keys rotate`, every secret decrypts and no ciphertext under the old
 * key id remains, on SQLite (key file mode) and PostgreSQL (DROPKEY_MASTER_KEY mode, several instances), with
 * secrets in every encrypted table (apps, connections, the key check, pending logins, webhook secrets), while
 * another "instance" keeps refreshing tokens during the rotation (no downtime, no lost update).
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PassThrough, Readable } from 'node:stream';
import { describe, it } from 'node:test';
import Database from 'better-sqlite3';
import { run } from '../../src/cli/index.js';
import { openServerStores } from '../../src/server/main.js';
import { readConfig } from '../../src/config.js';
import { Keyring, keyringFromMasterKey, parseCiphertext } from '../../src/store/cipher.js';
import { parseKeyFile } from '../../src/store/key-file.js';
import { openStore } from '../../src/store/index.js';
import { dropSchema, freshSchemaName, TEST_DATABASE_URL, withAdmin } from '../../src/store/postgres/test-helpers.test-support.js';
import { SECRET_COLUMNS } from '../../src/store/rotation.js';
import type { Store } from '../../src/store/types.js';
import { withSchema } from './rig.js';

const CONNECTIONS = 230; // more than two batches of 100

async function cli(argv: string[], env: Record<string, string>, input = ''): Promise<{ code: number; stdout: string; stderr: string }> {
  const out = new PassThrough();
  const err = new PassThrough();
  let stdout = '';
  let stderr = '';
  out.setEncoding('utf8').on('data', (d: string) => (stdout += d));
  err.setEncoding('utf8').on('data', (d: string) => (stderr += d));
  const code = await run(argv, { env, cwd: process.cwd(), stdin: Readable.from([input]), stdout: out, stderr: err, signal: new AbortController().signal });
  return { code, stdout, stderr };
}

/** Every text value in every table (not just the catalog's columns), for the "nothing under the old key" scan. */
type Scan = () => Promise<{ table: string; column: string; value: string }[]>;

function sqliteScan(path: string): Scan {
  return async () => {
    const db = new Database(path, { readonly: true });
    try {
      const out: { table: string; column: string; value: string }[] = [];
      for (const { name } of db.prepare("SELECT name FROM sqlite_master WHERE type = 'table'").all() as { name: string }[]) {
        for (const row of db.prepare(`SELECT * FROM "${name}"`).all() as Record<string, unknown>[]) {
          for (const [column, value] of Object.entries(row)) if (typeof value === 'string') out.push({ table: name, column, value });
        }
      }
      return out;
    } finally {
      db.close();
    }
  };
}

function postgresScan(schema: string): Scan {
  return () =>
    withAdmin(async (c) => {
      const out: { table: string; column: string; value: string }[] = [];
      const tables = await c.query<{ table_name: string }>('SELECT table_name FROM information_schema.tables WHERE table_schema = $1', [schema]);
      for (const { table_name } of tables.rows) {
        for (const row of (await c.query(`SELECT * FROM "${schema}"."${table_name}"`)).rows as Record<string, unknown>[]) {
          for (const [column, value] of Object.entries(row)) if (typeof value === 'string') out.push({ table: table_name, column, value });
        }
      }
      return out;
    });
}

/** Set per test: reads every catalog row with its key and decrypts it. */
let currentRows: { read(keyring: Keyring): Promise<Map<string, string>> };

function sqliteRows(path: string) {
  return {
    async read(keyring: Keyring) {
      const db = new Database(path, { readonly: true });
      try {
        const out = new Map<string, string>();
        const tables = new Set((db.prepare("SELECT name FROM sqlite_master WHERE type = 'table'").all() as { name: string }[]).map((r) => r.name));
        for (const c of SECRET_COLUMNS.filter((x) => tables.has(x.table))) {
          for (const r of db.prepare(`SELECT "${c.key}" AS k, "${c.column}" AS v FROM "${c.table}" WHERE "${c.column}" LIKE 'dk1.%'`).all() as { k: string; v: string }[]) {
            out.set(`${c.table}.${c.column}.${r.k}`, keyring.decrypt(r.v, c.context(r.k)));
          }
        }
        return out;
      } finally {
        db.close();
      }
    },
  };
}

function postgresRows(schema: string) {
  return {
    read: (keyring: Keyring) =>
      withAdmin(async (db) => {
        const out = new Map<string, string>();
        const tables = new Set((await db.query<{ table_name: string }>('SELECT table_name FROM information_schema.tables WHERE table_schema = $1', [schema])).rows.map((r) => r.table_name));
        for (const c of SECRET_COLUMNS.filter((x) => tables.has(x.table))) {
          const rows = await db.query<{ k: string; v: string }>(`SELECT "${c.key}" AS k, "${c.column}" AS v FROM "${schema}"."${c.table}" WHERE starts_with("${c.column}", 'dk1.')`);
          for (const r of rows.rows) out.set(`${c.table}.${c.column}.${r.k}`, keyring.decrypt(r.v, c.context(r.k)));
        }
        return out;
      }),
  };
}

/** Every *_enc column the database really has is in the rotation catalog. */
async function assertCatalogComplete(scan: Scan): Promise<void> {
  const rows = await scan();
  const columns = new Set(rows.filter((r) => r.value.startsWith('dk1.')).map((r) => `${r.table}.${r.column}`));
  const known = new Set(SECRET_COLUMNS.map((c) => `${c.table}.${c.column}`));
  for (const c of columns) assert.ok(known.has(c), `encrypted column ${c} is missing from SECRET_COLUMNS (src/store/rotation.ts)`);
  for (const expected of ['apps.secret_enc', 'connections.access_token_enc', 'connections.refresh_token_enc', 'meta.value', 'server_pending_oauth.code_verifier_enc', 'webhook_endpoints.secret_enc']) {
    assert.ok(columns.has(expected), `the test seeded a secret in ${expected}`);
  }
}

async function seed(store: Store, env: Record<string, string>): Promise<void> {
  const stores = await openServerStores(await readConfig(env));
  try {
    await stores.core.createApp({ name: 'app', key: 'appkey1', secret: 'app-secret-1', scopes: [], team: false, access: null });
    for (let i = 0; i < CONNECTIONS; i++) {
      await stores.core.createConnection({
        name: `c${String(i).padStart(4, '0')}`,
        app: 'app',
        accountId: `dbid:${i}`,
        teamId: null,
        email: null,
        displayName: null,
        teamName: null,
        scopes: [],
        accessToken: `sl.access-${i}`,
        accessTokenExpiresAt: Date.now() + 3_600_000,
        refreshToken: `refresh-${i}`,
        state: 'active',
        lastError: null,
        lastRefreshAt: null,
      });
    }
    const now = Date.now();
    await stores.server.createPendingOAuth(
      { stateHash: 'a'.repeat(64), bindingHash: 'b'.repeat(64), sessionIdHash: null, linkId: null, connection: 'c0000', app: 'app', codeVerifier: 'verifier-xyz', redirectUri: 'http://127.0.0.1:1/cb', scopes: [], returnMode: 'redirect', returnTo: null, actor: 'test', expiresAt: now + 600_000 } as never,
      now,
    );
    await stores.webhooks.createEndpoint({ url: 'https://hooks.example.com/x', description: '', events: ['connection.created'], secret: 'whsec-1', createdBy: 'test' }, now);
  } finally {
    await stores.close();
  }
  void store;
}

/** Another instance refreshing tokens while the rotation runs; returns the last value written per connection. */
function refresher(store: Store): { stop(): Promise<Map<string, string>> } {
  let running = true;
  const last = new Map<string, string>();
  const loop = (async () => {
    for (let n = 0; running; n++) {
      const name = `c${String(n % CONNECTIONS).padStart(4, '0')}`;
      const token = `sl.refreshed-${n}`;
      await store.updateConnection(name, { accessToken: token, lastRefreshAt: Date.now() });
      last.set(name, token);
      // SQLite answers synchronously: yield so the rotation (same process) gets its turns.
      await new Promise<void>((r) => setImmediate(r));
    }
  })();
  return {
    async stop() {
      running = false;
      await loop;
      return last;
    },
  };
}

async function checkAfter(scan: Scan, oldIds: string[], keyring: Keyring, before: Map<string, string>, refreshed: Map<string, string>): Promise<void> {
  const rows = await scan();
  for (const id of oldIds) {
    const left = rows.filter((r) => r.value.startsWith(`dk1.${id}.`));
    assert.equal(left.length, 0, `no ciphertext under the old key ${id} remains (found in ${[...new Set(left.map((r) => `${r.table}.${r.column}`))].join(', ')})`);
  }
  for (const r of rows.filter((x) => x.value.startsWith('dk1.'))) assert.equal(parseCiphertext(r.value).keyId, keyring.activeKeyId);
  const after = await currentRows.read(keyring);
  assert.equal(after.size, before.size, 'every secret is still there');
  for (const [k, v] of before) {
    const conn = /^connections\.access_token_enc\.(.+)$/.exec(k)?.[1];
    const expected = conn !== undefined && refreshed.has(conn) ? refreshed.get(conn)! : v;
    assert.equal(after.get(k), expected, `${k} decrypts to its latest value`);
  }
}

describe('dropkey keys rotate', () => {
  it('SQLite, key file: the file gains the new key first, every secret moves, prune removes the old key', async () => {
    const home = mkdtempSync(join(tmpdir(), 'dropkey-rotate-'));
    const env = { DROPKEY_HOME: home };
    try {
      const store = await openStore({ home });
      const path = join(home, 'dropkey.db');
      await seed(store, env);
      const keyFile = join(home, 'master.key');
      const oldRing = parseKeyFile(readFileSync(keyFile, 'utf8'), keyFile);
      const scan = sqliteScan(path);
      currentRows = sqliteRows(path);
      await assertCatalogComplete(scan);
      const before = await currentRows.read(oldRing);

      const status0 = JSON.parse((await cli(['keys', 'status', '--json'], env)).stdout);
      assert.equal(status0.not_under_active_key, 0);
      assert.equal(status0.secrets_by_key_id[oldRing.activeKeyId], before.size);

      const bg = refresher(store);
      const r = await cli(['keys', 'rotate', '--batch', '100', '--json'], env);
      const refreshed = await bg.stop();
      assert.equal(r.code, 0, r.stderr);
      const report = JSON.parse(r.stdout);
      assert.equal(report.remaining, 0);
      // The background writer's keyring follows the key file, so once the file names the new key, what it writes is
      // already under that key and needs no rewrite: the end state (checkAfter: nothing left under the old key,
      // every secret readable with its latest value) is what proves the rotation, not this count.
      assert.ok(report.rewritten > 0 && report.rewritten <= before.size + refreshed.size, `rewrote the secrets still under the old key (${report.rewritten})`);
      assert.ok(!r.stdout.includes('app-secret-1') && !r.stderr.includes('refresh-1'), 'no secret in the output');

      // The key file holds the new key (active) and still the old one.
      const ring = parseKeyFile(readFileSync(keyFile, 'utf8'), keyFile);
      assert.notEqual(ring.activeKeyId, oldRing.activeKeyId);
      assert.deepEqual(new Set(ring.keyIds), new Set([oldRing.activeKeyId, ring.activeKeyId]));
      await checkAfter(scan, [oldRing.activeKeyId], ring, before, refreshed);
      await store.close();

      const drop = await cli(['keys', 'prune', '--json'], env);
      assert.equal(drop.code, 0, drop.stderr);
      assert.deepEqual(JSON.parse(drop.stdout).dropped_key_ids, [oldRing.activeKeyId]);
      const final = parseKeyFile(readFileSync(keyFile, 'utf8'), keyFile);
      assert.deepEqual(final.keyIds, [ring.activeKeyId]);
      // The store opens with the new key alone and every secret reads.
      const reopened = await openStore({ home });
      assert.equal((await reopened.getApp('app'))?.secret, 'app-secret-1');
      assert.equal((await reopened.getConnection('c0229'))?.refreshToken, 'refresh-229');
      await reopened.close();

      // A new key given on stdin: it becomes the active key.
      const given = randomBytes(32);
      const r2 = await cli(['keys', 'rotate', '--stdin', '--json'], env, given.toString('hex') + '\n');
      assert.equal(r2.code, 0, r2.stderr);
      assert.equal(JSON.parse(r2.stdout).active_key_id, Keyring.fromKey(given).activeKeyId);
      // Bad key input is refused and changes nothing.
      const bad = await cli(['keys', 'rotate', '--stdin'], env, 'not-a-key\n');
      assert.equal(bad.code, 2);
      assert.match(bad.stderr, /32-byte key/);
      assert.equal(parseKeyFile(readFileSync(keyFile, 'utf8'), keyFile).activeKeyId, Keyring.fromKey(given).activeKeyId);
    } finally {
      rmSync(home, { recursive: true, force: true });
    }
  });

  it('PostgreSQL, DROPKEY_MASTER_KEY: new key first on every instance, rotate, then drop the old key', { skip: TEST_DATABASE_URL ? false : 'DROPKEY_TEST_DATABASE_URL is not set' }, async () => {
    const schema = freshSchemaName();
    const home = mkdtempSync(join(tmpdir(), 'dropkey-rotate-pg-'));
    const oldKey = randomBytes(32).toString('base64');
    const newKey = randomBytes(32).toString('base64');
    const databaseUrl = withSchema(TEST_DATABASE_URL!, schema);
    const envOld = { DROPKEY_HOME: home, DROPKEY_MASTER_KEY: oldKey, DROPKEY_DATABASE_URL: databaseUrl };
    const envBoth = { ...envOld, DROPKEY_MASTER_KEY: `${newKey},${oldKey}` };
    const envNew = { ...envOld, DROPKEY_MASTER_KEY: newKey };
    try {
      const store = await openStore({ home, masterKey: oldKey, databaseUrl });
      await seed(store, envOld);
      await store.close();
      const scan = postgresScan(schema);
      currentRows = postgresRows(schema);
      await assertCatalogComplete(scan);
      const oldRing = keyringFromMasterKey(oldKey);
      const before = await currentRows.read(oldRing);

      // A new key handed to one instance only is refused: the others could not read what it writes.
      writeFileSync(join(home, 'new.key'), newKey);
      const refused = await cli(['keys', 'rotate', '--new-key-file', join(home, 'new.key')], envOld);
      assert.equal(refused.code, 2);
      assert.match(refused.stderr, /DROPKEY_MASTER_KEY/);

      // Step 1 done by the operator: every instance runs with "new,old"; this one keeps refreshing meanwhile.
      const instance = await openStore({ home, masterKey: `${newKey},${oldKey}`, databaseUrl });
      const bg = refresher(instance);
      const r = await cli(['keys', 'rotate', '--batch', '100', '--json'], envBoth);
      const refreshed = await bg.stop();
      await instance.close();
      assert.equal(r.code, 0, r.stderr);
      assert.equal(JSON.parse(r.stdout).remaining, 0);
      const newRing = keyringFromMasterKey(newKey);
      await checkAfter(scan, [oldRing.activeKeyId], newRing, before, refreshed);

      // Step 3: the old key is dropped; everything opens and reads with the new key alone.
      const status = JSON.parse((await cli(['keys', 'status', '--json'], envNew)).stdout);
      assert.deepEqual(Object.keys(status.secrets_by_key_id), [newRing.activeKeyId]);
      const stores = await openServerStores(await readConfig(envNew));
      assert.equal((await stores.core.getApp('app'))?.secret, 'app-secret-1');
      const pending = await stores.server.takePendingOAuth('a'.repeat(64), Date.now());
      assert.equal(pending?.codeVerifier, 'verifier-xyz');
      await stores.close();
    } finally {
      rmSync(home, { recursive: true, force: true });
      await dropSchema(schema);
    }
  });
});

/**
 * A database written by dropkey before the one-migrator layout (fixtures/old-layout.db: made by the build of main
 * at 89cb3ff, with three migration tables, schema_migrations / server_migrations / webhook_schema_migrations, and a
 * proxy_backoff table created on first use) opens with today's driver: every row is still there and readable with
 * its master key, the old bookkeeping is adopted into schema_migrations and dropped, and reopening changes nothing.
 * The fixture's key (fixtures/old-layout.master-key) protects nothing but this test data.
 */
import assert from 'node:assert/strict';
import { copyFileSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import Database from 'better-sqlite3';
import { openStores } from '../../src/store/index.js';
import { migrations } from '../../src/store/sqlite/migrations.js';

const FIXTURES = join(import.meta.dirname, 'fixtures');
const T0 = 1_700_000_000_000;

test('a SQLite database of the old layout migrates forward with every row in place', async () => {
  const home = mkdtempSync(join(tmpdir(), 'dropkey-old-layout-'));
  try {
    copyFileSync(join(FIXTURES, 'old-layout.db'), join(home, 'dropkey.db'));
    const masterKey = readFileSync(join(FIXTURES, 'old-layout.master-key'), 'utf8').trim();
    const before = new Database(join(home, 'dropkey.db'), { readonly: true });
    const tablesBefore = (before.prepare("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name").all() as { name: string }[]).map((r) => r.name);
    before.close();
    for (const t of ['server_migrations', 'webhook_schema_migrations', 'proxy_backoff']) assert.ok(tablesBefore.includes(t), `the fixture has ${t}`);

    const s = await openStores({ home, masterKey, warn: () => {} });
    try {
      assert.equal((await s.core.getApp('backup'))?.secret, 'app-secret-1');
      const conn = await s.core.getConnection('default');
      assert.equal(conn?.accessToken, 'sl.access-token-1');
      assert.equal(conn?.refreshToken, 'refresh-token-1');
      assert.equal((await s.server.getAdminByEmail('ann@example.com'))?.passwordHash, 'scrypt$1$1$1$x$y');
      assert.deepEqual((await s.server.getApiKeyByHash('k'.repeat(64)))?.connections, ['default']);
      assert.deepEqual((await s.server.listAudit()).map((e) => [e.action, e.details]), [['apikey.created', { n: 1 }]]);
      assert.equal((await s.server.takePendingOAuth('S'.repeat(64), T0 + 1))?.codeVerifier, 'verifier-secret-value-1234567890');
      const [claimed] = await s.webhooks.claimDue(T0, 1_000, 10);
      assert.equal(claimed?.secret, 'whsec-old-layout');
      assert.equal(claimed?.delivery.eventId, 'evt_old');
      assert.equal((await s.webhooks.listJobRuns())[0]?.name, 'health');
      assert.equal((await s.backoff.get('default', T0))?.reason, 'too_many_requests');
    } finally {
      await s.close();
    }

    const after = new Database(join(home, 'dropkey.db'), { readonly: true });
    const tables = (after.prepare("SELECT name FROM sqlite_master WHERE type = 'table'").all() as { name: string }[]).map((r) => r.name);
    assert.ok(!tables.includes('server_migrations') && !tables.includes('webhook_schema_migrations'), 'the old bookkeeping is gone');
    const versions = after.prepare('SELECT version, name FROM schema_migrations ORDER BY version').all();
    assert.deepEqual(versions, migrations.map((m) => ({ version: m.version, name: m.name })));
    after.close();

    // Reopening applies nothing more.
    const again = await openStores({ home, masterKey, warn: () => {} });
    await again.close();
    const last = new Database(join(home, 'dropkey.db'), { readonly: true });
    assert.deepEqual(last.prepare('SELECT version, name FROM schema_migrations ORDER BY version').all(), versions);
    last.close();
  } finally {
    rmSync(home, { recursive: true, force: true });
  }
});

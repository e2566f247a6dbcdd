/**
 * `dropkey serve`'s store wiring with DROPKEY_DATABASE_URL=postgres://...: openServerStores opens every store on one
 * PostgreSQL schema through one pool, and two "instances" see each other's records.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it, test } from 'node:test';
import { openServerStores } from '../../src/server/main.js';
import { readConfig } from '../../src/config.js';
import { dropSchema, freshSchemaName, SKIP_REASON, TEST_DATABASE_URL } from '../../src/store/postgres/test-helpers.test-support.js';

if (!TEST_DATABASE_URL) {
  test('dropkey serve stores on PostgreSQL', { skip: SKIP_REASON }, () => {});
} else {
  const url = TEST_DATABASE_URL;
  describe('dropkey serve stores on PostgreSQL', () => {
    it('opens both stores in the schema named by DROPKEY_DATABASE_URL; a second instance shares them', async () => {
      const schema = freshSchemaName();
      const randomKey = randomBytes(32).toString('hex');
      const homes = [mkdtempSync(join(tmpdir(), 'dropkey-serve-pg-')), mkdtempSync(join(tmpdir(), 'dropkey-serve-pg-'))];
      const env = (home: string) => ({
        DROPKEY_HOME: home,
        DROPKEY_MASTER_KEY: randomKey,
        DROPKEY_DATABASE_URL: `${url}${url.includes('?') ? '&' : '?'}schema=${schema}`,
      });
      try {
        const a = await openServerStores(await readConfig(env(homes[0]!)));
        const b = await openServerStores(await readConfig(env(homes[1]!)));
        try {
          await a.core.createApp({ name: 'backup', key: 'k', secret: 's3cret', scopes: [], team: false, access: null });
          assert.equal((await b.core.getApp('backup'))?.secret, 's3cret');
          const admin = await a.server.createAdmin({ email: 'ops@example.com', passwordHash: 'scrypt$x' }, Date.now());
          assert.equal((await b.server.getAdmin(admin.id))?.email, 'ops@example.com');
          await b.server.ping();
        } finally {
          await a.close();
          await b.close();
        }
      } finally {
        for (const h of homes) rmSync(h, { recursive: true, force: true });
        await dropSchema(schema);
      }
    });
  });
}

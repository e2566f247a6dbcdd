/**
 * Test support for the PostgreSQL store: the server comes from DROPKEY_TEST_DATABASE_URL (.ci/run sets it when a
 * server is running); every harness works in its own fresh schema, dropped afterwards, so test files can run in
 * parallel on one database.
 */
import { randomBytes } from 'node:crypto';
import pg from 'pg';
import type { StoreHarness } from '../contract.js';
import type { Keyring } from '../crypto.js';
import { openPostgresStore, type PostgresStore } from './index.js';

export const TEST_DATABASE_URL = process.env['DROPKEY_TEST_DATABASE_URL']?.trim() || undefined;

export const SKIP_REASON = 'PostgreSQL tests skipped: DROPKEY_TEST_DATABASE_URL is not set (.ci/run sets it when a server is running)';

export function freshSchemaName(): string {
  return `dropkey_test_${randomBytes(6).toString('hex')}`;
}

/** Runs fn with a raw client on the test database (administration and inspection). */
export async function withAdmin<T>(fn: (c: pg.Client) => Promise<T>): Promise<T> {
  const c = new pg.Client({ connectionString: TEST_DATABASE_URL });
  c.on('error', () => {});
  await c.connect();
  try {
    return await fn(c);
  } finally {
    await c.end();
  }
}

export async function dropSchema(schema: string): Promise<void> {
  await withAdmin((c) => c.query(`DROP SCHEMA IF EXISTS "${schema}" CASCADE`));
}

/**
 * Lets every woken task run until no store has a query in flight: the `settle` VirtualTime needs for a network
 * driver (a few event-loop turns are not enough when the next step waits for PostgreSQL's answer).
 */
export function settleStores(stores: PostgresStore[]): () => Promise<void> {
  return async () => {
    for (;;) {
      for (let i = 0; i < 5; i++) await new Promise<void>((r) => setImmediate(r));
      const busy = stores.filter((s) => s.pendingOperations > 0);
      if (busy.length === 0) return;
      await Promise.all(busy.map((s) => s.idle()));
    }
  };
}

export async function postgresHarness(keyring: Keyring, schema = freshSchemaName()): Promise<StoreHarness & { schema: string; stores: PostgresStore[] }> {
  const stores: PostgresStore[] = [];
  return {
    schema,
    stores,
    async open({ clock, sleep }) {
      const s = await openPostgresStore({ connectionString: TEST_DATABASE_URL!, keyring, clock, sleep, schema, maxConnections: 4 });
      stores.push(s);
      return s;
    },
    async cleanup() {
      for (const s of stores) await s.close();
      await dropSchema(schema);
    },
    settle: settleStores(stores),
  };
}

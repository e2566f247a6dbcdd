/**
 * Test support: one fresh database per harness for each driver, so that every contract suite (./core, ./server,
 * ./webhooks, ./locks, ./backoff) runs unchanged against SQLite and PostgreSQL. A harness opens any number of
 * driver handles on its database (as separate processes or instances would), reads rows behind the stores' backs
 * for assertions about what is at rest, and deletes the database at cleanup.
 *
 * Never shipped: *.test-support.ts files are outside the build (tsconfig.json) and are not test files themselves.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { Keyring } from '../cipher.js';
import { openDriver as openPostgresDriver, type PostgresStores } from '../postgres/index.js';
import { dropSchema, freshSchemaName, SKIP_REASON, TEST_DATABASE_URL, withAdmin } from '../postgres/test-helpers.test-support.js';
import { openDriver as openSqliteDriver } from '../sqlite/index.js';
import { migrations as sqliteMigrations } from '../sqlite/migrations.js';
import { migrations as postgresMigrations } from '../postgres/migrations.js';
import type { Clock, Sleep, Stores } from '../types.js';

export interface OpenOptions {
  clock?: Clock;
  sleep?: Sleep;
  /** Default: the harness's keyring. */
  keyring?: Keyring;
}

export interface DriverHarness {
  readonly driver: 'sqlite' | 'postgres';
  /** A data directory of its own (the key file lives there; the SQLite database too). */
  readonly home: string;
  /** What DROPKEY_DATABASE_URL would say (undefined: SQLite in home). */
  readonly databaseUrl: string | undefined;
  readonly keyring: Keyring;
  /** The versions the driver's one migrator records, in order. */
  readonly migrations: number[];
  /** Opens every store on the harness's database through a new handle, as another process or instance would. */
  open(options?: OpenOptions): Promise<Stores>;
  /** A raw query for inspection: `$1` parameters, unqualified table names (PostgreSQL: the harness's schema). */
  rows(sql: string, params?: unknown[]): Promise<Record<string, unknown>[]>;
  /**
   * Runs the calls so that they really overlap inside the database: PostgreSQL holds `table` locked from a third
   * session until every call waits on it; SQLite runs every write transaction alone (IMMEDIATE), so there the calls
   * simply run together.
   */
  race<T>(table: string, calls: () => Promise<T>[]): Promise<T[]>;
  /** How VirtualTime lets woken tasks run; network drivers supply their own. */
  settle?: () => Promise<void>;
  /** Closes every handle open() opened and deletes the database. */
  cleanup(): Promise<void>;
}

export type MakeHarness = () => Promise<DriverHarness>;

/** A driver and how to get a fresh harness for it, or why its suites are skipped. */
export interface DriverUnderTest {
  name: 'sqlite' | 'postgres';
  make: MakeHarness;
  /** Set when the driver cannot run here (no PostgreSQL server). */
  skip?: string;
}

export const sqlite: DriverUnderTest = { name: 'sqlite', make: () => sqliteHarness() };
export const postgres: DriverUnderTest = TEST_DATABASE_URL ? { name: 'postgres', make: () => postgresHarness(TEST_DATABASE_URL!) } : { name: 'postgres', make: () => postgresHarness(''), skip: SKIP_REASON };

/** Runs fn with a fresh harness, cleaned up afterwards whatever happens. */
export async function withHarness<T>(make: MakeHarness, fn: (h: DriverHarness) => Promise<T>): Promise<T> {
  const h = await make();
  try {
    return await fn(h);
  } finally {
    await h.cleanup();
  }
}

/** `$1, $2 ...` to SQLite's anonymous `?`, with the parameters reordered to match (a parameter may repeat). */
function toSqlite(sql: string, params: unknown[]): { sql: string; params: unknown[] } {
  const order: unknown[] = [];
  const text = sql.replace(/\$(\d+)/g, (_, n: string) => {
    order.push(params[Number(n) - 1]);
    return '?';
  });
  return { sql: text, params: order };
}

export async function sqliteHarness(keyring: Keyring = Keyring.generate()): Promise<DriverHarness> {
  const home = mkdtempSync(join(tmpdir(), 'dropkey-contract-'));
  const path = join(home, 'dropkey.db');
  const opened: Stores[] = [];
  return {
    driver: 'sqlite',
    home,
    databaseUrl: undefined,
    keyring,
    migrations: sqliteMigrations.map((m) => m.version),
    async open(o = {}) {
      const s = await openSqliteDriver({ location: path, keyring: o.keyring ?? keyring, ...(o.clock ? { clock: o.clock } : {}), ...(o.sleep ? { sleep: o.sleep } : {}), warn: () => {} });
      opened.push(s);
      return s;
    },
    async rows(sql, params = []) {
      const db = new Database(path);
      try {
        const q = toSqlite(sql, params);
        const st = db.prepare(q.sql);
        return st.reader ? (st.all(...q.params) as Record<string, unknown>[]) : (st.run(...q.params), []);
      } finally {
        db.close();
      }
    },
    race: (_table, calls) => Promise.all(calls()),
    async cleanup() {
      for (const s of opened) await s.close();
      rmSync(home, { recursive: true, force: true });
    },
  };
}

export async function postgresHarness(url: string, keyring: Keyring = Keyring.generate()): Promise<DriverHarness> {
  const home = mkdtempSync(join(tmpdir(), 'dropkey-contract-'));
  const schema = freshSchemaName();
  const opened: PostgresStores[] = [];
  const u = new URL(url);
  u.searchParams.set('schema', schema);
  return {
    driver: 'postgres',
    home,
    databaseUrl: u.toString(),
    keyring,
    migrations: postgresMigrations.map((m) => m.version),
    async open(o = {}) {
      const s = await openPostgresDriver({
        connectionString: url,
        schema,
        keyring: o.keyring ?? keyring,
        maxConnections: 4,
        ...(o.clock ? { clock: o.clock } : {}),
        ...(o.sleep ? { sleep: o.sleep } : {}),
        warn: () => {},
      });
      opened.push(s);
      return s;
    },
    async rows(sql, params = []) {
      return withAdmin(async (c) => {
        await c.query(`SET search_path TO "${schema}"`);
        return (await c.query(sql, params)).rows as Record<string, unknown>[];
      });
    },
    async race(table, calls) {
      return withAdmin(async (c) => {
        await c.query('BEGIN');
        await c.query(`LOCK TABLE "${schema}".${table} IN EXCLUSIVE MODE`);
        const all = calls();
        const racing = Promise.all(all);
        racing.catch(() => {}); // reported below, after the lock is released
        for (let waiting = 0; waiting < all.length; ) {
          await c.query('SELECT pg_stat_clear_snapshot()'); // pg_stat_activity is read once per transaction otherwise
          const r = await c.query(`SELECT count(*)::int AS n FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND query LIKE $1`, [`%"${schema}"%`]);
          waiting = r.rows[0].n;
        }
        await c.query('COMMIT');
        return racing;
      });
    },
    async settle() {
      for (;;) {
        for (let i = 0; i < 5; i++) await new Promise<void>((r) => setImmediate(r));
        const busy = opened.filter((s) => s.pendingOperations > 0);
        if (busy.length === 0) return;
        await Promise.all(busy.map((s) => s.idle()));
      }
    },
    async cleanup() {
      for (const s of opened) await s.close();
      await dropSchema(schema);
      rmSync(home, { recursive: true, force: true });
    },
  };
}

/**
 * The PostgreSQL driver (node-postgres): one database shared by every dropkey instance and CLI of a deployment,
 * every dropkey table in one schema (default `dropkey`), reached through ONE pool that every store of the driver
 * uses (core, server, webhooks, locks, back-off, key rotation), with ONE migrator (./migrations.ts) run on open.
 * Design choices: docs/decisions/0002-postgres-store.md, docs/decisions/0004-store-layout.md.
 *
 * - Connection loss (PostgreSQL restarted, pg_terminate_backend, a network blip) breaks only the operations in flight
 *   on the lost sessions. An operation that failed before COMMIT was sent is retried on a fresh connection; the pool
 *   replaces dead connections by itself, so the stores recover without a restart.
 * - Besides the pool, the locks keep one liveness connection once a lock was taken (./locks.ts).
 */
import { DropkeyError, ErrorCodes } from '../../errors.js';
import type { Keyring } from '../cipher.js';
import { realSleep } from '../lease.js';
import type { KeyringProvider } from '../records.js';
import type { Clock, Sleep, Stores } from '../types.js';
import type { NewId } from '../webhook-records.js';
import { PgBackoffTable } from './backoff.js';
import { PostgresCoreStore } from './core.js';
import { checkout, createPool, PgDatabase, poolConfig, type PgPoolOptions } from './db.js';
import { describeServer, errorMapper } from './errors.js';
import { PgLocks } from './locks.js';
import { checkSchemaName, migrate, NewerSchemaError } from './migrations.js';
import { postgresSecretPort } from './secrets.js';
import { PgServerStore } from './server-store.js';
import { PgWebhookStore } from './webhook-store.js';

export { checkSchemaName } from './migrations.js';

export interface PostgresDriverOptions extends PgPoolOptions {
  keyring: Keyring | KeyringProvider;
  clock?: Clock;
  /** Used only to wait for locks (and their heartbeat). */
  sleep?: Sleep;
  /** Schema holding dropkey's tables (default `dropkey`); lower-case letters, digits and `_`. */
  schema?: string;
  /** Receives warnings (clock skew against the server). Default: process.emitWarning. */
  warn?: (message: string) => void;
  /** Ids for webhook endpoints and deliveries (default crypto.randomUUID-based). */
  newId?: NewId;
}

export type PostgresStores = Stores & {
  readonly kind: 'postgres';
  readonly schema: string;
  /** Resolves when no database operation of these stores is in flight (tests pair it with virtual time). */
  idle(): Promise<void>;
  readonly pendingOperations: number;
};

/** Clock difference to the server above which lock leases (compared across instances' clocks) become unreliable. */
const SKEW_WARN_MS = 2_000;

/** Opens the pool, migrates the schema (creating it when missing), checks the keyring, and returns every store. */
export async function openDriver(options: PostgresDriverOptions): Promise<PostgresStores> {
  const schema = checkSchemaName(options.schema ?? 'dropkey');
  const clock = options.clock ?? Date.now;
  const sleep = options.sleep ?? realSleep;
  const warn = options.warn ?? ((m: string) => process.emitWarning(m, 'DropkeyWarning'));
  const server = describeServer(options.connectionString);
  const fail = errorMapper(server);
  const config = poolConfig(options);
  const pool = createPool(config);

  try {
    const { client, release } = await checkout(pool);
    try {
      await migrate(client, schema, clock());
      if (options.clock === undefined) await checkSkew(client, clock, warn, server);
    } finally {
      release();
    }
  } catch (cause) {
    await pool.end().catch(() => {});
    if (cause instanceof NewerSchemaError) {
      throw new DropkeyError(ErrorCodes.STORE, `the PostgreSQL schema "${schema}" on ${server} was written by a newer dropkey (${cause.message})`, {
        cause,
        hint: 'upgrade dropkey on this instance to the version the other instances run; an older version cannot safely use this database',
      });
    }
    throw fail('prepare the database (connect and migrate)', cause);
  }

  const db = new PgDatabase(pool, config, fail);
  const locks = new PgLocks(db, config, schema, clock, sleep);
  let closing: Promise<void> | undefined;
  const close = () =>
    (closing ??= (async () => {
      await locks.close();
      await db.close();
    })());
  const core = new PostgresCoreStore(db, schema, clock, locks, close);
  try {
    await core.checkKeyring(options.keyring);
  } catch (cause) {
    await close();
    throw cause instanceof DropkeyError ? cause : fail('check the master key', cause);
  }
  const keyring = core.keyring;
  return {
    kind: 'postgres',
    location: `${server}#${schema}`,
    schema,
    keyring,
    core,
    server: new PgServerStore(db, schema, keyring),
    webhooks: new PgWebhookStore(db, schema, keyring, options.newId),
    locks,
    backoff: new PgBackoffTable(db, schema),
    secrets: postgresSecretPort(db, schema),
    idle: () => db.idle(),
    get pendingOperations() {
      return db.pending;
    },
    close,
  };
}

async function checkSkew(client: import('pg').PoolClient, clock: Clock, warn: (m: string) => void, server: string): Promise<void> {
  const before = clock();
  const r = await client.query<{ now: number }>('SELECT (extract(epoch FROM clock_timestamp()) * 1000)::float8 AS now');
  const after = clock();
  const skew = (before + after) / 2 - (r.rows[0]?.now ?? (before + after) / 2);
  if (Math.abs(skew) > SKEW_WARN_MS + (after - before) / 2) {
    warn(
      `this machine's clock differs from PostgreSQL's (${server}) by ${(skew / 1000).toFixed(1)} s: lock leases are compared across ` +
        'instances, so their clocks must agree well within the lock ttl; synchronise clocks with NTP',
    );
  }
}


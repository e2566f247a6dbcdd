/**
 * The PostgreSQL schema of every dropkey table (core, server, webhooks, back-off), as ONE list of numbered
 * migrations recorded in `<schema>.schema_migrations`, applied by ONE migrator when the driver opens (./index.ts).
 * Never edit a released migration: append a new one.
 *
 * Schemas written before the one-migrator layout kept three version sequences (schema_migrations for the core
 * tables, server_migrations, webhook_schema_migrations) and created the back-off table on first use. A migration
 * that `adopts` one of those is recorded as applied without running when the old table says it was, and the old
 * bookkeeping tables are dropped once adopted (in the same transaction): existing schemas move forward with every
 * row in place.
 *
 * Every instance runs migrate() on start. Applying happens in one transaction that first takes a transaction-level
 * advisory lock (released by PostgreSQL at COMMIT/ROLLBACK, or when the session dies), so when several instances
 * start at once on an empty database exactly one applies the migrations and the others wait, then see them done.
 * Because DDL is transactional in PostgreSQL, a migration that fails leaves nothing half-applied.
 *
 * Secret columns (*_enc) hold ciphertext only; the CHECK constraints refuse anything that does not look like a
 * dropkey ciphertext, so a bug that forgot to encrypt fails loudly instead of writing a token in plain text.
 */
import type { PoolClient } from 'pg';
import { DropkeyError, ErrorCodes } from '../../errors.js';
import { endsCachedToken } from '../records.js';

export interface PgMigration {
  version: number;
  name: string;
  /** The SQL, given the quoted schema name (`"dropkey"`). */
  sql: (schema: string) => string;
  /** Applied already under the pre-one-migrator layout when `table` (in the schema) records `version`. */
  adopts?: { table: string; version: number };
}

const CIPHERTEXT = (col: string) => `CHECK (${col} IS NULL OR ${col} LIKE 'dk1.%')`;

export const migrations: PgMigration[] = [
  {
    version: 1,
    name: 'initial schema',
    sql: (s) => `
      CREATE TABLE ${s}.meta (
        key text PRIMARY KEY,
        value text NOT NULL
      );

      CREATE TABLE ${s}.apps (
        name text PRIMARY KEY,
        app_key text NOT NULL,
        secret_enc text ${CIPHERTEXT('secret_enc')},
        scopes text[] NOT NULL,
        team boolean NOT NULL,
        access text CHECK (access IS NULL OR access IN ('full', 'app_folder')),
        created_at bigint NOT NULL,
        updated_at bigint NOT NULL
      );

      CREATE TABLE ${s}.connections (
        name text PRIMARY KEY,
        app text NOT NULL REFERENCES ${s}.apps(name) ON DELETE RESTRICT ON UPDATE RESTRICT,
        account_id text,
        team_id text,
        email text,
        display_name text,
        team_name text,
        scopes text[] NOT NULL,
        access_token_enc text ${CIPHERTEXT('access_token_enc')},
        access_token_expires_at bigint,
        refresh_token_enc text ${CIPHERTEXT('refresh_token_enc')},
        state text NOT NULL CHECK (state IN ('active', 'needs_reauth', 'revoked')),
        last_error text,
        last_refresh_at bigint,
        created_at bigint NOT NULL,
        updated_at bigint NOT NULL,
        version integer NOT NULL
      );
      CREATE INDEX connections_app ON ${s}.connections(app);

      -- Lease locks (see ../lease.ts and docs/decisions/0002-postgres-store.md). holder_session is the advisory-lock
      -- key of the holder's liveness session: when that session is gone, the holder died and the lease is free.
      CREATE TABLE ${s}.locks (
        name text PRIMARY KEY,
        owner text NOT NULL,
        expires_at bigint NOT NULL,
        acquired_at bigint NOT NULL,
        holder_session integer
      );
    `,
  },
  {
    version: 2,
    name: 'lock liveness stamp',
    // When holder_session was last recorded, in server time: a session that ended because the whole server
    // restarted afterwards says nothing about whether its holder process is still alive.
    sql: (s) => `ALTER TABLE ${s}.locks ADD COLUMN session_stamped_at timestamptz;`,
  },
  {
    version: 3,
    name: 'server tables',
    adopts: { table: 'server_migrations', version: 1 },
    sql: (s) => `
      CREATE TABLE ${s}.server_admins (
        id text PRIMARY KEY,
        email text NOT NULL,
        email_key text NOT NULL UNIQUE,
        password_hash text NOT NULL CHECK (password_hash LIKE 'scrypt$%'),
        created_at bigint NOT NULL,
        last_login_at bigint
      );

      CREATE TABLE ${s}.server_setup_tokens (
        token_hash text PRIMARY KEY,
        expires_at bigint NOT NULL
      );

      CREATE TABLE ${s}.server_sessions (
        id_hash text PRIMARY KEY,
        user_id text NOT NULL REFERENCES ${s}.server_admins(id) ON DELETE CASCADE,
        csrf_token text NOT NULL,
        created_at bigint NOT NULL,
        expires_at bigint NOT NULL
      );
      CREATE INDEX server_sessions_user ON ${s}.server_sessions(user_id);

      CREATE TABLE ${s}.server_api_keys (
        id text PRIMARY KEY,
        name text NOT NULL,
        prefix text NOT NULL,
        hash text NOT NULL UNIQUE,
        permissions text[] NOT NULL,
        -- NULL means every connection ('*').
        connections text[],
        created_at bigint NOT NULL,
        created_by text NOT NULL,
        last_used_at bigint,
        revoked_at bigint,
        token_handouts bigint NOT NULL DEFAULT 0
      );
      -- One live key per name; revoked keys keep their rows (audit) and free the name.
      CREATE UNIQUE INDEX server_api_keys_live_name ON ${s}.server_api_keys(name) WHERE revoked_at IS NULL;

      CREATE TABLE ${s}.server_audit (
        id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        at bigint NOT NULL,
        actor text NOT NULL,
        action text NOT NULL,
        target text,
        details jsonb NOT NULL
      );
      CREATE INDEX server_audit_action ON ${s}.server_audit(action, id);
      CREATE INDEX server_audit_target ON ${s}.server_audit(target, id);

      CREATE TABLE ${s}.server_connect_links (
        id text PRIMARY KEY,
        token_hash text NOT NULL UNIQUE,
        connection text NOT NULL,
        app text NOT NULL,
        created_at bigint NOT NULL,
        created_by text NOT NULL,
        expires_at bigint NOT NULL,
        used_at bigint
      );

      CREATE TABLE ${s}.server_pending_oauth (
        id text PRIMARY KEY,
        state_hash text NOT NULL UNIQUE,
        binding_hash text NOT NULL,
        session_id_hash text,
        link_id text,
        connection text NOT NULL,
        app text NOT NULL,
        code_verifier_enc text NOT NULL CHECK (code_verifier_enc LIKE 'dk1.%'),
        redirect_uri text NOT NULL,
        scopes text[] NOT NULL,
        return_mode text NOT NULL CHECK (return_mode IN ('popup', 'redirect', 'link')),
        return_to text,
        actor text NOT NULL,
        created_at bigint NOT NULL,
        expires_at bigint NOT NULL
      );
    `,
  },
  {
    version: 4,
    name: 'webhooks and job runs',
    adopts: { table: 'webhook_schema_migrations', version: 1 },
    sql: (s) => `
      CREATE TABLE ${s}.webhook_endpoints (
        id text PRIMARY KEY,
        url text NOT NULL,
        description text NOT NULL,
        events text[] NOT NULL,
        secret_enc text NOT NULL CHECK (secret_enc LIKE 'dk1.%'),
        enabled boolean NOT NULL,
        created_at bigint NOT NULL,
        created_by text NOT NULL,
        updated_at bigint NOT NULL
      );

      CREATE TABLE ${s}.webhook_events (
        id text PRIMARY KEY,
        type text NOT NULL,
        connection text,
        at bigint NOT NULL,
        body text NOT NULL
      );

      CREATE TABLE ${s}.webhook_deliveries (
        id text PRIMARY KEY,
        -- Insertion order for listings (SQLite uses its rowid).
        seq bigint GENERATED ALWAYS AS IDENTITY,
        event_id text NOT NULL REFERENCES ${s}.webhook_events(id) ON DELETE CASCADE,
        endpoint_id text NOT NULL REFERENCES ${s}.webhook_endpoints(id) ON DELETE CASCADE,
        status text NOT NULL CHECK (status IN ('pending', 'succeeded', 'failed')),
        attempts integer NOT NULL DEFAULT 0,
        next_attempt_at bigint,
        claimed_until bigint,
        last_attempt_at bigint,
        last_status_code integer,
        last_error text,
        last_duration_ms bigint,
        created_at bigint NOT NULL,
        completed_at bigint
      );
      CREATE INDEX webhook_deliveries_due ON ${s}.webhook_deliveries(status, next_attempt_at);
      CREATE INDEX webhook_deliveries_endpoint ON ${s}.webhook_deliveries(endpoint_id, created_at);
      CREATE INDEX webhook_deliveries_event ON ${s}.webhook_deliveries(event_id);

      CREATE TABLE ${s}.webhook_attempts (
        delivery_id text NOT NULL REFERENCES ${s}.webhook_deliveries(id) ON DELETE CASCADE,
        attempt integer NOT NULL,
        at bigint NOT NULL,
        status_code integer,
        error text,
        duration_ms bigint NOT NULL,
        PRIMARY KEY (delivery_id, attempt)
      );

      CREATE TABLE ${s}.job_runs (
        name text PRIMARY KEY,
        last_started_at bigint,
        last_finished_at bigint,
        last_outcome text,
        last_error text,
        runs integer NOT NULL DEFAULT 0
      );
    `,
  },
  {
    version: 5,
    name: 'proxy back-off',
    // IF NOT EXISTS: the pre-one-migrator proxy created this very table on first use.
    sql: (s) => `CREATE TABLE IF NOT EXISTS ${s}.proxy_backoff (key text PRIMARY KEY, until bigint NOT NULL, reason text NOT NULL);`,
  },
  {
    version: 6,
    name: 'team connections: the admin who linked them',
    // IF NOT EXISTS: a schema whose bookkeeping predates the one migrator replays the later migrations.
    sql: (s) => `
      ALTER TABLE ${s}.connections ADD COLUMN IF NOT EXISTS linked_by_name text;
      ALTER TABLE ${s}.connections ADD COLUMN IF NOT EXISTS linked_by_email text;
    `,
  },
  {
    version: 7,
    name: 'due refreshes, audit retention and usage buckets',
    // IF NOT EXISTS: safe to apply again over a schema whose bookkeeping was rewound (like migrations 5 and 6).
    sql: (s) => `
      -- The refresh job reads only what is due (listDueConnections); the partial index holds only refreshable, active rows.
      CREATE INDEX IF NOT EXISTS connections_due ON ${s}.connections(access_token_expires_at) WHERE state = 'active' AND refresh_token_enc IS NOT NULL;
      -- The health check pages through active connections in byte order (listActiveConnections).
      CREATE INDEX IF NOT EXISTS connections_active_name ON ${s}.connections((name COLLATE "C")) WHERE state = 'active';
      -- Retention prunes the oldest entries by time, in batches.
      CREATE INDEX IF NOT EXISTS server_audit_at ON ${s}.server_audit(at);
      -- Counted entries (token hand-outs) are one row per key, connection and time bucket, upserted on this key.
      ALTER TABLE ${s}.server_audit ADD COLUMN IF NOT EXISTS bucket text;
      CREATE UNIQUE INDEX IF NOT EXISTS server_audit_bucket ON ${s}.server_audit(bucket) WHERE bucket IS NOT NULL;
    `,
  },
  {
    version: 8,
    name: 'connections by name and state',
    // Pages (listConnectionPage) are ordered by name COLLATE "C" whatever the database's collation: these indexes
    // serve that order, for every connection and for one state.
    sql: (s) => `
      CREATE INDEX IF NOT EXISTS connections_name_c ON ${s}.connections(name COLLATE "C");
      CREATE INDEX IF NOT EXISTS connections_state_name_c ON ${s}.connections(state, name COLLATE "C");
    `,
  },
  {
    version: 9,
    name: 'connection changes',
    // What ends a token cached by `dropkey serve` on any instance (src/server/services/tokens.ts; records.ts
    // endsCachedToken says which updates): written by triggers, so every writer is seen. changed_at is the server's
    // clock_timestamp() in epoch ms: the time of the write, not of the transaction's start. Written to run again
    // safely (IF NOT EXISTS, OR REPLACE), like every migration here.
    sql: (s) => `
      CREATE TABLE IF NOT EXISTS ${s}.connection_changes (
        id bigserial PRIMARY KEY,
        name text NOT NULL,
        changed_at bigint NOT NULL DEFAULT ${PG_NOW_MS}
      );
      CREATE INDEX IF NOT EXISTS connection_changes_changed_at ON ${s}.connection_changes (changed_at);
      CREATE OR REPLACE FUNCTION ${s}.dropkey_connection_changed() RETURNS trigger LANGUAGE plpgsql AS $fn$
      BEGIN
        INSERT INTO ${s}.connection_changes (name) VALUES (OLD.name);
        RETURN NULL;
      END
      $fn$;
      DROP TRIGGER IF EXISTS connection_changes_delete ON ${s}.connections;
      CREATE TRIGGER connection_changes_delete AFTER DELETE ON ${s}.connections
        FOR EACH ROW EXECUTE FUNCTION ${s}.dropkey_connection_changed();
      DROP TRIGGER IF EXISTS connection_changes_update ON ${s}.connections;
      CREATE TRIGGER connection_changes_update AFTER UPDATE ON ${s}.connections
        FOR EACH ROW WHEN (${endsCachedToken('IS DISTINCT FROM', 'IS NOT DISTINCT FROM')})
        EXECUTE FUNCTION ${s}.dropkey_connection_changed();
    `,
  },
  {
    version: 10,
    name: 'connections by app',
    // An app's connections in name order (listConnectionPage with app: the app page, removing an app) without
    // reading every row; COLLATE "C" like the other listing indexes.
    sql: (s) => `CREATE INDEX IF NOT EXISTS connections_app_name_c ON ${s}.connections (app, name COLLATE "C");`,
  },
];

/** The server's clock as epoch milliseconds, at the moment of the statement (not of the transaction's start). */
export const PG_NOW_MS = `(floor(extract(epoch from clock_timestamp()) * 1000))::int8`;

/** The bookkeeping tables of the pre-one-migrator layout, dropped once their versions are adopted. */
const LEGACY_TABLES = [...new Set(migrations.flatMap((m) => (m.adopts ? [m.adopts.table] : [])))];

const SCHEMA_RE = /^[a-z_][a-z0-9_]{0,62}$/;

export function checkSchemaName(schema: string): string {
  if (!SCHEMA_RE.test(schema)) {
    throw new DropkeyError(ErrorCodes.BAD_INPUT, `invalid PostgreSQL schema name "${String(schema).slice(0, 80)}"`, {
      hint: 'use lower-case letters, digits and "_", starting with a letter, e.g. dropkey',
    });
  }
  return schema;
}

/**
 * Advisory lock namespaces (the first key of the two-int4 form). Two-key advisory locks live in a space separate
 * from one-bigint locks, so these cannot collide with an application that uses pg_advisory_lock(bigint).
 * The values are arbitrary ("dk" in ASCII, then 1 and 2).
 */
export const MIGRATION_LOCK_NS = 0x646b0001;
export const LIVENESS_LOCK_NS = 0x646b0002;

/** Quotes a schema name already checked by checkSchemaName (so no escaping is needed). */
export function quoteIdent(name: string): string {
  return `"${name}"`;
}

export class NewerSchemaError extends Error {
  constructor(
    readonly found: number,
    readonly known: number,
  ) {
    super(`database schema version ${found} is newer than this dropkey knows (${known})`);
  }
}

/**
 * Applies pending migrations in `schema`; returns the versions this call applied.
 * The schema is created when missing (an operator may pre-create it and grant only USAGE/CREATE on it).
 */
export async function migrate(
  client: PoolClient,
  schema: string,
  now: number,
  list: PgMigration[] = migrations,
): Promise<number[]> {
  const s = quoteIdent(schema);
  const t = `${s}.schema_migrations`;
  const latest = Math.max(0, ...list.map((m) => m.version));
  // Fast path (every start of an up-to-date instance): a plain read, no lock, no transaction.
  if (await appliedAll(client, t, list, latest)) return [];

  await client.query('BEGIN');
  try {
    // Keyed by the schema, so instances of unrelated dropkey deployments (other schemas) do not queue on each other.
    await client.query('SELECT pg_advisory_xact_lock($1, hashtext($2))', [MIGRATION_LOCK_NS, schema]);
    const exists = await client.query('SELECT 1 FROM pg_namespace WHERE nspname = $1', [schema]);
    if (exists.rowCount === 0) await client.query(`CREATE SCHEMA ${s}`);
    await client.query(`CREATE TABLE IF NOT EXISTS ${t} (
      version integer PRIMARY KEY,
      name text NOT NULL,
      applied_at bigint NOT NULL
    )`);
    const applied = new Set((await client.query<{ version: number }>(`SELECT version FROM ${t}`)).rows.map((r) => r.version));
    const newest = Math.max(0, ...applied);
    if (newest > latest) throw new NewerSchemaError(newest, latest);
    const legacy = await legacyVersions(client, schema);
    const done: number[] = [];
    for (const m of [...list].sort((a, b) => a.version - b.version)) {
      if (applied.has(m.version)) continue;
      if (!(m.adopts && legacy.get(m.adopts.table)?.has(m.adopts.version))) await client.query(m.sql(s));
      await client.query(`INSERT INTO ${t} (version, name, applied_at) VALUES ($1, $2, $3)`, [m.version, m.name, now]);
      done.push(m.version);
    }
    for (const table of legacy.keys()) await client.query(`DROP TABLE ${s}.${quoteIdent(table)}`);
    await client.query('COMMIT');
    return done;
  } catch (err) {
    await client.query('ROLLBACK').catch(() => {});
    throw err;
  }
}

/** The versions each legacy bookkeeping table still present records (a newer one than we know is refused). */
async function legacyVersions(client: PoolClient, schema: string): Promise<Map<string, Set<number>>> {
  const out = new Map<string, Set<number>>();
  for (const table of LEGACY_TABLES) {
    const qualified = `${quoteIdent(schema)}.${quoteIdent(table)}`;
    const exists = await client.query<{ t: string | null }>('SELECT to_regclass($1) AS t', [qualified]);
    if (exists.rows[0]?.t == null) continue;
    const versions = new Set((await client.query<{ version: number }>(`SELECT version FROM ${qualified}`)).rows.map((r) => r.version));
    const known = Math.max(0, ...migrations.filter((m) => m.adopts?.table === table).map((m) => m.adopts!.version));
    if (Math.max(0, ...versions) > known) throw new NewerSchemaError(Math.max(...versions), known);
    out.set(table, versions);
  }
  return out;
}

async function appliedAll(client: PoolClient, table: string, list: PgMigration[], latest: number): Promise<boolean> {
  const t = await client.query<{ t: string | null }>('SELECT to_regclass($1) AS t', [table]);
  if (t.rows[0]?.t == null) return false;
  const applied = (await client.query<{ version: number }>(`SELECT version FROM ${table}`)).rows.map((r) => r.version);
  const versions = new Set(applied);
  if (Math.max(0, ...versions) > latest) throw new NewerSchemaError(Math.max(...versions), latest);
  return list.every((m) => versions.has(m.version));
}

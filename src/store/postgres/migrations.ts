/**
 * PostgreSQL schema, as numbered migrations recorded in `<schema>.schema_migrations`. Never edit a released
 * migration: append a new one.
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

export interface PgMigration {
  version: number;
  name: string;
  /** The SQL, given the quoted schema name (`"dropkey"`). */
  sql: (schema: string) => string;
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
];

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
  table = 'schema_migrations',
): Promise<number[]> {
  const s = quoteIdent(schema);
  const t = `${s}.${quoteIdent(table)}`;
  const latest = Math.max(0, ...list.map((m) => m.version));
  // Fast path (every start of an up-to-date instance): a plain read, no lock, no transaction.
  if (await appliedAll(client, t, list, latest)) return [];

  await client.query('BEGIN');
  try {
    // Keyed by the schema, so instances of unrelated dropkey deployments (other schemas) do not queue on each other;
    // the core and server migrations of one schema share it (they run once per start, one after the other).
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
    const done: number[] = [];
    for (const m of [...list].sort((a, b) => a.version - b.version)) {
      if (applied.has(m.version)) continue;
      await client.query(m.sql(s));
      await client.query(`INSERT INTO ${t} (version, name, applied_at) VALUES ($1, $2, $3)`, [m.version, m.name, now]);
      done.push(m.version);
    }
    await client.query('COMMIT');
    return done;
  } catch (err) {
    await client.query('ROLLBACK').catch(() => {});
    throw err;
  }
}

async function appliedAll(client: PoolClient, table: string, list: PgMigration[], latest: number): Promise<boolean> {
  const t = await client.query<{ t: string | null }>('SELECT to_regclass($1) AS t', [table]);
  if (t.rows[0]?.t == null) return false;
  const applied = (await client.query<{ version: number }>(`SELECT version FROM ${table}`)).rows.map((r) => r.version);
  const versions = new Set(applied);
  if (Math.max(0, ...versions) > latest) throw new NewerSchemaError(Math.max(...versions), latest);
  return list.every((m) => versions.has(m.version));
}

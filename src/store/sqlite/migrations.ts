/**
 * SQLite schema, as numbered migrations. Never edit a released migration: append a new one.
 *
 * Secret columns (*_enc) hold ciphertext only; the CHECK constraints refuse anything that does not look like a
 * dropkey ciphertext, so a bug that forgot to encrypt fails loudly instead of writing a token in plain text.
 */
import type Database from 'better-sqlite3';

export interface Migration {
  version: number;
  name: string;
  sql: string;
}

const CIPHERTEXT = (col: string) => `CHECK (${col} IS NULL OR ${col} LIKE 'dk1.%')`;

export const migrations: Migration[] = [
  {
    version: 1,
    name: 'initial schema',
    sql: `
      CREATE TABLE meta (
        key TEXT PRIMARY KEY,
        value TEXT NOT NULL
      ) STRICT;

      CREATE TABLE apps (
        name TEXT PRIMARY KEY,
        app_key TEXT NOT NULL,
        secret_enc TEXT ${CIPHERTEXT('secret_enc')},
        scopes TEXT NOT NULL,
        team INTEGER NOT NULL CHECK (team IN (0, 1)),
        access TEXT CHECK (access IS NULL OR access IN ('full', 'app_folder')),
        created_at INTEGER NOT NULL,
        updated_at INTEGER NOT NULL
      ) STRICT;

      CREATE TABLE connections (
        name TEXT PRIMARY KEY,
        app TEXT NOT NULL REFERENCES apps(name) ON DELETE RESTRICT ON UPDATE RESTRICT,
        account_id TEXT,
        team_id TEXT,
        email TEXT,
        display_name TEXT,
        team_name TEXT,
        scopes TEXT NOT NULL,
        access_token_enc TEXT ${CIPHERTEXT('access_token_enc')},
        access_token_expires_at INTEGER,
        refresh_token_enc TEXT ${CIPHERTEXT('refresh_token_enc')},
        state TEXT NOT NULL CHECK (state IN ('active', 'needs_reauth', 'revoked')),
        last_error TEXT,
        last_refresh_at INTEGER,
        created_at INTEGER NOT NULL,
        updated_at INTEGER NOT NULL,
        version INTEGER NOT NULL
      ) STRICT;
      CREATE INDEX connections_app ON connections(app);

      CREATE TABLE locks (
        name TEXT PRIMARY KEY,
        owner TEXT NOT NULL,
        expires_at INTEGER NOT NULL,
        acquired_at INTEGER NOT NULL
      ) STRICT;
    `,
  },
];

/**
 * Applies pending migrations. Everything (creating schema_migrations, reading what is applied, applying the rest)
 * happens in one IMMEDIATE transaction, which takes SQLite's write lock up front: when two processes open a fresh
 * database at once, the second waits (busy_timeout), then sees the first one's work and applies nothing.
 * Returns the versions this call applied.
 */
export function migrate(db: Database.Database, now: number, list: Migration[] = migrations, table = 'schema_migrations'): number[] {
  // Another component keeping its own tables in the same file (e.g. the server's store) passes its own table name,
  // so the two version sequences never mix (an unknown higher version here means "written by a newer dropkey").
  if (!/^[a-z_]+$/.test(table)) throw new Error(`bad migrations table name ${table}`);
  // Fast path for the common case (every open of an up-to-date database): a plain read, no write lock, so a
  // short-lived CLI never queues behind another process's write just to learn there is nothing to do.
  const latest = Math.max(0, ...list.map((m) => m.version));
  const hasTable = db.prepare("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?").get(table) !== undefined;
  if (hasTable) {
    const applied = db.prepare(`SELECT version FROM ${table}`).all() as { version: number }[];
    const versions = new Set(applied.map((r) => r.version));
    if (list.every((m) => versions.has(m.version)) && Math.max(0, ...versions) <= latest) return [];
  }
  const run = db.transaction(() => {
    db.exec(`CREATE TABLE IF NOT EXISTS ${table} (
      version INTEGER PRIMARY KEY,
      name TEXT NOT NULL,
      applied_at INTEGER NOT NULL
    ) STRICT`);
    const applied = new Set(
      (db.prepare(`SELECT version FROM ${table}`).all() as { version: number }[]).map((r) => r.version),
    );
    const latestKnown = Math.max(0, ...list.map((m) => m.version));
    const newest = Math.max(0, ...applied);
    if (newest > latestKnown) {
      throw new NewerSchemaError(newest, latestKnown);
    }
    const done: number[] = [];
    for (const m of [...list].sort((a, b) => a.version - b.version)) {
      if (applied.has(m.version)) continue;
      db.exec(m.sql);
      db.prepare(`INSERT INTO ${table} (version, name, applied_at) VALUES (?, ?, ?)`).run(m.version, m.name, now);
      done.push(m.version);
    }
    return done;
  });
  return run.immediate();
}

export class NewerSchemaError extends Error {
  constructor(
    readonly found: number,
    readonly known: number,
  ) {
    super(`database schema version ${found} is newer than this dropkey knows (${known})`);
  }
}

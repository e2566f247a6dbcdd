/**
 * The SQLite schema of every dropkey table (core, server, webhooks, back-off), as ONE list of numbered migrations
 * recorded in `schema_migrations`, applied by ONE migrator when the driver opens (./index.ts). Never edit a released
 * migration: append a new one.
 *
 * Databases written before the one-migrator layout kept three version sequences (schema_migrations for the core
 * tables, server_migrations, webhook_schema_migrations) and created the back-off table on first use. A migration
 * that `adopts` one of those is recorded as applied without running when the old table says it was, and the old
 * bookkeeping tables are dropped once adopted: existing databases move forward with every row in place.
 *
 * Secret columns (*_enc) hold ciphertext only; the CHECK constraints refuse anything that does not look like a
 * dropkey ciphertext, so a bug that forgot to encrypt fails loudly instead of writing a token in plain text.
 */
import type { SqliteDatabase } from './db.js';
import { endsCachedToken } from '../records.js';

export interface Migration {
  version: number;
  name: string;
  sql: string;
  /** Applied already under the pre-one-migrator layout when `table` records `version` (see above). */
  adopts?: { table: string; version: number };
}

const CIPHERTEXT = (col: string) => `CHECK (${col} IS NULL OR ${col} LIKE 'dk1.%')`;

/** The database's clock as epoch milliseconds (julianday has millisecond precision). */
export const SQLITE_NOW_MS = `CAST((julianday('now') - 2440587.5) * 86400000 AS INTEGER)`;

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
  {
    version: 2,
    name: 'server tables',
    adopts: { table: 'server_migrations', version: 1 },
    sql: `
      CREATE TABLE server_admins (
        id TEXT PRIMARY KEY,
        email TEXT NOT NULL,
        email_key TEXT NOT NULL UNIQUE,
        password_hash TEXT NOT NULL CHECK (password_hash LIKE 'scrypt$%'),
        created_at INTEGER NOT NULL,
        last_login_at INTEGER
      ) STRICT;

      CREATE TABLE server_setup_tokens (
        token_hash TEXT PRIMARY KEY,
        expires_at INTEGER NOT NULL
      ) STRICT;

      CREATE TABLE server_sessions (
        id_hash TEXT PRIMARY KEY,
        user_id TEXT NOT NULL REFERENCES server_admins(id) ON DELETE CASCADE,
        csrf_token TEXT NOT NULL,
        created_at INTEGER NOT NULL,
        expires_at INTEGER NOT NULL
      ) STRICT;
      CREATE INDEX server_sessions_user ON server_sessions(user_id);

      CREATE TABLE server_api_keys (
        id TEXT PRIMARY KEY,
        name TEXT NOT NULL,
        prefix TEXT NOT NULL,
        hash TEXT NOT NULL UNIQUE,
        permissions TEXT NOT NULL,
        connections TEXT NOT NULL,
        created_at INTEGER NOT NULL,
        created_by TEXT NOT NULL,
        last_used_at INTEGER,
        revoked_at INTEGER,
        token_handouts INTEGER NOT NULL DEFAULT 0
      ) STRICT;
      -- One live key per name; revoked keys keep their rows (audit) and free the name.
      CREATE UNIQUE INDEX server_api_keys_live_name ON server_api_keys(name) WHERE revoked_at IS NULL;

      CREATE TABLE server_audit (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        at INTEGER NOT NULL,
        actor TEXT NOT NULL,
        action TEXT NOT NULL,
        target TEXT,
        details TEXT NOT NULL
      ) STRICT;
      CREATE INDEX server_audit_action ON server_audit(action, id);
      CREATE INDEX server_audit_target ON server_audit(target, id);

      CREATE TABLE server_connect_links (
        id TEXT PRIMARY KEY,
        token_hash TEXT NOT NULL UNIQUE,
        connection TEXT NOT NULL,
        app TEXT NOT NULL,
        created_at INTEGER NOT NULL,
        created_by TEXT NOT NULL,
        expires_at INTEGER NOT NULL,
        used_at INTEGER
      ) STRICT;

      CREATE TABLE server_pending_oauth (
        id TEXT PRIMARY KEY,
        state_hash TEXT NOT NULL UNIQUE,
        binding_hash TEXT NOT NULL,
        session_id_hash TEXT,
        link_id TEXT,
        connection TEXT NOT NULL,
        app TEXT NOT NULL,
        code_verifier_enc TEXT NOT NULL CHECK (code_verifier_enc LIKE 'dk1.%'),
        redirect_uri TEXT NOT NULL,
        scopes TEXT NOT NULL,
        return_mode TEXT NOT NULL CHECK (return_mode IN ('popup', 'redirect', 'link')),
        return_to TEXT,
        actor TEXT NOT NULL,
        created_at INTEGER NOT NULL,
        expires_at INTEGER NOT NULL
      ) STRICT;
    `,
  },
  {
    version: 3,
    name: 'webhooks and job runs',
    adopts: { table: 'webhook_schema_migrations', version: 1 },
    sql: `
      CREATE TABLE webhook_endpoints (
        id TEXT PRIMARY KEY,
        url TEXT NOT NULL,
        description TEXT NOT NULL,
        events TEXT NOT NULL,
        secret_enc TEXT NOT NULL CHECK (secret_enc LIKE 'dk1.%'),
        enabled INTEGER NOT NULL CHECK (enabled IN (0, 1)),
        created_at INTEGER NOT NULL,
        created_by TEXT NOT NULL,
        updated_at INTEGER NOT NULL
      ) STRICT;

      CREATE TABLE webhook_events (
        id TEXT PRIMARY KEY,
        type TEXT NOT NULL,
        connection TEXT,
        at INTEGER NOT NULL,
        body TEXT NOT NULL
      ) STRICT;

      CREATE TABLE webhook_deliveries (
        id TEXT PRIMARY KEY,
        event_id TEXT NOT NULL REFERENCES webhook_events(id) ON DELETE CASCADE,
        endpoint_id TEXT NOT NULL REFERENCES webhook_endpoints(id) ON DELETE CASCADE,
        status TEXT NOT NULL CHECK (status IN ('pending', 'succeeded', 'failed')),
        attempts INTEGER NOT NULL DEFAULT 0,
        next_attempt_at INTEGER,
        claimed_until INTEGER,
        last_attempt_at INTEGER,
        last_status_code INTEGER,
        last_error TEXT,
        last_duration_ms INTEGER,
        created_at INTEGER NOT NULL,
        completed_at INTEGER
      ) STRICT;
      CREATE INDEX webhook_deliveries_due ON webhook_deliveries(status, next_attempt_at);
      CREATE INDEX webhook_deliveries_endpoint ON webhook_deliveries(endpoint_id, created_at);

      CREATE TABLE webhook_attempts (
        delivery_id TEXT NOT NULL REFERENCES webhook_deliveries(id) ON DELETE CASCADE,
        attempt INTEGER NOT NULL,
        at INTEGER NOT NULL,
        status_code INTEGER,
        error TEXT,
        duration_ms INTEGER NOT NULL,
        PRIMARY KEY (delivery_id, attempt)
      ) STRICT;

      CREATE TABLE job_runs (
        name TEXT PRIMARY KEY,
        last_started_at INTEGER,
        last_finished_at INTEGER,
        last_outcome TEXT,
        last_error TEXT,
        runs INTEGER NOT NULL DEFAULT 0
      ) STRICT;
    `,
  },
  {
    version: 4,
    name: 'proxy back-off',
    // IF NOT EXISTS: the pre-one-migrator proxy created this very table on first use.
    sql: `CREATE TABLE IF NOT EXISTS proxy_backoff (key TEXT PRIMARY KEY, until INTEGER NOT NULL, reason TEXT NOT NULL);`,
  },
  {
    version: 5,
    name: 'team connections: the admin who linked them',
    sql: `
      ALTER TABLE connections ADD COLUMN linked_by_name TEXT;
      ALTER TABLE connections ADD COLUMN linked_by_email TEXT;
    `,
  },
  {
    version: 6,
    name: 'due refreshes, audit retention and usage buckets',
    sql: `
      -- The refresh job reads only what is due (listDueConnections); the partial index holds only refreshable, active rows.
      CREATE INDEX connections_due ON connections(access_token_expires_at) WHERE state = 'active' AND refresh_token_enc IS NOT NULL;
      -- Retention prunes the oldest entries by time, in batches.
      CREATE INDEX server_audit_at ON server_audit(at);
      -- Counted entries (token hand-outs) are one row per key, connection and time bucket, upserted on this key.
      ALTER TABLE server_audit ADD COLUMN bucket TEXT;
      CREATE UNIQUE INDEX server_audit_bucket ON server_audit(bucket) WHERE bucket IS NOT NULL;
    `,
  },
  {
    version: 7,
    name: 'connections by state',
    // Pages of one state (listConnectionPage) walk this index in name order; name pages use the primary key.
    sql: `CREATE INDEX IF NOT EXISTS connections_state_name ON connections(state, name);`,
  },
  {
    version: 8,
    name: 'connection changes',
    // What ends a token cached by `dropkey serve` (src/server/services/tokens.ts): the connection deleted (revoked),
    // its state, app or account changed, or new credentials stored that are not a refresh (a new login, an
    // imported token). A refresh is not logged: the token it replaced stays valid at Dropbox. Written by triggers,
    // so every writer (the CLI, another server) is seen; times are the database's clock, epoch ms.
    sql: `
      CREATE TABLE IF NOT EXISTS connection_changes (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        name TEXT NOT NULL,
        changed_at INTEGER NOT NULL
      ) STRICT;
      CREATE INDEX IF NOT EXISTS connection_changes_changed_at ON connection_changes (changed_at);
      CREATE TRIGGER IF NOT EXISTS connection_changes_delete AFTER DELETE ON connections BEGIN
        INSERT INTO connection_changes (name, changed_at) VALUES (OLD.name, ${SQLITE_NOW_MS});
      END;
      CREATE TRIGGER IF NOT EXISTS connection_changes_update AFTER UPDATE ON connections
        WHEN ${endsCachedToken('IS NOT', 'IS')}
      BEGIN
        INSERT INTO connection_changes (name, changed_at) VALUES (NEW.name, ${SQLITE_NOW_MS});
      END;
    `,
  },
  {
    version: 9,
    name: 'connections by app',
    // An app's connections in name order (listConnectionPage with app: the app page, removing an app) without
    // reading every row.
    sql: `CREATE INDEX IF NOT EXISTS connections_app_name ON connections (app, name);`,
  },
];

/** The bookkeeping tables of the pre-one-migrator layout, dropped once their versions are adopted. */
const LEGACY_TABLES = [...new Set(migrations.flatMap((m) => (m.adopts ? [m.adopts.table] : [])))];

/**
 * Applies pending migrations. Everything (creating schema_migrations, reading what is applied, adopting and applying
 * the rest) happens in one IMMEDIATE transaction, which takes SQLite's write lock up front: when two processes open a
 * fresh database at once, the second waits (busy_timeout), then sees the first one's work and applies nothing.
 * Returns the versions this call applied (adopted ones included).
 */
export function migrate(db: SqliteDatabase, now: number, list: Migration[] = migrations): number[] {
  // Fast path for the common case (every open of an up-to-date database): a plain read, no write lock, so a
  // short-lived CLI never queues behind another process's write just to learn there is nothing to do.
  const latest = Math.max(0, ...list.map((m) => m.version));
  const hasTable = db.prepare("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'schema_migrations'").get() !== undefined;
  if (hasTable) {
    const versions = new Set((db.prepare('SELECT version FROM schema_migrations').all() as { version: number }[]).map((r) => r.version));
    if (list.every((m) => versions.has(m.version)) && Math.max(0, ...versions) <= latest) return [];
  }
  const run = db.transaction(() => {
    db.exec(`CREATE TABLE IF NOT EXISTS schema_migrations (
      version INTEGER PRIMARY KEY,
      name TEXT NOT NULL,
      applied_at INTEGER NOT NULL
    ) STRICT`);
    const applied = new Set((db.prepare('SELECT version FROM schema_migrations').all() as { version: number }[]).map((r) => r.version));
    const newest = Math.max(0, ...applied);
    if (newest > latest) throw new NewerSchemaError(newest, latest);
    const legacy = legacyVersions(db);
    const done: number[] = [];
    const record = db.prepare('INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, ?, ?)');
    for (const m of [...list].sort((a, b) => a.version - b.version)) {
      if (applied.has(m.version)) continue;
      if (!(m.adopts && legacy.get(m.adopts.table)?.has(m.adopts.version))) db.exec(m.sql);
      record.run(m.version, m.name, now);
      done.push(m.version);
    }
    for (const t of legacy.keys()) db.exec(`DROP TABLE ${t}`);
    return done;
  });
  return run.immediate();
}

/** The versions each legacy bookkeeping table still present records (a newer one than we know is refused). */
function legacyVersions(db: SqliteDatabase): Map<string, Set<number>> {
  const out = new Map<string, Set<number>>();
  for (const table of LEGACY_TABLES) {
    if (db.prepare("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?").get(table) === undefined) continue;
    const versions = new Set((db.prepare(`SELECT version FROM ${table}`).all() as { version: number }[]).map((r) => r.version));
    const known = Math.max(0, ...migrations.filter((m) => m.adopts?.table === table).map((m) => m.adopts!.version));
    if (Math.max(0, ...versions) > known) throw new NewerSchemaError(Math.max(...versions), known);
    out.set(table, versions);
  }
  return out;
}

export class NewerSchemaError extends Error {
  constructor(
    readonly found: number,
    readonly known: number,
  ) {
    super(`database schema version ${found} is newer than this dropkey knows (${known})`);
  }
}

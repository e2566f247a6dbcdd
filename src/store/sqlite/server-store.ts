/**
 * The SQLite ServerStore: the same database file as the core store (one file to back up), its own tables and its
 * own migrations table (`server_migrations`), so the core schema and this one evolve independently.
 *
 * Same discipline as ./index.ts: WAL, busy_timeout, IMMEDIATE transactions for read-then-write, driver errors
 * mapped to DROPKEY_STORE naming the operation (never parameter values). Credentials arrive already hashed; the
 * pending-login code verifier is encrypted with the Keyring, bound to its row (AAD).
 */
import type Database from 'better-sqlite3';
import { openDatabaseFile } from './driver.js';
import { randomUUID } from 'node:crypto';
import { DropkeyError, ErrorCodes } from '../../errors.js';
import type { Keyring } from '../cipher.js';
import { errorMapper, type ErrorMapper } from './index.js';
import {
  API_PERMISSIONS,
  type AdminCredentials,
  type AdminUser,
  type ApiKeyRecord,
  type ApiPermission,
  type AuditEntry,
  type ConnectLinkRecord,
  type NewApiKey,
  type NewAuditEntry,
  type NewPendingOAuth,
  type PendingOAuthRecord,
  type ServerStore,
  type SessionRecord,
} from '../server-types.js';
import {
  adminExists,
  apiKeyExists,
  noLiveApiKey,
  noSuchAdmin,
  toAdmin,
  toLink,
  toPending,
  verifierContext,
  type AdminRow,
  type LinkRow,
  type PendingRowOf,
} from '../server-records.js';

interface Migration {
  version: number;
  name: string;
  sql: string;
}

/** Append only; never edit a released migration. */
export const serverMigrations: Migration[] = [
  {
    version: 1,
    name: 'server tables',
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
];

export interface SqliteServerStoreOptions {
  /** The core store's database file (SqliteStore.path). */
  path: string;
  /** The same keyring the core store uses (encrypts pending-login code verifiers). */
  keyring: Keyring;
  busyTimeoutMs?: number;
}

type PendingRow = PendingRowOf<string>;

interface ApiKeyRow {
  id: string;
  name: string;
  prefix: string;
  hash: string;
  permissions: string;
  connections: string;
  created_at: number;
  created_by: string;
  last_used_at: number | null;
  revoked_at: number | null;
  token_handouts: number;
}

function migrate(db: Database.Database, now: number): void {
  const run = db.transaction(() => {
    db.exec(`CREATE TABLE IF NOT EXISTS server_migrations (
      version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at INTEGER NOT NULL) STRICT`);
    const applied = new Set((db.prepare('SELECT version FROM server_migrations').all() as { version: number }[]).map((r) => r.version));
    const known = Math.max(0, ...serverMigrations.map((m) => m.version));
    if (Math.max(0, ...applied) > known) {
      throw new DropkeyError(ErrorCodes.STORE, 'the server tables were written by a newer dropkey', {
        hint: 'upgrade dropkey; an older version cannot safely use this database',
      });
    }
    for (const m of serverMigrations) {
      if (applied.has(m.version)) continue;
      db.exec(m.sql);
      db.prepare('INSERT INTO server_migrations (version, name, applied_at) VALUES (?, ?, ?)').run(m.version, m.name, now);
    }
  });
  // IMMEDIATE: two instances starting at once serialize here; the second sees the first one's work.
  run.immediate();
}

export async function openSqliteServerStore(options: SqliteServerStoreOptions, now: number = Date.now()): Promise<ServerStore> {
  const fail = errorMapper(options.path);
  let db: Database.Database;
  try {
    db = openDatabaseFile(options.path, { timeout: options.busyTimeoutMs ?? 5000 }).db;
  } catch (cause) {
    throw fail('open the database', cause);
  }
  try {
    db.pragma('journal_mode = WAL');
    // NORMAL, not FULL like the core store: in WAL mode a commit then survives a process crash but not a power
    // cut, and needs no fsync. The periodic usage flush would otherwise stall the event loop (better-sqlite3 is
    // synchronous) on every write; nothing here is as precious as a refresh token (those stay FULL in the core
    // store's own connection).
    db.pragma('synchronous = NORMAL');
    db.pragma('foreign_keys = ON');
    migrate(db, now);
  } catch (cause) {
    db.close();
    throw fail('prepare the server tables (migrations)', cause);
  }
  return new SqliteServerStore(db, options.keyring, fail);
}

function parseJsonArray(text: string): string[] {
  try {
    const v = JSON.parse(text) as unknown;
    return Array.isArray(v) ? v.filter((x): x is string => typeof x === 'string') : [];
  } catch {
    return [];
  }
}

function toApiKey(r: ApiKeyRow): ApiKeyRecord {
  const perms = parseJsonArray(r.permissions).filter((p): p is ApiPermission => (API_PERMISSIONS as readonly string[]).includes(p));
  return {
    id: r.id,
    name: r.name,
    prefix: r.prefix,
    hash: r.hash,
    permissions: perms,
    connections: r.connections === '*' ? '*' : parseJsonArray(r.connections),
    createdAt: r.created_at,
    createdBy: r.created_by,
    lastUsedAt: r.last_used_at,
    revokedAt: r.revoked_at,
    tokenHandouts: r.token_handouts,
  };
}

class SqliteServerStore implements ServerStore {
  readonly #db: Database.Database;
  readonly #keyring: Keyring;
  readonly #fail: ErrorMapper;
  #closed = false;

  constructor(db: Database.Database, keyring: Keyring, fail: ErrorMapper) {
    this.#db = db;
    this.#keyring = keyring;
    this.#fail = fail;
  }

  #run<T>(operation: string, work: () => T, immediate = false): T {
    if (this.#closed) throw new DropkeyError(ErrorCodes.INTERNAL, `store: cannot ${operation}: the store is closed`);
    try {
      return immediate ? this.#db.transaction(work).immediate() : work();
    } catch (cause) {
      throw this.#fail(operation, cause);
    }
  }

  // ---- admins

  async countAdmins(): Promise<number> {
    return this.#run('count admins', () => (this.#db.prepare('SELECT COUNT(*) AS n FROM server_admins').get() as { n: number }).n);
  }

  #insertAdmin(input: { email: string; passwordHash: string }, now: number): AdminUser {
    const email = input.email.trim();
    const key = email.toLowerCase();
    if (this.#db.prepare('SELECT 1 FROM server_admins WHERE email_key = ?').get(key)) {
      throw adminExists(email);
    }
    const row: AdminRow = { id: randomUUID(), email, email_key: key, password_hash: input.passwordHash, created_at: now, last_login_at: null };
    this.#db
      .prepare('INSERT INTO server_admins (id, email, email_key, password_hash, created_at, last_login_at) VALUES (@id, @email, @email_key, @password_hash, @created_at, @last_login_at)')
      .run(row);
    return toAdmin(row);
  }

  async createAdmin(input: { email: string; passwordHash: string }, now: number): Promise<AdminUser> {
    return this.#run('create an admin', () => this.#insertAdmin(input, now), true);
  }

  async createFirstAdmin(input: { email: string; passwordHash: string; setupTokenHash: string }, now: number): Promise<AdminUser | undefined> {
    return this.#run(
      'create the first admin',
      () => {
        const n = (this.#db.prepare('SELECT COUNT(*) AS n FROM server_admins').get() as { n: number }).n;
        if (n > 0) return undefined;
        const used = this.#db.prepare('DELETE FROM server_setup_tokens WHERE token_hash = ? AND expires_at > ?').run(input.setupTokenHash, now);
        if (used.changes !== 1) return undefined;
        this.#db.prepare('DELETE FROM server_setup_tokens').run();
        return this.#insertAdmin(input, now);
      },
      true,
    );
  }

  async getAdminByEmail(email: string): Promise<AdminCredentials | undefined> {
    const r = this.#run('read an admin', () => this.#db.prepare('SELECT * FROM server_admins WHERE email_key = ?').get(email.trim().toLowerCase()) as AdminRow | undefined);
    return r && { ...toAdmin(r), passwordHash: r.password_hash };
  }

  async getAdmin(id: string): Promise<AdminUser | undefined> {
    const r = this.#run('read an admin', () => this.#db.prepare('SELECT * FROM server_admins WHERE id = ?').get(id) as AdminRow | undefined);
    return r && toAdmin(r);
  }

  async listAdmins(): Promise<AdminUser[]> {
    return this.#run('list admins', () => (this.#db.prepare('SELECT * FROM server_admins ORDER BY created_at').all() as AdminRow[]).map(toAdmin));
  }

  async setAdminPassword(id: string, passwordHash: string): Promise<void> {
    this.#run('change a password', () => {
      const r = this.#db.prepare('UPDATE server_admins SET password_hash = ? WHERE id = ?').run(passwordHash, id);
      if (r.changes !== 1) throw noSuchAdmin();
    });
  }

  async recordAdminLogin(id: string, now: number): Promise<void> {
    this.#run('record a sign-in', () => this.#db.prepare('UPDATE server_admins SET last_login_at = ? WHERE id = ?').run(now, id));
  }

  // ---- setup token

  async addSetupToken(tokenHash: string, expiresAt: number, now: number): Promise<void> {
    this.#run(
      'store a setup token',
      () => {
        this.#db.prepare('DELETE FROM server_setup_tokens WHERE expires_at <= ?').run(now);
        this.#db.prepare('INSERT INTO server_setup_tokens (token_hash, expires_at) VALUES (?, ?)').run(tokenHash, expiresAt);
      },
      true,
    );
  }

  async checkSetupToken(tokenHash: string, now: number): Promise<boolean> {
    return this.#run('check the setup token', () => this.#db.prepare('SELECT 1 FROM server_setup_tokens WHERE token_hash = ? AND expires_at > ?').get(tokenHash, now) !== undefined);
  }

  // ---- sessions

  async createSession(s: SessionRecord): Promise<void> {
    this.#run('create a session', () =>
      this.#db
        .prepare('INSERT INTO server_sessions (id_hash, user_id, csrf_token, created_at, expires_at) VALUES (?, ?, ?, ?, ?)')
        .run(s.idHash, s.userId, s.csrfToken, s.createdAt, s.expiresAt),
    );
  }

  async getSession(idHash: string, now: number): Promise<SessionRecord | undefined> {
    const r = this.#run(
      'read a session',
      () =>
        this.#db.prepare('SELECT * FROM server_sessions WHERE id_hash = ? AND expires_at > ?').get(idHash, now) as
          | { id_hash: string; user_id: string; csrf_token: string; created_at: number; expires_at: number }
          | undefined,
    );
    return r && { idHash: r.id_hash, userId: r.user_id, csrfToken: r.csrf_token, createdAt: r.created_at, expiresAt: r.expires_at };
  }

  async deleteSession(idHash: string): Promise<void> {
    this.#run('delete a session', () => this.#db.prepare('DELETE FROM server_sessions WHERE id_hash = ?').run(idHash));
  }

  async deleteSessionsOf(userId: string): Promise<void> {
    this.#run('delete sessions', () => this.#db.prepare('DELETE FROM server_sessions WHERE user_id = ?').run(userId));
  }

  // ---- API keys

  async createApiKey(k: NewApiKey, now: number): Promise<ApiKeyRecord> {
    return this.#run(
      'create an API key',
      () => {
        if (this.#db.prepare('SELECT 1 FROM server_api_keys WHERE name = ? AND revoked_at IS NULL').get(k.name)) {
          throw apiKeyExists(k.name);
        }
        const row: ApiKeyRow = {
          id: randomUUID(),
          name: k.name,
          prefix: k.prefix,
          hash: k.hash,
          permissions: JSON.stringify(k.permissions),
          connections: k.connections === '*' ? '*' : JSON.stringify(k.connections),
          created_at: now,
          created_by: k.createdBy,
          last_used_at: null,
          revoked_at: null,
          token_handouts: 0,
        };
        this.#db
          .prepare(
            `INSERT INTO server_api_keys (id, name, prefix, hash, permissions, connections, created_at, created_by, last_used_at, revoked_at, token_handouts)
             VALUES (@id, @name, @prefix, @hash, @permissions, @connections, @created_at, @created_by, @last_used_at, @revoked_at, @token_handouts)`,
          )
          .run(row);
        return toApiKey(row);
      },
      true,
    );
  }

  async getApiKeyByHash(hash: string): Promise<ApiKeyRecord | undefined> {
    const r = this.#run('read an API key', () => this.#db.prepare('SELECT * FROM server_api_keys WHERE hash = ?').get(hash) as ApiKeyRow | undefined);
    return r && toApiKey(r);
  }

  async listApiKeys(): Promise<ApiKeyRecord[]> {
    return this.#run('list API keys', () =>
      (this.#db.prepare('SELECT * FROM server_api_keys ORDER BY revoked_at IS NOT NULL, name, created_at').all() as ApiKeyRow[]).map(toApiKey),
    );
  }

  async revokeApiKey(name: string, now: number): Promise<ApiKeyRecord> {
    return this.#run(
      'revoke an API key',
      () => {
        const r = this.#db.prepare('SELECT * FROM server_api_keys WHERE name = ? AND revoked_at IS NULL').get(name) as ApiKeyRow | undefined;
        if (!r) {
          throw noLiveApiKey(name);
        }
        this.#db.prepare('UPDATE server_api_keys SET revoked_at = ? WHERE id = ?').run(now, r.id);
        return toApiKey({ ...r, revoked_at: now });
      },
      true,
    );
  }

  async recordApiKeyUsage(usage: { id: string; lastUsedAt: number; tokenHandouts: number }[]): Promise<void> {
    if (usage.length === 0) return;
    this.#run(
      'record API key usage',
      () => {
        const st = this.#db.prepare(
          'UPDATE server_api_keys SET last_used_at = MAX(COALESCE(last_used_at, 0), ?), token_handouts = token_handouts + ? WHERE id = ?',
        );
        for (const u of usage) st.run(u.lastUsedAt, u.tokenHandouts, u.id);
      },
      true,
    );
  }

  // ---- audit

  async appendAudit(entries: NewAuditEntry[]): Promise<void> {
    if (entries.length === 0) return;
    this.#run(
      'write the audit log',
      () => {
        const st = this.#db.prepare('INSERT INTO server_audit (at, actor, action, target, details) VALUES (?, ?, ?, ?, ?)');
        for (const e of entries) st.run(e.at, e.actor, e.action, e.target, JSON.stringify(e.details ?? {}));
      },
      true,
    );
  }

  async listAudit(query: { limit?: number; beforeId?: number; action?: string; target?: string } = {}): Promise<AuditEntry[]> {
    const where: string[] = [];
    const params: (string | number)[] = [];
    if (query.beforeId !== undefined) {
      where.push('id < ?');
      params.push(query.beforeId);
    }
    if (query.action !== undefined) {
      where.push('action = ?');
      params.push(query.action);
    }
    if (query.target !== undefined) {
      where.push('target = ?');
      params.push(query.target);
    }
    const limit = Math.min(Math.max(1, Math.floor(query.limit ?? 100)), 1000);
    const sql = `SELECT * FROM server_audit ${where.length ? `WHERE ${where.join(' AND ')}` : ''} ORDER BY id DESC LIMIT ${limit}`;
    const rows = this.#run('read the audit log', () => this.#db.prepare(sql).all(...params) as { id: number; at: number; actor: string; action: string; target: string | null; details: string }[]);
    return rows.map((r) => {
      let details: Record<string, unknown> = {};
      try {
        const v = JSON.parse(r.details) as unknown;
        if (v && typeof v === 'object' && !Array.isArray(v)) details = v as Record<string, unknown>;
      } catch {
        // A damaged details column must not hide the entry itself.
      }
      return { id: r.id, at: r.at, actor: r.actor, action: r.action, target: r.target, details };
    });
  }

  // ---- connect links

  async createConnectLink(l: Omit<ConnectLinkRecord, 'id' | 'usedAt' | 'createdAt'>, now: number): Promise<ConnectLinkRecord> {
    const row: LinkRow = {
      id: randomUUID(),
      token_hash: l.tokenHash,
      connection: l.connection,
      app: l.app,
      created_at: now,
      created_by: l.createdBy,
      expires_at: l.expiresAt,
      used_at: null,
    };
    this.#run('create a connect link', () =>
      this.#db
        .prepare(
          `INSERT INTO server_connect_links (id, token_hash, connection, app, created_at, created_by, expires_at, used_at)
           VALUES (@id, @token_hash, @connection, @app, @created_at, @created_by, @expires_at, @used_at)`,
        )
        .run(row),
    );
    return toLink(row);
  }

  async getConnectLinkByHash(tokenHash: string): Promise<ConnectLinkRecord | undefined> {
    const r = this.#run('read a connect link', () => this.#db.prepare('SELECT * FROM server_connect_links WHERE token_hash = ?').get(tokenHash) as LinkRow | undefined);
    return r && toLink(r);
  }

  async getConnectLink(id: string): Promise<ConnectLinkRecord | undefined> {
    const r = this.#run('read a connect link', () => this.#db.prepare('SELECT * FROM server_connect_links WHERE id = ?').get(id) as LinkRow | undefined);
    return r && toLink(r);
  }

  async claimConnectLink(id: string, now: number): Promise<boolean> {
    return this.#run('use a connect link', () => {
      const r = this.#db.prepare('UPDATE server_connect_links SET used_at = ? WHERE id = ? AND used_at IS NULL AND expires_at > ?').run(now, id, now);
      return r.changes === 1;
    });
  }

  async releaseConnectLink(id: string): Promise<void> {
    this.#run('release a connect link', () => this.#db.prepare('UPDATE server_connect_links SET used_at = NULL WHERE id = ?').run(id));
  }

  async listConnectLinks(now: number): Promise<ConnectLinkRecord[]> {
    return this.#run('list connect links', () =>
      (this.#db.prepare('SELECT * FROM server_connect_links WHERE used_at IS NULL AND expires_at > ? ORDER BY created_at DESC').all(now) as LinkRow[]).map(toLink),
    );
  }

  // ---- pending OAuth logins

  async createPendingOAuth(p: NewPendingOAuth, now: number): Promise<PendingOAuthRecord> {
    const id = randomUUID();
    const row: PendingRow = {
      id,
      state_hash: p.stateHash,
      binding_hash: p.bindingHash,
      session_id_hash: p.sessionIdHash,
      link_id: p.linkId,
      connection: p.connection,
      app: p.app,
      code_verifier_enc: this.#keyring.encrypt(p.codeVerifier, verifierContext(id)),
      redirect_uri: p.redirectUri,
      scopes: JSON.stringify(p.scopes),
      return_mode: p.returnMode,
      return_to: p.returnTo,
      actor: p.actor,
      created_at: now,
      expires_at: p.expiresAt,
    };
    this.#run('store a pending login', () =>
      this.#db
        .prepare(
          `INSERT INTO server_pending_oauth (id, state_hash, binding_hash, session_id_hash, link_id, connection, app, code_verifier_enc,
             redirect_uri, scopes, return_mode, return_to, actor, created_at, expires_at)
           VALUES (@id, @state_hash, @binding_hash, @session_id_hash, @link_id, @connection, @app, @code_verifier_enc,
             @redirect_uri, @scopes, @return_mode, @return_to, @actor, @created_at, @expires_at)`,
        )
        .run(row),
    );
    return { ...p, id, createdAt: now };
  }

  async takePendingOAuth(stateHash: string, now: number): Promise<PendingOAuthRecord | undefined> {
    // DELETE ... RETURNING in one statement: two callbacks racing with the same state cannot both get it.
    const r = this.#run('use a pending login', () => this.#db.prepare('DELETE FROM server_pending_oauth WHERE state_hash = ? RETURNING *').get(stateHash) as PendingRow | undefined);
    if (!r || r.expires_at <= now) return undefined;
    return toPending(r, parseJsonArray(r.scopes), this.#keyring.decrypt(r.code_verifier_enc, verifierContext(r.id)));
  }

  // ---- operations

  async ping(): Promise<void> {
    this.#run('reach the database', () => this.#db.prepare('SELECT 1').get());
  }

  async purgeExpired(now: number): Promise<void> {
    this.#run(
      'purge expired records',
      () => {
        this.#db.prepare('DELETE FROM server_sessions WHERE expires_at <= ?').run(now);
        this.#db.prepare('DELETE FROM server_pending_oauth WHERE expires_at <= ?').run(now);
        this.#db.prepare('DELETE FROM server_setup_tokens WHERE expires_at <= ?').run(now);
        // Used or expired links stay a week for the UI's history, then go.
        this.#db.prepare('DELETE FROM server_connect_links WHERE expires_at <= ?').run(now - 7 * 24 * 3600 * 1000);
      },
      true,
    );
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    this.#db.close();
  }
}

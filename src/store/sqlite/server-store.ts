/**
 * The SQLite ServerStore (`dropkey serve`'s admins, sessions, API keys, audit log, connect links, pending logins and
 * setup tokens) on the driver's connection (./index.ts); its tables come from the driver's one migrator.
 *
 * IMMEDIATE transactions for read-then-write, driver errors mapped to DROPKEY_STORE naming the operation (never
 * parameter values), writes relaxed to synchronous=NORMAL (see RunOptions.relaxed). Credentials arrive already
 * hashed; the pending-login code verifier is encrypted with the Keyring, bound to its row (AAD).
 */
import { randomUUID } from 'node:crypto';
import type { Keyring } from '../cipher.js';
import type { AdminCredentials, AdminUser, ApiKeyRecord, AuditCount, AuditEntry, ConnectLinkRecord, NewApiKey, NewAuditEntry, NewPendingOAuth, PendingOAuthRecord, ServerStore, SessionRecord } from '../server-types.js';
import { adminExists, apiKeyExists, auditLimit, noLiveApiKey, noSuchAdmin, newApiKeyRow, newLinkRow, newPendingRow, toAdmin, toApiKey as mapApiKey, toAudit, toLink, toPending, toSession, verifierContext, type AdminRow, type ApiKeyRowOf, type AuditRowOf, type LinkRow, type PendingRowOf, type SessionRow } from '../server-records.js';
import { parseStringList, type SqliteDatabase, type SqliteHandle } from './db.js';
import { SQLITE_NOW_MS } from './migrations.js';

/** Lists are JSON text; `connections` is '*' for every connection. */
type ApiKeyRow = ApiKeyRowOf<string, string>;
type PendingRow = PendingRowOf<string>;

function toApiKey(r: ApiKeyRow): ApiKeyRecord {
  return mapApiKey(r, parseStringList(r.permissions), r.connections === '*' ? '*' : parseStringList(r.connections));
}

export class SqliteServerStore implements ServerStore {
  readonly #h: SqliteHandle;
  readonly #keyring: Keyring;

  constructor(h: SqliteHandle, keyring: Keyring) {
    this.#h = h;
    this.#keyring = keyring;
  }

  get #db(): SqliteDatabase {
    return this.#h.db;
  }

  #run<T>(operation: string, work: () => T, immediate = false): T {
    return this.#h.run(operation, work, { immediate, relaxed: true });
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
        this.#db.prepare('SELECT * FROM server_sessions WHERE id_hash = ? AND expires_at > ?').get(idHash, now) as SessionRow | undefined,
    );
    return r && toSession(r);
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
        const row: ApiKeyRow = newApiKeyRow(k, now, randomUUID(), { list: (x) => JSON.stringify(x), connections: (x) => (x === '*' ? '*' : JSON.stringify(x)) });
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

  async addAuditCounts(counts: AuditCount[]): Promise<void> {
    if (counts.length === 0) return;
    this.#run(
      'write the audit log',
      () => {
        const st = this.#db.prepare(
          `INSERT INTO server_audit (at, actor, action, target, details, bucket) VALUES (?, ?, ?, ?, json_object('count', ?), ?)
           ON CONFLICT (bucket) WHERE bucket IS NOT NULL
           DO UPDATE SET details = json_set(details, '$.count', COALESCE(json_extract(details, '$.count'), 0) + json_extract(excluded.details, '$.count'))`,
        );
        for (const c of counts) st.run(c.at, c.actor, c.action, c.target, c.count, c.bucket);
      },
      true,
    );
  }

  async pruneAudit(before: number, limit: number): Promise<number> {
    const n = Math.max(1, Math.min(Math.floor(limit), 100_000));
    return this.#run('prune the audit log', () =>
      Number(this.#db.prepare('DELETE FROM server_audit WHERE id IN (SELECT id FROM server_audit WHERE at < ? ORDER BY at LIMIT ?)').run(before, n).changes),
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
    const sql = `SELECT * FROM server_audit ${where.length ? `WHERE ${where.join(' AND ')}` : ''} ORDER BY id DESC LIMIT ${auditLimit(query.limit)}`;
    const rows = this.#run('read the audit log', () => this.#db.prepare(sql).all(...params) as AuditRowOf<string>[]);
    return rows.map((r) => toAudit(r, parseJson(r.details)));
  }

  // ---- connect links

  async createConnectLink(l: Omit<ConnectLinkRecord, 'id' | 'usedAt' | 'createdAt'>, now: number): Promise<ConnectLinkRecord> {
    const row = newLinkRow(l, now, randomUUID());
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
    const row: PendingRow = newPendingRow(p, now, id, this.#keyring.encrypt(p.codeVerifier, verifierContext(id)), JSON.stringify(p.scopes));
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
    return toPending(r, parseStringList(r.scopes), this.#keyring.decrypt(r.code_verifier_enc, verifierContext(r.id)));
  }

  // ---- operations

  async ping(): Promise<void> {
    this.#run('reach the database', () => this.#db.prepare('SELECT 1').get());
  }

  async connectionChanges(since: number | null): Promise<{ now: number; names: string[] }> {
    return this.#h.run('read connection changes', () => {
      const now = (this.#h.prepared(`SELECT ${SQLITE_NOW_MS} AS now`).get() as { now: number }).now;
      if (since === null) return { now, names: [] };
      const rows = this.#h.prepared('SELECT DISTINCT name FROM connection_changes WHERE changed_at >= ?').all(since) as { name: string }[];
      return { now, names: rows.map((r) => r.name) };
    });
  }

  async pruneConnectionChanges(keepMs: number): Promise<number> {
    return this.#run('prune connection changes', () => this.#db.prepare(`DELETE FROM connection_changes WHERE changed_at < ${SQLITE_NOW_MS} - ?`).run(Math.floor(keepMs)).changes);
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
}

/** A damaged details column must not hide the entry itself: it reads as {}. */
function parseJson(text: string): unknown {
  try {
    return JSON.parse(text) as unknown;
  } catch {
    return undefined;
  }
}

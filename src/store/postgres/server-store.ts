/**
 * The PostgreSQL ServerStore (`dropkey serve` on several instances) on the driver's pool (./index.ts), mirroring the
 * SQLite one (../sqlite/server-store.ts) record for record, message for message; row mapping is
 * ../server-records.ts's, tables come from the driver's one migrator.
 *
 * Concurrency across instances: single-use things (connect links, pending logins, the setup token) are consumed by
 * one conditional statement (UPDATE ... WHERE used_at IS NULL, DELETE ... RETURNING), so two instances racing for
 * the same one get one winner; uniqueness (admin email, live API key name) is enforced by indexes, and violations
 * (23505) become DROPKEY_ALREADY_EXISTS.
 */
import { randomUUID } from 'node:crypto';
import type { Keyring } from '../cipher.js';
import type { AdminCredentials, AdminUser, ApiKeyRecord, AuditCount, AuditEntry, ConnectLinkRecord, NewApiKey, NewAuditEntry, NewPendingOAuth, PendingOAuthRecord, ServerStore, SessionRecord } from '../server-types.js';
import { adminExists, apiKeyExists, auditLimit, noLiveApiKey, noSuchAdmin, newApiKeyRow, newLinkRow, newPendingRow, toAdmin, toApiKey as mapApiKey, toAudit, toLink, toPending, toSession, verifierContext, type AdminRow, type ApiKeyRowOf, type AuditRowOf, type LinkRow, type PendingRowOf, type SessionRow } from '../server-records.js';
import { codeOf, type PgDatabase, type Queryable } from './db.js';
import { PG_NOW_MS, quoteIdent } from './migrations.js';

/** Lists are text[]; `connections` is NULL for every connection ('*'). */
type ApiKeyRow = ApiKeyRowOf<string[], string[] | null>;
type PendingRow = PendingRowOf<string[]>;

function toApiKey(r: ApiKeyRow): ApiKeyRecord {
  return mapApiKey(r, r.permissions, r.connections === null ? '*' : [...r.connections]);
}

export class PgServerStore implements ServerStore {
  readonly #db: PgDatabase;
  readonly #keyring: Keyring;
  readonly #t: Record<'admins' | 'setup' | 'sessions' | 'keys' | 'audit' | 'links' | 'pending' | 'changes', string>;

  constructor(db: PgDatabase, schema: string, keyring: Keyring) {
    this.#db = db;
    this.#keyring = keyring;
    const s = quoteIdent(schema);
    this.#t = {
      admins: `${s}.server_admins`,
      setup: `${s}.server_setup_tokens`,
      sessions: `${s}.server_sessions`,
      keys: `${s}.server_api_keys`,
      audit: `${s}.server_audit`,
      links: `${s}.server_connect_links`,
      pending: `${s}.server_pending_oauth`,
      changes: `${s}.connection_changes`,
    };
  }

  async #rows<R extends object>(operation: string, sql: string, params: unknown[] = []): Promise<R[]> {
    return (await this.#db.query<R & Record<string, unknown>>(operation, sql, params)).rows;
  }

  // ---- admins

  async countAdmins(): Promise<number> {
    const r = await this.#rows<{ n: number }>('count admins', `SELECT count(*)::int8 AS n FROM ${this.#t.admins}`);
    return r[0]?.n ?? 0;
  }

  async #insertAdmin(q: Queryable, input: { email: string; passwordHash: string }, now: number): Promise<AdminUser> {
    const email = input.email.trim();
    const row: AdminRow = { id: randomUUID(), email, email_key: email.toLowerCase(), password_hash: input.passwordHash, created_at: now, last_login_at: null };
    try {
      await q.query(
        `INSERT INTO ${this.#t.admins} (id, email, email_key, password_hash, created_at, last_login_at) VALUES ($1, $2, $3, $4, $5, $6)`,
        [row.id, row.email, row.email_key, row.password_hash, row.created_at, row.last_login_at],
      );
    } catch (err) {
      if (codeOf(err) === '23505') throw adminExists(email);
      throw err;
    }
    return toAdmin(row);
  }

  async createAdmin(input: { email: string; passwordHash: string }, now: number): Promise<AdminUser> {
    return this.#db.tx('create an admin', (q) => this.#insertAdmin(q, input, now));
  }

  async createFirstAdmin(input: { email: string; passwordHash: string; setupTokenHash: string }, now: number): Promise<AdminUser | undefined> {
    return this.#db.tx('create the first admin', async (q) => {
      // Several setup tokens may be valid (one per instance), so no single row serializes racing callers: a
      // self-conflicting table lock does. A caller that waited here then sees the winner's admin (READ COMMITTED
      // reads a fresh snapshot per statement) and the tokens gone.
      await q.query(`LOCK TABLE ${this.#t.setup} IN SHARE ROW EXCLUSIVE MODE`);
      const n = await q.query<{ n: number }>(`SELECT count(*)::int8 AS n FROM ${this.#t.admins}`);
      if ((n.rows[0]?.n ?? 0) > 0) return undefined;
      const used = await q.query(`DELETE FROM ${this.#t.setup} WHERE token_hash = $1 AND expires_at > $2`, [input.setupTokenHash, now]);
      if (used.rowCount !== 1) return undefined;
      await q.query(`DELETE FROM ${this.#t.setup}`);
      return this.#insertAdmin(q, input, now);
    });
  }

  async getAdminByEmail(email: string): Promise<AdminCredentials | undefined> {
    const [r] = await this.#rows<AdminRow>('read an admin', `SELECT * FROM ${this.#t.admins} WHERE email_key = $1`, [email.trim().toLowerCase()]);
    return r && { ...toAdmin(r), passwordHash: r.password_hash };
  }

  async getAdmin(id: string): Promise<AdminUser | undefined> {
    const [r] = await this.#rows<AdminRow>('read an admin', `SELECT * FROM ${this.#t.admins} WHERE id = $1`, [id]);
    return r && toAdmin(r);
  }

  async listAdmins(): Promise<AdminUser[]> {
    return (await this.#rows<AdminRow>('list admins', `SELECT * FROM ${this.#t.admins} ORDER BY created_at, id`)).map(toAdmin);
  }

  async setAdminPassword(id: string, passwordHash: string): Promise<void> {
    const r = await this.#db.query('change a password', `UPDATE ${this.#t.admins} SET password_hash = $2 WHERE id = $1`, [id, passwordHash]);
    if (r.rowCount !== 1) throw noSuchAdmin();
  }

  async recordAdminLogin(id: string, now: number): Promise<void> {
    await this.#db.query('record a sign-in', `UPDATE ${this.#t.admins} SET last_login_at = $2 WHERE id = $1`, [id, now]);
  }

  // ---- setup token

  async addSetupToken(tokenHash: string, expiresAt: number, now: number): Promise<void> {
    await this.#db.tx('store a setup token', async (q) => {
      await q.query(`DELETE FROM ${this.#t.setup} WHERE expires_at <= $1`, [now]);
      await q.query(`INSERT INTO ${this.#t.setup} (token_hash, expires_at) VALUES ($1, $2)`, [tokenHash, expiresAt]);
    });
  }

  async checkSetupToken(tokenHash: string, now: number): Promise<boolean> {
    const r = await this.#rows('check the setup token', `SELECT 1 FROM ${this.#t.setup} WHERE token_hash = $1 AND expires_at > $2`, [tokenHash, now]);
    return r.length === 1;
  }

  // ---- sessions

  async createSession(s: SessionRecord): Promise<void> {
    await this.#db.query(
      'create a session',
      `INSERT INTO ${this.#t.sessions} (id_hash, user_id, csrf_token, created_at, expires_at) VALUES ($1, $2, $3, $4, $5)`,
      [s.idHash, s.userId, s.csrfToken, s.createdAt, s.expiresAt],
    );
  }

  async getSession(idHash: string, now: number): Promise<SessionRecord | undefined> {
    const [r] = await this.#rows<SessionRow>('read a session', `SELECT * FROM ${this.#t.sessions} WHERE id_hash = $1 AND expires_at > $2`, [idHash, now]);
    return r && toSession(r);
  }

  async deleteSession(idHash: string): Promise<void> {
    await this.#db.query('delete a session', `DELETE FROM ${this.#t.sessions} WHERE id_hash = $1`, [idHash]);
  }

  async deleteSessionsOf(userId: string): Promise<void> {
    await this.#db.query('delete sessions', `DELETE FROM ${this.#t.sessions} WHERE user_id = $1`, [userId]);
  }

  // ---- API keys

  async createApiKey(k: NewApiKey, now: number): Promise<ApiKeyRecord> {
    const row: ApiKeyRow = newApiKeyRow(k, now, randomUUID(), { list: (x) => x, connections: (x) => (x === '*' ? null : [...x]) });
    await this.#db.tx('create an API key', async (q) => {
      try {
        await q.query(
          `INSERT INTO ${this.#t.keys} (id, name, prefix, hash, permissions, connections, created_at, created_by, last_used_at, revoked_at, token_handouts)
           VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)`,
          [row.id, row.name, row.prefix, row.hash, row.permissions, row.connections, row.created_at, row.created_by, row.last_used_at, row.revoked_at, row.token_handouts],
        );
      } catch (err) {
        if (codeOf(err) === '23505' && (err as { constraint?: string }).constraint === 'server_api_keys_live_name') {
          throw apiKeyExists(k.name);
        }
        throw err;
      }
    });
    return toApiKey(row);
  }

  async getApiKeyByHash(hash: string): Promise<ApiKeyRecord | undefined> {
    const [r] = await this.#rows<ApiKeyRow>('read an API key', `SELECT * FROM ${this.#t.keys} WHERE hash = $1`, [hash]);
    return r && toApiKey(r);
  }

  async listApiKeys(): Promise<ApiKeyRecord[]> {
    const rows = await this.#rows<ApiKeyRow>('list API keys', `SELECT * FROM ${this.#t.keys} ORDER BY revoked_at IS NOT NULL, name COLLATE "C", created_at`);
    return rows.map(toApiKey);
  }

  async revokeApiKey(name: string, now: number): Promise<ApiKeyRecord> {
    const [r] = await this.#rows<ApiKeyRow>('revoke an API key', `UPDATE ${this.#t.keys} SET revoked_at = $2 WHERE name = $1 AND revoked_at IS NULL RETURNING *`, [name, now]);
    if (!r) throw noLiveApiKey(name);
    return toApiKey(r);
  }

  async recordApiKeyUsage(usage: { id: string; lastUsedAt: number; tokenHandouts: number }[]): Promise<void> {
    if (usage.length === 0) return;
    // One statement for the whole batch; entries for the same key are merged first (UPDATE ... FROM applies one
    // matching row per target row).
    const merged = new Map<string, { lastUsedAt: number; tokenHandouts: number }>();
    for (const u of usage) {
      const m = merged.get(u.id);
      merged.set(u.id, m ? { lastUsedAt: Math.max(m.lastUsedAt, u.lastUsedAt), tokenHandouts: m.tokenHandouts + u.tokenHandouts } : { lastUsedAt: u.lastUsedAt, tokenHandouts: u.tokenHandouts });
    }
    const ids = [...merged.keys()];
    await this.#db.tx('record API key usage', (q) =>
      q.query(
        `UPDATE ${this.#t.keys} AS k
           SET last_used_at = GREATEST(COALESCE(k.last_used_at, 0), u.at), token_handouts = k.token_handouts + u.n
         FROM unnest($1::text[], $2::int8[], $3::int8[]) AS u(id, at, n)
         WHERE k.id = u.id`,
        [ids, ids.map((id) => merged.get(id)!.lastUsedAt), ids.map((id) => merged.get(id)!.tokenHandouts)],
      ),
    );
  }

  // ---- audit

  async appendAudit(entries: NewAuditEntry[]): Promise<void> {
    if (entries.length === 0) return;
    await this.#db.tx('write the audit log', (q) =>
      q.query(
        `INSERT INTO ${this.#t.audit} (at, actor, action, target, details)
         SELECT * FROM unnest($1::int8[], $2::text[], $3::text[], $4::text[], $5::jsonb[])`,
        [
          entries.map((e) => e.at),
          entries.map((e) => e.actor),
          entries.map((e) => e.action),
          entries.map((e) => e.target),
          entries.map((e) => JSON.stringify(e.details ?? {})),
        ],
      ),
    );
  }

  async addAuditCounts(counts: AuditCount[]): Promise<void> {
    if (counts.length === 0) return;
    // One statement; a bucket named twice in one call is summed first (ON CONFLICT may touch a row only once).
    const sums = new Map<string, AuditCount>();
    for (const c of counts) {
      const cur = sums.get(c.bucket);
      if (cur) cur.count += c.count;
      else sums.set(c.bucket, { ...c });
    }
    const list = [...sums.values()];
    await this.#db.tx('write the audit log', (q) =>
      q.query(
        `INSERT INTO ${this.#t.audit} AS a (at, actor, action, target, details, bucket)
         SELECT at, actor, action, target, jsonb_build_object('count', n), bucket
           FROM unnest($1::int8[], $2::text[], $3::text[], $4::text[], $5::int8[], $6::text[]) AS u(at, actor, action, target, n, bucket)
         ON CONFLICT (bucket) WHERE bucket IS NOT NULL
         DO UPDATE SET details = jsonb_set(a.details, '{count}', to_jsonb(COALESCE((a.details->>'count')::bigint, 0) + (excluded.details->>'count')::bigint))`,
        [list.map((c) => c.at), list.map((c) => c.actor), list.map((c) => c.action), list.map((c) => c.target), list.map((c) => c.count), list.map((c) => c.bucket)],
      ),
    );
  }

  async pruneAudit(before: number, limit: number): Promise<number> {
    const n = Math.max(1, Math.min(Math.floor(limit), 100_000));
    const r = await this.#db.tx('prune the audit log', (q) =>
      q.query(`DELETE FROM ${this.#t.audit} WHERE id IN (SELECT id FROM ${this.#t.audit} WHERE at < $1 ORDER BY at LIMIT $2)`, [before, n]),
    );
    return r.rowCount ?? 0;
  }

  async listAudit(query: { limit?: number; beforeId?: number; action?: string; target?: string } = {}): Promise<AuditEntry[]> {
    const where: string[] = [];
    const params: (string | number)[] = [];
    const add = (cond: (n: string) => string, v: string | number) => {
      params.push(v);
      where.push(cond(`$${params.length}`));
    };
    if (query.beforeId !== undefined) add((p) => `id < ${p}`, query.beforeId);
    if (query.action !== undefined) add((p) => `action = ${p}`, query.action);
    if (query.target !== undefined) add((p) => `target = ${p}`, query.target);
    const rows = await this.#rows<AuditRowOf<unknown>>(
      'read the audit log',
      `SELECT * FROM ${this.#t.audit} ${where.length ? `WHERE ${where.join(' AND ')}` : ''} ORDER BY id DESC LIMIT ${auditLimit(query.limit)}`,
      params,
    );
    return rows.map((r) => toAudit(r, r.details));
  }

  // ---- connect links

  async createConnectLink(l: Omit<ConnectLinkRecord, 'id' | 'usedAt' | 'createdAt'>, now: number): Promise<ConnectLinkRecord> {
    const row = newLinkRow(l, now, randomUUID());
    await this.#db.tx('create a connect link', (q) =>
      q.query(
        `INSERT INTO ${this.#t.links} (id, token_hash, connection, app, created_at, created_by, expires_at, used_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)`,
        [row.id, row.token_hash, row.connection, row.app, row.created_at, row.created_by, row.expires_at, row.used_at],
      ),
    );
    return toLink(row);
  }

  async getConnectLinkByHash(tokenHash: string): Promise<ConnectLinkRecord | undefined> {
    const [r] = await this.#rows<LinkRow>('read a connect link', `SELECT * FROM ${this.#t.links} WHERE token_hash = $1`, [tokenHash]);
    return r && toLink(r);
  }

  async getConnectLink(id: string): Promise<ConnectLinkRecord | undefined> {
    const [r] = await this.#rows<LinkRow>('read a connect link', `SELECT * FROM ${this.#t.links} WHERE id = $1`, [id]);
    return r && toLink(r);
  }

  async claimConnectLink(id: string, now: number): Promise<boolean> {
    // In a transaction so that a lost session is retried only when the UPDATE surely did not run.
    const r = await this.#db.tx('use a connect link', (q) =>
      q.query(`UPDATE ${this.#t.links} SET used_at = $2 WHERE id = $1 AND used_at IS NULL AND expires_at > $2`, [id, now]),
    );
    return r.rowCount === 1;
  }

  async releaseConnectLink(id: string): Promise<void> {
    await this.#db.query('release a connect link', `UPDATE ${this.#t.links} SET used_at = NULL WHERE id = $1`, [id]);
  }

  async listConnectLinks(now: number): Promise<ConnectLinkRecord[]> {
    const rows = await this.#rows<LinkRow>('list connect links', `SELECT * FROM ${this.#t.links} WHERE used_at IS NULL AND expires_at > $1 ORDER BY created_at DESC, id`, [now]);
    return rows.map(toLink);
  }

  // ---- pending OAuth logins

  async createPendingOAuth(p: NewPendingOAuth, now: number): Promise<PendingOAuthRecord> {
    const id = randomUUID();
    const r: PendingRow = newPendingRow(p, now, id, this.#keyring.encrypt(p.codeVerifier, verifierContext(id)), [...p.scopes]);
    await this.#db.tx('store a pending login', (q) =>
      q.query(
        `INSERT INTO ${this.#t.pending} (id, state_hash, binding_hash, session_id_hash, link_id, connection, app, code_verifier_enc,
           redirect_uri, scopes, return_mode, return_to, actor, created_at, expires_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)`,
        [r.id, r.state_hash, r.binding_hash, r.session_id_hash, r.link_id, r.connection, r.app, r.code_verifier_enc, r.redirect_uri, r.scopes, r.return_mode, r.return_to, r.actor, r.created_at, r.expires_at],
      ),
    );
    return { ...p, id, createdAt: now };
  }

  async takePendingOAuth(stateHash: string, now: number): Promise<PendingOAuthRecord | undefined> {
    // DELETE ... RETURNING in one statement: two callbacks racing with the same state (on any instances) cannot both
    // get it. In a transaction so a lost session is retried only when the DELETE surely did not run.
    const r = await this.#db.tx('use a pending login', async (q) => (await q.query<PendingRow>(`DELETE FROM ${this.#t.pending} WHERE state_hash = $1 RETURNING *`, [stateHash])).rows[0]);
    if (!r || r.expires_at <= now) return undefined;
    return toPending(r, [...r.scopes], this.#keyring.decrypt(r.code_verifier_enc, verifierContext(r.id)));
  }

  // ---- operations

  async ping(): Promise<void> {
    await this.#db.query('reach the database', 'SELECT 1');
  }

  async connectionChanges(since: number | null): Promise<{ now: number; names: string[] }> {
    const r = await this.#db.query<{ now: number; names: string[] }>(
      'read connection changes',
      `SELECT ${PG_NOW_MS} AS now, ARRAY(SELECT DISTINCT name FROM ${this.#t.changes} WHERE changed_at >= $1) AS names`,
      [since ?? Number.MAX_SAFE_INTEGER],
      { prepared: true },
    );
    const row = r.rows[0]!;
    return { now: row.now, names: row.names };
  }

  async pruneConnectionChanges(keepMs: number): Promise<number> {
    const r = await this.#db.query('prune connection changes', `DELETE FROM ${this.#t.changes} WHERE changed_at < ${PG_NOW_MS} - $1`, [Math.floor(keepMs)]);
    return r.rowCount ?? 0;
  }

  async purgeExpired(now: number): Promise<void> {
    await this.#db.tx('purge expired records', async (q) => {
      await q.query(`DELETE FROM ${this.#t.sessions} WHERE expires_at <= $1`, [now]);
      await q.query(`DELETE FROM ${this.#t.pending} WHERE expires_at <= $1`, [now]);
      await q.query(`DELETE FROM ${this.#t.setup} WHERE expires_at <= $1`, [now]);
      // Used or expired links stay a week for the UI's history, then go.
      await q.query(`DELETE FROM ${this.#t.links} WHERE expires_at <= $1`, [now - 7 * 24 * 3600 * 1000]);
    });
  }
}

/**
 * The SQLite core store: apps and connections, encrypted at rest, on the driver's one connection (./index.ts).
 *
 * - Writes that read-then-write run in IMMEDIATE transactions, which take the write lock first, so two processes
 *   can never interleave between the read and the write.
 * - Secret fields are encrypted with the Keyring before they reach SQL, bound to their row and field (AAD).
 */
import { DropkeyError, ErrorCodes } from '../../errors.js';
import { secretContext, type Keyring } from '../cipher.js';
import { alreadyExists, appInUse, checkName, checkScopes, CONNECTION_COLUMNS, connectionPatchColumns, newAppRow, newConnectionRow, KEY_CHECK, KEY_CHECK_CONTEXT, notFound, refuseClearingRefreshToken, toAppRecord, toConnectionRecord, toListedConnectionRecord, toConnectionSummary, summaryLimit, SUMMARY_COLUMNS, versionConflict, type SummaryRow, type AppRowOf, type ConnectionRowOf, checkPageQuery, likePattern, SEARCH_COLUMNS, LISTING_COLUMNS, toConnectionListing, type ListingRowOf } from '../records.js';
import type { AppRecord, Clock, ConnectionPatch, ConnectionRecord, ConnectionSummary, KeyRotation, LockLease, LockOptions, LockStore, Store, ConnectionPage, ConnectionPageQuery } from '../types.js';
import type { SqliteDatabase, SqliteHandle } from './db.js';

/** Scopes are JSON text, `team` is 0 or 1. */
type AppRow = AppRowOf<string, number>;
type ConnectionRow = ConnectionRowOf<string>;

export class SqliteCoreStore implements Store, KeyRotation {
  readonly #h: SqliteHandle;
  readonly #keyring: Keyring;
  readonly #clock: Clock;
  readonly #locks: LockStore;
  readonly #close: () => Promise<void>;

  constructor(h: SqliteHandle, keyring: Keyring, clock: Clock, locks: LockStore, close: () => Promise<void>) {
    this.#h = h;
    this.#keyring = keyring;
    this.#clock = clock;
    this.#locks = locks;
    this.#close = close;
  }

  get #db(): SqliteDatabase {
    return this.#h.db;
  }

  #run<T>(operation: string, work: () => T, immediate = false): T {
    return this.#h.run(operation, work, { immediate });
  }

  #seal(value: string | null, table: 'app' | 'connection', name: string, field: string): string | null {
    return value === null ? null : this.#keyring.encrypt(value, secretContext(table, name, field));
  }

  #open(value: string | null, table: 'app' | 'connection', name: string, field: string): string | null {
    return value === null ? null : this.#keyring.decrypt(value, secretContext(table, name, field));
  }

  #toApp(r: AppRow): AppRecord {
    return toAppRecord(r, parseScopes(r.scopes), r.team === 1, (v, field) => this.#open(v, 'app', r.name, field));
  }

  #toConnection(r: ConnectionRow): ConnectionRecord {
    return toConnectionRecord(r, parseScopes(r.scopes), (v, field) => this.#open(v, 'connection', r.name, field));
  }

  #appRow(name: string): AppRow | undefined {
    return this.#h.prepared('SELECT * FROM apps WHERE name = ?').get(name) as AppRow | undefined;
  }

  #connectionRow(name: string): ConnectionRow | undefined {
    return this.#h.prepared('SELECT * FROM connections WHERE name = ?').get(name) as ConnectionRow | undefined;
  }

  // ---- apps ----------------------------------------------------------------------------------------------------

  async getApp(name: string): Promise<AppRecord | undefined> {
    const row = this.#run('read an app', () => this.#appRow(name));
    return row && this.#toApp(row);
  }

  async listApps(): Promise<AppRecord[]> {
    const rows = this.#run('list apps', () => this.#db.prepare('SELECT * FROM apps ORDER BY name').all() as AppRow[]);
    return rows.map((r) => this.#toApp(r));
  }

  async createApp(app: Omit<AppRecord, 'createdAt' | 'updatedAt'>): Promise<AppRecord> {
    checkName('app', app.name);
    const now = this.#clock();
    const row: AppRow = newAppRow(app, now, { seal: (v, field) => this.#seal(v, 'app', app.name, field), scopes: (sc) => JSON.stringify(sc), team: (t) => (t ? 1 : 0) });
    this.#run(
      'create an app',
      () => {
        if (this.#appRow(app.name)) throw alreadyExists('app', app.name);
        this.#db
          .prepare(
            `INSERT INTO apps (name, app_key, secret_enc, scopes, team, access, created_at, updated_at)
             VALUES (@name, @app_key, @secret_enc, @scopes, @team, @access, @created_at, @updated_at)`,
          )
          .run(row);
      },
      true,
    );
    return this.#toApp(row);
  }

  async updateApp(name: string, patch: Partial<Omit<AppRecord, 'name' | 'createdAt'>>): Promise<AppRecord> {
    const row = this.#run(
      'update an app',
      () => {
        const cur = this.#appRow(name);
        if (!cur) throw notFound('app', name, { action: 'list-apps' });
        const next: AppRow = { ...cur, updated_at: this.#clock() };
        if (patch.key !== undefined) next.app_key = patch.key;
        if (patch.secret !== undefined) next.secret_enc = this.#seal(patch.secret, 'app', name, 'secret');
        if (patch.scopes !== undefined) next.scopes = JSON.stringify(checkScopes(patch.scopes));
        if (patch.team !== undefined) next.team = patch.team ? 1 : 0;
        if (patch.access !== undefined) next.access = patch.access;
        this.#db
          .prepare(
            `UPDATE apps SET app_key = @app_key, secret_enc = @secret_enc, scopes = @scopes, team = @team,
               access = @access, updated_at = @updated_at WHERE name = @name`,
          )
          .run(next);
        return next;
      },
      true,
    );
    return this.#toApp(row);
  }

  async deleteApp(name: string): Promise<void> {
    this.#run(
      'remove an app',
      () => {
        if (!this.#appRow(name)) throw notFound('app', name, { action: 'list-apps' });
        const users = (this.#db.prepare('SELECT name FROM connections WHERE app = ? ORDER BY name').all(name) as { name: string }[]).map((r) => r.name);
        if (users.length > 0) throw appInUse(name, users);
        this.#db.prepare('DELETE FROM apps WHERE name = ?').run(name);
      },
      true,
    );
  }

  // ---- connections ---------------------------------------------------------------------------------------------

  async getConnection(name: string): Promise<ConnectionRecord | undefined> {
    const row = this.#run('read a connection', () => this.#connectionRow(name));
    return row && this.#toConnection(row);
  }

  async listConnections(): Promise<ConnectionRecord[]> {
    const rows = this.#run('list connections', () => this.#db.prepare('SELECT * FROM connections ORDER BY name').all() as ConnectionRow[]);
    // One damaged secret must not hide every connection: listed as needing a new login (records.ts).
    return rows.map((r) => toListedConnectionRecord(r, parseScopes(r.scopes), (v, field) => this.#open(v, 'connection', r.name, field)));
  }

  async listDueConnections(expiresBefore: number, limit: number): Promise<ConnectionSummary[]> {
    // Matches the partial index connections_due (migration 6): the read touches only the due rows.
    const rows = this.#run('list due connections', () =>
      this.#db
        .prepare(
          `SELECT ${SUMMARY_COLUMNS} FROM connections
           WHERE state = 'active' AND refresh_token_enc IS NOT NULL AND access_token_expires_at IS NOT NULL AND access_token_expires_at <= ?
           ORDER BY access_token_expires_at, name LIMIT ?`,
        )
        .all(expiresBefore, summaryLimit(limit)) as SummaryRow[],
    );
    return rows.map(toConnectionSummary);
  }

  async listActiveConnections(afterName: string | null, limit: number): Promise<ConnectionSummary[]> {
    const rows = this.#run('list active connections', () =>
      this.#db
        .prepare(`SELECT ${SUMMARY_COLUMNS} FROM connections WHERE state = 'active' AND name > ? ORDER BY name LIMIT ?`)
        .all(afterName ?? '', summaryLimit(limit)) as SummaryRow[],
    );
    return rows.map(toConnectionSummary);
  }

  async listConnectionPage(query: ConnectionPageQuery): Promise<ConnectionPage> {
    const q = checkPageQuery(query);
    const where: string[] = [];
    const params: Record<string, unknown> = { limit: q.limit + 1 };
    if (q.after !== undefined) {
      where.push('name > @after');
      params['after'] = q.after;
    }
    if (q.state !== undefined) {
      where.push('state = @state');
      params['state'] = q.state;
    }
    if (q.names !== undefined) {
      where.push('name IN (SELECT value FROM json_each(@names))');
      params['names'] = JSON.stringify(q.names);
    }
    if (q.app !== undefined) {
      where.push('app = @app');
      params['app'] = q.app;
    }
    if (q.search !== undefined && q.search !== '') {
      // LIKE is case-insensitive for ASCII in SQLite; ESCAPE makes % and _ in the search literal.
      where.push(`(${SEARCH_COLUMNS.map((c) => `${c} LIKE @search ESCAPE '\\'`).join(' OR ')})`);
      params['search'] = likePattern(q.search);
    }
    const sql = `SELECT ${LISTING_COLUMNS.join(', ')}, refresh_token_enc IS NOT NULL AS refreshable FROM connections
      ${where.length ? `WHERE ${where.join(' AND ')}` : ''} ORDER BY name LIMIT @limit`;
    const rows = this.#run('list connections', () => this.#db.prepare(sql).all(params) as ListingRowOf<string>[]);
    const more = rows.length > q.limit;
    const page = more ? rows.slice(0, q.limit) : rows;
    return { connections: page.map((r) => toConnectionListing(r, parseScopes(r.scopes))), next: more ? page[page.length - 1]!.name : null };
  }

  async createConnection(rec: Omit<ConnectionRecord, 'createdAt' | 'updatedAt' | 'version'>): Promise<ConnectionRecord> {
    checkName('connection', rec.name);
    const now = this.#clock();
    const row: ConnectionRow = newConnectionRow(rec, now, { seal: (v, field) => this.#seal(v, 'connection', rec.name, field), scopes: (sc) => JSON.stringify(sc) });
    this.#run(
      'create a connection',
      () => {
        if (this.#connectionRow(rec.name)) throw alreadyExists('connection', rec.name);
        if (!this.#appRow(rec.app)) throw notFound('app', rec.app, { action: 'app-add', app: rec.app });
        this.#db.prepare(`INSERT INTO connections (${CONNECTION_COLUMNS.join(', ')}) VALUES (${CONNECTION_COLUMNS.map((c) => `@${c}`).join(', ')})`).run(row);
      },
      true,
    );
    return this.#toConnection(row);
  }

  async updateConnection(
    name: string,
    patch: ConnectionPatch,
    options: { expectedVersion?: number; allowClearRefreshToken?: boolean } = {},
  ): Promise<ConnectionRecord> {
    refuseClearingRefreshToken(name, patch, options.allowClearRefreshToken);
    const changes = connectionPatchColumns(patch, { seal: (v, field) => this.#seal(v, 'connection', name, field), scopes: (sc) => JSON.stringify(sc) });
    const row = this.#run(
      'update a connection',
      () => {
        const cur = this.#connectionRow(name);
        if (!cur) throw notFound('connection', name, { action: 'list-connections' });
        if (options.expectedVersion !== undefined && cur.version !== options.expectedVersion) throw versionConflict(name, cur.version, options.expectedVersion);
        if (patch.app !== undefined && !this.#appRow(patch.app)) throw notFound('app', patch.app, { action: 'list-apps' });
        const next: ConnectionRow = { ...cur, ...changes, updated_at: this.#clock(), version: cur.version + 1 };
        this.#db
          .prepare(`UPDATE connections SET ${CONNECTION_COLUMNS.filter((c) => c !== 'name').map((c) => `${c} = @${c}`).join(', ')} WHERE name = @name`)
          .run(next);
        return next;
      },
      true,
    );
    return this.#toConnection(row);
  }

  async deleteConnection(name: string): Promise<void> {
    this.#run('remove a connection', () => {
      const r = this.#db.prepare('DELETE FROM connections WHERE name = ?').run(name);
      if (r.changes === 0) throw notFound('connection', name, { action: 'list-connections' });
    });
  }

  // ---- locks ---------------------------------------------------------------------------------------------------

  withLock<T>(key: string, options: LockOptions, fn: (lease: LockLease) => Promise<T>): Promise<T> {
    return this.#locks.withLock(key, options, fn);
  }

  // ---- key rotation --------------------------------------------------------------------------------------------

  async reencryptSecrets(): Promise<{ rewritten: number; remaining: number }> {
    const k = this.#keyring;
    return this.#run(
      're-encrypt secrets',
      () => {
        let rewritten = 0;
        const redo = (value: string | null, ctx: string): string | null => {
          if (value === null || !k.needsReencrypt(value)) return value;
          rewritten++;
          return k.reencrypt(value, ctx);
        };
        for (const a of this.#db.prepare('SELECT name, secret_enc FROM apps').all() as Pick<AppRow, 'name' | 'secret_enc'>[]) {
          const s = redo(a.secret_enc, secretContext('app', a.name, 'secret'));
          if (s !== a.secret_enc) this.#db.prepare('UPDATE apps SET secret_enc = ? WHERE name = ?').run(s, a.name);
        }
        const conns = this.#db.prepare('SELECT name, access_token_enc, refresh_token_enc FROM connections').all() as Pick<ConnectionRow, 'name' | 'access_token_enc' | 'refresh_token_enc'>[];
        for (const c of conns) {
          const at = redo(c.access_token_enc, secretContext('connection', c.name, 'access_token'));
          const rt = redo(c.refresh_token_enc, secretContext('connection', c.name, 'refresh_token'));
          if (at !== c.access_token_enc || rt !== c.refresh_token_enc) {
            // version is not bumped: the plaintext did not change, so optimistic writers need not retry.
            this.#db.prepare('UPDATE connections SET access_token_enc = ?, refresh_token_enc = ? WHERE name = ?').run(at, rt, c.name);
          }
        }
        const check = this.#db.prepare('SELECT value FROM meta WHERE key = ?').get(KEY_CHECK) as { value: string } | undefined;
        if (check) {
          const v = redo(check.value, KEY_CHECK_CONTEXT);
          if (v !== check.value) this.#db.prepare('UPDATE meta SET value = ? WHERE key = ?').run(v, KEY_CHECK);
        }
        return { rewritten, remaining: this.#countNotUnder(k.activeKeyId) };
      },
      true,
    );
  }

  #countNotUnder(keyId: string): number {
    const prefix = `dk1.${keyId}.`;
    const r = this.#db
      .prepare(
        `SELECT
           (SELECT count(*) FROM apps WHERE secret_enc IS NOT NULL AND substr(secret_enc, 1, length(@p)) <> @p) +
           (SELECT count(*) FROM connections WHERE access_token_enc IS NOT NULL AND substr(access_token_enc, 1, length(@p)) <> @p) +
           (SELECT count(*) FROM connections WHERE refresh_token_enc IS NOT NULL AND substr(refresh_token_enc, 1, length(@p)) <> @p) +
           (SELECT count(*) FROM meta WHERE key = '${KEY_CHECK}' AND substr(value, 1, length(@p)) <> @p) AS n`,
      )
      .get({ p: prefix }) as { n: number };
    return r.n;
  }

  /** Closes the database handle, and with it every store of this driver (Stores.close). */
  close(): Promise<void> {
    return this.#close();
  }
}

function parseScopes(text: string): string[] {
  try {
    const v: unknown = JSON.parse(text);
    if (Array.isArray(v) && v.every((s) => typeof s === 'string')) return v;
  } catch {
    /* fall through */
  }
  throw new DropkeyError(ErrorCodes.STORE, 'store: a scopes column is damaged (not a JSON list of strings)', {
    hint: 'restore the database from a backup, or remove and re-add the affected app or connection',
  });
}

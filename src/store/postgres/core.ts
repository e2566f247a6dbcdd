/**
 * The PostgreSQL core store: apps and connections, encrypted at rest, on the driver's pool (./index.ts). Same
 * records, same encryption (the Keyring, same ciphertext format and AAD) and same contract as the SQLite store.
 *
 * Read-then-write operations run in transactions with row locks (SELECT ... FOR UPDATE); duplicates are caught as
 * unique violations (23505) so two instances creating the same name at once get one winner and one
 * DROPKEY_ALREADY_EXISTS.
 */
import type pg from 'pg';
import { randomBytes } from 'node:crypto';
import { DropkeyError, ErrorCodes } from '../../errors.js';
import { secretContext, type Keyring } from '../cipher.js';
import { alreadyExists, APP_COLUMNS, appInUse, checkName, checkScopes, CONNECTION_COLUMNS, connectionPatchColumns, newAppRow, newConnectionRow, KEY_CHECK, KEY_CHECK_CONTEXT, notFound, refuseClearingRefreshToken, toAppRecord, toConnectionRecord, toListedConnectionRecord, toConnectionSummary, summaryLimit, SUMMARY_COLUMNS, versionConflict, type SummaryRow, type AppRowOf, type ConnectionRowOf, type KeyringProvider, checkPageQuery, likePattern, SEARCH_COLUMNS, LISTING_COLUMNS, toConnectionListing, type ListingRowOf } from '../records.js';
import type { AppRecord, Clock, ConnectionPatch, ConnectionRecord, ConnectionSummary, KeyRotation, LockLease, LockOptions, LockStore, Store, ConnectionPage, ConnectionPageQuery } from '../types.js';
import { codeOf, type PgDatabase, type Queryable } from './db.js';
import { quoteIdent } from './migrations.js';

/** Scopes are text[], `team` is boolean. */
type AppRow = AppRowOf<string[], boolean>;
type ConnectionRow = ConnectionRowOf<string[]>;

export class PostgresCoreStore implements Store, KeyRotation {
  readonly #db: PgDatabase;
  readonly #t: { meta: string; apps: string; connections: string };
  /** The read path's statements, prepared once per pooled connection (PgDatabase.query `prepared`). */
  readonly #sql: { getApp: string; getConnection: string };
  readonly #clock: Clock;
  readonly #locks: LockStore;
  readonly #close: () => Promise<void>;
  #keyring: Keyring | undefined;

  constructor(db: PgDatabase, schema: string, clock: Clock, locks: LockStore, close: () => Promise<void>) {
    this.#db = db;
    const s = quoteIdent(schema);
    this.#t = { meta: `${s}.meta`, apps: `${s}.apps`, connections: `${s}.connections` };
    this.#sql = {
      getApp: `SELECT ${APP_COLUMNS.join(', ')} FROM ${this.#t.apps} WHERE name = $1`,
      getConnection: `SELECT ${CONNECTION_COLUMNS.join(', ')} FROM ${this.#t.connections} WHERE name = $1`,
    };
    this.#clock = clock;
    this.#locks = locks;
    this.#close = close;
  }

  /** The keyring checked at open (see checkKeyring). */
  get keyring(): Keyring {
    return this.#ring;
  }

  get #ring(): Keyring {
    if (!this.#keyring) throw new DropkeyError(ErrorCodes.INTERNAL, 'store: the keyring is not set');
    return this.#keyring;
  }

  #query<R extends pg.QueryResultRow>(operation: string, sql: string, params: unknown[] = []): Promise<pg.QueryResult<R>> {
    return this.#db.query<R>(operation, sql, params);
  }

  #tx<T>(operation: string, work: (q: Queryable) => Promise<T>): Promise<T> {
    return this.#db.tx(operation, work);
  }


  /** Picks the keyring, then verifies it opens the key check (or writes the key check on first use). */
  async checkKeyring(given: Keyring | KeyringProvider): Promise<void> {
    const read = async () =>
      (await this.#query<{ value: string }>('check the master key', `SELECT value FROM ${this.#t.meta} WHERE key = $1`, [KEY_CHECK])).rows[0]?.value;
    const existing = await read();
    const keyring = typeof given === 'function' ? given({ hasEncryptedData: existing !== undefined }) : given;
    if (existing !== undefined) {
      keyring.decrypt(existing, KEY_CHECK_CONTEXT); // throws DROPKEY_KEY_ERROR naming the key id and the fix
    } else {
      // First use: several instances may start at once with different keys; the first insert wins and the others
      // fail now (the re-check below) rather than after writing secrets under their own key.
      const value = keyring.encrypt(randomBytes(16).toString('base64url'), KEY_CHECK_CONTEXT);
      await this.#query('check the master key', `INSERT INTO ${this.#t.meta} (key, value) VALUES ($1, $2) ON CONFLICT (key) DO NOTHING`, [KEY_CHECK, value]);
      keyring.decrypt((await read())!, KEY_CHECK_CONTEXT);
    }
    this.#keyring = keyring;
  }

  #seal(value: string | null, table: 'app' | 'connection', name: string, field: string): string | null {
    return value === null ? null : this.#ring.encrypt(value, secretContext(table, name, field));
  }

  #open(value: string | null, table: 'app' | 'connection', name: string, field: string): string | null {
    return value === null ? null : this.#ring.decrypt(value, secretContext(table, name, field));
  }

  #toApp(r: AppRow): AppRecord {
    return toAppRecord(r, [...r.scopes], r.team, (v, field) => this.#open(v, 'app', r.name, field));
  }

  #toConnection(r: ConnectionRow): ConnectionRecord {
    return toConnectionRecord(r, [...r.scopes], (v, field) => this.#open(v, 'connection', r.name, field));
  }

  // ---- apps ----------------------------------------------------------------------------------------------------

  async getApp(name: string): Promise<AppRecord | undefined> {
    const r = await this.#db.query<AppRow>('read an app', this.#sql.getApp, [name], { prepared: true });
    return r.rows[0] && this.#toApp(r.rows[0]);
  }

  async listApps(): Promise<AppRecord[]> {
    const r = await this.#query<AppRow>('list apps', `SELECT * FROM ${this.#t.apps} ORDER BY name COLLATE "C"`);
    return r.rows.map((row) => this.#toApp(row));
  }

  async createApp(app: Omit<AppRecord, 'createdAt' | 'updatedAt'>): Promise<AppRecord> {
    checkName('app', app.name);
    const now = this.#clock();
    const row: AppRow = newAppRow(app, now, { seal: (v, field) => this.#seal(v, 'app', app.name, field), scopes: (sc) => sc, team: (t) => t });
    await this.#tx('create an app', async (q) => {
      try {
        await q.query(
          `INSERT INTO ${this.#t.apps} (name, app_key, secret_enc, scopes, team, access, created_at, updated_at)
           VALUES ($1, $2, $3, $4, $5, $6, $7, $8)`,
          [row.name, row.app_key, row.secret_enc, row.scopes, row.team, row.access, row.created_at, row.updated_at],
        );
      } catch (err) {
        if (codeOf(err) === '23505') throw alreadyExists('app', app.name);
        throw err;
      }
    });
    return this.#toApp(row);
  }

  async updateApp(name: string, patch: Partial<Omit<AppRecord, 'name' | 'createdAt'>>): Promise<AppRecord> {
    const sets: string[] = [];
    const params: unknown[] = [name];
    const set = (col: string, v: unknown) => {
      params.push(v);
      sets.push(`${col} = $${params.length}`);
    };
    if (patch.key !== undefined) set('app_key', patch.key);
    if (patch.secret !== undefined) set('secret_enc', this.#seal(patch.secret, 'app', name, 'secret'));
    if (patch.scopes !== undefined) set('scopes', checkScopes(patch.scopes));
    if (patch.team !== undefined) set('team', patch.team === true);
    if (patch.access !== undefined) set('access', patch.access);
    set('updated_at', this.#clock());
    const row = await this.#tx('update an app', async (q) => {
      const r = await q.query<AppRow>(`UPDATE ${this.#t.apps} SET ${sets.join(', ')} WHERE name = $1 RETURNING *`, params);
      if (!r.rows[0]) throw notFound('app', name, { action: 'list-apps' });
      return r.rows[0];
    });
    return this.#toApp(row);
  }

  async deleteApp(name: string): Promise<void> {
    await this.#tx('remove an app', async (q) => {
      // FOR UPDATE conflicts with the KEY SHARE lock a concurrent connection insert takes on the app row through its
      // foreign key, so the check below cannot miss a connection being created at the same moment.
      const app = await q.query(`SELECT 1 FROM ${this.#t.apps} WHERE name = $1 FOR UPDATE`, [name]);
      if (app.rowCount === 0) throw notFound('app', name, { action: 'list-apps' });
      const users = (await q.query<{ name: string }>(`SELECT name FROM ${this.#t.connections} WHERE app = $1 ORDER BY name COLLATE "C"`, [name])).rows.map((r) => r.name);
      if (users.length > 0) throw appInUse(name, users);
      await q.query(`DELETE FROM ${this.#t.apps} WHERE name = $1`, [name]);
    });
  }

  // ---- connections ---------------------------------------------------------------------------------------------

  async getConnection(name: string): Promise<ConnectionRecord | undefined> {
    const r = await this.#db.query<ConnectionRow>('read a connection', this.#sql.getConnection, [name], { prepared: true });
    return r.rows[0] && this.#toConnection(r.rows[0]);
  }

  async listConnections(): Promise<ConnectionRecord[]> {
    const r = await this.#query<ConnectionRow>('list connections', `SELECT * FROM ${this.#t.connections} ORDER BY name COLLATE "C"`);
    // One damaged secret must not hide every connection: listed as needing a new login (records.ts).
    return r.rows.map((row) => toListedConnectionRecord(row, [...row.scopes], (v, field) => this.#open(v, 'connection', row.name, field)));
  }

  async listDueConnections(expiresBefore: number, limit: number): Promise<ConnectionSummary[]> {
    // Matches the partial index connections_due (migration 7): the read touches only the due rows.
    const r = await this.#query<SummaryRow>(
      'list due connections',
      `SELECT ${SUMMARY_COLUMNS} FROM ${this.#t.connections}
       WHERE state = 'active' AND refresh_token_enc IS NOT NULL AND access_token_expires_at IS NOT NULL AND access_token_expires_at <= $1
       ORDER BY access_token_expires_at, name COLLATE "C" LIMIT $2`,
      [expiresBefore, summaryLimit(limit)],
    );
    return r.rows.map(toConnectionSummary);
  }

  async listActiveConnections(afterName: string | null, limit: number): Promise<ConnectionSummary[]> {
    const r = await this.#query<SummaryRow>(
      'list active connections',
      `SELECT ${SUMMARY_COLUMNS} FROM ${this.#t.connections} WHERE state = 'active' AND name COLLATE "C" > $1 ORDER BY name COLLATE "C" LIMIT $2`,
      [afterName ?? '', summaryLimit(limit)],
    );
    return r.rows.map(toConnectionSummary);
  }

  async listConnectionPage(query: ConnectionPageQuery): Promise<ConnectionPage> {
    const q = checkPageQuery(query);
    const where: string[] = [];
    const params: unknown[] = [];
    const p = (v: unknown) => `$${params.push(v)}`;
    // COLLATE "C": the same order as listConnections, served by the connections_name_c index.
    if (q.after !== undefined) where.push(`name COLLATE "C" > ${p(q.after)}`);
    if (q.state !== undefined) where.push(`state = ${p(q.state)}`);
    if (q.names !== undefined) where.push(`name = ANY(${p(q.names)}::text[])`);
    if (q.app !== undefined) where.push(`app = ${p(q.app)}`);
    if (q.search !== undefined && q.search !== '') {
      const s = p(likePattern(q.search));
      where.push(`(${SEARCH_COLUMNS.map((c) => `${c} ILIKE ${s} ESCAPE '\\'`).join(' OR ')})`);
    }
    const limit = p(q.limit + 1);
    const r = await this.#query<ListingRowOf<string[]>>(
      'list connections',
      `SELECT ${LISTING_COLUMNS.join(', ')}, refresh_token_enc IS NOT NULL AS refreshable FROM ${this.#t.connections}
       ${where.length ? `WHERE ${where.join(' AND ')}` : ''} ORDER BY name COLLATE "C" LIMIT ${limit}`,
      params,
    );
    const more = r.rows.length > q.limit;
    const page = more ? r.rows.slice(0, q.limit) : r.rows;
    return { connections: page.map((row) => toConnectionListing(row, [...row.scopes])), next: more ? page[page.length - 1]!.name : null };
  }

  async createConnection(rec: Omit<ConnectionRecord, 'createdAt' | 'updatedAt' | 'version'>): Promise<ConnectionRecord> {
    checkName('connection', rec.name);
    const now = this.#clock();
    const row: ConnectionRow = newConnectionRow(rec, now, { seal: (v, field) => this.#seal(v, 'connection', rec.name, field), scopes: (sc) => sc });
    await this.#tx('create a connection', async (q) => {
      try {
        await q.query(
          `INSERT INTO ${this.#t.connections} (${CONNECTION_COLUMNS.join(', ')}) VALUES (${CONNECTION_COLUMNS.map((_, i) => `$${i + 1}`).join(', ')})`,
          CONNECTION_COLUMNS.map((c) => row[c]),
        );
      } catch (err) {
        // The unique check runs as the row is inserted, the foreign key check after it: a duplicate wins.
        if (codeOf(err) === '23505') throw alreadyExists('connection', rec.name);
        if (codeOf(err) === '23503') throw notFound('app', rec.app, { action: 'app-add', app: rec.app });
        throw err;
      }
    });
    return this.#toConnection(row);
  }

  async updateConnection(
    name: string,
    patch: ConnectionPatch,
    options: { expectedVersion?: number; allowClearRefreshToken?: boolean } = {},
  ): Promise<ConnectionRecord> {
    refuseClearingRefreshToken(name, patch, options.allowClearRefreshToken);
    const changes = { ...connectionPatchColumns(patch, { seal: (v, field) => this.#seal(v, 'connection', name, field), scopes: (sc) => sc }), updated_at: this.#clock() };
    const params: unknown[] = [name];
    const sets = Object.entries(changes).map(([col, v]) => {
      params.push(v);
      return `${col} = $${params.length}`;
    });
    const row = await this.#tx('update a connection', async (q) => {
      const cur = await q.query<{ version: number }>(`SELECT version FROM ${this.#t.connections} WHERE name = $1 FOR UPDATE`, [name]);
      const version = cur.rows[0]?.version;
      if (version === undefined) throw notFound('connection', name, { action: 'list-connections' });
      if (options.expectedVersion !== undefined && version !== options.expectedVersion) throw versionConflict(name, version, options.expectedVersion);
      try {
        const r = await q.query<ConnectionRow>(`UPDATE ${this.#t.connections} SET ${sets.join(', ')}, version = version + 1 WHERE name = $1 RETURNING *`, params);
        return r.rows[0]!;
      } catch (err) {
        if (codeOf(err) === '23503' && patch.app !== undefined) throw notFound('app', patch.app, { action: 'list-apps' });
        throw err;
      }
    });
    return this.#toConnection(row);
  }

  async deleteConnection(name: string): Promise<void> {
    const r = await this.#tx('remove a connection', (q) => q.query(`DELETE FROM ${this.#t.connections} WHERE name = $1`, [name]));
    if (r.rowCount === 0) throw notFound('connection', name, { action: 'list-connections' });
  }

  // ---- locks ---------------------------------------------------------------------------------------------------

  withLock<T>(key: string, options: LockOptions, fn: (lease: LockLease) => Promise<T>): Promise<T> {
    return this.#locks.withLock(key, options, fn);
  }

  // ---- key rotation --------------------------------------------------------------------------------------------

  async reencryptSecrets(): Promise<{ rewritten: number; remaining: number }> {
    const k = this.#ring;
    const t = this.#t;
    return this.#tx('re-encrypt secrets', async (q) => {
      let rewritten = 0;
      const redo = (value: string | null, ctx: string): string | null => {
        if (value === null || !k.needsReencrypt(value)) return value;
        rewritten++;
        return k.reencrypt(value, ctx);
      };
      const apps = await q.query<Pick<AppRow, 'name' | 'secret_enc'>>(`SELECT name, secret_enc FROM ${t.apps} FOR UPDATE`);
      for (const a of apps.rows) {
        const s = redo(a.secret_enc, secretContext('app', a.name, 'secret'));
        if (s !== a.secret_enc) await q.query(`UPDATE ${t.apps} SET secret_enc = $2 WHERE name = $1`, [a.name, s]);
      }
      const conns = await q.query<Pick<ConnectionRow, 'name' | 'access_token_enc' | 'refresh_token_enc'>>(
        `SELECT name, access_token_enc, refresh_token_enc FROM ${t.connections} FOR UPDATE`,
      );
      for (const c of conns.rows) {
        const at = redo(c.access_token_enc, secretContext('connection', c.name, 'access_token'));
        const rt = redo(c.refresh_token_enc, secretContext('connection', c.name, 'refresh_token'));
        if (at !== c.access_token_enc || rt !== c.refresh_token_enc) {
          // version is not bumped: the plaintext did not change, so optimistic writers need not retry.
          await q.query(`UPDATE ${t.connections} SET access_token_enc = $2, refresh_token_enc = $3 WHERE name = $1`, [c.name, at, rt]);
        }
      }
      const check = await q.query<{ value: string }>(`SELECT value FROM ${t.meta} WHERE key = $1 FOR UPDATE`, [KEY_CHECK]);
      const cv = check.rows[0]?.value;
      if (cv !== undefined) {
        const v = redo(cv, KEY_CHECK_CONTEXT);
        if (v !== cv) await q.query(`UPDATE ${t.meta} SET value = $2 WHERE key = $1`, [KEY_CHECK, v]);
      }
      const p = `dk1.${k.activeKeyId}.`;
      const n = await q.query<{ n: number }>(
        `SELECT (
           (SELECT count(*) FROM ${t.apps} WHERE secret_enc IS NOT NULL AND NOT starts_with(secret_enc, $1)) +
           (SELECT count(*) FROM ${t.connections} WHERE access_token_enc IS NOT NULL AND NOT starts_with(access_token_enc, $1)) +
           (SELECT count(*) FROM ${t.connections} WHERE refresh_token_enc IS NOT NULL AND NOT starts_with(refresh_token_enc, $1)) +
           (SELECT count(*) FROM ${t.meta} WHERE key = $2 AND NOT starts_with(value, $1))
         )::int8 AS n`,
        [p, KEY_CHECK],
      );
      return { rewritten, remaining: n.rows[0]?.n ?? 0 };
    });
  }

  /** Closes the pool, and with it every store of this driver (Stores.close). */
  close(): Promise<void> {
    return this.#close();
  }
}

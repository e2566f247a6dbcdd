/**
 * The SQLite store (better-sqlite3): one file shared by every dropkey process on the machine.
 *
 * - WAL journal (readers never block the writer), busy_timeout so concurrent writers queue instead of failing,
 *   foreign keys on, synchronous=FULL (a just-stored token must survive a power cut).
 * - Writes that read-then-write run in IMMEDIATE transactions, which take the write lock first, so two processes
 *   can never interleave between the read and the write.
 * - Secret fields are encrypted with the Keyring before they reach SQL, bound to their row and field (AAD).
 * - The database file is created with mode 0600 (SQLite gives its -wal and -shm files the same mode) in a
 *   directory created with mode 0700.
 * - A "key check" value in `meta`, encrypted at first open, makes a wrong master key fail at open with a clear
 *   message instead of later, in the middle of a command.
 */
import type Database from 'better-sqlite3';
import { openDatabaseFile } from './driver.js';
import { randomBytes } from 'node:crypto';
import { statSync } from 'node:fs';
import { dirname } from 'node:path';
import { DropkeyError, ErrorCodes } from '../../errors.js';
import { Keyring, secretContext } from '../cipher.js';
import { warnIfLoose } from '../key-file.js';
import { realSleep, withLease, type LeasePrimitives } from '../lease.js';
import {
  alreadyExists,
  appInUse,
  checkName,
  checkScopes,
  checkState,
  CONNECTION_COLUMNS,
  connectionPatchColumns,
  emptyToNull,
  KEY_CHECK,
  KEY_CHECK_CONTEXT,
  notFound,
  refuseClearingRefreshToken,
  toAppRecord,
  toConnectionRecord,
  versionConflict,
  type AppRowOf,
  type ConnectionRowOf,
  type KeyringProvider,
} from '../records.js';
import type { AppRecord, Clock, ConnectionPatch, ConnectionRecord, KeyRotation, LockLease, LockOptions, Sleep, Store } from '../types.js';
import { migrate, NewerSchemaError } from './migrations.js';

export type { KeyringProvider } from '../records.js';

export interface SqliteStoreOptions {
  /** Database file path (created with mode 0600; its directory with 0700). */
  path: string;
  keyring: Keyring | KeyringProvider;
  clock?: Clock;
  /** Used only to wait for locks (and their heartbeat). */
  sleep?: Sleep;
  /** How long a statement waits for another process's write lock (default 5000 ms). */
  busyTimeoutMs?: number;
  /** Receives warnings such as loose permissions. Default: process.emitWarning. */
  warn?: (message: string) => void;
}

export type SqliteStore = Store & KeyRotation & { readonly path: string };

/** Scopes are JSON text, `team` is 0 or 1. */
type AppRow = AppRowOf<string, number>;
type ConnectionRow = ConnectionRowOf<string>;

export async function openSqliteStore(options: SqliteStoreOptions): Promise<SqliteStore> {
  const { path } = options;
  const clock = options.clock ?? Date.now;
  const sleep = options.sleep ?? realSleep;
  const warn = options.warn ?? ((m: string) => process.emitWarning(m, 'DropkeyWarning'));
  const fail = errorMapper(path);

  let db: Database.Database;
  try {
    const opened = openDatabaseFile(path, { timeout: options.busyTimeoutMs ?? 5000 });
    db = opened.db;
    warnIfLoose(dirname(path), warn);
    if (!opened.created && process.platform !== 'win32') {
      const mode = statSync(path).mode & 0o777;
      if (mode & 0o077) warn(`the dropkey database ${path} is accessible by other users (mode ${mode.toString(8)}); run: chmod 600 ${path}`);
    }
  } catch (cause) {
    throw fail('open the database', cause);
  }
  try {
    db.pragma('journal_mode = WAL');
    db.pragma('synchronous = FULL');
    db.pragma('foreign_keys = ON');
    migrate(db, clock());
  } catch (cause) {
    db.close();
    if (cause instanceof NewerSchemaError) {
      throw new DropkeyError(ErrorCodes.STORE, `the database ${path} was written by a newer dropkey (${cause.message})`, {
        cause,
        hint: 'upgrade dropkey (npm install -g dropkey@latest); an older version cannot safely use this database',
      });
    }
    throw fail('prepare the database (migrations)', cause);
  }

  let keyring: Keyring;
  try {
    keyring = checkKeyring(db, options.keyring);
  } catch (cause) {
    db.close();
    if (cause instanceof DropkeyError) throw cause;
    throw fail('check the master key', cause);
  }
  return new SqliteStoreImpl(db, path, keyring, clock, sleep, fail);
}

/** Picks the keyring, then verifies it opens the key check (or writes the key check on first use). */
function checkKeyring(db: Database.Database, given: Keyring | KeyringProvider): Keyring {
  const read = () => (db.prepare('SELECT value FROM meta WHERE key = ?').get(KEY_CHECK) as { value: string } | undefined)?.value;
  const existing = read();
  const keyring = typeof given === 'function' ? given({ hasEncryptedData: existing !== undefined }) : given;
  if (existing !== undefined) {
    keyring.decrypt(existing, KEY_CHECK_CONTEXT); // throws DROPKEY_KEY_ERROR naming the key id and the fix
    return keyring;
  }
  // First use. Two processes may get here at once with different keys; the first insert wins and the loser
  // re-checks against the winner's key check, so it fails now rather than after writing secrets under its key.
  const value = keyring.encrypt(randomBytes(16).toString('base64url'), KEY_CHECK_CONTEXT);
  db.prepare('INSERT OR IGNORE INTO meta (key, value) VALUES (?, ?)').run(KEY_CHECK, value);
  keyring.decrypt(read()!, KEY_CHECK_CONTEXT);
  return keyring;
}

export type ErrorMapper = (operation: string, cause: unknown) => DropkeyError;

/**
 * Turns driver errors into DROPKEY_STORE errors naming the operation (never parameter values: they may be secrets),
 * with the driver error kept as `cause`. DropkeyErrors pass through.
 */
export function errorMapper(path: string): ErrorMapper {
  return (operation, cause) => {
    if (cause instanceof DropkeyError) return cause;
    const code = String((cause as { code?: unknown })?.code ?? '');
    const base = `store: cannot ${operation}`;
    const details = { operation, ...(code ? { sqliteCode: code } : {}) };
    if (code.startsWith('SQLITE_BUSY') || code.startsWith('SQLITE_LOCKED')) {
      return new DropkeyError(ErrorCodes.STORE, `${base}: the database is busy (another dropkey process is writing)`, {
        cause,
        details: { ...details, retryable: true },
        hint: 'try again in a moment; if it keeps happening, look for a stuck dropkey process',
      });
    }
    if (code.startsWith('SQLITE_CORRUPT') || code === 'SQLITE_NOTADB') {
      return new DropkeyError(ErrorCodes.STORE, `${base}: ${path} is damaged or is not a dropkey database`, {
        cause,
        details,
        hint: `restore ${path} from a backup (keep the damaged file; do not delete it)`,
      });
    }
    if (code.startsWith('SQLITE_READONLY') || code.startsWith('SQLITE_CANTOPEN') || code.startsWith('SQLITE_PERM') || code.startsWith('SQLITE_IOERR') || code === 'SQLITE_FULL' || code === 'EACCES' || code === 'EPERM' || code === 'ENOSPC' || code === 'EROFS') {
      return new DropkeyError(ErrorCodes.STORE, `${base}: ${path} cannot be read or written (${code})`, {
        cause,
        details,
        hint: `check that ${dirname(path)} and the files in it belong to you and that the disk has room (set DROPKEY_HOME to use another directory)`,
      });
    }
    return new DropkeyError(ErrorCodes.STORE, `${base}${code ? ` (${code})` : ''}`, { cause, details });
  };
}

class SqliteStoreImpl implements SqliteStore {
  readonly path: string;
  readonly #db: Database.Database;
  readonly #keyring: Keyring;
  readonly #clock: Clock;
  readonly #sleep: Sleep;
  readonly #fail: ErrorMapper;
  #closed = false;

  constructor(db: Database.Database, path: string, keyring: Keyring, clock: Clock, sleep: Sleep, fail: ErrorMapper) {
    this.#db = db;
    this.path = path;
    this.#keyring = keyring;
    this.#clock = clock;
    this.#sleep = sleep;
    this.#fail = fail;
  }

  /** Runs a synchronous unit of work, mapping failures; `immediate` wraps it in BEGIN IMMEDIATE. */
  #run<T>(operation: string, work: () => T, immediate = false): T {
    if (this.#closed) throw new DropkeyError(ErrorCodes.INTERNAL, `store: cannot ${operation}: the store is closed`);
    try {
      return immediate ? this.#db.transaction(work).immediate() : work();
    } catch (cause) {
      throw this.#fail(operation, cause);
    }
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
    return this.#db.prepare('SELECT * FROM apps WHERE name = ?').get(name) as AppRow | undefined;
  }

  #connectionRow(name: string): ConnectionRow | undefined {
    return this.#db.prepare('SELECT * FROM connections WHERE name = ?').get(name) as ConnectionRow | undefined;
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
    const row: AppRow = {
      name: app.name,
      app_key: app.key,
      secret_enc: this.#seal(app.secret, 'app', app.name, 'secret'),
      scopes: JSON.stringify(checkScopes(app.scopes)),
      team: app.team ? 1 : 0,
      access: app.access,
      created_at: now,
      updated_at: now,
    };
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
        if (!cur) throw notFound('app', name, 'dropkey app list');
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
        if (!this.#appRow(name)) throw notFound('app', name, 'dropkey app list');
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
    return rows.map((r) => this.#toConnection(r));
  }

  async createConnection(rec: Omit<ConnectionRecord, 'createdAt' | 'updatedAt' | 'version'>): Promise<ConnectionRecord> {
    checkName('connection', rec.name);
    const now = this.#clock();
    const row: ConnectionRow = {
      name: rec.name,
      app: rec.app,
      account_id: rec.accountId,
      team_id: rec.teamId,
      email: rec.email,
      display_name: rec.displayName,
      team_name: rec.teamName,
      scopes: JSON.stringify(checkScopes(rec.scopes)),
      access_token_enc: this.#seal(emptyToNull(rec.accessToken), 'connection', rec.name, 'access_token'),
      access_token_expires_at: rec.accessTokenExpiresAt,
      refresh_token_enc: this.#seal(emptyToNull(rec.refreshToken), 'connection', rec.name, 'refresh_token'),
      state: checkState(rec.state),
      last_error: rec.lastError,
      last_refresh_at: rec.lastRefreshAt,
      created_at: now,
      updated_at: now,
      version: 1,
    };
    this.#run(
      'create a connection',
      () => {
        if (this.#connectionRow(rec.name)) throw alreadyExists('connection', rec.name);
        if (!this.#appRow(rec.app)) throw notFound('app', rec.app, 'dropkey app add --name NAME --key APP_KEY');
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
        if (!cur) throw notFound('connection', name, 'dropkey list');
        if (options.expectedVersion !== undefined && cur.version !== options.expectedVersion) throw versionConflict(name, cur.version, options.expectedVersion);
        if (patch.app !== undefined && !this.#appRow(patch.app)) throw notFound('app', patch.app, 'dropkey app list');
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
      if (r.changes === 0) throw notFound('connection', name, 'dropkey list');
    });
  }

  // ---- locks ---------------------------------------------------------------------------------------------------

  async withLock<T>(key: string, options: LockOptions, fn: (lease: LockLease) => Promise<T>): Promise<T> {
    const primitives: LeasePrimitives = {
      tryAcquire: async (name, owner, now, expiresAt) =>
        this.#run(
          'take a lock',
          () => {
            const r = this.#db
              .prepare(
                `INSERT INTO locks (name, owner, expires_at, acquired_at) VALUES (?, ?, ?, ?)
                 ON CONFLICT (name) DO UPDATE SET owner = excluded.owner, expires_at = excluded.expires_at,
                   acquired_at = excluded.acquired_at
                 WHERE locks.expires_at <= ?`,
              )
              .run(name, owner, expiresAt, now, now);
            if (r.changes === 1) return { acquired: true as const };
            const held = this.#db.prepare('SELECT expires_at FROM locks WHERE name = ?').get(name) as { expires_at: number } | undefined;
            return { acquired: false as const, expiresAt: held?.expires_at ?? null };
          },
          true,
        ),
      extend: async (name, owner, expiresAt) =>
        this.#run('extend a lock', () => this.#db.prepare('UPDATE locks SET expires_at = ? WHERE name = ? AND owner = ?').run(expiresAt, name, owner).changes === 1),
      release: async (name, owner) => {
        if (this.#closed) return; // closing mid-lock: the lease expires by itself
        this.#run('release a lock', () => this.#db.prepare('DELETE FROM locks WHERE name = ? AND owner = ?').run(name, owner));
      },
    };
    return withLease(primitives, key, options, fn, { clock: this.#clock, sleep: this.#sleep });
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

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    try {
      this.#db.close();
    } catch (cause) {
      throw this.#fail('close the database', cause);
    }
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

/**
 * The SQLite database handle every SQLite store (core, server, webhooks, locks, back-off, key rotation) shares:
 * opening the file, the one statement runner (closed check, IMMEDIATE transactions, error mapping) and the errors.
 *
 * Two start-up costs of `dropkey token` (a measured hot path, bench/token-startup.mjs) are avoided here:
 * - the package is loaded with require() rather than an ES import, which spares Node's scan of a CommonJS
 *   module for named exports (cjs-module-lexer);
 * - the native addon's path is handed over as `nativeBinding`, which spares the `bindings` package's search of a
 *   dozen candidate paths. When the addon is not where a normal build puts it, better-sqlite3's own search runs.
 */
import { closeSync, existsSync, mkdirSync, openSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname } from 'node:path';
import type BetterSqlite3 from 'better-sqlite3';
import { DropkeyError, ErrorCodes } from '../../errors.js';

const require = createRequire(import.meta.url);

let ctor: typeof BetterSqlite3 | undefined;
let binding: string | null | undefined;

function addonPath(): string | null {
  try {
    return require.resolve('better-sqlite3/build/Release/better_sqlite3.node');
  } catch {
    return null;
  }
}

export type SqliteDatabase = BetterSqlite3.Database;

/**
 * A list column stored as JSON text (API key permissions and connections, webhook event types), read leniently:
 * anything that is not a JSON list reads as empty, and non-strings in it are dropped.
 */
export function parseStringList(text: string): string[] {
  try {
    const v = JSON.parse(text) as unknown;
    return Array.isArray(v) ? v.filter((x): x is string => typeof x === 'string') : [];
  } catch {
    return [];
  }
}

export function openDatabase(path: string, options: { timeout: number }): SqliteDatabase {
  ctor ??= require('better-sqlite3') as typeof BetterSqlite3;
  if (binding === undefined) binding = addonPath();
  return new ctor(path, binding === null ? options : { ...options, nativeBinding: binding });
}

/**
 * Opens the database file at `path`, creating its directory (mode 0700) and the file
 * itself (mode 0600) first: SQLite would create it with whatever the umask grants. `created` says whether this
 * call made the file (a file that already existed may need its mode checked).
 */
export function openDatabaseFile(path: string, options: { timeout: number }): { db: SqliteDatabase; created: boolean } {
  mkdirSync(dirname(path), { recursive: true, mode: 0o700 });
  const created = !existsSync(path);
  if (created) closeSync(openSync(path, 'a', 0o600));
  return { db: openDatabase(path, options), created };
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

export interface RunOptions {
  /** Wraps the work in BEGIN IMMEDIATE (read-then-write: the write lock is taken first). */
  immediate?: boolean;
  /**
   * synchronous=NORMAL for this unit of work instead of the handle's FULL: in WAL mode a commit then survives a
   * process crash but not a power cut, and needs no fsync. For the server tables, whose periodic usage flush would
   * otherwise stall the event loop (better-sqlite3 is synchronous) on every write; nothing there is as precious as
   * a refresh token.
   */
  relaxed?: boolean;
  /** A shorter busy timeout for this unit of work (a caller that would rather fail fast than wait). */
  busyTimeoutMs?: number;
}

/** One better-sqlite3 connection and the runner every store on it goes through. */
export class SqliteHandle {
  readonly db: SqliteDatabase;
  readonly path: string;
  readonly fail: ErrorMapper;
  readonly #busyTimeoutMs: number;
  /** Statements prepared once per handle (see prepared()). */
  readonly #statements = new Map<string, BetterSqlite3.Statement>();
  #closed = false;

  constructor(db: SqliteDatabase, path: string, busyTimeoutMs: number) {
    this.db = db;
    this.path = path;
    this.fail = errorMapper(path);
    this.#busyTimeoutMs = busyTimeoutMs;
  }

  get closed(): boolean {
    return this.#closed;
  }

  /**
   * The statement for `sql`, prepared on first use and kept for the life of the handle: SQLite compiles a statement
   * on every prepare(), which on the token read path cost more than running it. Only for fixed SQL text (the
   * cache is keyed by it and never evicts): statements built from variable parts use db.prepare().
   */
  prepared(sql: string): BetterSqlite3.Statement {
    let st = this.#statements.get(sql);
    if (st === undefined) {
      st = this.db.prepare(sql);
      this.#statements.set(sql, st);
    }
    return st;
  }

  /** Runs a synchronous unit of work, mapping failures (see RunOptions). */
  run<T>(operation: string, work: () => T, options: RunOptions = {}): T {
    if (this.#closed) throw new DropkeyError(ErrorCodes.INTERNAL, `store: cannot ${operation}: the store is closed`);
    const { immediate = false, relaxed = false, busyTimeoutMs } = options;
    try {
      if (relaxed) this.db.pragma('synchronous = NORMAL');
      if (busyTimeoutMs !== undefined) this.db.pragma(`busy_timeout = ${Math.floor(busyTimeoutMs)}`);
      try {
        return immediate ? this.db.transaction(work).immediate() : work();
      } finally {
        if (relaxed) this.db.pragma('synchronous = FULL');
        if (busyTimeoutMs !== undefined) this.db.pragma(`busy_timeout = ${this.#busyTimeoutMs}`);
      }
    } catch (cause) {
      throw this.fail(operation, cause);
    }
  }

  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#statements.clear();
    try {
      this.db.close();
    } catch (cause) {
      throw this.fail('close the database', cause);
    }
  }
}

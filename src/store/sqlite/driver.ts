/**
 * Opens better-sqlite3 databases for every SQLite store (core, server, webhooks).
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

export function openDatabase(path: string, options: { timeout: number }): SqliteDatabase {
  ctor ??= require('better-sqlite3') as typeof BetterSqlite3;
  if (binding === undefined) binding = addonPath();
  return new ctor(path, binding === null ? options : { ...options, nativeBinding: binding });
}

/**
 * Opens the database file at `path` for any of the SQLite stores, creating its directory (mode 0700) and the file
 * itself (mode 0600) first: SQLite would create it with whatever the umask grants. `created` says whether this
 * call made the file (a file that already existed may need its mode checked).
 */
export function openDatabaseFile(path: string, options: { timeout: number }): { db: SqliteDatabase; created: boolean } {
  mkdirSync(dirname(path), { recursive: true, mode: 0o700 });
  const created = !existsSync(path);
  if (created) closeSync(openSync(path, 'a', 0o600));
  return { db: openDatabase(path, options), created };
}

/**
 * Opens better-sqlite3 databases for every SQLite store (core, server, webhooks).
 *
 * Two start-up costs of `dropkey token` (a measured hot path, bench/token-startup.mjs) are avoided here:
 * - the package is loaded with require() rather than an ES import, which spares Node's scan of a CommonJS
 *   module for named exports (cjs-module-lexer);
 * - the native addon's path is handed over as `nativeBinding`, which spares the `bindings` package's search of a
 *   dozen candidate paths. When the addon is not where a normal build puts it, better-sqlite3's own search runs.
 */
import { createRequire } from 'node:module';
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

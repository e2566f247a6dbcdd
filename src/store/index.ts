/**
 * dropkey's storage entry point. Usage:
 *
 *   import { openStore, openStores, resolveHome } from '../store/index.js';
 *   const home = resolveHome(env);                        // DROPKEY_HOME, else XDG data dir (see resolveHome)
 *   const store = await openStore({ home, masterKey: env.DROPKEY_MASTER_KEY });  // key file home/master.key if unset
 *   await store.createApp({ name: 'backup', key: 'abc', secret: null, scopes: [], team: false, access: null });
 *   const conn = await store.getConnection('default');    // secrets come back decrypted; undefined if absent
 *   await store.withLock(`refresh:${name}`, { ttlMs: 30_000, waitMs: 60_000 }, async ({ signal }) => {
 *     const fresh = await store.getConnection(name);      // always re-read after taking the lock
 *     await store.updateConnection(name, { accessToken }, { expectedVersion: fresh!.version });
 *   });
 *   await store.close();
 *
 *   const stores = await openStores({ home, databaseUrl });  // every store over one handle: core, server, webhooks,
 *   await stores.server.countAdmins();                     // locks, backoff, secrets (see Stores in ./types.ts)
 *   await stores.close();
 *
 * Errors are DropkeyErrors: KEY_ERROR (master key), STORE (database; isVersionConflict() for optimistic
 * concurrency), ALREADY_EXISTS, NOT_FOUND, BAD_INPUT, LOCK_TIMEOUT, CANCELLED.
 */
import { homedir as osHomedir } from 'node:os';
import { isAbsolute, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { DropkeyError, ErrorCodes } from '../errors.js';
import { keyringFromMasterKey, type Keyring } from './cipher.js';
import { loadOrCreateKeyFile } from './key-file.js';
import type { KeyringProvider } from './records.js';
import { openDriver as openSqliteDriver } from './sqlite/index.js';
import type { Clock, KeyRotation, Sleep, Store, Stores } from './types.js';

export type * from './types.js';
export { Keyring } from './cipher.js';

export const DB_FILE = 'dropkey.db';
export const KEY_FILE = 'master.key';

export interface OpenStoreOptions {
  /** The data directory (see resolveHome). Created with mode 0700 if missing. */
  home: string;
  /** The value of DROPKEY_MASTER_KEY, if set. Otherwise the key file home/master.key is used (created on first use). */
  masterKey?: string | undefined;
  /**
   * The value of DROPKEY_DATABASE_URL, if set: a `file:` URL (a SQLite file elsewhere than home/dropkey.db), or a
   * `postgres://` / `postgresql://` URL (the PostgreSQL store, docs/decisions/0002-postgres-store.md; `?schema=NAME` picks the schema, default
   * `dropkey`).
   */
  databaseUrl?: string | undefined;
  /** An explicit keyring (tests, key rotation); wins over masterKey and the key file. */
  keyring?: Keyring;
  clock?: Clock;
  /** Used only while waiting for locks. */
  sleep?: Sleep;
  /** Warnings (loose permissions). Default: process.emitWarning. */
  warn?: (message: string) => void;
}

export interface StorePaths {
  home: string;
  database: string;
  keyFile: string;
}

export function storePaths(home: string): StorePaths {
  const h = resolve(home);
  return { home: h, database: join(h, DB_FILE), keyFile: join(h, KEY_FILE) };
}

/**
 * Opens every store dropkey needs (core, server, webhooks, locks, back-off, key rotation) over one handle of the
 * driver the options choose (selectDriver: SQLite file or PostgreSQL URL). The master key comes from (in order)
 * `keyring`, `masterKey` (DROPKEY_MASTER_KEY), or the key file. The key file is created only for a store that holds
 * no encrypted data yet: if it went missing from a store that does, opening fails instead of starting a new key
 * (which would orphan every stored secret).
 */
export async function openStores(options: OpenStoreOptions): Promise<Stores> {
  const paths = storePaths(options.home);
  const driver = selectDriver(options.databaseUrl, paths);
  // The key file and the database share a directory: say each thing once.
  const seen = new Set<string>();
  const emit = options.warn ?? ((m: string) => process.emitWarning(m, 'DropkeyWarning'));
  const warn = (m: string) => {
    if (!seen.has(m)) emit(m);
    seen.add(m);
  };
  const keyring: Keyring | KeyringProvider =
    options.keyring ??
    (options.masterKey !== undefined && options.masterKey.trim() !== ''
      ? keyringFromMasterKey(options.masterKey)
      : ({ hasEncryptedData }) => loadOrCreateKeyFile(paths.keyFile, { create: !hasEncryptedData, warn }));
  const common = {
    keyring,
    ...(options.clock ? { clock: options.clock } : {}),
    ...(options.sleep ? { sleep: options.sleep } : {}),
    warn,
  };
  if (driver.kind === 'postgres') {
    // Imported lazily so SQLite users (every CLI call) never load pg.
    const { openDriver } = await import('./postgres/index.js');
    return openDriver({ connectionString: driver.connectionString, ...(driver.schema === undefined ? {} : { schema: driver.schema }), ...common });
  }
  return openSqliteDriver({ location: driver.path, ...common });
}

/**
 * The core store alone (apps, connections, locks), for the CLI and the library: openStores(options).core, whose
 * close() closes the database handle.
 */
export async function openStore(options: OpenStoreOptions): Promise<Store & KeyRotation> {
  return (await openStores(options)).core;
}

/**
 * The seam for more drivers: a database URL names the driver. Unset → SQLite at home/dropkey.db.
 * Schemes not listed here are refused with the list of supported ones.
 */
export function selectDriver(
  databaseUrl: string | undefined,
  paths: StorePaths,
): { kind: 'sqlite'; path: string } | { kind: 'postgres'; connectionString: string; schema?: string } {
  if (databaseUrl === undefined || databaseUrl.trim() === '') return { kind: 'sqlite', path: paths.database };
  let url: URL;
  try {
    url = new URL(databaseUrl.trim());
  } catch {
    throw new DropkeyError(ErrorCodes.BAD_INPUT, 'DROPKEY_DATABASE_URL is not a URL', {
      hint: 'use file:///absolute/path/dropkey.db, or unset it to use the data directory',
    });
  }
  if (url.protocol === 'file:') return { kind: 'sqlite', path: fileURLToPath(url) };
  if (url.protocol === 'postgres:' || url.protocol === 'postgresql:') {
    // `schema` is ours, not libpq's: take it out so the driver never sees an unknown parameter.
    const schema = url.searchParams.get('schema') ?? undefined;
    url.searchParams.delete('schema');
    return { kind: 'postgres', connectionString: url.toString(), ...(schema === undefined ? {} : { schema }) };
  }
  throw new DropkeyError(ErrorCodes.BAD_INPUT, `DROPKEY_DATABASE_URL uses "${url.protocol}", which this dropkey does not support`, {
    hint: 'supported: file:///absolute/path/dropkey.db (SQLite), postgres://user:password@host:5432/database[?schema=NAME] (PostgreSQL); or unset it to use the data directory',
  });
}

/**
 * The data directory:
 *   1. DROPKEY_HOME (relative paths are resolved against `cwd`);
 *   2. $XDG_DATA_HOME/dropkey, when XDG_DATA_HOME is an absolute path (the XDG spec says to ignore relative ones);
 *   3. the platform default: ~/.local/share/dropkey (Linux and others), ~/Library/Application Support/dropkey
 *      (macOS), %LOCALAPPDATA%\dropkey (Windows).
 */
export function resolveHome(
  env: Record<string, string | undefined>,
  platform: NodeJS.Platform = process.platform,
  { homedir = osHomedir(), cwd = process.cwd() }: { homedir?: string; cwd?: string } = {},
): string {
  const explicit = env['DROPKEY_HOME']?.trim();
  if (explicit) return resolve(cwd, explicit);
  const xdg = env['XDG_DATA_HOME']?.trim();
  if (xdg && isAbsolute(xdg)) return join(xdg, 'dropkey');
  if (platform === 'darwin') return join(homedir, 'Library', 'Application Support', 'dropkey');
  if (platform === 'win32') {
    const local = env['LOCALAPPDATA']?.trim();
    return join(local && isAbsolute(local) ? local : join(homedir, 'AppData', 'Local'), 'dropkey');
  }
  return join(homedir, '.local', 'share', 'dropkey');
}

/** True for the DROPKEY_STORE error updateConnection throws when `expectedVersion` no longer matches. */
export function isVersionConflict(err: unknown): boolean {
  return err instanceof DropkeyError && err.code === ErrorCodes.STORE && err.details?.['conflict'] === true;
}

/**
 * The SQLite driver (better-sqlite3): one file shared by every dropkey process on the machine, holding every
 * dropkey table, opened through ONE connection that every store of the driver uses (core, server, webhooks, locks,
 * back-off, key rotation), with ONE migrator (./migrations.ts).
 *
 * - WAL journal (readers never block the writer), busy_timeout so concurrent writers queue instead of failing,
 *   foreign keys on, synchronous=FULL (a just-stored token must survive a power cut; the server tables relax it per
 *   write, see RunOptions.relaxed).
 * - The database file is created with mode 0600 (SQLite gives its -wal and -shm files the same mode) in a
 *   directory created with mode 0700.
 * - A "key check" value in `meta`, encrypted at first open, makes a wrong master key fail at open with a clear
 *   message instead of later, in the middle of a command.
 */
import { randomBytes } from 'node:crypto';
import { statSync } from 'node:fs';
import { dirname } from 'node:path';
import { DropkeyError, ErrorCodes } from '../../errors.js';
import type { Keyring } from '../cipher.js';
import { warnIfLoose } from '../key-file.js';
import { realSleep } from '../lease.js';
import { KEY_CHECK, KEY_CHECK_CONTEXT, type KeyringProvider } from '../records.js';
import type { Clock, Sleep, Stores } from '../types.js';
import type { NewId } from '../webhook-records.js';
import { SqliteBackoffTable } from './backoff.js';
import { SqliteCoreStore } from './core.js';
import { errorMapper, openDatabaseFile, SqliteHandle, type SqliteDatabase } from './db.js';
import { SqliteLocks } from './locks.js';
import { migrate, NewerSchemaError } from './migrations.js';
import { sqliteSecretPort } from './secrets.js';
import { SqliteServerStore } from './server-store.js';
import { SqliteWebhookStore } from './webhook-store.js';

export type { KeyringProvider } from '../records.js';

export interface SqliteDriverOptions {
  /** Database file path (created with mode 0600; its directory with 0700). */
  location: string;
  keyring: Keyring | KeyringProvider;
  clock?: Clock;
  /** Used only to wait for locks (and their heartbeat). */
  sleep?: Sleep;
  /** How long a statement waits for another process's write lock (default 5000 ms). */
  busyTimeoutMs?: number;
  /** Receives warnings such as loose permissions. Default: process.emitWarning. */
  warn?: (message: string) => void;
  /** Ids for webhook endpoints and deliveries (default crypto.randomUUID-based). */
  newId?: NewId;
}

/** Opens (creating and migrating when needed) the database file and every store on it. */
export async function openDriver(options: SqliteDriverOptions): Promise<Stores> {
  const path = options.location;
  const clock = options.clock ?? Date.now;
  const sleep = options.sleep ?? realSleep;
  const warn = options.warn ?? ((m: string) => process.emitWarning(m, 'DropkeyWarning'));
  const busyTimeoutMs = options.busyTimeoutMs ?? 5000;
  const fail = errorMapper(path);

  let db: SqliteDatabase;
  try {
    const opened = openDatabaseFile(path, { timeout: busyTimeoutMs });
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
  const h = new SqliteHandle(db, path, busyTimeoutMs);
  const close = async () => h.close();
  const locks = new SqliteLocks(h, clock, sleep);
  return {
    kind: 'sqlite',
    location: path,
    keyring,
    core: new SqliteCoreStore(h, keyring, clock, locks, close),
    server: new SqliteServerStore(h, keyring),
    webhooks: new SqliteWebhookStore(h, keyring, options.newId),
    locks,
    backoff: new SqliteBackoffTable(h),
    secrets: sqliteSecretPort(h),
    close,
  };
}

/** Picks the keyring, then verifies it opens the key check (or writes the key check on first use). */
function checkKeyring(db: SqliteDatabase, given: Keyring | KeyringProvider): Keyring {
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

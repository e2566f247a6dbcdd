/**
 * Master key rotation across every encrypted column of every dropkey table, on SQLite and PostgreSQL alike
 * (issue 5 §4). Design and operating procedure: docs/decisions/0003-key-rotation.md.
 *
 * Why here and not only in the drivers' reencryptSecrets(): those rewrite the core tables in ONE transaction
 * (PostgreSQL: every connection row locked FOR UPDATE until the end), which stalls refreshes on a large store, and
 * they do not see the server tables (pending logins, webhook secrets) that other modules own. This module walks a
 * catalog of every secret column in small batches; each row is rewritten with a compare-and-set on its old
 * ciphertext, so a concurrent writer (a refresh on another instance) always wins and is never overwritten with
 * stale data. Writers that already hold the new key list write under the new key themselves, so the walk
 * converges; remaining > 0 after the passes means some instance still writes under an old key.
 *
 * The ciphertext format and the AAD contexts are cipher.ts's (parseCiphertext, secretContext); nothing here
 * decrypts except through Keyring.reencrypt.
 */
import { randomBytes } from 'node:crypto';
import { closeSync, fsyncSync, openSync, renameSync, unlinkSync, writeSync } from 'node:fs';
import { constants as fsConstants } from 'node:fs';
import { dirname } from 'node:path';
import { DropkeyError, ErrorCodes } from '../errors.js';
import { parseCiphertext, secretContext, type Keyring } from './cipher.js';

/** One encrypted column: its table, the primary key that names the row in the AAD, and the AAD's field. */
export interface SecretColumn {
  table: string;
  key: string;
  column: string;
  /** The AAD record type and field the drivers use (see secretContext call sites). */
  context: (rowKey: string) => string;
}

/**
 * Every encrypted column dropkey writes, in both drivers (same table names: SQLite file / PostgreSQL schema).
 * A test (src/store/rotation.e2e.test.ts) compares this list with the *_enc columns the databases really have.
 */
export const SECRET_COLUMNS: readonly SecretColumn[] = [
  // core store (src/store/sqlite/index.ts, src/store/postgres/index.ts)
  { table: 'apps', key: 'name', column: 'secret_enc', context: (k) => secretContext('app', k, 'secret') },
  { table: 'connections', key: 'name', column: 'access_token_enc', context: (k) => secretContext('connection', k, 'access_token') },
  { table: 'connections', key: 'name', column: 'refresh_token_enc', context: (k) => secretContext('connection', k, 'refresh_token') },
  // the key check row (meta.key_check): rotated too, so the old key is not needed to open the store afterwards
  { table: 'meta', key: 'key', column: 'value', context: (k) => secretContext('meta', k, 'value') },
  // server store (src/store/{sqlite,postgres}/server-store.ts): PKCE verifiers of logins in progress
  { table: 'server_pending_oauth', key: 'id', column: 'code_verifier_enc', context: (k) => secretContext('server_pending_oauth', k, 'code_verifier') },
  // webhook store (src/store/{sqlite,postgres}/webhook-store.ts): endpoint signing secrets
  { table: 'webhook_endpoints', key: 'id', column: 'secret_enc', context: (k) => secretContext('webhook_endpoints', k, 'secret') },
];

/** The little SQL each driver must offer; values are dropkey ciphertexts (`dk1.<keyId>.…`). */
export interface SecretTablePort {
  readonly kind: 'sqlite' | 'postgres';
  /** Tables that exist (server and webhook tables exist only once `dropkey serve` ran). */
  tables(): Promise<Set<string>>;
  /** Up to `limit` rows after `afterKey` (key order) whose value is a ciphertext not under `keyId`. */
  batch(c: SecretColumn, keyId: string, afterKey: string | null, limit: number): Promise<{ key: string; value: string }[]>;
  /** Writes every change whose row still holds `from`; returns how many rows matched. One short transaction. */
  compareAndSet(c: SecretColumn, changes: { key: string; from: string; to: string }[]): Promise<number>;
  /** Ciphertexts per key id in the column. */
  countByKeyId(c: SecretColumn): Promise<Map<string, number>>;
  close(): Promise<void>;
}

export interface RotationProgress {
  table: string;
  column: string;
  rewritten: number;
}

export interface RotationReport {
  activeKeyId: string;
  rewritten: number;
  /** Rows a concurrent writer changed under us (they were re-read and handled in a later pass). */
  raced: number;
  /** Ciphertexts still not under the active key after the last pass (0 when the rotation is complete). */
  remaining: number;
  columns: { table: string; column: string; rewritten: number; remaining: number }[];
}

export interface RotateOptions {
  batchSize?: number;
  /** Walks over the whole catalog; more than one only matters when writers race with us. */
  maxPasses?: number;
  onProgress?: (p: RotationProgress) => void;
  signal?: AbortSignal;
}

/**
 * Re-encrypts every ciphertext not under `keyring`'s active key. The keyring must hold every key still in use:
 * a ciphertext under a key it does not have stops the rotation with DROPKEY_KEY_ERROR (nothing is rewritten
 * wrongly; rerun with the missing key listed).
 */
export async function rotateSecrets(port: SecretTablePort, keyring: Keyring, o: RotateOptions = {}): Promise<RotationReport> {
  const batchSize = Math.max(1, o.batchSize ?? 200);
  const maxPasses = Math.max(1, o.maxPasses ?? 3);
  const active = keyring.activeKeyId;
  const tables = await port.tables();
  const columns = SECRET_COLUMNS.filter((c) => tables.has(c.table));
  const perColumn = new Map(columns.map((c) => [c, { rewritten: 0, remaining: 0 }]));
  let raced = 0;
  for (let pass = 0; pass < maxPasses; pass++) {
    let pending = 0;
    for (const c of columns) {
      let after: string | null = null;
      for (;;) {
        o.signal?.throwIfAborted();
        const rows = await port.batch(c, active, after, batchSize);
        if (rows.length === 0) break;
        after = rows[rows.length - 1]!.key;
        const changes = rows.map((r) => ({ key: r.key, from: r.value, to: keyring.reencrypt(r.value, c.context(r.key)) }));
        const written = await port.compareAndSet(c, changes);
        perColumn.get(c)!.rewritten += written;
        raced += changes.length - written;
        pending += changes.length - written;
        o.onProgress?.({ table: c.table, column: c.column, rewritten: perColumn.get(c)!.rewritten });
      }
    }
    if (pending === 0) break;
  }
  let remaining = 0;
  for (const c of columns) {
    const counts = await port.countByKeyId(c);
    const left = [...counts].filter(([id]) => id !== active).reduce((n, [, k]) => n + k, 0);
    perColumn.get(c)!.remaining = left;
    remaining += left;
  }
  const report = [...perColumn].map(([c, r]) => ({ table: c.table, column: c.column, ...r }));
  return { activeKeyId: active, rewritten: report.reduce((n, r) => n + r.rewritten, 0), raced, remaining, columns: report };
}

export interface KeyStatus {
  /** Ciphertexts per key id over every encrypted column. */
  byKeyId: Record<string, number>;
  columns: { table: string; column: string; byKeyId: Record<string, number> }[];
}

export async function keyStatus(port: SecretTablePort): Promise<KeyStatus> {
  const tables = await port.tables();
  const byKeyId: Record<string, number> = {};
  const columns: KeyStatus['columns'] = [];
  for (const c of SECRET_COLUMNS.filter((x) => tables.has(x.table))) {
    const counts = Object.fromEntries(await port.countByKeyId(c));
    for (const [id, n] of Object.entries(counts)) byKeyId[id] = (byKeyId[id] ?? 0) + n;
    columns.push({ table: c.table, column: c.column, byKeyId: counts });
  }
  return { byKeyId, columns };
}

// ---------------------------------------------------------------------------------------------------------------
// Drivers

const PREFIX = 'dk1.';

/** The key id of a ciphertext; undefined for values that are not ciphertexts (other meta rows). */
function keyIdOf(value: string): string | undefined {
  if (!value.startsWith(PREFIX)) return undefined;
  try {
    return parseCiphertext(value).keyId;
  } catch {
    return undefined;
  }
}

/** SQLite: its own connection to the store's file (WAL: readers and the store's writers keep working). */
export async function sqliteSecretPort(path: string): Promise<SecretTablePort> {
  const { default: Database } = await import('better-sqlite3');
  const db = new Database(path, { fileMustExist: true });
  db.pragma('busy_timeout = 5000');
  const id = (s: string) => `"${s}"`;
  return {
    kind: 'sqlite',
    async tables() {
      return new Set((db.prepare("SELECT name FROM sqlite_master WHERE type = 'table'").all() as { name: string }[]).map((r) => r.name));
    },
    async batch(c, keyId, afterKey, limit) {
      const rows = db
        .prepare(
          `SELECT ${id(c.key)} AS key, ${id(c.column)} AS value FROM ${id(c.table)}
           WHERE ${id(c.column)} LIKE 'dk1.%' AND substr(${id(c.column)}, 1, length(@p)) <> @p AND (@after IS NULL OR ${id(c.key)} > @after)
           ORDER BY ${id(c.key)} LIMIT @limit`,
        )
        .all({ p: `${PREFIX}${keyId}.`, after: afterKey, limit }) as { key: string; value: string }[];
      return rows;
    },
    async compareAndSet(c, changes) {
      const stmt = db.prepare(`UPDATE ${id(c.table)} SET ${id(c.column)} = ? WHERE ${id(c.key)} = ? AND ${id(c.column)} = ?`);
      return db.transaction(() => changes.reduce((n, ch) => n + stmt.run(ch.to, ch.key, ch.from).changes, 0)).immediate();
    },
    async countByKeyId(c) {
      const counts = new Map<string, number>();
      for (const r of db.prepare(`SELECT ${id(c.column)} AS value FROM ${id(c.table)} WHERE ${id(c.column)} LIKE 'dk1.%'`).iterate() as Iterable<{ value: string }>) {
        const k = keyIdOf(r.value);
        if (k !== undefined) counts.set(k, (counts.get(k) ?? 0) + 1);
      }
      return counts;
    },
    async close() {
      db.close();
    },
  };
}

/** PostgreSQL: a two-connection pool of its own on the store's schema; each batch is one short transaction. */
export async function postgresSecretPort(connectionString: string, schema: string): Promise<SecretTablePort> {
  const { default: pg } = await import('pg');
  const { quoteIdent } = await import('./postgres/migrations.js');
  const pool = new pg.Pool({ connectionString, max: 2, application_name: 'dropkey keys' });
  pool.on('error', () => {}); // a dropped idle connection is reported by the next query
  const t = (name: string) => `${quoteIdent(schema)}.${quoteIdent(name)}`;
  const q = quoteIdent;
  return {
    kind: 'postgres',
    async tables() {
      const r = await pool.query<{ table_name: string }>('SELECT table_name FROM information_schema.tables WHERE table_schema = $1', [schema]);
      return new Set(r.rows.map((x) => x.table_name));
    },
    async batch(c, keyId, afterKey, limit) {
      const r = await pool.query<{ key: string; value: string }>(
        `SELECT ${q(c.key)} AS key, ${q(c.column)} AS value FROM ${t(c.table)}
         WHERE starts_with(${q(c.column)}, 'dk1.') AND NOT starts_with(${q(c.column)}, $1) AND ($2::text IS NULL OR ${q(c.key)} COLLATE "C" > $2)
         ORDER BY ${q(c.key)} COLLATE "C" LIMIT $3`,
        [`${PREFIX}${keyId}.`, afterKey, limit],
      );
      return r.rows;
    },
    async compareAndSet(c, changes) {
      const client = await pool.connect();
      try {
        await client.query('BEGIN');
        const r = await client.query(
          `UPDATE ${t(c.table)} AS x SET ${q(c.column)} = v.to_value
           FROM unnest($1::text[], $2::text[], $3::text[]) AS v(k, from_value, to_value)
           WHERE x.${q(c.key)} = v.k AND x.${q(c.column)} = v.from_value`,
          [changes.map((ch) => ch.key), changes.map((ch) => ch.from), changes.map((ch) => ch.to)],
        );
        await client.query('COMMIT');
        return r.rowCount ?? 0;
      } catch (err) {
        await client.query('ROLLBACK').catch(() => undefined);
        throw new DropkeyError(ErrorCodes.STORE, `re-encrypting ${c.table}.${c.column} failed: ${(err as Error).message}`, { cause: err });
      } finally {
        client.release();
      }
    },
    async countByKeyId(c) {
      const r = await pool.query<{ kid: string; n: string }>(
        `SELECT split_part(${q(c.column)}, '.', 2) AS kid, count(*) AS n FROM ${t(c.table)} WHERE starts_with(${q(c.column)}, 'dk1.') GROUP BY 1`,
      );
      return new Map(r.rows.map((x) => [x.kid, Number(x.n)]));
    },
    async close() {
      await pool.end();
    },
  };
}

// ---------------------------------------------------------------------------------------------------------------
// For a running server (the web UI's admin action)

/** Rotation on an open store with the keyring it was opened with: what `dropkey keys rotate` does, minus key files. */
export interface KeyRotationController {
  readonly activeKeyId: string;
  readonly keyIds: readonly string[];
  status(): Promise<KeyStatus>;
  rotate(o?: RotateOptions): Promise<RotationReport>;
}

/**
 * `store` is the open core store (SqliteStore has `path`, PostgresStore `schema`); `databaseUrl` is
 * DROPKEY_DATABASE_URL, needed for PostgreSQL whose store does not expose its credentials.
 */
export function keyRotationFor(store: object, keyring: Keyring, databaseUrl: string | undefined): KeyRotationController {
  const openPort = async (): Promise<SecretTablePort> => {
    if ('path' in store && typeof store.path === 'string') return sqliteSecretPort(store.path);
    const { selectDriver, storePaths } = await import('./index.js');
    const driver = selectDriver(databaseUrl, storePaths('.'));
    if (driver.kind !== 'postgres' || !('schema' in store) || typeof store.schema !== 'string') {
      throw new DropkeyError(ErrorCodes.INTERNAL, 'the store and DROPKEY_DATABASE_URL disagree');
    }
    return postgresSecretPort(driver.connectionString, store.schema);
  };
  const withPort = async <T>(fn: (p: SecretTablePort) => Promise<T>): Promise<T> => {
    const port = await openPort();
    try {
      return await fn(port);
    } finally {
      await port.close();
    }
  };
  return {
    activeKeyId: keyring.activeKeyId,
    keyIds: keyring.keyIds,
    status: () => withPort((p) => keyStatus(p)),
    rotate: (o) => withPort((p) => rotateSecrets(p, keyring, o)),
  };
}

/**
 * Master key rotation across every encrypted column of every dropkey table, on SQLite and PostgreSQL alike
 * (docs/decisions/0003-key-rotation.md). Design and operating procedure: docs/decisions/0003-key-rotation.md.
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
import { secretContext, type Keyring, type KeySource } from './cipher.js';
import type { SecretColumn, SecretTablePort } from './types.js';

export type { SecretColumn, SecretTablePort } from './types.js';

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
// For a running server (the web UI's admin action)

/** Rotation on an open store with the keyring it was opened with: what `dropkey keys rotate` does, minus key files. */
export interface KeyRotationController {
  readonly activeKeyId: string;
  readonly keyIds: readonly string[];
  /** Where the keys come from: DROPKEY_MASTER_KEY ('env') or the key file ('file'). */
  readonly keySource?: KeySource;
  status(): Promise<KeyStatus>;
  rotate(o?: RotateOptions): Promise<RotationReport>;
}

/** Rotation over a driver's secret port (Stores.secrets) with the keyring the stores were opened with. */
export function keyRotationFor(port: SecretTablePort, keyring: Keyring): KeyRotationController {
  return {
    activeKeyId: keyring.activeKeyId,
    keyIds: keyring.keyIds,
    keySource: keyring.source,
    status: () => keyStatus(port),
    rotate: (o) => rotateSecrets(port, keyring, o),
  };
}

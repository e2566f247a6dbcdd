/**
 * The storage interfaces every driver (./sqlite, ./postgres) implements, with plaintext domain records: the core
 * Store, the locks, the back-off table, key rotation's port and Stores, the set one driver opens over one handle.
 * Drivers encrypt secret fields (app secret, access token, refresh token) before they touch disk, through the
 * shared Keyring (src/store/cipher.ts), and record the key id in every ciphertext so keys can rotate.
 *
 * All methods are async so that network drivers fit the same shape.
 */
import type { Keyring } from './cipher.js';
import type { ServerStore } from './server-types.js';
import type { WebhookStore } from './webhook-types.js';

export type AppAccess = 'full' | 'app_folder';

export interface AppRecord {
  /** Local id chosen by the user, e.g. "backup". */
  name: string;
  /** Dropbox app key (client_id). Not secret. */
  key: string;
  /** App secret; null for PKCE-only apps. Encrypted at rest. */
  secret: string | null;
  /** Scopes configured for the app (what login asks for by default). */
  scopes: string[];
  /** A Business team app (tokens are team tokens, validated with team/get_info). */
  team: boolean;
  /** Access type when known. */
  access: AppAccess | null;
  createdAt: number;
  updatedAt: number;
}

export type ConnectionState = 'active' | 'needs_reauth' | 'revoked';

export interface ConnectionRecord {
  /** Connection id, e.g. "default" or "dropbox_default". */
  name: string;
  /** AppRecord.name */
  app: string;
  accountId: string | null;
  teamId: string | null;
  email: string | null;
  displayName: string | null;
  teamName: string | null;
  /**
   * For a team app: the admin who linked it, as Dropbox names them (team/token/get_authenticated_admin); null when
   * unknown (a user app, a lookup that failed, a connection made before dropkey recorded it). Optional on input.
   */
  linkedByName?: string | null;
  linkedByEmail?: string | null;
  /** Scopes granted (from the token response or the check). */
  scopes: string[];
  /** Encrypted at rest. */
  accessToken: string | null;
  /** Epoch ms; null when unknown or for long-lived tokens. */
  accessTokenExpiresAt: number | null;
  /** Encrypted at rest. Never overwritten by null or '' except by an explicit revoke/delete. */
  refreshToken: string | null;
  state: ConnectionState;
  /** Plain-words description of the last failure, never containing a secret. */
  lastError: string | null;
  lastRefreshAt: number | null;
  createdAt: number;
  updatedAt: number;
  /** Incremented by every update; used for optimistic concurrency. */
  version: number;
}

/**
 * What background jobs need to know of a connection, read without decrypting anything (no token leaves the row):
 * the refresh job and the health check page through these, and fetch a full record only for the ones they act on.
 */
export interface ConnectionSummary {
  name: string;
  app: string;
  accountId: string | null;
  email: string | null;
  state: ConnectionState;
  /** ConnectionRecord.accessTokenExpiresAt. */
  expiresAt: number | null;
  /** Has a refresh token (encrypted at rest; only its presence is read). */
  refreshable: boolean;
  /** Has an access token. */
  hasAccessToken: boolean;
}

/**
 * One page of connections, for listings that must stay small at any number of connections (the web UI, the list
 * API). Ordered by name; `after` is the last name of the previous page (keyset paging: every page is an index range
 * scan, never an OFFSET walk).
 */
export interface ConnectionPageQuery {
  /** Rows per page, 1 to 1000. */
  limit: number;
  /** Only names after this one (the previous page's last name). */
  after?: string;
  /** Case-insensitive substring of the name, account email, display name, account id, team name or team id. */
  search?: string;
  state?: ConnectionState;
  /** Only these names (an API key scoped to some connections). */
  names?: string[];
  /** Only the connections of this app. */
  app?: string;
}

/**
 * A connection as a listing shows it: every column but the two tokens, which are not decrypted (a listing does not
 * show them); `refreshable` says whether a refresh token is stored.
 */
export type ConnectionListing = Omit<ConnectionRecord, 'accessToken' | 'refreshToken'> & { refreshable: boolean };

export interface ConnectionPage {
  connections: ConnectionListing[];
  /** The name to pass as `after` for the next page; null on the last page. */
  next: string | null;
}

export type ConnectionPatch = Partial<Omit<ConnectionRecord, 'name' | 'createdAt' | 'version'>>;

export interface LockOptions {
  /** How long the lock is held at most before others may take it over (a holder that died). */
  ttlMs: number;
  /** How long to wait for the lock before failing with DROPKEY_LOCK_TIMEOUT. */
  waitMs: number;
  signal?: AbortSignal;
}

/** Epoch milliseconds (injected so tests control time; default Date.now). */
export type Clock = () => number;

/** Waits `ms` (injected with the clock so tests stay fast); rejects when `signal` aborts. */
export type { Sleep } from '../sleep.js';

/** Handed to the function run under a lock. */
export interface LockLease {
  /**
   * Aborted if the lease was lost while fn ran (another holder took it over because this process stalled past
   * ttlMs without a heartbeat). fn should stop writing when it fires.
   */
  readonly signal: AbortSignal;
}

/** Named locks shared by every process and instance on one database (lease rows, see ./lease.ts). */
export interface LockStore {
  /**
   * Runs fn while holding a named lock shared by every process and instance on this store.
   * A holder that dies loses the lock after ttlMs. fn should re-read what it needs after the lock is taken.
   */
  withLock<T>(key: string, options: LockOptions, fn: (lease: LockLease) => Promise<T>): Promise<T>;
}

/** The core store: apps and connections (what the CLI and the library use), plus the locks. */
export interface Store extends LockStore {
  getApp(name: string): Promise<AppRecord | undefined>;
  listApps(): Promise<AppRecord[]>;
  /** Creates an app; fails with DROPKEY_ALREADY_EXISTS if the name is taken. */
  createApp(app: Omit<AppRecord, 'createdAt' | 'updatedAt'>): Promise<AppRecord>;
  updateApp(name: string, patch: Partial<Omit<AppRecord, 'name' | 'createdAt'>>): Promise<AppRecord>;
  /** Fails with DROPKEY_BAD_INPUT while connections still use the app. */
  deleteApp(name: string): Promise<void>;

  getConnection(name: string): Promise<ConnectionRecord | undefined>;
  listConnections(): Promise<ConnectionRecord[]>;
  /**
   * Active, refreshable connections whose access token expires at or before `expiresBefore` (epoch ms), soonest
   * first, at most `limit`: an indexed read whose cost follows what is due, not how many connections exist.
   */
  listDueConnections(expiresBefore: number, limit: number): Promise<ConnectionSummary[]>;
  /** Active connections whose name sorts after `afterName` (null: from the start), in name order, at most `limit`. */
  listActiveConnections(afterName: string | null, limit: number): Promise<ConnectionSummary[]>;
  /** One page of connections (ConnectionPageQuery), without decrypting any token. */
  listConnectionPage(query: ConnectionPageQuery): Promise<ConnectionPage>;
  /** Creates a connection; fails with DROPKEY_ALREADY_EXISTS if the name is taken. */
  createConnection(rec: Omit<ConnectionRecord, 'createdAt' | 'updatedAt' | 'version'>): Promise<ConnectionRecord>;
  /**
   * Applies a patch. With `expectedVersion`, fails with DROPKEY_STORE if the row changed meanwhile.
   * A patch that sets refreshToken to null or '' is refused unless `allowClearRefreshToken` is set.
   */
  updateConnection(
    name: string,
    patch: ConnectionPatch,
    options?: { expectedVersion?: number; allowClearRefreshToken?: boolean },
  ): Promise<ConnectionRecord>;
  deleteConnection(name: string): Promise<void>;

  /** Closes the database handle (and with it every store opened with this one, see Stores). */
  close(): Promise<void>;
}

/**
 * Key rotation support (docs/decisions/0002-postgres-store.md): rewrites every ciphertext that is not under the keyring's active key.
 * Drivers implement it next to Store; `dropkey keys rotate` opens the store with the new key active and the old key
 * still listed, calls this, and only then drops the old key.
 */
export interface KeyRotation {
  reencryptSecrets(): Promise<{ rewritten: number; remaining: number }>;
}

/**
 * The proxy's 429 back-off shared by every instance on one database (src/server/proxy/shared-backoff.ts keeps the
 * policy: memory first, degrade when the database is away). `until` is epoch ms; `reason` is Dropbox's.
 */
export interface BackoffRecord {
  until: number;
  reason: string;
}

export interface BackoffTable {
  /** The block for `key` still in force at `now`, if any. */
  get(key: string, now: number): Promise<BackoffRecord | undefined>;
  /** Sets the block unless one lasting at least as long is already recorded; also drops long-finished rows. */
  block(key: string, record: BackoffRecord, now: number): Promise<void>;
}

/** One encrypted column: its table, the primary key that names the row in the AAD, and the AAD's field. */
export interface SecretColumn {
  table: string;
  key: string;
  column: string;
  /** The AAD record type and field the drivers use (see secretContext call sites). */
  context: (rowKey: string) => string;
}

/** The little SQL key rotation (./rotation.ts) needs; values are dropkey ciphertexts (`dk1.<keyId>.…`). */
export interface SecretTablePort {
  /** Tables that exist. */
  tables(): Promise<Set<string>>;
  /** Up to `limit` rows after `afterKey` (key order) whose value is a ciphertext not under `keyId`. */
  batch(c: SecretColumn, keyId: string, afterKey: string | null, limit: number): Promise<{ key: string; value: string }[]>;
  /** Writes every change whose row still holds `from`; returns how many rows matched. One short transaction. */
  compareAndSet(c: SecretColumn, changes: { key: string; from: string; to: string }[]): Promise<number>;
  /** Ciphertexts per key id in the column. */
  countByKeyId(c: SecretColumn): Promise<Map<string, number>>;
}

/**
 * Every store dropkey needs, over ONE database handle (a SQLite connection, or a PostgreSQL pool) opened by one
 * driver (./sqlite/index.ts, ./postgres/index.ts) whose one migrator owns every table. Opened by openStores
 * (./index.ts). close() closes the handle; core.close() does the same (the CLI only holds the core store).
 */
export interface Stores {
  readonly kind: 'sqlite' | 'postgres';
  /** For messages: the database file, or `host:port/database#schema` (never credentials). */
  readonly location: string;
  /** The keyring the store was opened with (checked against the store's key check). */
  readonly keyring: Keyring;
  readonly core: Store & KeyRotation;
  readonly server: ServerStore;
  readonly webhooks: WebhookStore;
  readonly locks: LockStore;
  readonly backoff: BackoffTable;
  /** Key rotation's view of every encrypted column (./rotation.ts). */
  readonly secrets: SecretTablePort;
  close(): Promise<void>;
}

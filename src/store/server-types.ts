/**
 * Storage for `dropkey serve` (docs/deploying.md): admin users, sessions, API keys, the audit log, connect links, pending
 * OAuth logins and the first-run setup token. Separate from the core Store so the CLI never loads it, and so a
 * PostgreSQL driver (docs/decisions/0002-postgres-store.md) can implement both interfaces on one database.
 *
 * The store is deliberately dumb about credentials: callers hand it HASHES (SHA-256 hex of high-entropy random
 * values, a scrypt string for passwords), computed in src/server/security/secrets.ts, and lookups are by hash.
 * The one secret it keeps reversibly, the PKCE code verifier of a pending login, is encrypted with the Keyring.
 *
 * Every method is async so network drivers fit; every time is epoch ms; "now" is passed in by the caller (an
 * injected clock) so expiry is testable and identical across instances.
 */

export type ApiPermission = 'token:read' | 'proxy' | 'admin';
export const API_PERMISSIONS: readonly ApiPermission[] = ['token:read', 'proxy', 'admin'];

export interface AdminUser {
  id: string;
  email: string;
  createdAt: number;
  lastLoginAt: number | null;
}

/** Admin row with its password hash (scrypt string); only the sign-in code reads it. */
export interface AdminCredentials extends AdminUser {
  passwordHash: string;
}

export interface SessionRecord {
  /** SHA-256 hex of the cookie value; the raw value exists only in the browser. */
  idHash: string;
  userId: string;
  /** Per-session CSRF secret (random, not derived from the id), for the UI's double-submit/synchronizer token. */
  csrfToken: string;
  createdAt: number;
  expiresAt: number;
}

export interface ApiKeyRecord {
  id: string;
  name: string;
  /** The first characters of the key (`dk_abcd1234`), shown in lists so users can tell keys apart. */
  prefix: string;
  /** SHA-256 hex of the whole key. */
  hash: string;
  permissions: ApiPermission[];
  /** Connection names the key may use, or '*' for all. */
  connections: string[] | '*';
  createdAt: number;
  createdBy: string;
  lastUsedAt: number | null;
  revokedAt: number | null;
  /** Tokens handed out with this key (flushed from memory periodically). */
  tokenHandouts: number;
}

export interface NewApiKey {
  name: string;
  prefix: string;
  hash: string;
  permissions: ApiPermission[];
  connections: string[] | '*';
  createdBy: string;
}

export interface AuditEntry {
  id: number;
  at: number;
  /** Who: `admin:<email>`, `apikey:<name>`, `link:<id>`, `cli`, `system`. */
  actor: string;
  /** What, dotted: `connection.created`, `apikey.revoked`, `token.handout`, ... */
  action: string;
  /** On what (a connection or key name), or null. */
  target: string | null;
  /** Extra facts; never secrets (callers pass ids and counts only). */
  details: Record<string, unknown>;
}

export type NewAuditEntry = Omit<AuditEntry, 'id'>;

/**
 * A counted entry (token hand-outs): one row per `bucket` key, e.g. key, connection and hour. The first count
 * inserts the row with `at` and `details` plus `count`; later ones add to details.count in place.
 */
export interface AuditCount {
  bucket: string;
  at: number;
  actor: string;
  action: string;
  target: string | null;
  count: number;
}

export interface ConnectLinkRecord {
  id: string;
  /** SHA-256 hex of the link token. */
  tokenHash: string;
  connection: string;
  app: string;
  createdAt: number;
  createdBy: string;
  expiresAt: number;
  /** Set once an owner completed the connection; the link is then dead. */
  usedAt: number | null;
}

/** How /oauth/callback answers once a login finishes: which page started it. */
export type ReturnMode = 'popup' | 'redirect' | 'link';

export interface PendingOAuthRecord {
  id: string;
  /** SHA-256 hex of the OAuth `state` sent to Dropbox. */
  stateHash: string;
  /** SHA-256 hex of the browser-binding cookie the flow started with (state is bound to that browser). */
  bindingHash: string;
  /** The signed-in session that started it (popup/redirect), or null (connect links need no login). */
  sessionIdHash: string | null;
  /** The connect link it belongs to (link mode). */
  linkId: string | null;
  connection: string;
  app: string;
  /** PKCE verifier; encrypted at rest, decrypted here. */
  codeVerifier: string;
  redirectUri: string;
  scopes: string[];
  returnMode: ReturnMode;
  /** Redirect mode: a same-origin path to send the browser back to. */
  returnTo: string | null;
  actor: string;
  createdAt: number;
  expiresAt: number;
}

export type NewPendingOAuth = Omit<PendingOAuthRecord, 'id' | 'createdAt'>;

export interface ServerStore {
  // ---- admins
  countAdmins(): Promise<number>;
  /** Fails with DROPKEY_ALREADY_EXISTS if the email is taken (case-insensitive). */
  createAdmin(input: { email: string; passwordHash: string }, now: number): Promise<AdminUser>;
  /**
   * Creates the first admin only if none exists and the setup token (hash) is valid, in one transaction that also
   * consumes every setup token. Returns undefined (and changes nothing) otherwise; two callers racing with
   * different valid tokens get one admin.
   */
  createFirstAdmin(input: { email: string; passwordHash: string; setupTokenHash: string }, now: number): Promise<AdminUser | undefined>;
  getAdminByEmail(email: string): Promise<AdminCredentials | undefined>;
  getAdmin(id: string): Promise<AdminUser | undefined>;
  listAdmins(): Promise<AdminUser[]>;
  setAdminPassword(id: string, passwordHash: string): Promise<void>;
  recordAdminLogin(id: string, now: number): Promise<void>;

  // ---- first-run setup tokens
  /**
   * Adds a setup token (and drops expired ones). Earlier tokens stay valid until they expire or the first admin is
   * created: every instance of a cluster prints its own setup URL at start, and each of them must work.
   */
  addSetupToken(tokenHash: string, expiresAt: number, now: number): Promise<void>;
  /** Whether this setup token is valid (the setup page asks before showing its form). */
  checkSetupToken(tokenHash: string, now: number): Promise<boolean>;

  // ---- sessions
  createSession(s: SessionRecord): Promise<void>;
  /** The live session with this id hash (expired ones are not returned). */
  getSession(idHash: string, now: number): Promise<SessionRecord | undefined>;
  deleteSession(idHash: string): Promise<void>;
  deleteSessionsOf(userId: string): Promise<void>;

  // ---- API keys
  /** Fails with DROPKEY_ALREADY_EXISTS if a live (unrevoked) key has this name. */
  createApiKey(k: NewApiKey, now: number): Promise<ApiKeyRecord>;
  getApiKeyByHash(hash: string): Promise<ApiKeyRecord | undefined>;
  /** Live keys first, then revoked ones. */
  listApiKeys(): Promise<ApiKeyRecord[]>;
  /** Revokes the live key with this name; fails with DROPKEY_NOT_FOUND if there is none. */
  revokeApiKey(name: string, now: number): Promise<ApiKeyRecord>;
  /** Adds usage counted in memory (hand-outs, last use) in one write. */
  recordApiKeyUsage(usage: { id: string; lastUsedAt: number; tokenHandouts: number }[]): Promise<void>;

  // ---- audit log
  appendAudit(entries: NewAuditEntry[]): Promise<void>;
  /** Adds counts to their bucket rows (see AuditCount), inserting the rows that do not exist yet; one transaction. */
  addAuditCounts(counts: AuditCount[]): Promise<void>;
  /** Deletes at most `limit` entries written before `before` (epoch ms), oldest first; returns how many went. */
  pruneAudit(before: number, limit: number): Promise<number>;
  /** Newest first. */
  listAudit(query?: { limit?: number; beforeId?: number; action?: string; target?: string }): Promise<AuditEntry[]>;

  // ---- connect links
  createConnectLink(l: Omit<ConnectLinkRecord, 'id' | 'usedAt' | 'createdAt'>, now: number): Promise<ConnectLinkRecord>;
  /** The link whatever its state (callers check expiry and use, to say which one went wrong). */
  getConnectLinkByHash(tokenHash: string): Promise<ConnectLinkRecord | undefined>;
  getConnectLink(id: string): Promise<ConnectLinkRecord | undefined>;
  /** Atomically marks an unused, unexpired link used; false if it was used or expired (someone else won). */
  claimConnectLink(id: string, now: number): Promise<boolean>;
  /** Undoes a claim when the login behind it failed, so the owner can try again while the link lives. */
  releaseConnectLink(id: string): Promise<void>;
  listConnectLinks(now: number): Promise<ConnectLinkRecord[]>;

  // ---- pending OAuth logins
  createPendingOAuth(p: NewPendingOAuth, now: number): Promise<PendingOAuthRecord>;
  /** Returns and deletes the pending login for this state hash, in one step (single use); expired → undefined. */
  takePendingOAuth(stateHash: string, now: number): Promise<PendingOAuthRecord | undefined>;

  // ---- operations
  /** Throws when the database cannot be read (readiness probe). */
  ping(): Promise<void>;
  /** Deletes expired sessions, links, pending logins and setup tokens. */
  purgeExpired(now: number): Promise<void>;

  // ---- connection changes (the token cache's invalidation feed, src/server/services/tokens.ts)
  /**
   * The names of connections deleted, or changed in a way that ends a token cached from them (records.ts
   * endsCachedToken), recorded at or after `since` (the DATABASE's clock, epoch ms; null for none), and the
   * database's clock now, to pass back as the next `since` (minus an overlap: a write is recorded a little before
   * it commits). Written by triggers, so changes by every process and instance are listed; one index range read.
   */
  connectionChanges(since: number | null): Promise<{ now: number; names: string[] }>;
  /** Deletes change records older than `keepMs` before the database's clock; returns how many. */
  pruneConnectionChanges(keepMs: number): Promise<number>;
}

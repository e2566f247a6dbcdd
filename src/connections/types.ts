import type { DropboxUrls } from '../dropbox/hosts.js';
import type { AppAccess, ConnectionState, Store } from '../store/types.js';
import type { RetryOptions } from '../dropbox/retry.js';
import type { Sleep } from '../sleep.js';
import type { Logger } from './redact.js';

export type { RetryOptions, Sleep };

export interface DropkeyOptions {
  /** Data directory (the store's home). Ignored when `store` is given. */
  home?: string;
  /** An already opened store; Dropkey then does not close it. */
  store?: Store;
  /** Master key for secrets at rest (otherwise the store's key file is used). */
  masterKey?: string;
  /** Another store than SQLite in `home`, e.g. `postgres://...` (see store/index.ts selectDriver). */
  databaseUrl?: string;
  /** Dropbox base URLs (default: real Dropbox). */
  urls?: DropboxUrls;
  fetch?: typeof fetch;
  /** Clock in epoch ms (default Date.now). */
  now?: () => number;
  sleep?: Sleep;
  /** Any pino-compatible logger; everything it receives is redacted first. */
  logger?: Partial<Logger>;
  /** Refresh this long before expiry (default 300 s, as the official SDKs do, https://developers.dropbox.com/oauth-guide). */
  refreshMarginSeconds?: number;
  retry?: RetryOptions;
  /** How long to wait for another process's refresh of the same connection (default: a whole refresh with retries). */
  lockWaitMs?: number;
  /**
   * Called after each change the facade makes (apps added, updated or removed; connections created, reconnected,
   * refreshed or revoked; a forced refresh that failed), for an audit log and webhooks. What it throws is logged,
   * never thrown: the change already happened.
   */
  onActivity?: ActivitySink;
}

export interface AppInfo {
  name: string;
  key: string;
  /** Whether a secret is stored (never the secret itself). */
  hasSecret: boolean;
  scopes: string[];
  team: boolean;
  access: AppAccess | null;
  createdAt: number;
  updatedAt: number;
}

/** What dropkey tells about a connection. It never carries a token. */
export interface ConnectionInfo {
  name: string;
  app: string;
  accountId: string | null;
  email: string | null;
  displayName: string | null;
  teamId: string | null;
  teamName: string | null;
  /** Team apps: the admin who linked the app, as Dropbox named them (null: unknown, or a user app). */
  linkedBy: { name: string | null; email: string | null } | null;
  scopes: string[];
  /** Epoch ms the current access token expires; null when unknown or long-lived. */
  expiresAt: number | null;
  state: ConnectionState;
  /** Whether dropkey can mint new access tokens for it (it holds a refresh token). */
  refreshable: boolean;
  lastError: string | null;
  lastRefreshAt: number | null;
  createdAt: number;
  updatedAt: number;
}

export interface TokenInfo {
  accessToken: string;
  /** Epoch ms; null when unknown or long-lived. */
  expiresAt: number | null;
  scopes: string[];
  accountId: string | null;
  teamId: string | null;
  connection: string;
  /** The account's email, when known (absent where the caller had no record at hand). */
  email?: string | null;
}

export interface GetTokenOptions {
  /** The token must stay valid at least this long (default: the refresh margin). */
  minValidSeconds?: number;
  /** Refresh even when the current token is fresh enough (e.g. after a 401 expired_access_token). */
  forceRefresh?: boolean;
  /**
   * With forceRefresh: the token Dropbox just refused. If the stored token already differs (another caller
   * refreshed meanwhile), that one is returned without a new refresh.
   */
  rejectedToken?: string;
  signal?: AbortSignal;
  /**
   * Token-endpoint attempts for a refresh this call starts (default: the retry policy's, 4). A background
   * refresher that paces itself asks for 1, so it sees a 429 at once and waits out its Retry-After for all its work.
   */
  attempts?: number;
}

/** Everything a pending login needs to be finished later, possibly by another process. */
export interface PendingLogin {
  app: string;
  connection: string;
  authorizeUrl: string;
  state: string;
  codeVerifier: string;
  /** Absent for the no-redirect flow: Dropbox then shows the code for the user to paste. */
  redirectUri?: string;
  scopes: string[];
}

/** The connection events webhooks know (src/server/events.ts uses this list). */
export type ConnectionEventType =
  | 'connection.created'
  | 'connection.reconnected'
  | 'connection.refresh_failed'
  | 'connection.needs_reauth'
  | 'connection.revoked';

/**
 * Something the facade did on a caller's behalf: one audit entry (`action` on `target`, with `details` that never
 * hold a secret) and, when it changes a connection in a way webhooks announce, the `event` it causes. A refresh
 * that failed carries the `error` (whoever announces it decides which event that is).
 */
export interface Activity {
  action: string;
  target: string | null;
  details: Record<string, unknown>;
  event?: { type: ConnectionEventType; connection: string; data: Record<string, unknown> };
  error?: unknown;
}

/**
 * Where the facade reports its activity (DropkeyOptions.onActivity). The CLI wires it to the server store's audit
 * log and webhook outbox; the server leaves it unset (its routes audit and announce with their own actor). It runs
 * after the action succeeded (or a refresh failed): whatever it throws is logged as a warning, never thrown.
 */
export type ActivitySink = (activity: Activity) => void | Promise<void>;

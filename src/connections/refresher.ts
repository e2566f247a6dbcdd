/**
 * The refresher: hands out access tokens that stay valid long enough, refreshing them when needed, and is safe
 * under concurrency (Nango's model, https://github.com/NangoHQ/nango):
 *   1. one in-flight refresh per connection inside the process (callers share the promise);
 *   2. a store lock `refresh:<name>` across processes and instances;
 *   3. after taking the lock, the connection is read again: if another process already refreshed it, its token
 *      is used and Dropbox is not called.
 * Refresh tokens do not rotate at Dropbox (https://www.dropbox.com/developers/documentation/http/documentation#oauth2-token: the refresh response carries none), so the stored
 * refresh token is only ever replaced by a non-empty new one.
 */
import { DropboxApiError, DropkeyError, ErrorCodes, type Fix } from '../errors.js';
import type { AppRecord, ConnectionPatch, ConnectionRecord, Store } from '../store/types.js';
import type { Logger } from './redact.js';
import { redactText } from './redact.js';
import { type ResolvedRetry, withRetry } from '../dropbox/retry.js';
import type { Sleep } from '../sleep.js';

/** What one refresh-token grant returned (already validated by the oauth layer). */
export interface RefreshResult {
  accessToken: string;
  /** Epoch ms, counted from when the request was sent; null when Dropbox sent no expires_in. */
  expiresAt: number | null;
  /** Granted scopes when Dropbox listed them. */
  scopes: string[] | null;
  /** Present only if Dropbox ever rotates refresh tokens. */
  refreshToken: string | null;
}

export type RefreshGrant = (args: {
  app: AppRecord;
  refreshToken: string;
  /** The caller's cancellation signal; per-attempt timeouts are the grant's own job. */
  signal: AbortSignal | undefined;
  /** Ask for this subset of the granted scopes (Dropbox then lists them in the answer). */
  scopes?: readonly string[];
}) => Promise<RefreshResult>;

export interface RefresherDeps {
  store: Store;
  grant: RefreshGrant;
  now: () => number;
  sleep: Sleep;
  logger: Logger;
  marginMs: number;
  retry: ResolvedRetry;
  lockWaitMs: number;
}

export interface FreshOptions {
  minValidSeconds?: number;
  forceRefresh?: boolean;
  rejectedToken?: string;
  signal?: AbortSignal;
  /** Token-endpoint attempts for a refresh this call starts (default: the retry policy's). */
  attempts?: number;
}

/** After a failed proactive refresh, the still-valid token is served without new attempts for this long. */
const COOLDOWN_MS = 30_000;

/** Lease length of the refresh lock; see #refreshLocked. */
export const LOCK_TTL_MS = 15_000;

export type LoginFix = Extract<Fix, { action: 'login' }>;

/** The fix for a connection Dropbox no longer accepts: a new login under the same name and app. */
export function loginFix(rec: Pick<ConnectionRecord, 'name' | 'app'>): LoginFix {
  return { action: 'login', connection: rec.name, app: rec.app };
}

export function notFound(name: string): DropkeyError {
  return new DropkeyError(ErrorCodes.NOT_FOUND, `No connection named "${name}".`, {
    hint: 'Check the name against the list of connections, or create this one with a browser login.',
    fix: { action: 'login', connection: name },
    details: { connection: name },
  });
}

/** The error for a connection whose refresh token Dropbox rejected: fail fast, with the exact fix. */
export function reauthError(rec: ConnectionRecord, cause?: unknown): DropkeyError {
  const why = rec.lastError ? ` ${rec.lastError}` : '';
  return new DropkeyError(
    ErrorCodes.REAUTH_REQUIRED,
    `Connection "${rec.name}" must be authorized again: Dropbox no longer accepts its refresh token.${why}`,
    {
      hint: 'Connect it again with a browser login.',
      fix: loginFix(rec),
      details: { connection: rec.name, app: rec.app },
      ...(cause === undefined ? {} : { cause }),
    },
  );
}

function expiredNoRefresh(rec: ConnectionRecord, remainingMs: number | null): DropkeyError {
  const what =
    remainingMs !== null && remainingMs > 0
      ? `Connection "${rec.name}" has only an access token, valid for ${Math.floor(remainingMs / 1000)} more seconds (less than asked for), and no refresh token to get a new one.`
      : `The access token of connection "${rec.name}" has expired, and the connection has no refresh token to get a new one (it was imported from a pasted access token).`;
  return new DropkeyError(ErrorCodes.TOKEN_EXPIRED, what, {
    hint: 'Connect it for good with a browser login, or import a refresh token if you hold one.',
    fix: loginFix(rec),
    details: { connection: rec.name, app: rec.app },
  });
}

/** Waits for `p` unless `signal` aborts first (p itself carries on for its other waiters). */
function abortable<T>(p: Promise<T>, signal: AbortSignal): Promise<T> {
  const cancelled = () => new DropkeyError(ErrorCodes.CANCELLED, 'Waiting for the token refresh was cancelled.', { cause: signal.reason });
  if (signal.aborted) return Promise.reject(cancelled());
  return new Promise<T>((resolve, reject) => {
    const onAbort = (): void => reject(cancelled());
    signal.addEventListener('abort', onAbort, { once: true });
    p.then(resolve, reject).finally(() => signal.removeEventListener('abort', onAbort));
  });
}

function remainingMs(rec: ConnectionRecord, now: number): number | null {
  return rec.accessTokenExpiresAt === null ? null : rec.accessTokenExpiresAt - now;
}

/** Long-lived tokens (no expiry) count as fresh only when there is nothing to refresh them with. */
function freshEnough(rec: ConnectionRecord, now: number, needMs: number): boolean {
  if (!rec.accessToken) return false;
  const left = remainingMs(rec, now);
  if (left === null) return !rec.refreshToken;
  return left >= needMs;
}

function notExpired(rec: ConnectionRecord, now: number): boolean {
  if (!rec.accessToken) return false;
  const left = remainingMs(rec, now);
  return left === null || left > 0;
}

/** A stale expectedVersion (src/store/records.ts); store/index.ts has the same test, but is too heavy to import here. */
function isVersionConflict(err: unknown): boolean {
  return err instanceof DropkeyError && err.code === ErrorCodes.STORE && err.details?.['conflict'] === true;
}

function isOAuthError(err: unknown, code: string): err is DropboxApiError {
  return err instanceof DropboxApiError && (err.summary === code || err.summary.startsWith(`${code}:`));
}

function describeOAuthError(err: DropboxApiError): string {
  const body = err.error as { error_description?: unknown } | null | undefined;
  const desc = body && typeof body === 'object' && typeof body.error_description === 'string' ? body.error_description : '';
  return redactText(desc ? `${err.summary}: ${desc}` : err.summary).slice(0, 300);
}

/**
 * Records handed back by a refresh that failed while the current token still works (the fallback below), mapped to
 * the error. Every caller sharing that refresh gets the same object: token readers ignore the mark, while a caller
 * that asked for a refresh (Dropkey.refresh, `dropkey refresh`, the server's refresh route and "Refresh now") must
 * be told it failed (see refreshFallbackError).
 */
const fallbackErrors = new WeakMap<ConnectionRecord, unknown>();

/** The refresh error behind a fallback record (the old, still valid token), or undefined after a real refresh. */
export function refreshFallbackError(rec: ConnectionRecord): unknown {
  return fallbackErrors.get(rec);
}

export class Refresher {
  readonly #deps: RefresherDeps;
  readonly #inflight = new Map<string, Promise<ConnectionRecord>>();
  /** Per connection: until when a failed proactive refresh is not retried while the current token works. */
  readonly #cooldownUntil = new Map<string, number>();

  constructor(deps: RefresherDeps) {
    this.#deps = deps;
  }

  /** Fails fast (no network) for connections that cannot give a token. */
  assertUsable(rec: ConnectionRecord): void {
    if (rec.state === 'needs_reauth') throw reauthError(rec);
    if (rec.state === 'revoked') {
      throw new DropkeyError(ErrorCodes.REAUTH_REQUIRED, `Connection "${rec.name}" was revoked.`, {
        hint: 'Connect it again with a browser login.',
        fix: loginFix(rec),
        details: { connection: rec.name, app: rec.app },
      });
    }
  }

  /** Returns the connection with an access token valid for at least max(margin, minValidSeconds). */
  async fresh(name: string, options: FreshOptions = {}): Promise<ConnectionRecord> {
    const { store, now, marginMs } = this.#deps;
    const minValidMs = options.minValidSeconds === undefined ? undefined : options.minValidSeconds * 1000;
    const needMs = Math.max(marginMs, minValidMs ?? 0);
    const startedAt = now();
    const rec = await store.getConnection(name);
    if (!rec) throw notFound(name);
    this.assertUsable(rec);
    if (!options.forceRefresh && freshEnough(rec, startedAt, needMs)) return rec;
    if (options.forceRefresh && options.rejectedToken !== undefined && rec.accessToken !== options.rejectedToken && notExpired(rec, startedAt)) {
      return rec;
    }
    if (!rec.refreshToken) return this.#accessOnly(rec, startedAt, minValidMs, options.forceRefresh === true);
    const cooldown = this.#cooldownUntil.get(name);
    if (cooldown !== undefined) {
      const left = remainingMs(rec, startedAt);
      if (!options.forceRefresh && startedAt < cooldown && rec.accessToken && left !== null && left > Math.max(0, minValidMs ?? 0)) return rec;
      this.#cooldownUntil.delete(name);
    }

    let p = this.#inflight.get(name);
    if (!p) {
      // The shared refresh belongs to no single caller: it runs without their signals (its time is bounded by
      // the retry budget), and each caller stops waiting on its own signal instead of cancelling the others.
      const shared: FreshOptions = { ...options };
      delete shared.signal;
      p = this.#refreshLocked(name, needMs, minValidMs, rec.accessToken, shared).finally(() => {
        this.#inflight.delete(name);
      });
      this.#inflight.set(name, p);
    }
    return options.signal ? abortable(p, options.signal) : p;
  }

  /** A connection imported from an access token: usable until it expires, never refreshable. */
  #accessOnly(rec: ConnectionRecord, now: number, minValidMs: number | undefined, forced: boolean): ConnectionRecord {
    const left = remainingMs(rec, now);
    const ok = rec.accessToken && !forced && (left === null || left > Math.max(0, minValidMs ?? 0));
    if (ok) return rec;
    throw expiredNoRefresh(rec, left);
  }

  async #refreshLocked(
    name: string,
    needMs: number,
    minValidMs: number | undefined,
    seenToken: string | null,
    options: FreshOptions,
  ): Promise<ConnectionRecord> {
    const { store, lockWaitMs } = this.#deps;
    // The store extends the lease (heartbeat) while we work, so the ttl only bounds how long a holder that died
    // (kill -9) blocks the others.
    const ttlMs = LOCK_TTL_MS;
    return store.withLock(
      `refresh:${name}`,
      { ttlMs, waitMs: Math.max(lockWaitMs, 1), ...(options.signal ? { signal: options.signal } : {}) },
      async () => {
        const now = this.#deps.now();
        const cur = await store.getConnection(name);
        if (!cur) throw notFound(name);
        this.assertUsable(cur);
        if (!options.forceRefresh && freshEnough(cur, now, needMs)) return cur;
        // Another process refreshed while we waited for the lock: its token is as new as ours would be.
        if (cur.accessToken !== seenToken && notExpired(cur, now)) return cur;
        if (!cur.refreshToken) return this.#accessOnly(cur, now, minValidMs, false);
        return this.#refreshNow(cur, cur.refreshToken, minValidMs, options.signal, options.attempts);
      },
    );
  }

  async #refreshNow(
    cur: ConnectionRecord,
    refreshToken: string,
    minValidMs: number | undefined,
    signal?: AbortSignal,
    attempts?: number,
  ): Promise<ConnectionRecord> {
    const { store, grant, now, sleep, logger } = this.#deps;
    const retry = attempts === undefined ? this.#deps.retry : { ...this.#deps.retry, attempts: Math.max(1, Math.floor(attempts)) };
    const app = await store.getApp(cur.app);
    if (!app) {
      throw new DropkeyError(ErrorCodes.NOT_FOUND, `Connection "${cur.name}" uses app "${cur.app}", which no longer exists.`, {
        hint: 'Register the app again with its key (and secret).',
        fix: { action: 'app-add', app: cur.app },
        details: { connection: cur.name, app: cur.app },
      });
    }
    let result: RefreshResult;
    try {
      result = await withRetry(
        (attemptSignal) => grant({ app, refreshToken, signal: attemptSignal }),
        {
          retry,
          sleep,
          ...(signal ? { signal } : {}),
          onRetry: (info) =>
            logger.warn({ connection: cur.name, attempt: info.attempt, waitMs: info.waitMs }, `token refresh failed, retrying: ${info.reason}`),
        },
      );
    } catch (err) {
      return this.#refreshFailed(cur, err, minValidMs);
    }
    const patch: ConnectionPatch = {
      accessToken: result.accessToken,
      accessTokenExpiresAt: result.expiresAt,
      lastRefreshAt: now(),
      lastError: null,
      state: 'active',
    };
    if (result.scopes && result.scopes.length > 0) patch.scopes = result.scopes;
    // Only a non-empty, different refresh token replaces the stored one (Dropbox does not rotate them today).
    if (result.refreshToken && result.refreshToken !== refreshToken) patch.refreshToken = result.refreshToken;
    let updated: ConnectionRecord;
    try {
      updated = await store.updateConnection(cur.name, patch, { expectedVersion: cur.version });
    } catch (err) {
      // The row changed under us: only possible if our lock lease expired (a stalled process) and another
      // refresher or a new login wrote meanwhile. Theirs is as good as ours; never overwrite it.
      if (!isVersionConflict(err)) throw err;
      const again = await store.getConnection(cur.name);
      if (again && notExpired(again, now())) return again;
      throw err;
    }
    logger.info({ connection: cur.name, expiresAt: updated.accessTokenExpiresAt }, 'access token refreshed');
    return updated;
  }

  async #refreshFailed(cur: ConnectionRecord, err: unknown, minValidMs: number | undefined): Promise<ConnectionRecord> {
    const { store, logger, now } = this.#deps;
    // Written only over the row this refresh read (expectedVersion), like a successful refresh: if the row changed
    // meanwhile (our lock lease lapsed and a new login or another refresher wrote), the failure of our old
    // credentials says nothing about theirs, so the row is left as they wrote it and handed back.
    const record = async (patch: ConnectionPatch): Promise<{ rec: ConnectionRecord; replaced: boolean }> => {
      try {
        return { rec: await store.updateConnection(cur.name, patch, { expectedVersion: cur.version }), replaced: false };
      } catch (storeErr) {
        if (isVersionConflict(storeErr)) {
          const again = await store.getConnection(cur.name).catch(() => undefined);
          if (again) return { rec: again, replaced: true };
        }
        logger.error({ connection: cur.name, err: storeErr }, 'could not record the refresh failure');
        return { rec: cur, replaced: false };
      }
    };
    if (isOAuthError(err, 'invalid_grant') || (err instanceof DropkeyError && err.code === ErrorCodes.REAUTH_REQUIRED)) {
      const said = err instanceof DropboxApiError ? ` (Dropbox said: ${describeOAuthError(err)})` : '';
      const { rec: updated, replaced } = await record({
        state: 'needs_reauth',
        lastError:
          `Dropbox rejected the refresh token${said}. The app was disconnected from the account, ` +
          'the token was revoked, or it was replaced by a newer login.',
      });
      if (replaced && updated.state === 'active' && notExpired(updated, now())) {
        logger.warn({ connection: cur.name }, 'refresh token rejected, but the connection was reconnected meanwhile; using the new token');
        return updated;
      }
      logger.warn({ connection: cur.name }, 'refresh token rejected; connection needs a new login');
      throw reauthError(updated.state === 'needs_reauth' ? updated : { ...updated, lastError: `Dropbox rejected the refresh token${said}.` }, err);
    }
    if (err instanceof DropkeyError && err.details?.['reason'] === 'secret_missing') {
      // The app's secret was removed after this connection was authorized with it (protocol.ts): its own words.
      await record({ lastError: `${err.message}.` });
      throw new DropkeyError(ErrorCodes.INVALID_CLIENT, `Refreshing connection "${cur.name}" failed: ${err.message}.`, {
        cause: err,
        ...(err.hint === undefined ? {} : { hint: err.hint }),
        ...(err.fix === undefined ? {} : { fix: err.fix }),
        details: { connection: cur.name, app: cur.app, reason: 'secret_missing' },
      });
    }
    if (isOAuthError(err, 'invalid_client') || (err instanceof DropkeyError && err.code === ErrorCodes.INVALID_CLIENT)) {
      await record({ lastError: `Dropbox rejected the app key or secret of app "${cur.app}" (invalid_client).` });
      throw new DropkeyError(ErrorCodes.INVALID_CLIENT, `Dropbox rejected the app key or secret of app "${cur.app}" while refreshing connection "${cur.name}".`, {
        cause: err,
        hint: 'Copy the secret from the App Console (Settings tab, click Show) and store it again.',
        fix: { action: 'app-update', app: cur.app, field: 'secret' },
        details: { connection: cur.name, app: cur.app },
      });
    }
    const message = err instanceof Error ? redactText(err.message) : 'unknown error';
    const { rec: recorded } = await record({ lastError: `Refreshing the access token failed: ${message}` });
    // A proactive refresh that fails while the current token still works must not break the caller.
    const left = remainingMs(cur, now());
    if (cur.accessToken && left !== null && left > Math.max(0, minValidMs ?? 0) && !(err instanceof DropkeyError && err.code === ErrorCodes.CANCELLED)) {
      logger.warn({ connection: cur.name, remainingMs: left }, 'refresh failed; using the current token until it expires');
      // Nango's cooldown: while Dropbox is failing, callers in this process keep the working token instead of
      // each waiting through a full round of retries.
      this.#cooldownUntil.set(cur.name, now() + COOLDOWN_MS);
      const fallback: ConnectionRecord = { ...recorded, accessToken: cur.accessToken, accessTokenExpiresAt: cur.accessTokenExpiresAt };
      fallbackErrors.set(fallback, err);
      return fallback;
    }
    throw err;
  }
}

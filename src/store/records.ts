/**
 * What both store drivers (./sqlite, ./postgres) share about records: the row shape, the input rules and the
 * errors. One copy, so the drivers accept and refuse the same input with the same DROPKEY_* codes and words (the
 * contract suite in ./contract.ts runs against each); only the column encodings differ (SQLite keeps scopes as
 * JSON text and `team` as 0/1, PostgreSQL as text[] and boolean).
 */
import { DropkeyError, ErrorCodes, type Fix } from '../errors.js';
import type { Keyring } from './cipher.js';
import type { AppRecord, ConnectionPatch, ConnectionRecord, ConnectionState, ConnectionSummary, ConnectionPageQuery, ConnectionListing } from './types.js';

/** Chooses the keyring once the database is open, knowing whether it already holds encrypted data. */
export type KeyringProvider = (db: { hasEncryptedData: boolean }) => Keyring;

/** The `meta` row whose encrypted value proves, at open, that the master key is the one the data was written with. */
export const KEY_CHECK = 'key_check';
export const KEY_CHECK_CONTEXT = JSON.stringify(['meta', KEY_CHECK, 'value']);

export interface AppRowOf<Scopes, Team> {
  name: string;
  app_key: string;
  secret_enc: string | null;
  scopes: Scopes;
  team: Team;
  access: string | null;
  created_at: number;
  updated_at: number;
}

/** Every column of an app row (AppRowOf), for statements that name their columns. */
export const APP_COLUMNS = ['name', 'app_key', 'secret_enc', 'scopes', 'team', 'access', 'created_at', 'updated_at'] as const satisfies readonly (keyof AppRowOf<unknown, unknown>)[];

export interface ConnectionRowOf<Scopes> {
  name: string;
  app: string;
  account_id: string | null;
  team_id: string | null;
  email: string | null;
  display_name: string | null;
  team_name: string | null;
  linked_by_name: string | null;
  linked_by_email: string | null;
  scopes: Scopes;
  access_token_enc: string | null;
  access_token_expires_at: number | null;
  refresh_token_enc: string | null;
  state: string;
  last_error: string | null;
  last_refresh_at: number | null;
  created_at: number;
  updated_at: number;
  version: number;
}

export const CONNECTION_COLUMNS = [
  'name',
  'app',
  'account_id',
  'team_id',
  'email',
  'display_name',
  'team_name',
  'linked_by_name',
  'linked_by_email',
  'scopes',
  'access_token_enc',
  'access_token_expires_at',
  'refresh_token_enc',
  'state',
  'last_error',
  'last_refresh_at',
  'created_at',
  'updated_at',
  'version',
] as const satisfies readonly (keyof ConnectionRowOf<unknown>)[];

/**
 * The trigger condition (SQL over OLD and NEW) of an update that ends a token cached from a connection row, in both
 * drivers' change logs (`connection_changes`): its state, app or account changed, or a new version brought new
 * credentials that are not a refresh (a new refresh token, or a new access token with no new last_refresh_at: a new
 * login or an imported token). A refresh is left out on purpose: the token it replaced stays valid at Dropbox until it
 * expires. A key rotation rewrites ciphertexts without a new version: left out too. `differs`/`same` are the
 * driver's null-safe comparisons (SQLite IS NOT / IS, PostgreSQL IS DISTINCT FROM / IS NOT DISTINCT FROM).
 */
export function endsCachedToken(differs: string, same: string): string {
  return `OLD.state ${differs} NEW.state OR OLD.app ${differs} NEW.app OR OLD.account_id ${differs} NEW.account_id
          OR (OLD.version ${differs} NEW.version AND (OLD.refresh_token_enc ${differs} NEW.refresh_token_enc
            OR (OLD.access_token_enc ${differs} NEW.access_token_enc AND OLD.last_refresh_at ${same} NEW.last_refresh_at)))`;
}

/** Decrypts one secret column of a row (the driver binds it to its table, row and field). */
export type OpenSecret = (value: string | null, field: string) => string | null;

/**
 * A secret of one record that cannot be decrypted names that record and field, with the command that stores it
 * again. A master key this dropkey does not have (details.knownKeyIds) is about every secret: passed on as is.
 */
function namedOpen(open: OpenSecret, what: string, fix: Fix): OpenSecret {
  return (value, field) => {
    try {
      return open(value, field);
    } catch (err) {
      if (!damagedSecret(err)) throw err;
      throw new DropkeyError(ErrorCodes.KEY_ERROR, `the stored ${field} of ${what} cannot be decrypted: ${err.message}`, {
        cause: err,
        hint: 'store it again (or restore the database from a backup)',
        fix,
        details: { ...err.details, record: what, field },
      });
    }
  };
}

/** One damaged ciphertext (altered, truncated, moved), as opposed to a missing master key. */
function damagedSecret(err: unknown): err is DropkeyError {
  return err instanceof DropkeyError && err.code === ErrorCodes.KEY_ERROR && err.details?.['knownKeyIds'] === undefined;
}

export function toAppRecord(r: AppRowOf<unknown, unknown>, scopes: string[], team: boolean, open: OpenSecret): AppRecord {
  return {
    name: r.name,
    key: r.app_key,
    secret: namedOpen(open, `app "${r.name}"`, { action: 'app-update', app: r.name, field: 'secret' })(r.secret_enc, 'secret'),
    scopes,
    team,
    access: r.access === 'full' || r.access === 'app_folder' ? r.access : null,
    createdAt: r.created_at,
    updatedAt: r.updated_at,
  };
}

/** The columns of a connection row every reading of it shares: all but the token ciphertexts. */
function connectionFields(r: Omit<ConnectionRowOf<unknown>, 'access_token_enc' | 'refresh_token_enc'>, scopes: string[]) {
  return {
    name: r.name,
    app: r.app,
    accountId: r.account_id,
    teamId: r.team_id,
    email: r.email,
    displayName: r.display_name,
    teamName: r.team_name,
    linkedByName: r.linked_by_name ?? null,
    linkedByEmail: r.linked_by_email ?? null,
    scopes,
    accessTokenExpiresAt: r.access_token_expires_at,
    state: r.state as ConnectionRecord['state'],
    lastError: r.last_error,
    lastRefreshAt: r.last_refresh_at,
    createdAt: r.created_at,
    updatedAt: r.updated_at,
    version: r.version,
  };
}

export function toConnectionRecord(r: ConnectionRowOf<unknown>, scopes: string[], rawOpen: OpenSecret): ConnectionRecord {
  const open = namedOpen(rawOpen, `connection "${r.name}"`, { action: 'login', connection: r.name, app: r.app });
  return {
    ...connectionFields(r, scopes),
    accessToken: open(r.access_token_enc, 'access_token'),
    refreshToken: open(r.refresh_token_enc, 'refresh_token'),
  };
}

/** How a driver stores what differs between drivers: sealed secrets (bound to the row), scopes, the team flag. */
export interface RowEncoding<S, T = never> {
  seal: (value: string | null, field: string) => string | null;
  scopes: (scopes: string[]) => S;
  team?: (team: boolean) => T;
}

/** The row of a new app, validated and encoded. */
export function newAppRow<S, T>(app: Omit<AppRecord, 'createdAt' | 'updatedAt'>, now: number, encode: Required<RowEncoding<S, T>>): AppRowOf<S, T> {
  return {
    name: app.name,
    app_key: app.key,
    secret_enc: encode.seal(app.secret, 'secret'),
    scopes: encode.scopes(checkScopes(app.scopes)),
    team: encode.team(app.team === true),
    access: app.access,
    created_at: now,
    updated_at: now,
  };
}

/** The row of a new connection (version 1), validated and encoded; an empty token is stored as none. */
export function newConnectionRow<S>(rec: Omit<ConnectionRecord, 'createdAt' | 'updatedAt' | 'version'>, now: number, encode: RowEncoding<S>): ConnectionRowOf<S> {
  return {
    name: rec.name,
    app: rec.app,
    account_id: rec.accountId,
    team_id: rec.teamId,
    email: rec.email,
    display_name: rec.displayName,
    team_name: rec.teamName,
    linked_by_name: rec.linkedByName ?? null,
    linked_by_email: rec.linkedByEmail ?? null,
    scopes: encode.scopes(checkScopes(rec.scopes)),
    access_token_enc: encode.seal(emptyToNull(rec.accessToken), 'access_token'),
    access_token_expires_at: rec.accessTokenExpiresAt,
    refresh_token_enc: encode.seal(emptyToNull(rec.refreshToken), 'refresh_token'),
    state: checkState(rec.state),
    last_error: rec.lastError,
    last_refresh_at: rec.lastRefreshAt,
    created_at: now,
    updated_at: now,
    version: 1,
  };
}

/**
 * The columns a connection patch changes, validated and encoded (secrets sealed, scopes in the driver's form).
 * Leaves out `updated_at` and `version`, which each driver sets in its own transaction.
 */
export function connectionPatchColumns<S>(
  patch: ConnectionPatch,
  encode: { seal: (value: string | null, field: string) => string | null; scopes: (scopes: string[]) => S },
): Partial<ConnectionRowOf<S>> {
  const out: Partial<ConnectionRowOf<S>> = {};
  if (patch.app !== undefined) out.app = patch.app;
  if (patch.accountId !== undefined) out.account_id = patch.accountId;
  if (patch.teamId !== undefined) out.team_id = patch.teamId;
  if (patch.email !== undefined) out.email = patch.email;
  if (patch.displayName !== undefined) out.display_name = patch.displayName;
  if (patch.teamName !== undefined) out.team_name = patch.teamName;
  if (patch.linkedByName !== undefined) out.linked_by_name = patch.linkedByName;
  if (patch.linkedByEmail !== undefined) out.linked_by_email = patch.linkedByEmail;
  if (patch.scopes !== undefined) out.scopes = encode.scopes(checkScopes(patch.scopes));
  if (patch.accessToken !== undefined) out.access_token_enc = encode.seal(emptyToNull(patch.accessToken), 'access_token');
  if (patch.accessTokenExpiresAt !== undefined) out.access_token_expires_at = patch.accessTokenExpiresAt;
  if (patch.refreshToken !== undefined) out.refresh_token_enc = encode.seal(emptyToNull(patch.refreshToken), 'refresh_token');
  if (patch.state !== undefined) out.state = checkState(patch.state);
  if (patch.lastError !== undefined) out.last_error = patch.lastError;
  if (patch.lastRefreshAt !== undefined) out.last_refresh_at = patch.lastRefreshAt;
  return out;
}

export function emptyToNull(v: string | null): string | null {
  return v === null || v === '' ? null : v;
}

export function checkScopes(scopes: string[]): string[] {
  if (!Array.isArray(scopes) || !scopes.every((s) => typeof s === 'string' && s !== '')) {
    throw new DropkeyError(ErrorCodes.BAD_INPUT, 'scopes must be a list of non-empty strings', { hint: 'e.g. --scope files.content.read' });
  }
  return scopes;
}

export function checkState(state: string): ConnectionRecord['state'] {
  if (state === 'active' || state === 'needs_reauth' || state === 'revoked') return state;
  throw new DropkeyError(ErrorCodes.INTERNAL, `unknown connection state "${String(state).slice(0, 40)}"`);
}

export function checkName(kind: 'app' | 'connection', name: string): void {
  if (typeof name !== 'string' || name.trim() === '' || name.length > 200 || /[\u0000-\u001f\u007f]/.test(name)) {
    throw new DropkeyError(ErrorCodes.BAD_INPUT, `invalid ${kind} name`, {
      hint: `use a short name of letters, digits, "-" and "_", e.g. ${kind === 'app' ? 'backup' : 'dropbox_default'}`,
    });
  }
}

/** A refresh token is only ever cleared on purpose (src/connections/README.md ("Refresh rules"): "never lost or overwritten by an empty value"). */
export function refuseClearingRefreshToken(name: string, patch: ConnectionPatch, allowClear: boolean | undefined): void {
  if (patch.refreshToken !== undefined && emptyToNull(patch.refreshToken) === null && !allowClear) {
    throw new DropkeyError(ErrorCodes.BAD_INPUT, `refusing to clear the refresh token of connection "${name}"`, {
      hint: 'a refresh token is only removed by revoking or deleting the connection; this is a bug if you did not ask for that',
      details: { connection: name },
    });
  }
}

/** An expectedVersion mismatch; ./index.ts isVersionConflict() recognises it by `details.conflict`. */
export function versionConflict(name: string, actualVersion: number, expectedVersion: number): DropkeyError {
  return new DropkeyError(ErrorCodes.STORE, `connection "${name}" was changed by another process meanwhile (version ${actualVersion}, expected ${expectedVersion})`, {
    hint: 'read it again and retry',
    details: { connection: name, conflict: true, expectedVersion, actualVersion },
  });
}

export function appInUse(name: string, connections: string[]): DropkeyError {
  const one = connections.length === 1;
  return new DropkeyError(ErrorCodes.BAD_INPUT, `the app "${name}" is still used by ${one ? 'connection' : 'connections'} ${connections.map((u) => `"${u}"`).join(', ')}`, {
    hint: `revoke ${one ? 'it' : 'them'} first`,
    fix: { action: 'revoke', connections },
    details: { app: name, connections },
  });
}

export function alreadyExists(kind: 'app' | 'connection', name: string): DropkeyError {
  return new DropkeyError(ErrorCodes.ALREADY_EXISTS, `${kind === 'app' ? 'an app' : 'a connection'} named "${name}" already exists`, {
    hint: `choose another name, or ${kind === 'app' ? 'remove' : 'revoke'} it first`,
    fix: kind === 'app' ? { action: 'app-remove', app: name } : { action: 'revoke', connections: [name] },
    details: { [kind]: name },
  });
}

/** `fix` is where to look (the list) or, when something must exist first, how to create it. */
export function notFound(kind: 'app' | 'connection', name: string, fix: Fix): DropkeyError {
  return new DropkeyError(ErrorCodes.NOT_FOUND, `no ${kind} named "${name}"`, {
    hint: fix.action === 'app-add' ? 'register the app first' : 'see what exists',
    fix,
    details: { [kind]: name },
  });
}

/**
 * For listings: a connection with a damaged secret is still listed (one bad row must not hide the others), as
 * needing a new login, its unreadable secrets withheld and lastError naming the field. Only listings use this: a
 * record read to use its secrets (getConnection) fails with the named error instead.
 */
export function toListedConnectionRecord(r: ConnectionRowOf<unknown>, scopes: string[], rawOpen: OpenSecret): ConnectionRecord {
  const unreadable: string[] = [];
  const open: OpenSecret = (value, field) => {
    try {
      return rawOpen(value, field);
    } catch (err) {
      if (!damagedSecret(err)) throw err;
      unreadable.push(field);
      return null;
    }
  };
  const rec = toConnectionRecord(r, scopes, open);
  if (unreadable.length === 0) return rec;
  return {
    ...rec,
    state: 'needs_reauth',
    lastError: `its stored ${unreadable.join(' and ')} cannot be decrypted (damaged, or changed by hand)`,
  };
}

/** The columns a ConnectionSummary is read from: no ciphertext, only whether the secret columns are set. */
export const SUMMARY_COLUMNS =
  'name, app, account_id, email, state, access_token_expires_at, refresh_token_enc IS NOT NULL AS refreshable, access_token_enc IS NOT NULL AS has_access_token';

export interface SummaryRow {
  name: string;
  app: string;
  account_id: string | null;
  email: string | null;
  state: string;
  access_token_expires_at: number | string | null;
  refreshable: number | boolean;
  has_access_token: number | boolean;
}

/** SQLite gives 0/1 and numbers; PostgreSQL booleans and bigint as text. */
export function toConnectionSummary(r: SummaryRow): ConnectionSummary {
  return {
    name: r.name,
    app: r.app,
    accountId: r.account_id,
    email: r.email,
    state: r.state as ConnectionState,
    expiresAt: r.access_token_expires_at === null ? null : Number(r.access_token_expires_at),
    refreshable: r.refreshable === true || r.refreshable === 1,
    hasAccessToken: r.has_access_token === true || r.has_access_token === 1,
  };
}

/** A page size the summary reads accept (1..10 000). */
export function summaryLimit(limit: number): number {
  return Number.isInteger(limit) && limit > 0 ? Math.min(limit, 10_000) : 1000;
}

/** The listing columns of a connection: every column but the token ciphertexts (a listing never decrypts them). */
export const LISTING_COLUMNS = CONNECTION_COLUMNS.filter((c) => c !== 'access_token_enc' && c !== 'refresh_token_enc');

export type ListingRowOf<Scopes> = Omit<ConnectionRowOf<Scopes>, 'access_token_enc' | 'refresh_token_enc'> & { refreshable: unknown };

export function toConnectionListing(r: ListingRowOf<unknown>, scopes: string[]): ConnectionListing {
  return { ...connectionFields(r, scopes), refreshable: r.refreshable === true || r.refreshable === 1 };
}

export const MAX_PAGE_LIMIT = 1000;
export const MAX_SEARCH_LENGTH = 200;

/** Checks a page query (both drivers refuse the same input with the same words). */
export function checkPageQuery(q: ConnectionPageQuery): ConnectionPageQuery {
  if (!Number.isInteger(q.limit) || q.limit < 1 || q.limit > MAX_PAGE_LIMIT) {
    throw new DropkeyError(ErrorCodes.BAD_INPUT, `limit must be a whole number from 1 to ${MAX_PAGE_LIMIT}`);
  }
  if (q.search !== undefined && (typeof q.search !== 'string' || q.search.length > MAX_SEARCH_LENGTH)) {
    throw new DropkeyError(ErrorCodes.BAD_INPUT, `the search text must be at most ${MAX_SEARCH_LENGTH} characters`);
  }
  if (q.state !== undefined) checkState(q.state);
  if (q.names !== undefined && (!Array.isArray(q.names) || !q.names.every((n) => typeof n === 'string'))) {
    throw new DropkeyError(ErrorCodes.BAD_INPUT, 'names must be a list of connection names');
  }
  if (q.app !== undefined && typeof q.app !== 'string') throw new DropkeyError(ErrorCodes.BAD_INPUT, 'app must be an app name');
  return q;
}

/** `%text%` for LIKE/ILIKE with `\` as the escape character, so `%` and `_` in the search match themselves. */
export function likePattern(text: string): string {
  return `%${text.replace(/[\\%_]/g, (c) => `\\${c}`)}%`;
}

/** The columns a search looks in. */
export const SEARCH_COLUMNS = ['name', 'email', 'display_name', 'account_id', 'team_name', 'team_id'] as const;

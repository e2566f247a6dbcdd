/**
 * The one JSON shape of each object dropkey shows, shared by the HTTP API and the CLI's --json output so scripts
 * can move between them (docs/api.md, "JSON shapes"): snake_case names, times as ISO 8601 strings (or null),
 * durations in whole seconds. Each is described in the OpenAPI document (src/server/api/openapi.ts, components
 * Connection, Token, ApiKey, KeyStatus); test/cli/json-shapes.e2e.test.ts compares the CLI's and the API's output.
 * None carries a refresh token, an app secret or an API key's hash.
 */
import type { ApiKeyRecord } from '../store/server-types.js';
import type { ConnectionInfo, TokenInfo } from './types.js';

const iso = (t: number | null): string | null => (t === null ? null : new Date(t).toISOString());

/** Seconds from `now` until `t` (never negative), or null. */
const secondsLeft = (t: number | null, now: number): number | null => (t === null ? null : Math.max(0, Math.floor((t - now) / 1000)));

/** A connection (never a token). `expires_in` is counted from `now`. */
export function connectionJson(c: ConnectionInfo, now: number): Record<string, unknown> {
  return {
    name: c.name,
    app: c.app,
    account_id: c.accountId,
    email: c.email,
    display_name: c.displayName,
    team_id: c.teamId,
    team_name: c.teamName,
    linked_by: c.linkedBy ? { name: c.linkedBy.name, email: c.linkedBy.email } : null,
    scopes: c.scopes,
    expires_at: iso(c.expiresAt),
    expires_in: secondsLeft(c.expiresAt, now),
    state: c.state,
    refreshable: c.refreshable,
    last_error: c.lastError,
    last_refresh_at: iso(c.lastRefreshAt),
    created_at: iso(c.createdAt),
    updated_at: iso(c.updatedAt),
  };
}

/**
 * An access token as handed out: `scope` (space-separated, as Dropbox's token endpoint says it) and `scopes` (a
 * list) carry the same scopes. `expires_in` is counted from `now`, when the answer was made.
 */
export function tokenJson(t: TokenInfo, now: number): Record<string, unknown> {
  return {
    access_token: t.accessToken,
    token_type: 'bearer',
    expires_at: iso(t.expiresAt),
    expires_in: secondsLeft(t.expiresAt, now),
    scope: t.scopes.join(' '),
    scopes: t.scopes,
    account_id: t.accountId,
    team_id: t.teamId,
    email: t.email ?? null,
    connection: t.connection,
  };
}

/** An API key's record: never the key or its hash (the key is shown once, beside this object, when created). */
export function apiKeyJson(k: ApiKeyRecord): Record<string, unknown> {
  return {
    name: k.name,
    prefix: k.prefix,
    permissions: k.permissions,
    connections: k.connections,
    created_at: iso(k.createdAt),
    created_by: k.createdBy,
    last_used_at: iso(k.lastUsedAt),
    revoked_at: iso(k.revokedAt),
    token_handouts: k.tokenHandouts,
  };
}

/** Where the master key comes from, and how many stored secrets are under each key id. */
export interface KeyStatusInput {
  source: 'env' | 'file';
  activeKeyId: string;
  keyIds: readonly string[];
  byKeyId: Record<string, number>;
  columns: readonly { table: string; column: string; byKeyId: Record<string, number> }[];
}

export function keyStatusJson(k: KeyStatusInput): Record<string, unknown> {
  return {
    source: k.source,
    active_key_id: k.activeKeyId,
    key_ids: [...k.keyIds],
    secrets_by_key_id: k.byKeyId,
    not_under_active_key: Object.entries(k.byKeyId).filter(([id]) => id !== k.activeKeyId).reduce((n, [, c]) => n + c, 0),
    columns: k.columns.map((c) => ({ table: c.table, column: c.column, secrets_by_key_id: c.byKeyId })),
  };
}

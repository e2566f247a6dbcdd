import type { ConnectionInfo } from './types.js';

const iso = (t: number | null): string | null => (t === null ? null : new Date(t).toISOString());

/**
 * A connection as JSON: the one snake_case shape shared by the HTTP API (GET /api/v1/connections) and the CLI's
 * --json output, so scripts can move between them. Never contains a token.
 */
export function connectionJson(c: ConnectionInfo): Record<string, unknown> {
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
    state: c.state,
    refreshable: c.refreshable,
    last_error: c.lastError,
    last_refresh_at: iso(c.lastRefreshAt),
    created_at: iso(c.createdAt),
    updated_at: iso(c.updatedAt),
  };
}

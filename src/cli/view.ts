/** How connections are shown: one line for humans, a stable snake_case JSON shape for scripts. Never a token. */
import type { ConnectionInfo } from '../connections/types.js';
import { expiresIn, isoOrNull } from './output.js';

export function connectionJson(c: ConnectionInfo, now: number): Record<string, unknown> {
  return {
    name: c.name,
    app: c.app,
    account_id: c.accountId,
    email: c.email,
    display_name: c.displayName,
    team_id: c.teamId,
    team_name: c.teamName,
    scopes: c.scopes,
    expires_at: isoOrNull(c.expiresAt),
    expires_in: c.expiresAt === null ? null : Math.max(0, Math.floor((c.expiresAt - now) / 1000)),
    state: c.state,
    refreshable: c.refreshable,
    last_error: c.lastError,
    last_refresh_at: isoOrNull(c.lastRefreshAt),
    created_at: isoOrNull(c.createdAt),
  };
}

export function describeConnection(c: ConnectionInfo, now: number): string {
  const who = c.email ?? c.displayName ?? c.accountId ?? 'unknown account';
  const team = c.teamName ? ` (team ${c.teamName})` : '';
  const refresh = c.refreshable ? 'refreshable' : 'NOT refreshable (no refresh token)';
  return `${who}${team}, app ${c.app}, access token expires in ${expiresIn(c.expiresAt, now)}, ${refresh}, scopes: ${c.scopes.join(' ') || '(none listed)'}`;
}

/**
 * Plain-words formatting for the UI: times, durations and connection states. The server renders everything
 * (the pages work without JavaScript); the script only keeps countdowns ticking.
 */
import type { ConnectionInfo } from '../../connections/types.js';
import type { ConnectionState } from '../../store/types.js';

/** "2025-01-31 14:05 UTC": unambiguous for admins in any time zone. */
export function when(ms: number | null): string {
  if (ms === null) return 'never';
  return `${new Date(ms).toISOString().slice(0, 16).replace('T', ' ')} UTC`;
}

export function iso(ms: number | null): string {
  return ms === null ? '' : new Date(ms).toISOString();
}

/** "3 h 12 min", "45 s", "2 d 4 h". Negative durations are "0 s"; callers say "expired" themselves. */
export function duration(ms: number): string {
  const s = Math.max(0, Math.floor(ms / 1000));
  const d = Math.floor(s / 86400);
  const h = Math.floor((s % 86400) / 3600);
  const m = Math.floor((s % 3600) / 60);
  if (d > 0) return `${d} d ${h} h`;
  if (h > 0) return `${h} h ${m} min`;
  if (m > 0) return `${m} min ${s % 60} s`;
  return `${s} s`;
}

/** The token expiry in words, relative to now. */
export function expiresIn(c: Pick<ConnectionInfo, 'expiresAt'>, now: number): string {
  if (c.expiresAt === null) return 'does not expire';
  if (c.expiresAt <= now) return 'expired (renewed on next use)';
  return `in ${duration(c.expiresAt - now)}`;
}

export const STATE_LABEL: Record<ConnectionState, string> = {
  active: 'active',
  needs_reauth: 'needs re-auth',
  revoked: 'revoked',
};

export function stateExplanation(c: Pick<ConnectionInfo, 'state' | 'refreshable'>): string {
  switch (c.state) {
    case 'active':
      return c.refreshable
        ? 'Working. dropkey renews the access token before it expires.'
        : 'Working, but dropkey holds no refresh token: the access token cannot be renewed and stops working when it expires. Reconnect to fix.';
    case 'needs_reauth':
      return 'Dropbox no longer accepts this connection (the owner unlinked the app, changed the password, or the app changed). Click Reconnect and sign in to Dropbox again.';
    case 'revoked':
      return 'Revoked: Dropbox will not accept its tokens any more.';
  }
}

/**
 * Turning refresh failures into connection events, wherever the server sees them (the token API, the refresh
 * route, the proxy, the proactive refresher). One helper so every path classifies them the same way and a
 * connection that is already broken never emits its transition again.
 */
import { DropboxApiError, DropkeyError, ErrorCodes } from '../../errors.js';
import { redactText } from '../../connections/redact.js';
import type { ServerEvents, ServerEventType } from '../events.js';

function* causes(err: unknown): Generator<unknown> {
  const seen = new Set<unknown>();
  let cur: unknown = err;
  while (cur !== undefined && cur !== null && !seen.has(cur)) {
    seen.add(cur);
    yield cur;
    cur = (cur as { cause?: unknown }).cause;
  }
}

/**
 * What a refresh error means for the connection's events:
 *   - needs_reauth: Dropbox rejected the refresh token just now. The refresher throws REAUTH_REQUIRED with the
 *     invalid_grant answer as its cause only at the transition; a connection already in needs_reauth fails fast
 *     with a causeless REAUTH_REQUIRED, which yields nothing (no duplicate events);
 *   - refresh_failed: a refresh was attempted and failed otherwise (Dropbox unavailable, invalid_client...);
 *   - null: not a refresh failure (unknown connection, bad input, cancelled, already broken).
 */
export function classifyRefreshError(err: unknown): { type: ServerEventType; reason: string; message: string } | null {
  const chain = [...causes(err)];
  const reauth = chain.find((e): e is DropkeyError => e instanceof DropkeyError && e.code === ErrorCodes.REAUTH_REQUIRED);
  if (reauth) {
    const grant = chain.find((e): e is DropboxApiError => e instanceof DropboxApiError);
    if (!grant) return null;
    return { type: 'connection.needs_reauth', reason: grant.summary.split(':')[0] || 'invalid_grant', message: redactText(reauth.message).slice(0, 500) };
  }
  const top = chain[0];
  if (!(top instanceof DropkeyError)) return null;
  switch (top.code) {
    case ErrorCodes.DROPBOX_UNAVAILABLE:
    case ErrorCodes.INVALID_CLIENT:
    case ErrorCodes.OAUTH_FAILED:
    case ErrorCodes.DROPBOX_API:
    case ErrorCodes.LOCK_TIMEOUT:
    case ErrorCodes.STORE:
      return { type: 'connection.refresh_failed', reason: top.code, message: redactText(top.message).slice(0, 500) };
    default:
      return null;
  }
}

/** refresh_failed is sent at most this often per connection and bus: a Dropbox outage must not flood receivers. */
export const REFRESH_FAILED_QUIET_MS = 10 * 60_000;

/**
 * Emits connection.needs_reauth / connection.refresh_failed for a refresh error (see classifyRefreshError).
 * needs_reauth is a one-time transition by construction; refresh_failed is throttled per connection
 * (REFRESH_FAILED_QUIET_MS), since every token request during an outage may see the same failure.
 * Returns the type emitted, or null.
 */
export function reportRefreshFailure(
  s: { events: ServerEvents; clock: () => number },
  connection: string,
  err: unknown,
  extra: Record<string, unknown> = {},
): ServerEventType | null {
  const c = classifyRefreshError(err);
  if (!c) return null;
  const now = s.clock();
  const seen = s.events.refreshFailedAt;
  if (c.type === 'connection.refresh_failed') {
    const last = seen.get(connection);
    if (last !== undefined && now - last < REFRESH_FAILED_QUIET_MS && now >= last) return null;
    seen.set(connection, now);
  } else {
    seen.delete(connection);
  }
  s.events.emit({ type: c.type, at: now, connection, data: { reason: c.reason, message: c.message, ...extra } });
  return c.type;
}

/** How connections are shown: one line for humans, a stable snake_case JSON shape for scripts. Never a token. */
import { connectionJson as sharedConnectionJson } from '../connections/json.js';
import type { ConnectionInfo } from '../connections/types.js';
import { expiresIn, oneLineSafe } from './output.js';

/** connections/json.ts's shape plus `expires_in`, handy in shell scripts. */
export function connectionJson(c: ConnectionInfo, now: number): Record<string, unknown> {
  return { ...sharedConnectionJson(c), expires_in: c.expiresAt === null ? null : Math.max(0, Math.floor((c.expiresAt - now) / 1000)) };
}

export function describeConnection(c: ConnectionInfo, now: number): string {
  const who = c.email ?? c.displayName ?? c.accountId ?? 'unknown account';
  const team = c.teamName ? ` (team ${c.teamName})` : '';
  const refresh = c.refreshable ? 'refreshable' : 'NOT refreshable (no refresh token)';
  // Names and scopes come from Dropbox: shown on one line, without anything a terminal would act on.
  return oneLineSafe(`${who}${team}, app ${c.app}, access token expires in ${expiresIn(c.expiresAt, now)}, ${refresh}, scopes: ${c.scopes.join(' ') || '(none listed)'}`);
}

/** "Name <email>", or whichever Dropbox gave; null for none (shown as "-"). */
export function linkedByText(l: { name: string | null; email: string | null } | null): string | null {
  if (!l) return null;
  if (l.name && l.email) return `${l.name} <${l.email}>`;
  return l.name ?? l.email;
}

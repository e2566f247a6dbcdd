/** How connections are shown: one line for humans, the API's JSON shape for scripts (connections/json.ts). Never a token. */
import type { ConnectionInfo } from '../connections/types.js';
import { expiresIn, oneLineSafe } from './output.js';

export { connectionJson } from '../connections/json.js';

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

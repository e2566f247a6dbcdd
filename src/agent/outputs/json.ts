/**
 * `json`: one JSON object with the token and what programs want to know about it, with the names
 * `dropkey token --json` uses (a file, so no `expires_in`: it would be wrong a second later).
 */
import { DropkeyError, ErrorCodes } from '../../errors.js';
import type { RenderOutput, TokenSnapshot } from './types.js';

/** RFC 3339 in UTC to the second, as `dropkey export` and rclone write expiries. */
export function rfc3339(d: Date): string {
  return d.toISOString().replace(/\.\d{3}Z$/, 'Z');
}

export function tokenJson(s: TokenSnapshot): Record<string, unknown> {
  return {
    connection: s.connection,
    access_token: s.accessToken,
    token_type: 'bearer',
    expires_at: s.expiresAt === null ? null : rfc3339(s.expiresAt),
    scopes: [...s.scopes],
    account_id: s.account.id,
    email: s.account.email,
    display_name: s.account.name,
    team_id: s.team?.id ?? null,
    team_name: s.team?.name ?? null,
    app_key: s.appKey,
  };
}

export const renderJson: RenderOutput<Record<string, never>> = (previous, snapshot) => {
  if (previous !== null && previous.trim() !== '') {
    let parsed: unknown;
    try {
      parsed = JSON.parse(previous);
    } catch {
      parsed = undefined;
    }
    // Only a file this output wrote (an object with access_token) is replaced; anything else is someone else's.
    if (!parsed || typeof parsed !== 'object' || Array.isArray(parsed) || typeof (parsed as { access_token?: unknown }).access_token !== 'string') {
      throw new DropkeyError(ErrorCodes.BAD_INPUT, 'the file exists and is not a token JSON file written by dropkey, so it was not overwritten.', {
        hint: 'Point the output at a file of its own (it will be created), or delete this one if it is an old token file.',
      });
    }
  }
  return `${JSON.stringify(tokenJson(snapshot), null, 2)}\n`;
};

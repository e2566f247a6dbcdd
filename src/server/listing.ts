/**
 * The query of a connections listing, shared by GET /api/v1/connections and the web UI's connections page: `limit`,
 * `cursor` (opaque: the next page's start, from the previous answer), `q` (search in name, account and team),
 * `state` and `app`. Paging is keyset paging in the store (Store.listConnectionPage), so a page costs the same at any N.
 */
import { NAME_PATTERN } from '../connections/names.js';
import { DropkeyError, ErrorCodes } from '../errors.js';
import { MAX_PAGE_LIMIT, MAX_SEARCH_LENGTH } from '../store/records.js';
import type { ConnectionPageQuery, ConnectionState } from '../store/types.js';

export const STATES: readonly ConnectionState[] = ['active', 'needs_reauth', 'revoked'];

export interface ListingParams {
  limit?: string | undefined;
  cursor?: string | undefined;
  q?: string | undefined;
  state?: string | undefined;
  app?: string | undefined;
}

/** The cursor a page answer carries: the last name shown, wrapped so clients treat it as opaque. */
export function encodeCursor(lastName: string): string {
  return Buffer.from(`n:${lastName}`, 'utf8').toString('base64url');
}

function decodeCursor(cursor: string): string {
  const text = /^[A-Za-z0-9_-]{1,400}$/.test(cursor) ? Buffer.from(cursor, 'base64url').toString('utf8') : '';
  const name = text.startsWith('n:') ? text.slice(2) : '';
  if (!NAME_PATTERN.test(name)) {
    throw new DropkeyError(ErrorCodes.BAD_INPUT, 'The cursor is not one this server gave out.', {
      hint: 'Pass the next_cursor of the previous page as it came, or leave cursor out to start at the first page.',
    });
  }
  return name;
}

/** Parses and checks the listing parameters; `defaultLimit` applies when `limit` is absent. */
export function listingQuery(p: ListingParams, defaultLimit: number): ConnectionPageQuery {
  const limit = p.limit === undefined || p.limit === '' ? defaultLimit : /^\d{1,4}$/.test(p.limit) ? Number(p.limit) : NaN;
  if (!Number.isInteger(limit) || limit < 1 || limit > MAX_PAGE_LIMIT) {
    throw new DropkeyError(ErrorCodes.BAD_INPUT, `limit must be a whole number from 1 to ${MAX_PAGE_LIMIT}.`);
  }
  const q = (p.q ?? '').trim();
  if (q.length > MAX_SEARCH_LENGTH) throw new DropkeyError(ErrorCodes.BAD_INPUT, `The search text must be at most ${MAX_SEARCH_LENGTH} characters.`);
  const state = p.state === undefined || p.state === '' ? undefined : p.state;
  if (state !== undefined && !(STATES as readonly string[]).includes(state)) {
    throw new DropkeyError(ErrorCodes.BAD_INPUT, `state must be one of ${STATES.join(', ')}.`);
  }
  const app = p.app === undefined || p.app === '' ? undefined : p.app;
  if (app !== undefined && !NAME_PATTERN.test(app)) {
    throw new DropkeyError(ErrorCodes.BAD_INPUT, 'app must be an app name (letters, digits, ".", "_" and "-").');
  }
  return {
    limit,
    ...(p.cursor ? { after: decodeCursor(p.cursor) } : {}),
    ...(app ? { app } : {}),
    ...(q ? { search: q } : {}),
    ...(state ? { state: state as ConnectionState } : {}),
  };
}

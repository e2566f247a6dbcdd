/**
 * `airflow` output: one connection in an Airflow LocalFilesystemBackend connections file (JSON, YAML or .env),
 * every other connection kept byte-for-byte. The access token goes in `password` (or `login`, for hooks that call
 * `dropbox.Dropbox(conn.login)`); Dropbox facts go in the connection's extras. The refresh token and app secret never
 * do: an extra left by an earlier `dropkey export --format airflow-json` is removed, so the file holds only tokens
 * that expire.
 */
import type { AirflowOutputOptions, RenderOutput, TokenSnapshot } from './types.js';
import { airflowConnectionFrom, airflowUri, setAirflowEntry, type AirflowConnection } from '../../formats/airflow.js';
import { rfc3339 } from '../../formats/text.js';
import { DropkeyError, ErrorCodes } from '../../errors.js';

/** Extras dropkey owns in the connection: set when known, removed when not. */
function extrasOf(s: TokenSnapshot): Record<string, string | null> {
  return {
    expires_at: s.expiresAt === null ? null : rfc3339(s.expiresAt.getTime()),
    account_id: s.account.id,
    email: s.account.email,
    team_id: s.team?.id ?? null,
    scope: s.scopes.length > 0 ? s.scopes.join(' ') : null,
    app_key: s.appKey,
    refresh_token: null,
    app_secret: null,
  };
}

function merge(extra: Record<string, unknown>, ours: Record<string, string | null>): Record<string, unknown> {
  const out = { ...extra };
  for (const [k, v] of Object.entries(ours)) {
    if (v === null) delete out[k];
    else out[k] = v;
  }
  return out;
}

export const renderAirflow: RenderOutput<AirflowOutputOptions> = (previous, snapshot, options) => {
  const ours = extrasOf(snapshot);
  const what = 'Airflow connections file';
  return setAirflowEntry(previous, options.form, options.connId, (current) => {
    if (current === undefined || current === null) {
      const extra = merge({}, ours);
      if (options.form === 'env') {
        const c: AirflowConnection = { conn_type: 'dropbox', host: null, login: null, password: null, schema: null, port: null, extra };
        c[options.field] = snapshot.accessToken;
        return airflowUri(c);
      }
      return { conn_type: 'dropbox', [options.field]: snapshot.accessToken, extra_dejson: extra };
    }
    // Validates the entry (keys Airflow accepts, extra decodable) before editing it.
    const c = airflowConnectionFrom(current, options.connId, what);
    if (c.conn_type !== null && c.conn_type !== 'dropbox') {
      throw new DropkeyError(ErrorCodes.BAD_INPUT, `${what}: connection "${options.connId}" has conn_type ${c.conn_type}, not dropbox; dropkey will not write a Dropbox token into it`, {
        hint: 'Name another connection id in the output, or change that connection to conn_type dropbox.',
      });
    }
    if (typeof current === 'string') {
      // A URI entry stays a URI, with its host, schema and other extras.
      c[options.field] = snapshot.accessToken;
      c.extra = merge(c.extra, ours);
      return airflowUri(c);
    }
    const o = { ...(current as Record<string, unknown>) };
    o[options.field] = snapshot.accessToken;
    const extra = merge(c.extra, ours);
    // The entry keeps the extras style it was written in: a JSON string in `extra`, or an object.
    if ('extra' in o) o['extra'] = typeof o['extra'] === 'string' ? JSON.stringify(extra) : extra;
    else o['extra_dejson'] = extra;
    return o;
  });
};

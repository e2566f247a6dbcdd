/**
 * `dropkey export` formats: pure functions from a connection's credentials to text other tools read.
 * These are the only outputs of dropkey that contain secrets on purpose. The file grammars themselves (rclone.conf,
 * dotenv, Airflow URIs) live in src/formats, shared with `dropkey agent`'s outputs and `dropkey import`.
 */
import { airflowUri } from '../formats/airflow.js';
import { dotenvValue } from '../formats/dotenv.js';
import { rcloneTokenJson, setRcloneRemote } from '../formats/rclone-conf.js';
import { rfc3339 } from '../formats/text.js';

export { rfc3339 };

export interface ExportInput {
  /** dropkey connection name. */
  connection: string;
  appKey: string;
  /** null for PKCE-only apps. */
  appSecret: string | null;
  accessToken: string;
  /** Epoch ms, or null for a token with no known expiry. */
  expiresAt: number | null;
  refreshToken: string | null;
  scopes: string[];
  accountId: string | null;
  teamId: string | null;
  email: string | null;
}

export const EXPORT_FORMATS = ['env', 'json', 'rclone', 'airflow', 'airflow-json'] as const;
export type ExportFormat = (typeof EXPORT_FORMATS)[number];

/**
 * dotenv lines. DROPBOX_ACCESS_TOKEN is what `dropkey exec` sets and most scripts read; the refresh token and app
 * credentials follow (under the names the Python SDK examples use) so a program can refresh by itself.
 */
export function formatEnv(i: ExportInput): string {
  const lines: string[] = [`DROPBOX_ACCESS_TOKEN=${dotenvValue(i.accessToken)}`];
  if (i.expiresAt !== null) lines.push(`DROPBOX_ACCESS_TOKEN_EXPIRES_AT=${rfc3339(i.expiresAt)}`);
  if (i.refreshToken) lines.push(`DROPBOX_REFRESH_TOKEN=${dotenvValue(i.refreshToken)}`);
  lines.push(`DROPBOX_APP_KEY=${dotenvValue(i.appKey)}`);
  if (i.appSecret) lines.push(`DROPBOX_APP_SECRET=${dotenvValue(i.appSecret)}`);
  return `${lines.join('\n')}\n`;
}

export function formatJson(i: ExportInput, now: number): string {
  const out: Record<string, unknown> = {
    connection: i.connection,
    app_key: i.appKey,
    app_secret: i.appSecret,
    access_token: i.accessToken,
    token_type: 'bearer',
    expires_at: i.expiresAt === null ? null : rfc3339(i.expiresAt),
    expires_in: i.expiresAt === null ? null : Math.max(0, Math.floor((i.expiresAt - now) / 1000)),
    refresh_token: i.refreshToken,
    scope: i.scopes.join(' '),
    account_id: i.accountId,
    team_id: i.teamId,
    email: i.email,
  };
  return `${JSON.stringify(out, null, 2)}\n`;
}

/**
 * An rclone remote section, as `rclone config` writes it for the dropbox backend: `token` is the JSON of Go's
 * oauth2.Token (access_token, token_type, refresh_token, expiry as RFC 3339). rclone refreshes it itself with
 * client_id/client_secret once it expires. Paste into rclone.conf (`rclone config file` shows where it is);
 * `dropkey agent`'s rclone output edits the file in place instead.
 */
export function formatRclone(i: ExportInput, remote: string): string {
  const values: Record<string, string> = { client_id: i.appKey };
  if (i.appSecret) values['client_secret'] = i.appSecret;
  values['token'] = rcloneTokenJson({ accessToken: i.accessToken, expiresAt: i.expiresAt, refreshToken: i.refreshToken });
  return setRcloneRemote('', remote, values, { type: 'dropbox' });
}

/**
 * Airflow connection. There is no official Airflow Dropbox provider; the shape chosen here is what a Dropbox hook
 * written against Airflow's Connection model reads (docs/connecting-an-app.md, "Airflow"):
 *   conn_type "dropbox", password = the access token (expires within 4 hours),
 *   extra = {refresh_token, app_key, app_secret} so the hook can refresh, plus expires_at.
 * Airflow's URI form puts the password in userinfo and each string extra in the query (Connection.get_uri).
 */
export interface AirflowConnection {
  conn_type: string;
  host: string;
  port?: number;
  password: string;
  extra: Record<string, string>;
}

/**
 * `apiBase` is the Dropbox API base URL dropkey uses (https://api.dropboxapi.com, or the emulator's): it goes in
 * the connection's host (and port) so the URI is also a valid WHATWG URL (credentials need a host) and a hook
 * pointed at an emulator can find it.
 */
export function airflowConnection(i: ExportInput, apiBase: string): AirflowConnection {
  const extra: Record<string, string> = {};
  if (i.refreshToken) extra['refresh_token'] = i.refreshToken;
  extra['app_key'] = i.appKey;
  if (i.appSecret) extra['app_secret'] = i.appSecret;
  if (i.expiresAt !== null) extra['expires_at'] = rfc3339(i.expiresAt);
  const api = new URL(apiBase);
  return {
    conn_type: 'dropbox',
    host: api.hostname,
    ...(api.port ? { port: Number(api.port) } : {}),
    password: i.accessToken,
    extra,
  };
}

export function formatAirflowUri(i: ExportInput, apiBase: string): string {
  const c = airflowConnection(i, apiBase);
  return airflowUri({ conn_type: c.conn_type, host: c.host, port: c.port ?? null, login: null, password: c.password, schema: null, extra: c.extra });
}

/** `airflow connections import FILE` reads `{conn_id: {conn_type, password, extra}}`. */
export function formatAirflowJson(i: ExportInput, connId: string, apiBase: string): string {
  return `${JSON.stringify({ [connId]: airflowConnection(i, apiBase) }, null, 2)}\n`;
}

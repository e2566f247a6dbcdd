/**
 * `dropkey export` formats: pure functions from a connection's credentials to text other tools read.
 * These are the only outputs of dropkey that contain secrets on purpose.
 */

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

/** RFC 3339 in UTC, seconds precision (what rclone's Go `time.Time` and most parsers accept). */
export function rfc3339(ms: number): string {
  return new Date(ms).toISOString().replace(/\.\d{3}Z$/, 'Z');
}

/** dotenv value: bare when it is a plain token (Dropbox tokens are [A-Za-z0-9._-]), else double-quoted. */
function envValue(v: string): string {
  return /^[A-Za-z0-9._~+/=:-]*$/.test(v) ? v : `"${v.replace(/(["\\$`])/g, '\\$1').replace(/\n/g, '\\n')}"`;
}

/**
 * dotenv lines. DROPBOX_ACCESS_TOKEN is what `dropkey exec` sets and most scripts read; the refresh token and app
 * credentials follow (under the names the Python SDK examples use) so a program can refresh by itself.
 */
export function formatEnv(i: ExportInput): string {
  const lines: string[] = [`DROPBOX_ACCESS_TOKEN=${envValue(i.accessToken)}`];
  if (i.expiresAt !== null) lines.push(`DROPBOX_ACCESS_TOKEN_EXPIRES_AT=${rfc3339(i.expiresAt)}`);
  if (i.refreshToken) lines.push(`DROPBOX_REFRESH_TOKEN=${envValue(i.refreshToken)}`);
  lines.push(`DROPBOX_APP_KEY=${envValue(i.appKey)}`);
  if (i.appSecret) lines.push(`DROPBOX_APP_SECRET=${envValue(i.appSecret)}`);
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
 * client_id/client_secret once it expires. Paste into rclone.conf (`rclone config file` shows where it is).
 */
export function formatRclone(i: ExportInput, remote: string): string {
  const token: Record<string, string> = { access_token: i.accessToken, token_type: 'bearer' };
  if (i.refreshToken) token['refresh_token'] = i.refreshToken;
  // rclone treats the zero time as "never expires"; an unknown expiry is better reported as already expired so
  // rclone refreshes at once.
  token['expiry'] = i.expiresAt === null ? rfc3339(0) : rfc3339(i.expiresAt);
  const lines = [`[${remote}]`, 'type = dropbox', `client_id = ${i.appKey}`];
  if (i.appSecret) lines.push(`client_secret = ${i.appSecret}`);
  lines.push(`token = ${JSON.stringify(token)}`);
  return `${lines.join('\n')}\n`;
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
  const query = new URLSearchParams(c.extra).toString();
  const host = c.port === undefined ? c.host : `${c.host}:${c.port}`;
  return `${c.conn_type}://:${encodeURIComponent(c.password)}@${host}/${query ? `?${query}` : ''}`;
}

/** `airflow connections import FILE` reads `{conn_id: {conn_type, password, extra}}`. */
export function formatAirflowJson(i: ExportInput, connId: string, apiBase: string): string {
  return `${JSON.stringify({ [connId]: airflowConnection(i, apiBase) }, null, 2)}\n`;
}

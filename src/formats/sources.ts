/**
 * Where Dropbox credentials live before dropkey, read (never written) for `dropkey import --from`: an rclone remote,
 * an Airflow connection (file entry, URI or AIRFLOW_CONN_* value), a dotenv file, dbxcli's auth.json.
 * Each reader turns text into one FoundCredential or throws DROPKEY_BAD_INPUT saying what is missing and where.
 */
import { airflowConnectionFrom, airflowConnectionFromEnv, parseAirflowUri, readAirflowFile, type AirflowConnection, type AirflowForm } from './airflow.js';
import { parseDotenv } from './dotenv.js';
import { parseRcloneConf, parseRcloneToken, rcloneRemote, rcloneRemoteNames } from './rclone-conf.js';
import { badFile } from './text.js';

export interface FoundCredential {
  /** Where it came from, for messages ("rclone remote "dropbox""). Never holds a secret. */
  source: string;
  refreshToken: string | null;
  accessToken: string | null;
  appKey: string | null;
  appSecret: string | null;
  /** The source's own name for it (remote, connection id), a candidate connection name. */
  name: string | null;
  /** For dbxcli's team tokens: the token is a team token (team/get_info identifies it). */
  team?: boolean;
}

function nonEmpty(v: unknown): string | null {
  return typeof v === 'string' && v.trim() !== '' ? v.trim() : null;
}

function needsToken(c: FoundCredential): FoundCredential {
  if (c.refreshToken === null && c.accessToken === null) throw badFile(c.source, 'holds no refresh token and no access token');
  return c;
}

/** One remote of an rclone.conf (the only Dropbox remote when `remote` is not given). */
export function rcloneCredential(text: string, remote: string | undefined): FoundCredential {
  const conf = parseRcloneConf(text);
  let name = remote;
  if (name === undefined) {
    const dropbox = [...new Set(rcloneRemoteNames(conf))].filter((n) => rcloneRemote(conf, n)?.['type'] === 'dropbox');
    if (dropbox.length !== 1) {
      throw badFile('rclone.conf', dropbox.length === 0 ? 'has no remote of type dropbox' : `has several Dropbox remotes (${dropbox.join(', ')})`, 'Name the remote with --name REMOTE.');
    }
    name = dropbox[0]!;
  }
  const values = rcloneRemote(conf, name);
  const source = `rclone remote "${name}"`;
  if (!values) throw badFile('rclone.conf', `has no remote named "${name}"`, `Its remotes: ${[...new Set(rcloneRemoteNames(conf))].join(', ') || 'none'}.`);
  if (values['type'] !== 'dropbox') throw badFile(source, `is of type ${values['type'] ?? '(none)'}, not dropbox`);
  const tokenText = nonEmpty(values['token']);
  if (tokenText === null) throw badFile(source, 'has no token (rclone config has not connected it yet)');
  const token = parseRcloneToken(tokenText, name);
  return needsToken({
    source,
    refreshToken: token.refreshToken,
    accessToken: token.accessToken,
    // An empty client_id means rclone's own app, whose tokens only rclone's app key can refresh.
    appKey: nonEmpty(values['client_id']),
    appSecret: nonEmpty(values['client_secret']),
    name,
  });
}

/**
 * An Airflow connection as dropkey can use it. The refresh token and app credentials are looked for in the extras
 * (refresh_token, app_key, app_secret: what `dropkey export --format airflow` writes); hooks that keep the app key
 * in `login` and the secret in `password` next to an extra refresh_token are understood too. Without a refresh
 * token, the access token is the password, else the login (the App Console token pasted there).
 */
export function airflowCredential(c: AirflowConnection, source: string, connId: string): FoundCredential {
  if (c.conn_type !== null && c.conn_type !== 'dropbox') throw badFile(source, `is of conn_type ${c.conn_type}, not dropbox`);
  const extra = c.extra;
  const refreshToken = nonEmpty(extra['refresh_token']) ?? nonEmpty(extra['oauth2_refresh_token']);
  let appKey = nonEmpty(extra['app_key']);
  let appSecret = nonEmpty(extra['app_secret']);
  let accessToken: string | null = null;
  if (refreshToken !== null && appKey === null && nonEmpty(c.login) !== null && /^[a-z0-9]{10,20}$/.test(c.login!)) {
    appKey = nonEmpty(c.login);
    appSecret ??= nonEmpty(c.password);
  } else {
    accessToken = nonEmpty(c.password) ?? nonEmpty(c.login);
  }
  return needsToken({ source, refreshToken, accessToken, appKey, appSecret, name: connId });
}

/** A connections file in one of the LocalFilesystemBackend forms. */
export function airflowFileCredential(text: string, form: AirflowForm, connId: string): FoundCredential {
  const entries = readAirflowFile(text, form);
  const entry = entries.get(connId);
  if (entry === undefined) {
    throw badFile('Airflow connections file', `has no connection "${connId}"`, `Its connections: ${[...entries.keys()].join(', ') || 'none'}. Name one with --name CONN_ID.`);
  }
  const source = `Airflow connection "${connId}"`;
  return airflowCredential(airflowConnectionFrom(entry, connId, source), source, connId);
}

export function airflowUriCredential(uri: string, connId: string): FoundCredential {
  return airflowCredential(parseAirflowUri(uri, 'Airflow connection URI'), 'Airflow connection URI', connId);
}

/** `AIRFLOW_CONN_{CONN_ID}`: Airflow upper-cases the id in the variable name. */
export function airflowEnvVarName(connId: string): string {
  return `AIRFLOW_CONN_${connId.toUpperCase()}`;
}

export function airflowEnvCredential(value: string, varName: string): FoundCredential {
  const connId = varName.replace(/^AIRFLOW_CONN_/, '').toLowerCase();
  return airflowCredential(airflowConnectionFromEnv(value, varName), `environment variable ${varName}`, connId);
}

/**
 * A dotenv file: DROPBOX_REFRESH_TOKEN, DROPBOX_ACCESS_TOKEN (or duplicity's DPBX_ACCESS_TOKEN), DROPBOX_APP_KEY and
 * DROPBOX_APP_SECRET, the names `dropkey export --format env` writes and the Python SDK examples use. `prefix`
 * reads e.g. BACKUP_DROPBOX_REFRESH_TOKEN for a file holding several accounts.
 */
export function dotenvCredential(text: string, prefix = ''): FoundCredential {
  const env = parseDotenv(text);
  const get = (k: string): string | null => nonEmpty(env[`${prefix}${k}`]);
  return needsToken({
    source: 'dotenv file',
    refreshToken: get('DROPBOX_REFRESH_TOKEN'),
    accessToken: get('DROPBOX_ACCESS_TOKEN') ?? get('DPBX_ACCESS_TOKEN'),
    appKey: get('DROPBOX_APP_KEY'),
    appSecret: get('DROPBOX_APP_SECRET'),
    name: null,
  });
}

/**
 * dbxcli's ~/.config/dbxcli/auth.json: `{DOMAIN: {personal|teamAccess|teamManage: ACCESS_TOKEN}}`, domain "" unless
 * dbxcli ran with --domain. dbxcli keeps access tokens only, issued to its own app keys (or to the keys in
 * DROPBOX_PERSONAL_APP_KEY / DROPBOX_TEAM_APP_KEY / DROPBOX_MANAGE_APP_KEY when those were set).
 */
export const DBXCLI_APP_KEYS = { personal: 'mvhz183vwqibe7q', teamAccess: 'zud1va492pnehkc', teamManage: 'xxe04eai4wmlitv' } as const;
export type DbxcliTokenType = keyof typeof DBXCLI_APP_KEYS;
const DBXCLI_KEY_ENV: Record<DbxcliTokenType, string> = { personal: 'DROPBOX_PERSONAL_APP_KEY', teamAccess: 'DROPBOX_TEAM_APP_KEY', teamManage: 'DROPBOX_MANAGE_APP_KEY' };

export function dbxcliCredential(text: string, o: { tokenType?: DbxcliTokenType; domain?: string; env?: Record<string, string | undefined> } = {}): FoundCredential {
  const tokenType = o.tokenType ?? 'personal';
  const domain = o.domain ?? '';
  let j: unknown;
  try {
    j = JSON.parse(text);
  } catch {
    throw badFile('dbxcli auth.json', 'is not JSON');
  }
  if (typeof j !== 'object' || j === null || Array.isArray(j)) throw badFile('dbxcli auth.json', 'must hold one JSON object');
  const byDomain = (j as Record<string, unknown>)[domain];
  const source = `dbxcli ${tokenType} token${domain ? ` for domain ${domain}` : ''}`;
  const token = typeof byDomain === 'object' && byDomain !== null ? nonEmpty((byDomain as Record<string, unknown>)[tokenType]) : null;
  if (token === null) {
    throw badFile('dbxcli auth.json', `holds no ${tokenType} token${domain ? ` for domain "${domain}"` : ''}`, tokenType === 'personal' ? 'Run any dbxcli command once to log in, or pick --token-type teamAccess|teamManage.' : undefined);
  }
  return {
    source,
    refreshToken: null,
    accessToken: token,
    appKey: nonEmpty(o.env?.[DBXCLI_KEY_ENV[tokenType]]) ?? DBXCLI_APP_KEYS[tokenType],
    appSecret: null,
    name: 'dbxcli',
    team: tokenType !== 'personal',
  };
}

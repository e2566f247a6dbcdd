/**
 * `dropkey import --from rclone|airflow|dotenv|dbxcli`: moving to dropkey from where a token lives today.
 * The source is only read. The app is matched by key (the source's, or --app-key) among the stored apps, or
 * registered from the source; its secret is asked for on standard input only when a refresh token needs one and
 * neither the store nor the source has it. Before anything is stored, the credential is checked with Dropbox and
 * its account compared with the existing connections, so an account already connected is recognised, not copied.
 */
import { readFile } from 'node:fs/promises';
import { extname, isAbsolute, join, resolve } from 'node:path';
import type { CommandContext } from './context.js';
import { readSecret } from './input.js';
import type { Dropkey } from '../connections/dropkey.js';
import { identify, type Identity } from '../connections/protocol.js';
import { validateName } from '../connections/names.js';
import type { ConnectionInfo } from '../connections/types.js';
import { DropboxApiError, DropkeyError, ErrorCodes } from '../errors.js';
import { refreshAccessToken } from '../oauth/token.js';
import type { AirflowForm } from '../formats/airflow.js';
import {
  airflowEnvCredential,
  airflowEnvVarName,
  airflowFileCredential,
  airflowUriCredential,
  dbxcliCredential,
  dotenvCredential,
  rcloneCredential,
  type DbxcliTokenType,
  type FoundCredential,
} from '../formats/sources.js';

export const IMPORT_SOURCES = ['rclone', 'airflow', 'dotenv', 'dbxcli'] as const;
export type ImportSource = (typeof IMPORT_SOURCES)[number];

export interface ImportFromOptions {
  from: ImportSource;
  file?: string;
  /** rclone remote, or Airflow connection id. */
  name?: string;
  /** Airflow: a connection URI ("-": standard input). */
  uri?: string;
  /** Airflow: the environment variable holding the connection. */
  envVar?: string;
  form?: AirflowForm;
  /** dotenv: a prefix before the variable names. */
  prefix?: string;
  tokenType?: DbxcliTokenType;
  connection?: string;
  app?: string;
  appKey?: string;
  /** The app has no secret (PKCE): never ask for one. */
  pkce?: boolean;
}

export interface ImportFromResult {
  found: Pick<FoundCredential, 'source'> & { kind: 'refresh token' | 'access token' };
  /** The connection now holding the credential (or already holding the account). */
  connection: ConnectionInfo;
  /** False when the account was already connected and nothing was stored. */
  imported: boolean;
  created: boolean;
  app: { name: string; created: boolean; secretAdded: boolean };
  warnings: string[];
  notes: string[];
}

type Ctx = Pick<CommandContext, 'env' | 'cwd' | 'stdin' | 'stderr' | 'signal'>;

function home(ctx: Ctx): string {
  const h = ctx.env['HOME'];
  if (!h) throw new DropkeyError(ErrorCodes.BAD_INPUT, 'HOME is not set, so the default file cannot be found.', { hint: 'Give the file with --file PATH.' });
  return h;
}

/** The file a source is read from: --file, or where that tool keeps it by default. */
export function sourceFile(ctx: Ctx, o: ImportFromOptions): string | null {
  if (o.file !== undefined) return isAbsolute(o.file) ? o.file : resolve(ctx.cwd, o.file);
  switch (o.from) {
    case 'rclone':
      // rclone's own order: $RCLONE_CONFIG, then $XDG_CONFIG_HOME/rclone/rclone.conf, then ~/.config/rclone/rclone.conf.
      return ctx.env['RCLONE_CONFIG'] || join(ctx.env['XDG_CONFIG_HOME'] || join(home(ctx), '.config'), 'rclone', 'rclone.conf');
    case 'dbxcli':
      return join(home(ctx), '.config', 'dbxcli', 'auth.json');
    case 'dotenv':
      return resolve(ctx.cwd, '.env');
    case 'airflow':
      return null;
  }
}

async function readSource(path: string): Promise<string> {
  try {
    return await readFile(path, 'utf8');
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    throw new DropkeyError(ErrorCodes.BAD_INPUT, code === 'ENOENT' ? `${path} does not exist.` : `cannot read ${path} (${code ?? (err as Error).message}).`, {
      cause: err,
      hint: 'Give the file with --file PATH.',
    });
  }
}

function formOf(path: string, form: AirflowForm | undefined): AirflowForm {
  if (form) return form;
  const ext = extname(path).toLowerCase();
  if (ext === '.json') return 'json';
  if (ext === '.yaml' || ext === '.yml') return 'yaml';
  if (ext === '.env') return 'env';
  // Airflow itself picks the parser by extension and refuses others.
  throw new DropkeyError(ErrorCodes.BAD_INPUT, `cannot tell the form of ${path} from its extension (Airflow reads .json, .yaml, .yml and .env).`, {
    hint: 'Add --form json|yaml|env.',
  });
}

/** Reads the credential from its source. */
export async function findCredential(ctx: Ctx, o: ImportFromOptions): Promise<FoundCredential> {
  const path = sourceFile(ctx, o);
  switch (o.from) {
    case 'rclone':
      return rcloneCredential(await readSource(path!), o.name);
    case 'dotenv':
      return dotenvCredential(await readSource(path!), o.prefix);
    case 'dbxcli':
      return dbxcliCredential(await readSource(path!), { ...(o.tokenType ? { tokenType: o.tokenType } : {}), env: ctx.env });
    case 'airflow': {
      const connId = o.name ?? 'dropbox_default';
      const given = [o.file, o.uri, o.envVar].filter((v) => v !== undefined).length;
      if (given > 1) throw new DropkeyError(ErrorCodes.BAD_INPUT, 'import --from airflow: give one of --file, --uri or --env-var.');
      if (path !== null) return airflowFileCredential(await readSource(path), formOf(path, o.form), connId);
      if (o.uri !== undefined) return airflowUriCredential(o.uri === '-' ? await readSecret(ctx, 'Airflow connection URI') : o.uri, connId);
      const varName = o.envVar ?? airflowEnvVarName(connId);
      const value = ctx.env[varName];
      if (value === undefined || value.trim() === '') {
        throw new DropkeyError(ErrorCodes.BAD_INPUT, `${varName} is not set.`, {
          hint: 'Point at the connection: --file CONNECTIONS_FILE (with --name CONN_ID), --uri URI|-, or --env-var AIRFLOW_CONN_NAME.',
        });
      }
      return airflowEnvCredential(value, varName);
    }
  }
}

function appNameFor(found: FoundCredential, from: ImportSource, taken: Set<string>): string {
  const base = `${from}${found.name && found.name !== from ? `-${found.name}` : ''}`.replace(/[^A-Za-z0-9_.-]+/g, '-').replace(/^[^A-Za-z0-9]+/, '').slice(0, 60) || from;
  let name = base;
  for (let i = 2; taken.has(name); i++) name = `${base}-${i}`;
  return validateName('app', name);
}

function validNameOr(name: string, fallback: string): string {
  return /^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$/.test(name) ? name : fallback;
}

function sameAccount(c: ConnectionInfo, id: Identity, team: boolean): boolean {
  return team ? c.accountId === null && c.teamId !== null && c.teamId === id.teamId : c.accountId !== null && c.accountId === id.accountId;
}

/** Reads the source, checks the credential with Dropbox, and stores it (unless that account is already connected). */
export async function importFrom(ctx: Ctx, dk: Dropkey, o: ImportFromOptions & { defaultConnection: string }): Promise<ImportFromResult> {
  const found = await findCredential(ctx, o);
  const kind = found.refreshToken !== null ? 'refresh token' : 'access token';
  const notes: string[] = [];

  // ---- the app: named, or matched by key, or registered from the source
  const apps = await dk.listApps();
  const key = o.appKey ?? found.appKey;
  let stored = o.app !== undefined ? await dk.getApp(validateName('app', o.app)) : undefined;
  if (stored && key !== null && key !== stored.key) {
    throw new DropkeyError(ErrorCodes.BAD_INPUT, `The ${kind} in ${found.source} was issued to app key ${key}, but app "${stored.name}" has key ${stored.key}.`, {
      hint: 'Name the app with that key (dropkey app list), or leave --app out to register it.',
    });
  }
  if (!stored && key !== null) {
    const byKey = apps.filter((a) => a.key === key);
    if (byKey.length > 1) {
      throw new DropkeyError(ErrorCodes.BAD_INPUT, `Several apps have key ${key} (${byKey.map((a) => a.name).join(', ')}).`, { hint: `Say which with --app ${byKey[0]!.name}.` });
    }
    stored = byKey[0];
  }
  if (!stored && key === null) {
    if (apps.length !== 1) {
      throw new DropkeyError(ErrorCodes.BAD_INPUT, `${found.source} does not say which app issued its ${kind}${o.from === 'rclone' ? ' (no client_id: rclone\'s own app, which dropkey cannot refresh for)' : ''}.`, {
        hint: apps.length === 0 ? 'Give the app key with --app-key KEY (the secret is asked for when needed).' : 'Name the app with --app NAME, or give its key with --app-key KEY.',
      });
    }
    stored = apps[0];
  }
  const appKey = stored?.key ?? key!;
  const team = stored?.team ?? found.team === true;
  const storedSecret = stored ? ((await dk.store.getApp(stored.name))?.secret ?? null) : null;
  let secret = storedSecret ?? found.appSecret;
  if (secret === null && found.refreshToken !== null && o.pkce !== true) {
    secret = await readSecret(ctx, `app secret of app key ${appKey} (to refresh the token from ${found.source})`);
  }

  // ---- who the credential belongs to, before anything is stored
  const fetch = globalThis.fetch;
  let accessToken = found.accessToken;
  if (found.refreshToken !== null) {
    try {
      const set = await refreshAccessToken({
        urls: dk.urls,
        fetch,
        now: Date.now,
        client: secret ? { clientId: appKey, clientSecret: secret } : { clientId: appKey },
        refreshToken: found.refreshToken,
        signal: ctx.signal,
      });
      accessToken = set.accessToken;
    } catch (err) {
      if (err instanceof DropboxApiError && (err.summary === 'invalid_grant' || err.summary === 'invalid_client')) {
        throw new DropkeyError(
          ErrorCodes.BAD_INPUT,
          err.summary === 'invalid_grant'
            ? `Dropbox does not accept the refresh token from ${found.source} for app key ${appKey}: it was revoked, or belongs to another app.`
            : `Dropbox refuses app key ${appKey} with the secret ${storedSecret ? `stored for app "${stored!.name}"` : found.appSecret ? `from ${found.source}` : 'given'}.`,
          { cause: err, hint: err.summary === 'invalid_grant' ? 'Connect with a browser instead: dropkey login' : 'Check the app secret in the App Console, then try again.' },
        );
      }
      throw err;
    }
  }
  let id: Identity;
  try {
    id = await identify({ urls: dk.urls, fetch }, accessToken!, team, ctx.signal);
  } catch (err) {
    if (err instanceof DropboxApiError && /expired_access_token/.test(err.summary)) {
      throw new DropkeyError(ErrorCodes.TOKEN_EXPIRED, `The access token in ${found.source} has expired, and the source holds no refresh token.`, {
        cause: err,
        hint: 'Connect for good with a browser: dropkey login',
      });
    }
    throw err;
  }

  // ---- an account already connected through an app with this key
  const appKeys = new Map((await dk.listApps()).map((a) => [a.name, a.key]));
  const existing = (await dk.list()).filter((c) => appKeys.get(c.app) === appKey && sameAccount(c, id, team));
  const target = o.connection ?? existing[0]?.name ?? o.defaultConnection;
  const already = existing.find((c) => c.name === target);
  if (already && (already.refreshable || found.refreshToken === null)) {
    return {
      found: { source: found.source, kind },
      connection: already,
      imported: false,
      created: false,
      app: { name: already.app, created: false, secretAdded: false },
      warnings: [],
      notes: [`${id.email ?? id.teamName ?? 'This account'} is already connected as "${already.name}"; nothing was changed.`],
    };
  }
  if (o.connection === undefined && !existing.some((c) => c.name === target) && (await dk.list()).some((c) => c.name === target)) {
    throw new DropkeyError(ErrorCodes.ALREADY_EXISTS, `Connection "${target}" already holds another account; the one from ${found.source} would replace it.`, {
      hint: `Name the new connection: --connection ${found.name ? validNameOr(found.name, 'imported') : 'imported'}`,
    });
  }
  for (const c of existing) if (c.name !== target) notes.push(`This account is also connected as "${c.name}".`);

  // ---- store: the app first (registered, or given the secret it lacked), then the connection
  let appName: string;
  let appCreated = false;
  let secretAdded = false;
  if (stored) {
    appName = stored.name;
    if (storedSecret === null && secret !== null && found.refreshToken !== null) {
      await dk.updateApp(appName, { secret });
      secretAdded = true;
      notes.push(`Stored the app secret for app "${appName}".`);
    }
  } else {
    appName = appNameFor(found, o.from, new Set(appKeys.keys()));
    await dk.addApp({ name: appName, key: appKey, secret, team });
    appCreated = true;
    notes.push(`Registered app "${appName}" (key ${appKey}).`);
  }
  const result = await dk.import({
    connection: validateName('connection', target),
    app: appName,
    ...(found.refreshToken !== null ? { refreshToken: found.refreshToken } : { accessToken: found.accessToken! }),
    signal: ctx.signal,
  });
  return {
    found: { source: found.source, kind },
    connection: result.connection,
    imported: true,
    created: result.created,
    app: { name: appName, created: appCreated, secretAdded },
    warnings: result.warnings,
    notes,
  };
}

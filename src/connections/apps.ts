/**
 * Dropbox apps (key, secret, scopes, team or user, access type): registering, changing, listing and removing
 * them, and finding the one a login or import should use.
 */
import { errorTag } from '../dropbox/errors.js';
import { DropboxApiError, DropkeyError, ErrorCodes, type Fix } from '../errors.js';
import { MAX_PAGE_LIMIT } from '../store/records.js';
import type { AppAccess, AppRecord } from '../store/types.js';
import { type ConnectionsContext, report } from './context.js';
import { cleanSecretInput, validateScopes } from './input.js';
import { validateName } from './names.js';
import { rpcCall } from './protocol.js';
import type { AppInfo } from './types.js';

export interface AddAppInput {
  name: string;
  key: string;
  secret?: string | null;
  scopes?: string[];
  team?: boolean;
  access?: AppAccess | null;
  /**
   * Ask Dropbox whether the key and secret belong together (check/app) before storing them; a refusal or an
   * unreachable Dropbox then stores nothing. Apps without a secret cannot be checked (check/app needs it) and are
   * stored as given. Default false: the caller says whether it wants the round trip.
   */
  check?: boolean;
  signal?: AbortSignal;
}

export function appInfo(a: AppRecord): AppInfo {
  return {
    name: a.name,
    key: a.key,
    hasSecret: a.secret !== null && a.secret !== '',
    scopes: [...a.scopes],
    team: a.team,
    access: a.access,
    createdAt: a.createdAt,
    updatedAt: a.updatedAt,
  };
}

function validateAppKey(input: unknown): string {
  const key = typeof input === 'string' ? input.trim() : '';
  // Dropbox's keys are 15 lowercase letters and digits; other servers (the emulator, a proxy) may use "-" or ".".
  if (!/^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/.test(key)) {
    throw new DropkeyError(ErrorCodes.BAD_INPUT, key === '' ? 'The app key is missing.' : 'The app key does not look like an app key (letters and digits, no spaces).', {
      hint: 'Copy the "App key" from the Settings tab of your app in the Dropbox App Console.',
    });
  }
  return key;
}

function validateAppSecret(input: string | null | undefined, key: string): string | null {
  const secret = input === undefined || input === null ? null : cleanSecretInput(input, 'app secret');
  if (secret !== null && secret === key) {
    throw new DropkeyError(ErrorCodes.BAD_INPUT, 'The app secret is the same as the app key.', {
      hint: 'Copy the "App secret" (click Show on the Settings tab), not the key.',
    });
  }
  return secret;
}

function validateAccess(input: unknown): AppAccess | null {
  const access = input ?? null;
  if (access !== null && access !== 'full' && access !== 'app_folder') {
    throw new DropkeyError(ErrorCodes.BAD_INPUT, `Unknown access type ${JSON.stringify(access)}.`, { hint: 'Use "full" or "app_folder".' });
  }
  return access;
}

export async function addApp(ctx: ConnectionsContext, input: AddAppInput): Promise<AppInfo> {
  const name = validateName('app', input.name);
  const key = validateAppKey(input.key);
  const secret = validateAppSecret(input.secret, key);
  const scopes = validateScopes(input.scopes);
  const access = validateAccess(input.access);
  const existing = await ctx.store.getApp(name);
  if (existing) {
    throw new DropkeyError(ErrorCodes.ALREADY_EXISTS, `An app named "${name}" already exists.`, {
      hint: 'Pick another name, or remove it first.',
      fix: { action: 'app-remove', app: name },
    });
  }
  if (input.check === true && secret !== null) await checkAppCredentials(ctx, name, key, secret, 'nothing was stored', input.signal);
  const rec = await ctx.store.createApp({ name, key, secret, scopes, team: input.team === true, access });
  ctx.log.info({ app: name, team: rec.team }, 'app added');
  await report(ctx, { action: 'app.created', target: name, details: { key: rec.key, team: rec.team, access: rec.access, scopes: rec.scopes } });
  return appInfo(rec);
}

export async function updateApp(ctx: ConnectionsContext, name: string, patch: Partial<Omit<AddAppInput, 'name'>>): Promise<AppInfo> {
  const app = await findApp(ctx, name, { action: 'list-apps' });
  const key = patch.key === undefined ? app.key : validateAppKey(patch.key);
  const changes: Partial<Omit<AppRecord, 'name' | 'createdAt'>> = {};
  if (patch.key !== undefined) changes.key = key;
  if (patch.secret !== undefined) changes.secret = validateAppSecret(patch.secret, key);
  if (patch.scopes !== undefined) changes.scopes = validateScopes(patch.scopes);
  if (patch.team !== undefined) changes.team = patch.team === true;
  if (patch.access !== undefined) changes.access = validateAccess(patch.access);
  // A new key or secret is checked as a pair (the one that will be stored); other changes need no round trip.
  const secret = changes.secret === undefined ? app.secret : changes.secret;
  if (patch.check === true && (changes.key !== undefined || changes.secret !== undefined) && secret) {
    await checkAppCredentials(ctx, app.name, key, secret, 'the app was left as it was', patch.signal);
  }
  const rec = await ctx.store.updateApp(app.name, changes);
  ctx.log.info({ app: name, fields: Object.keys(changes) }, 'app updated');
  await report(ctx, {
    action: 'app.updated',
    target: rec.name,
    details: {
      key: rec.key,
      team: rec.team,
      access: rec.access,
      scopes: rec.scopes,
      secret: patch.secret === undefined ? 'kept' : changes.secret === null ? 'removed' : 'replaced',
    },
  });
  return appInfo(rec);
}

/**
 * Checks a stored app's key and secret with Dropbox. Resolves to false, having asked nothing, for an app without
 * a secret: Dropbox's only app-authenticated check needs it (a PKCE-only app shows a wrong key at login).
 */
export async function checkApp(ctx: ConnectionsContext, name: string, signal?: AbortSignal): Promise<boolean> {
  const app = await findApp(ctx, name, { action: 'list-apps' });
  if (!app.secret) return false;
  await checkAppCredentials(ctx, app.name, app.key, app.secret, 'nothing was changed', signal);
  return true;
}

/**
 * check/app (check.stone: app auth, HTTP Basic app_key:app_secret) echoes a query only for a key and secret that
 * belong together; anything else answers 401 invalid_access_token. `kept` says what became of the caller's change.
 */
async function checkAppCredentials(ctx: ConnectionsContext, name: string, key: string, secret: string, kept: string, signal?: AbortSignal): Promise<void> {
  const query = 'dropkey';
  const basic = `Basic ${Buffer.from(`${key}:${secret}`, 'utf8').toString('base64')}`;
  let result: unknown;
  try {
    ({ result } = await rpcCall(ctx, secret, 'check/app', { query }, {
      headers: { authorization: basic },
      timeoutMs: ctx.retry.attemptTimeoutMs,
      ...(signal ? { signal } : {}),
    }));
  } catch (err) {
    if (err instanceof DropkeyError && err.code === ErrorCodes.CANCELLED) throw err;
    // 401 (invalid_access_token) for a pair that does not match; a 400 naming the key or the authorization for a
    // key Dropbox cannot read at all.
    const refused = errorTag(err) === 'invalid_access_token' ||
      (err instanceof DropboxApiError && (err.status === 401 || (err.status === 400 && /app[ _]?key|secret|authoriz/i.test(err.message))));
    if (refused) {
      throw new DropkeyError(ErrorCodes.INVALID_CLIENT, `Dropbox does not accept the app key and secret of "${name}" as a pair: the key is mistyped or belongs to another app, or the secret is wrong or was regenerated; ${kept}.`, {
        cause: err,
        hint: 'Copy both again from the app\'s Settings tab in the Dropbox App Console ("App key", and "App secret" after clicking Show), then register them again.',
        details: { app: name, reason: 'app_check_refused' },
      });
    }
    const unreachable = err instanceof DropkeyError && (err.code === ErrorCodes.DROPBOX_UNAVAILABLE || err.details?.['reason'] === 'not_dropbox');
    throw new DropkeyError(
      unreachable ? ErrorCodes.DROPBOX_UNAVAILABLE : ErrorCodes.DROPBOX_API,
      `The app key and secret of "${name}" could not be checked with Dropbox (${err instanceof Error ? err.message : String(err)}); ${kept}.`,
      {
        cause: err,
        hint: 'Check the network and the Dropbox address (DROPKEY_DROPBOX_URL), then try again, or store the app without checking it.',
        details: { app: name, reason: 'app_check_failed' },
      },
    );
  }
  const echoed = result !== null && typeof result === 'object' ? (result as { result?: unknown }).result : undefined;
  if (echoed !== query) {
    throw new DropkeyError(ErrorCodes.DROPBOX_API, `The app key and secret of "${name}" could not be checked: check/app answered without echoing the query, so whatever answered is not Dropbox; ${kept}.`, {
      hint: 'Check the Dropbox address (DROPKEY_DROPBOX_URL), then try again, or store the app without checking it.',
      details: { app: name, reason: 'app_check_failed' },
    });
  }
}

export async function listApps(ctx: ConnectionsContext): Promise<AppInfo[]> {
  return (await ctx.store.listApps()).map(appInfo);
}

export async function getApp(ctx: ConnectionsContext, name: string): Promise<AppInfo> {
  return appInfo(await findApp(ctx, name));
}

/** Connections named when an app cannot be removed; the fix still lists every one (up to a store page). */
const USERS_NAMED = 10;

export async function removeApp(ctx: ConnectionsContext, name: string): Promise<void> {
  const app = await findApp(ctx, name, { action: 'list-apps' });
  const users = (await ctx.store.listConnectionPage({ limit: MAX_PAGE_LIMIT, app: app.name })).connections.map((c) => c.name);
  if (users.length > 0) {
    const named = users.length > USERS_NAMED ? `${users.slice(0, USERS_NAMED).map((u) => `"${u}"`).join(', ')} and others` : users.map((u) => `"${u}"`).join(', ');
    throw new DropkeyError(ErrorCodes.BAD_INPUT, `App "${name}" is still used by connection${users.length > 1 ? 's' : ''} ${named}.`, {
      hint: 'Revoke them first.',
      fix: { action: 'revoke', connections: users },
    });
  }
  await ctx.store.deleteApp(app.name);
  await report(ctx, { action: 'app.removed', target: app.name, details: {} });
}

/**
 * The app named `name`, or DROPKEY_NOT_FOUND. Its fix registers the app (what a login or import needs), or, for
 * changing and removing an app, `fix` (the list of apps: the name is likely mistyped).
 */
export async function findApp(ctx: ConnectionsContext, name: string, fix: Fix = { action: 'app-add', app: name }): Promise<AppRecord> {
  validateName('app', name);
  const app = await ctx.store.getApp(name);
  if (!app) {
    throw new DropkeyError(ErrorCodes.NOT_FOUND, `No app named "${name}".`, {
      hint: fix.action === 'app-add' ? 'Check the name against the list of apps, or register the app.' : 'Check the name against the list of apps.',
      fix,
      details: { app: name },
    });
  }
  return app;
}

/** The app to use when none is named: the connection's own, else the only one there is. */
export async function resolveApp(ctx: ConnectionsContext, name: string | undefined, connection: string): Promise<AppRecord> {
  if (name !== undefined) return findApp(ctx, name);
  const existing = await ctx.store.getConnection(connection);
  if (existing) return findApp(ctx, existing.app);
  const apps = await ctx.store.listApps();
  if (apps.length === 1) return apps[0]!;
  throw new DropkeyError(
    ErrorCodes.BAD_INPUT,
    apps.length === 0 ? 'No Dropbox app is registered yet.' : `Several apps are registered (${apps.map((a) => a.name).join(', ')}); say which one to use.`,
    {
      ...(apps.length === 0
        ? { hint: 'Register one first.', fix: { action: 'app-add' } }
        : { hint: `Name the app to use, e.g. "${apps[0]!.name}".` }),
    },
  );
}

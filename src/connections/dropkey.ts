/**
 * The connections facade: dropkey's library API. Apps, logins, imports, tokens, revocation, listing, and the
 * adapters that hand fresh tokens to a Dropbox client or to the official SDK.
 *
 * Nothing here reads the environment (style.md principle 9): `Dropkey.open(options)` takes everything it needs;
 * `Dropkey.fromEnv(env)` is the one documented helper that maps environment variables to those options.
 */
import { DROPBOX_URLS, type DropboxUrls, dropboxUrlsFromEnv } from '../dropbox/hosts.js';
import { errorTag } from '../dropbox/errors.js';
import { type ExpectedToken, normalizePastedToken } from '../dropbox/token-shape.js';
import { DropboxApiError, DropkeyError, ErrorCodes } from '../errors.js';
import { buildAuthorizeUrl, parseCallback } from '../oauth/authorize.js';
import { codeChallengeS256, generateCodeVerifier, generateState } from '../oauth/pkce.js';
import { exchangeCode, type FetchLike, revokeToken } from '../oauth/token.js';
import type { AppAccess, AppRecord, ConnectionPatch, ConnectionRecord, Store } from '../store/types.js';
import { DropboxClient, type PathRoot } from '../dropbox/client.js';
import type { DoctorInput, DoctorReport } from './doctor.js';
import { DEFAULT_CONNECTION, validateName } from './names.js';
import { createSdkAuth, type DropkeySdkAuth, type SdkAuthOptions } from './sdk-auth.js';
import { clientOf, identify, type Identity, makeRefreshGrant, rpcCall } from './protocol.js';
import { type Logger, redactText, safeLogger } from './redact.js';
import { LOCK_TTL_MS, loginCommand, notFound, Refresher, refreshFallbackError } from './refresher.js';
import { defaultSleep, type ResolvedRetry, resolveRetry, withRetry } from './retry.js';
import type {
  AppInfo,
  ConnectionInfo,
  DropkeyOptions,
  GetTokenOptions,
  PendingLogin,
  Sleep,
  TokenInfo,
} from './types.js';

/** Dropbox short-lived tokens last 4 hours (dropbox-api.md §1.3); an imported `sl.` token lives at most that. */
const SHORT_LIVED_MS = 4 * 3600 * 1000;

export interface AddAppInput {
  name: string;
  key: string;
  secret?: string | null;
  scopes?: string[];
  team?: boolean;
  access?: AppAccess | null;
}

export interface StartLoginInput {
  app?: string;
  connection?: string;
  scopes?: string[];
  /** The loopback callback URL; omit for the no-redirect flow (the user pastes the code Dropbox shows). */
  redirectUri?: string;
}

export interface FinishLoginInput {
  pending: PendingLogin;
  /** The code the user pasted (no-redirect flow). */
  code?: string;
  /** The full redirect URL, or its path and query, as received by the callback server. */
  callbackUrl?: string | URL | URLSearchParams;
  signal?: AbortSignal;
}

export interface ConnectResult {
  connection: ConnectionInfo;
  /** True when the name was new; false when an existing connection was reconnected. */
  created: boolean;
  /** Things the user should know (printed by the CLI), never secrets. */
  warnings: string[];
}

export interface ImportInput {
  connection?: string;
  app?: string;
  refreshToken?: string;
  accessToken?: string;
  signal?: AbortSignal;
}

export interface ImportResult extends ConnectResult {
  /** False for a pasted access token: it cannot be renewed and expires within 4 hours. */
  refreshable: boolean;
}

export interface RevokeResult {
  connection: string;
  /** True when Dropbox revoked the token now; false when Dropbox already considered it invalid. */
  revokedAtDropbox: boolean;
  /** Plain words for the user. */
  message: string;
}

function appInfo(a: AppRecord): AppInfo {
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

export function connectionInfo(c: ConnectionRecord): ConnectionInfo {
  return {
    name: c.name,
    app: c.app,
    accountId: c.accountId,
    email: c.email,
    displayName: c.displayName,
    teamId: c.teamId,
    teamName: c.teamName,
    scopes: [...c.scopes],
    expiresAt: c.accessTokenExpiresAt,
    state: c.state,
    refreshable: c.refreshToken !== null && c.refreshToken !== '',
    lastError: c.lastError,
    lastRefreshAt: c.lastRefreshAt,
    createdAt: c.createdAt,
    updatedAt: c.updatedAt,
  };
}

function cleanSecretInput(value: string, what: string, token?: ExpectedToken): string {
  // Pasted values often carry a newline, spaces or quotes along; those are never part of a Dropbox token. A token
  // may also come as "Bearer …", NAME=… or inside a token JSON: normalizePastedToken strips all of that.
  let cleaned: string;
  let innerSpace: boolean;
  if (token === undefined) {
    cleaned = value.trim().replace(/^(["'])(.*)\1$/s, '$2').trim();
    innerSpace = /\s/.test(cleaned);
  } else {
    const n = normalizePastedToken(value, token);
    cleaned = n.value;
    innerSpace = n.stripped.includes('token.inner_whitespace');
  }
  if (cleaned === '') throw new DropkeyError(ErrorCodes.BAD_INPUT, `The ${what} is empty.`, { hint: `Paste the ${what} again.` });
  if (innerSpace) {
    throw new DropkeyError(ErrorCodes.BAD_INPUT, `The ${what} contains spaces or line breaks, so it was pasted incompletely or with extra text.`, {
      hint: `Copy the ${what} again, alone, and paste it (use "-" to read it from standard input).`,
    });
  }
  return cleaned;
}

function validateAppKey(input: unknown): string {
  const key = typeof input === 'string' ? input.trim() : '';
  // Dropbox's keys are 15 lowercase letters and digits; other servers (the emulator, a proxy) may use "-" or ".".
  if (!/^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/.test(key)) {
    throw new DropkeyError(ErrorCodes.BAD_INPUT, key === '' ? 'The app key is missing.' : 'The app key does not look like an app key (letters and digits, no spaces).', {
      hint: 'Copy the "App key" from the Settings tab of your app in the Dropbox App Console: dropkey app add --name NAME --key KEY',
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

function validateScopes(scopes: unknown): string[] {
  if (scopes === undefined) return [];
  if (!Array.isArray(scopes)) throw new DropkeyError(ErrorCodes.BAD_INPUT, 'Scopes must be a list of scope names.');
  const out: string[] = [];
  for (const s of scopes) {
    // Allow comma- or space-separated lists in one value (`--scope "files.content.read files.metadata.read"`).
    for (const part of String(s).split(/[\s,]+/)) {
      if (part === '') continue;
      if (!/^[a-z][a-z0-9_.:]*$/i.test(part)) {
        throw new DropkeyError(ErrorCodes.BAD_INPUT, `Invalid scope name ${JSON.stringify(part)}.`, {
          hint: 'Use Dropbox scope names such as files.content.read or account_info.read (App Console, Permissions tab).',
        });
      }
      if (!out.includes(part)) out.push(part);
    }
  }
  return out;
}

export class Dropkey {
  readonly urls: DropboxUrls;
  readonly store: Store;
  readonly #ownsStore: boolean;
  readonly #fetch: FetchLike;
  readonly #now: () => number;
  readonly #sleep: Sleep;
  readonly #log: Logger;
  readonly #retry: ResolvedRetry;
  readonly #marginMs: number;
  readonly #lockWaitMs: number;
  readonly #refresher: Refresher;

  private constructor(store: Store, ownsStore: boolean, options: DropkeyOptions) {
    this.store = store;
    this.#ownsStore = ownsStore;
    this.urls = { ...(options.urls ?? DROPBOX_URLS) };
    const f = options.fetch ?? globalThis.fetch;
    this.#fetch = (input, init) => f(input, init);
    this.#now = options.now ?? Date.now;
    this.#sleep = options.sleep ?? defaultSleep;
    this.#log = safeLogger(options.logger);
    this.#retry = resolveRetry(options.retry);
    const margin = options.refreshMarginSeconds ?? 300;
    if (!Number.isFinite(margin) || margin < 0) {
      throw new DropkeyError(ErrorCodes.BAD_INPUT, `refreshMarginSeconds must be a number of seconds >= 0, got ${String(margin)}.`);
    }
    this.#marginMs = margin * 1000;
    // Waiting for another process's refresh may take as long as that refresh with all its retries.
    const r = this.#retry;
    this.#lockWaitMs = options.lockWaitMs ?? r.attempts * r.attemptTimeoutMs + r.maxTotalWaitMs + 10_000;
    this.#refresher = new Refresher({
      store,
      grant: makeRefreshGrant({ urls: this.urls, fetch: this.#fetch, now: this.#now, timeoutMs: this.#retry.attemptTimeoutMs }),
      now: this.#now,
      sleep: this.#sleep,
      logger: this.#log,
      marginMs: this.#marginMs,
      retry: this.#retry,
      lockWaitMs: this.#lockWaitMs,
    });
  }

  /** Opens dropkey on a store: the given one, or the SQLite store in `home`. */
  static async open(options: DropkeyOptions = {}): Promise<Dropkey> {
    if (options.store) return new Dropkey(options.store, false, options);
    const { openStore, resolveHome } = await import('../store/index.js');
    // Without a home, the platform's data directory (no environment is read here; see fromEnv).
    const store = await openStore({
      home: options.home ?? resolveHome({}),
      ...(options.masterKey === undefined ? {} : { masterKey: options.masterKey }),
      ...(options.databaseUrl === undefined ? {} : { databaseUrl: options.databaseUrl }),
    });
    try {
      return new Dropkey(store, true, options);
    } catch (err) {
      await store.close();
      throw err;
    }
  }

  /**
   * The one helper that reads environment variables, for library users who configure dropkey like the CLI:
   * DROPKEY_HOME (data directory; else the XDG default), DROPKEY_MASTER_KEY, DROPKEY_DATABASE_URL (another
   * store, e.g. PostgreSQL), DROPKEY_DROPBOX_URL and the per-host overrides (see dropboxUrlsFromEnv).
   * Pass `process.env` or your own map; `overrides` set everything else (fetch, logger, clock...).
   */
  static async fromEnv(
    env: Record<string, string | undefined> = process.env,
    overrides: Omit<DropkeyOptions, 'home' | 'masterKey' | 'urls' | 'databaseUrl'> = {},
  ): Promise<Dropkey> {
    const { resolveHome } = await import('../store/index.js');
    const nonEmpty = (v: string | undefined): string | undefined => (v === undefined || v.trim() === '' ? undefined : v);
    const masterKey = nonEmpty(env['DROPKEY_MASTER_KEY']);
    const databaseUrl = nonEmpty(env['DROPKEY_DATABASE_URL']);
    return Dropkey.open({
      ...overrides,
      home: resolveHome(env),
      ...(masterKey ? { masterKey } : {}),
      ...(databaseUrl ? { databaseUrl } : {}),
      urls: dropboxUrlsFromEnv(env),
    });
  }

  async close(): Promise<void> {
    if (this.#ownsStore) await this.store.close();
  }

  // ---------------------------------------------------------------- apps

  async addApp(input: AddAppInput): Promise<AppInfo> {
    const name = validateName('app', input.name);
    const key = validateAppKey(input.key);
    const secret = validateAppSecret(input.secret, key);
    const scopes = validateScopes(input.scopes);
    const access = validateAccess(input.access);
    const existing = await this.store.getApp(name);
    if (existing) {
      throw new DropkeyError(ErrorCodes.ALREADY_EXISTS, `An app named "${name}" already exists.`, {
        hint: `Pick another name, or remove it first: dropkey app remove ${name}`,
      });
    }
    const rec = await this.store.createApp({ name, key, secret, scopes, team: input.team === true, access });
    this.#log.info({ app: name, team: rec.team }, 'app added');
    return appInfo(rec);
  }

  /**
   * Changes an app, with addApp's checks. `secret: null` makes it a PKCE-only app. Connections keep working
   * only if the key stays the one that issued their tokens; a corrected secret fixes invalid_client at once.
   */
  async updateApp(name: string, patch: Partial<Omit<AddAppInput, 'name'>>): Promise<AppInfo> {
    const app = await this.#app(name);
    const key = patch.key === undefined ? app.key : validateAppKey(patch.key);
    const changes: Partial<Omit<AppRecord, 'name' | 'createdAt'>> = {};
    if (patch.key !== undefined) changes.key = key;
    if (patch.secret !== undefined) changes.secret = validateAppSecret(patch.secret, key);
    if (patch.scopes !== undefined) changes.scopes = validateScopes(patch.scopes);
    if (patch.team !== undefined) changes.team = patch.team === true;
    if (patch.access !== undefined) changes.access = validateAccess(patch.access);
    const rec = await this.store.updateApp(app.name, changes);
    this.#log.info({ app: name, fields: Object.keys(changes) }, 'app updated');
    return appInfo(rec);
  }

  async listApps(): Promise<AppInfo[]> {
    return (await this.store.listApps()).map(appInfo);
  }

  async getApp(name: string): Promise<AppInfo> {
    return appInfo(await this.#app(name));
  }

  async removeApp(name: string): Promise<void> {
    const app = await this.#app(name);
    const users = (await this.store.listConnections()).filter((c) => c.app === app.name).map((c) => c.name);
    if (users.length > 0) {
      throw new DropkeyError(ErrorCodes.BAD_INPUT, `App "${name}" is still used by connection${users.length > 1 ? 's' : ''} ${users.map((u) => `"${u}"`).join(', ')}.`, {
        hint: `Revoke them first: ${users.map((u) => `dropkey revoke --connection ${u}`).join('; ')}`,
      });
    }
    await this.store.deleteApp(app.name);
  }

  async #app(name: string): Promise<AppRecord> {
    validateName('app', name);
    const app = await this.store.getApp(name);
    if (!app) {
      throw new DropkeyError(ErrorCodes.NOT_FOUND, `No app named "${name}".`, {
        hint: `See the apps with: dropkey app list. Add one with: dropkey app add --name ${name} --key <APP_KEY>`,
        details: { app: name },
      });
    }
    return app;
  }

  /** The app to use when none is named: the only one there is. */
  async #resolveApp(name: string | undefined, connection: string): Promise<AppRecord> {
    if (name !== undefined) return this.#app(name);
    const existing = await this.store.getConnection(connection);
    if (existing) return this.#app(existing.app);
    const apps = await this.store.listApps();
    if (apps.length === 1) return apps[0]!;
    throw new DropkeyError(
      ErrorCodes.BAD_INPUT,
      apps.length === 0 ? 'No Dropbox app is registered yet.' : `Several apps are registered (${apps.map((a) => a.name).join(', ')}); say which one to use.`,
      {
        hint: apps.length === 0 ? 'Add one first: dropkey app add --name NAME --key KEY [--secret -]' : `Add --app NAME, e.g. --app ${apps[0]!.name}`,
      },
    );
  }

  // ---------------------------------------------------------------- login

  /**
   * Begins an authorization-code login: PKCE (S256), `token_access_type=offline` and a fresh `state`, always.
   * The result holds the verifier: keep it in memory until finishLogin, never log it.
   */
  async startLogin(input: StartLoginInput = {}): Promise<PendingLogin> {
    const connection = validateName('connection', input.connection ?? DEFAULT_CONNECTION);
    const app = await this.#resolveApp(input.app, connection);
    const scopes = input.scopes && input.scopes.length > 0 ? validateScopes(input.scopes) : [...app.scopes];
    if (input.redirectUri !== undefined) {
      let u: URL;
      try {
        u = new URL(input.redirectUri);
      } catch {
        throw new DropkeyError(ErrorCodes.BAD_INPUT, `The redirect URI ${JSON.stringify(input.redirectUri)} is not a URL.`);
      }
      if (u.protocol !== 'https:' && !(u.protocol === 'http:' && ['127.0.0.1', 'localhost', '[::1]'].includes(u.hostname))) {
        throw new DropkeyError(ErrorCodes.BAD_INPUT, 'Dropbox accepts only https redirect URIs, except for localhost and 127.0.0.1.');
      }
    }
    const codeVerifier = generateCodeVerifier();
    const state = generateState();
    const authorizeUrl = buildAuthorizeUrl({
      urls: this.urls,
      clientId: app.key,
      ...(input.redirectUri === undefined ? {} : { redirectUri: input.redirectUri }),
      state,
      codeChallenge: codeChallengeS256(codeVerifier),
      ...(scopes.length > 0 ? { scopes } : {}),
      tokenAccessType: 'offline',
    });
    return {
      app: app.name,
      connection,
      authorizeUrl,
      state,
      codeVerifier,
      ...(input.redirectUri === undefined ? {} : { redirectUri: input.redirectUri }),
      scopes,
    };
  }

  /** Exchanges the code, validates the new connection at once, and stores it (new, or reconnecting the name). */
  async finishLogin(input: FinishLoginInput): Promise<ConnectResult> {
    const { pending } = input;
    const app = await this.#app(pending.app);
    let code: string;
    if (input.callbackUrl !== undefined) {
      code = parseCallback(input.callbackUrl, pending.state).code;
    } else if (typeof input.code === 'string' && input.code.trim() !== '') {
      code = cleanSecretInput(input.code, 'authorization code');
    } else {
      throw new DropkeyError(ErrorCodes.BAD_INPUT, 'No authorization code was given.', {
        hint: 'Paste the code Dropbox showed after you clicked Allow.',
      });
    }
    const tokens = await this.#recordLoginFailure(pending.connection, () => exchangeCode({
      urls: this.urls,
      fetch: this.#fetch,
      now: this.#now,
      client: clientOf(app),
      code,
      codeVerifier: pending.codeVerifier,
      ...(pending.redirectUri === undefined ? {} : { redirectUri: pending.redirectUri }),
      ...(input.signal ? { signal: input.signal } : {}),
      timeoutMs: this.#retry.attemptTimeoutMs,
    }));
    const warnings: string[] = [];
    if (!tokens.refreshToken) {
      warnings.push('Dropbox returned no refresh token, so this connection stops working when its access token expires (within 4 hours).');
    }
    const identity = await this.#validate(app, tokens.accessToken, warnings, input.signal);
    return this.#save({
      name: pending.connection,
      app,
      accessToken: tokens.accessToken,
      refreshToken: tokens.refreshToken ?? null,
      expiresAt: tokens.expiresAt ?? null,
      scopes: tokens.scopes.length > 0 ? tokens.scopes : pending.scopes,
      identity: {
        ...identity,
        accountId: identity.accountId ?? tokens.accountId ?? null,
        teamId: identity.teamId ?? tokens.teamId ?? null,
      },
      warnings,
      refreshed: true,
    });
  }

  /**
   * A failed code exchange for an existing connection is remembered in its lastError (so `dropkey doctor` can
   * explain e.g. a redirect URI mismatch later); the connection itself is left as it was.
   */
  async #recordLoginFailure<T>(name: string, fn: () => Promise<T>): Promise<T> {
    try {
      return await fn();
    } catch (err) {
      if (err instanceof DropkeyError && err.code !== ErrorCodes.CANCELLED && (await this.store.getConnection(name))) {
        await this.store.updateConnection(name, { lastError: `The last login failed: ${redactText(err.message)}` }).catch(() => undefined);
      }
      throw err;
    }
  }

  /**
   * Imports an existing credential. A refresh token is checked by one refresh (Dropbox has no token
   * introspection, so this is how scopes and expiry are learnt); a pasted access token is accepted with a warning:
   * it cannot be renewed.
   */
  async import(input: ImportInput): Promise<ImportResult> {
    const name = validateName('connection', input.connection ?? DEFAULT_CONNECTION);
    const app = await this.#resolveApp(input.app, name);
    if ((input.refreshToken === undefined) === (input.accessToken === undefined)) {
      throw new DropkeyError(ErrorCodes.BAD_INPUT, 'Give exactly one of a refresh token or an access token to import.', {
        hint: `dropkey import --connection ${name} --app ${app.name} --refresh-token -   (preferred), or --access-token -`,
      });
    }
    const warnings: string[] = [];
    if (input.refreshToken !== undefined) {
      const refreshToken = cleanSecretInput(input.refreshToken, 'refresh token', 'refresh');
      if (refreshToken.startsWith('sl.')) {
        throw new DropkeyError(ErrorCodes.BAD_INPUT, 'This looks like an access token (it starts with "sl."), not a refresh token.', {
          hint: `Import it as an access token: dropkey import --connection ${name} --app ${app.name} --access-token -`,
        });
      }
      const grant = makeRefreshGrant({ urls: this.urls, fetch: this.#fetch, now: this.#now, timeoutMs: this.#retry.attemptTimeoutMs });
      const once = (scopes?: readonly string[]) =>
        withRetry((signal) => grant({ app, refreshToken, signal, ...(scopes ? { scopes } : {}) }), {
          retry: this.#retry,
          sleep: this.#sleep,
          ...(input.signal ? { signal: input.signal } : {}),
        });
      let res;
      try {
        // Dropbox's refresh answer lists no scopes unless a `scope` subset is asked for (§1.2), and there is no
        // introspection: asking for the app's scopes confirms them. If the grant lacks one, a plain refresh follows.
        res = app.scopes.length > 0 ? await once(app.scopes).catch((err: unknown) => {
          if (err instanceof DropboxApiError && err.code === ErrorCodes.OAUTH_FAILED && err.status === 400) return undefined;
          throw err;
        }) : undefined;
        if (!res) {
          res = await once();
          warnings.push(`Dropbox does not tell which scopes this refresh token grants, so dropkey could not record them (the app lists ${app.scopes.length > 0 ? app.scopes.join(', ') : 'none'}).`);
        }
      } catch (err) {
        if (err instanceof DropboxApiError && err.summary === 'invalid_grant') {
          throw new DropkeyError(ErrorCodes.BAD_INPUT, `Dropbox does not accept this refresh token for app "${app.name}": it was revoked, mistyped, or belongs to another app.`, {
            cause: err,
            hint: `Check that the token came from app key ${app.key}, or connect with a browser: dropkey login --connection ${name} --app ${app.name}`,
          });
        }
        throw err;
      }
      const identity = await this.#validate(app, res.accessToken, warnings, input.signal);
      const result = await this.#save({
        name,
        app,
        accessToken: res.accessToken,
        refreshToken: res.refreshToken ?? refreshToken,
        expiresAt: res.expiresAt,
        scopes: res.scopes ?? [],
        identity,
        warnings,
        refreshed: true,
      });
      return { ...result, refreshable: true };
    }

    const accessToken = cleanSecretInput(input.accessToken ?? '', 'access token', 'access');
    let identity: Identity;
    try {
      identity = await this.#validate(app, accessToken, warnings, input.signal);
    } catch (err) {
      if (errorTag(err) === 'expired_access_token') {
        throw new DropkeyError(ErrorCodes.TOKEN_EXPIRED, 'This access token has already expired (App Console tokens last 4 hours).', {
          cause: err,
          hint: `Connect for good instead: dropkey login --connection ${name} --app ${app.name}`,
        });
      }
      // Refresh tokens and retired long-lived access tokens are both 64 characters (dropbox/token-shape.ts); one
      // that Dropbox refuses as a Bearer token is most likely a refresh token pasted into the wrong option.
      if (err instanceof DropkeyError && errorTag(err.cause) === 'invalid_access_token' && /^[A-Za-z0-9_-]{64}$/.test(accessToken)) {
        throw new DropkeyError(ErrorCodes.BAD_INPUT, 'Dropbox does not accept this 64-character value as an access token: it is most likely a refresh token.', {
          cause: err.cause,
          hint: `Import it as a refresh token: dropkey import --connection ${name} --app ${app.name} --refresh-token -`,
        });
      }
      throw err;
    }
    const shortLived = accessToken.startsWith('sl.');
    warnings.push(
      shortLived
        ? 'This access token expires within 4 hours and cannot be renewed: dropkey has no refresh token for it.'
        : 'This looks like a long-lived (legacy) access token; it cannot be renewed, and Dropbox no longer issues new ones.',
    );
    warnings.push(`Upgrade to a connection that renews itself with: ${loginCommand({ name, app: app.name })}`);
    const result = await this.#save({
      name,
      app,
      accessToken,
      refreshToken: null,
      // Dropbox gives no introspection: 4 hours from now is the latest a short-lived token can expire.
      expiresAt: shortLived ? this.#now() + SHORT_LIVED_MS : null,
      scopes: [],
      identity,
      warnings,
      refreshed: false,
    });
    return { ...result, refreshable: false };
  }

  /**
   * Checks a fresh token against Dropbox and says who it belongs to. A missing account_info.read /
   * team_info.read scope does not fail the connection (it may be all the job needs); other refusals do.
   */
  async #validate(app: AppRecord, accessToken: string, warnings: string[], signal?: AbortSignal): Promise<Identity> {
    try {
      return await withRetry((s) => identify({ urls: this.urls, fetch: this.#fetch }, accessToken, app.team, s, this.#retry.attemptTimeoutMs), {
        retry: this.#retry,
        sleep: this.#sleep,
        ...(signal ? { signal } : {}),
      });
    } catch (err) {
      const tag = errorTag(err);
      if (tag === 'missing_scope') {
        const scope = app.team ? 'team_info.read' : 'account_info.read';
        warnings.push(`Could not read the ${app.team ? 'team' : 'account'} details: the token lacks the ${scope} scope. Enable it in the App Console to see them in dropkey list.`);
        return { accountId: null, email: null, displayName: null, teamId: null, teamName: null, serverDate: null };
      }
      const reason = err instanceof DropkeyError ? err.details?.['reason'] : undefined;
      if (reason === 'team_token_without_select_user') {
        throw new DropkeyError(ErrorCodes.BAD_INPUT, `This token belongs to a whole Business team, but app "${app.name}" is registered as a user app.`, {
          cause: err,
          hint: `Mark the app as a team app, then import again: dropkey app update --name ${app.name} --team`,
        });
      }
      if (reason === 'user_token_on_team_route') {
        throw new DropkeyError(ErrorCodes.BAD_INPUT, `This token belongs to a single user, but app "${app.name}" is registered as a team app.`, {
          cause: err,
          hint: `Mark the app as a user app, then import again: dropkey app update --name ${app.name} --no-team`,
        });
      }
      if (tag === 'invalid_access_token') {
        throw new DropkeyError(ErrorCodes.BAD_INPUT, 'Dropbox does not accept this token: it was revoked, mistyped, or belongs to another app.', {
          cause: err,
          hint: 'Check it with: dropkey doctor --token -',
        });
      }
      throw err;
    }
  }

  /** Creates or reconnects a connection, holding the refresh lock so no refresh interleaves. */
  async #save(p: {
    name: string;
    app: AppRecord;
    accessToken: string;
    refreshToken: string | null;
    expiresAt: number | null;
    scopes: string[];
    identity: Identity;
    warnings: string[];
    refreshed: boolean;
  }): Promise<ConnectResult> {
    return this.store.withLock(`refresh:${p.name}`, { ttlMs: LOCK_TTL_MS, waitMs: this.#lockWaitMs }, async () => {
      const now = this.#now();
      const existing = await this.store.getConnection(p.name);
      const fields = {
        app: p.app.name,
        accountId: p.identity.accountId,
        teamId: p.identity.teamId,
        email: p.identity.email,
        displayName: p.identity.displayName,
        teamName: p.identity.teamName,
        scopes: p.scopes,
        accessToken: p.accessToken,
        accessTokenExpiresAt: p.expiresAt,
        state: 'active' as const,
        lastError: null,
        lastRefreshAt: p.refreshed ? now : null,
      };
      if (!existing) {
        const rec = await this.store.createConnection({ name: p.name, ...fields, refreshToken: p.refreshToken });
        this.#log.info({ connection: p.name, app: p.app.name }, 'connection created');
        return { connection: connectionInfo(rec), created: true, warnings: p.warnings };
      }
      const patch: ConnectionPatch = { ...fields };
      let allowClear = false;
      if (p.refreshToken) {
        patch.refreshToken = p.refreshToken;
      } else if (existing.refreshToken) {
        // Replacing a renewable connection by a non-renewable credential would lose the refresh token.
        throw new DropkeyError(ErrorCodes.ALREADY_EXISTS, `Connection "${p.name}" already exists and holds a refresh token; this credential has none and would replace it.`, {
          hint: `Use another name (--connection ${p.name}_2), or revoke the old one first: dropkey revoke --connection ${p.name}`,
        });
      } else {
        patch.refreshToken = null;
        allowClear = true;
      }
      const rec = await this.store.updateConnection(p.name, patch, allowClear ? { allowClearRefreshToken: true } : {});
      this.#log.info({ connection: p.name, app: p.app.name }, 'connection reconnected');
      return { connection: connectionInfo(rec), created: false, warnings: p.warnings };
    });
  }

  // ---------------------------------------------------------------- tokens

  /** A valid access token for the connection, refreshed first when it expires within the margin. */
  async getAccessToken(name: string = DEFAULT_CONNECTION, options: GetTokenOptions = {}): Promise<string> {
    return (await this.getToken(name, options)).accessToken;
  }

  /** The access token with its expiry, scopes and account. Never the refresh token. */
  async getToken(name: string = DEFAULT_CONNECTION, options: GetTokenOptions = {}): Promise<TokenInfo> {
    validateName('connection', name);
    if (options.minValidSeconds !== undefined && (!Number.isFinite(options.minValidSeconds) || options.minValidSeconds < 0)) {
      throw new DropkeyError(ErrorCodes.BAD_INPUT, `minValidSeconds must be a number of seconds >= 0, got ${String(options.minValidSeconds)}.`);
    }
    const rec = await this.#refresher.fresh(name, options);
    if (!rec.accessToken) throw new DropkeyError(ErrorCodes.INTERNAL, `Connection "${name}" has no access token after a refresh.`);
    return {
      accessToken: rec.accessToken,
      expiresAt: rec.accessTokenExpiresAt,
      scopes: [...rec.scopes],
      accountId: rec.accountId,
      teamId: rec.teamId,
      connection: rec.name,
    };
  }

  /**
   * Refreshes now when needed (or always with `force`), and returns the connection. A refresh that fails throws,
   * even when the current access token still works (token readers keep using it; whoever asked for a refresh
   * must learn it did not happen): the error keeps the cause's code and says until when the old token works.
   */
  async refresh(name: string = DEFAULT_CONNECTION, options: { force?: boolean; signal?: AbortSignal } = {}): Promise<ConnectionInfo> {
    validateName('connection', name);
    const rec = await this.#refresher.fresh(name, {
      ...(options.force ? { forceRefresh: true } : {}),
      ...(options.signal ? { signal: options.signal } : {}),
    });
    const failed = refreshFallbackError(rec);
    if (failed !== undefined) throw refreshFailedError(rec, failed);
    return connectionInfo(rec);
  }

  async list(): Promise<ConnectionInfo[]> {
    return (await this.store.listConnections()).map(connectionInfo);
  }

  async get(name: string = DEFAULT_CONNECTION): Promise<ConnectionInfo> {
    validateName('connection', name);
    const rec = await this.store.getConnection(name);
    if (!rec) throw notFound(name);
    return connectionInfo(rec);
  }

  /**
   * Revokes the connection's token at Dropbox (which also disables its refresh token, §1.5), then deletes it
   * locally. If Dropbox says the token is already invalid, it is deleted locally all the same, and the result
   * says so. If Dropbox cannot be reached, nothing is deleted unless `force` is set.
   */
  async revoke(name: string = DEFAULT_CONNECTION, options: { force?: boolean; signal?: AbortSignal } = {}): Promise<RevokeResult> {
    validateName('connection', name);
    const rec = await this.store.getConnection(name);
    if (!rec) throw notFound(name);
    let revokedAtDropbox = false;
    let message: string;
    try {
      const token = await this.#tokenForRevoke(rec, options.signal);
      if (token === null) {
        message = `Dropbox already considered the token of "${name}" invalid; deleted it locally.`;
      } else {
        const r = await withRetry((signal) => this.#revokeAtDropbox(rec, token, signal), {
          retry: this.#retry,
          sleep: this.#sleep,
          ...(options.signal ? { signal: options.signal } : {}),
        });
        revokedAtDropbox = !r.alreadyInvalid;
        message = r.alreadyInvalid
          ? `Dropbox already considered the token of "${name}" invalid; deleted it locally.`
          : `Revoked "${name}" at Dropbox (its refresh token too) and deleted it locally.`;
      }
    } catch (err) {
      const teamToken = err instanceof DropkeyError && err.details?.['reason'] === 'team_token_without_select_user';
      if (!options.force && teamToken) {
        // auth/token/revoke is a user route (§1.5): a team token reaches it only acting as a member, which needs
        // the team_data.member scope. Admin connectors rarely hold it, so the app is unlinked by hand instead.
        throw new DropkeyError(ErrorCodes.BAD_INPUT, `Dropbox does not let this team token revoke itself: "${name}" was kept.`, {
          cause: err,
          hint:
            "Remove the app in the Dropbox Admin console (Settings, then Apps), then delete the connection locally: " +
            `dropkey revoke --connection ${name} --force`,
        });
      }
      if (!options.force) {
        const why = err instanceof Error ? redactText(err.message) : 'unknown error';
        throw new DropkeyError(ErrorCodes.DROPBOX_UNAVAILABLE, `Could not revoke "${name}" at Dropbox, so it was kept: ${why}`, {
          cause: err,
          hint: `Try again later, or delete it locally anyway: dropkey revoke --connection ${name} --force (then unlink the app at https://www.dropbox.com/account/connected_apps)`,
        });
      }
      message = `Could not revoke "${name}" at Dropbox; deleted it locally anyway. Unlink the app at https://www.dropbox.com/account/connected_apps to be sure.`;
    }
    await this.store.withLock(`refresh:${name}`, { ttlMs: LOCK_TTL_MS, waitMs: this.#lockWaitMs }, async () => {
      await this.store.deleteConnection(name);
    });
    this.#log.info({ connection: name, revokedAtDropbox }, 'connection revoked');
    return { connection: name, revokedAtDropbox, message };
  }

  /**
   * POST /2/auth/token/revoke (§1.5). It is a user route: a team token reaches it only acting as a member
   * (Dropbox-API-Select-User), which needs the team_data.member scope; then any member will do, found with
   * team/members/list_v2 (members.read). Without those scopes the 400 surfaces for revoke() to explain.
   */
  async #revokeAtDropbox(rec: ConnectionRecord, token: string, signal: AbortSignal | undefined): Promise<{ alreadyInvalid: boolean }> {
    const base = { urls: this.urls, fetch: this.#fetch, ...(signal ? { signal } : {}), timeoutMs: this.#retry.attemptTimeoutMs };
    try {
      return await revokeToken({ ...base, accessToken: token });
    } catch (err) {
      const teamToken = err instanceof DropkeyError && err.details?.['reason'] === 'team_token_without_select_user';
      if (!teamToken || !rec.scopes.includes('team_data.member') || !rec.scopes.includes('members.read')) throw err;
      const list = await rpcCall(base, token, 'team/members/list_v2', { limit: 1 }, base);
      const member = (list.result as { members?: Array<{ profile?: { team_member_id?: unknown } }> }).members?.[0]?.profile?.team_member_id;
      if (typeof member !== 'string') throw err;
      try {
        await rpcCall(base, token, 'auth/token/revoke', null, { ...base, headers: { 'dropbox-api-select-user': member } });
        return { alreadyInvalid: false };
      } catch (err2) {
        if (errorTag(err2) === 'invalid_access_token') return { alreadyInvalid: true };
        throw err2;
      }
    }
  }

  /** A token to revoke with, or null when the credential is already dead (refresh token rejected, token expired). */
  async #tokenForRevoke(rec: ConnectionRecord, signal?: AbortSignal): Promise<string | null> {
    if (rec.state === 'needs_reauth' || rec.state === 'revoked') return null;
    try {
      return (await this.#refresher.fresh(rec.name, { minValidSeconds: 60, ...(signal ? { signal } : {}) })).accessToken;
    } catch (err) {
      if (err instanceof DropkeyError && (err.code === ErrorCodes.REAUTH_REQUIRED || err.code === ErrorCodes.TOKEN_EXPIRED)) return null;
      throw err;
    }
  }

  /**
   * A Dropbox API client (rpc / upload / download) whose token always comes from this connection: refreshed
   * before it expires, and once more when Dropbox answers 401 expired_access_token; 429 and 5xx are retried.
   */
  client(name: string = DEFAULT_CONNECTION, options: { selectUser?: string; selectAdmin?: string; pathRoot?: PathRoot } = {}): DropboxClient {
    validateName('connection', name);
    let current: string | undefined;
    return new DropboxClient({
      urls: this.urls,
      fetch: this.#fetch,
      sleep: this.#sleep,
      getAccessToken: async (opts: { forceRefresh?: boolean; rejectedToken?: string }) => {
        if (!opts.forceRefresh) {
          const t = await this.getAccessToken(name);
          current = t;
          return t;
        }
        // A forced refresh names the token Dropbox refused (the client's, else the last one handed out), so
        // concurrent 401s share one refresh instead of refreshing once each.
        const rejected = opts.rejectedToken ?? current;
        return this.getAccessToken(name, { forceRefresh: true, ...(rejected ? { rejectedToken: rejected } : {}) });
      },
      ...(options.selectUser === undefined ? {} : { selectUser: options.selectUser }),
      ...(options.selectAdmin === undefined ? {} : { selectAdmin: options.selectAdmin }),
      ...(options.pathRoot === undefined ? {} : { pathRoot: options.pathRoot }),
    });
  }

  /**
   * An `auth` object for the official `dropbox` SDK: `new Dropbox({ auth: await dk.sdkAuth('default') })`.
   * Before each request the SDK asks it for a token, which dropkey refreshes as needed; it never holds the
   * refresh token or the app secret. See sdk-auth.ts for exactly what the SDK calls.
   */
  async sdkAuth(name: string = DEFAULT_CONNECTION, options: SdkAuthOptions = {}): Promise<DropkeySdkAuth> {
    validateName('connection', name);
    const rec = await this.store.getConnection(name);
    if (!rec) throw notFound(name);
    const app = await this.store.getApp(rec.app);
    return createSdkAuth(this, name, app?.key, { fetch: this.#fetch, ...options });
  }

  /** Diagnoses a connection or a pasted token; see doctor.ts. */
  async doctor(input: DoctorInput = {}): Promise<DoctorReport> {
    // Loaded on demand: `dropkey token` (a start-up-time target) never needs it.
    const { runDoctor } = await import('./doctor.js');
    return runDoctor(this, { urls: this.urls, fetch: this.#fetch, now: this.#now }, input);
  }

  /** Internal seams for the adapters in this folder (client, sdk auth, doctor). */
  get _internals(): { fetch: FetchLike; now: () => number; sleep: Sleep; log: Logger; retry: ResolvedRetry; marginMs: number } {
    return { fetch: this.#fetch, now: this.#now, sleep: this.#sleep, log: this.#log, retry: this.#retry, marginMs: this.#marginMs };
  }
}

/** A refresh that failed while the old token still works (Dropkey.refresh): the cause's code, in plain words. */
function refreshFailedError(rec: ConnectionRecord, err: unknown): DropkeyError {
  const code = err instanceof DropkeyError ? err.code : err instanceof DropboxApiError ? ErrorCodes.DROPBOX_API : ErrorCodes.DROPBOX_UNAVAILABLE;
  const why = err instanceof Error ? redactText(err.message).slice(0, 300) : 'unknown error';
  const until = rec.accessTokenExpiresAt === null ? null : new Date(rec.accessTokenExpiresAt).toISOString();
  return new DropkeyError(
    code,
    `Refreshing connection "${rec.name}" failed: ${why.replace(/\.?$/, '.')} The current access token still works` +
      `${until ? ` until ${until}` : ''}, so services using it are not affected yet.`,
    {
      cause: err,
      hint: (err instanceof DropkeyError && err.hint) || `Try again in a few minutes; if it keeps failing, run: dropkey doctor --connection ${rec.name}`,
      details: { connection: rec.name, refreshed: false, access_token_expires_at: until },
    },
  );
}

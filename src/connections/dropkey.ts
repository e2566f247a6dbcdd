/**
 * The connections facade: dropkey's library API. Apps, logins, imports, tokens, revocation, listing, and the
 * adapters that hand fresh tokens to a Dropbox client or to the official SDK.
 *
 * This class only delegates: it builds one ConnectionsContext (context.ts) and hands it to the module that does
 * the work (apps.ts, login.ts, import.ts, tokens.ts, revoke.ts, doctor.ts, sdk-auth.ts). Those modules never import
 * this file back.
 *
 * Nothing here reads the environment (only entry points do: docs/decisions/0005-config-module.md): `Dropkey.open(options)` takes everything it needs;
 * `Dropkey.fromEnv(env)` is the one documented helper that maps environment variables to those options.
 */
import type { DropboxClient } from '../dropbox/client.js';
import { DROPBOX_URLS, type DropboxUrls } from '../dropbox/hosts.js';
import type { ConnectionPageQuery, Store } from '../store/types.js';
import * as apps from './apps.js';
import type { ConnectResult } from './connect.js';
import { type ConnectionsContext, createContext } from './context.js';
import type { DoctorInput, DoctorReport } from './doctor.js';
import { type ImportInput, type ImportResult, importCredential } from './import.js';
import * as login from './login.js';
import { DEFAULT_CONNECTION } from './names.js';
import { revoke, type RevokeResult } from './revoke.js';
import { type DropkeySdkAuth, sdkAuth, type SdkAuthOptions } from './sdk-auth.js';
import * as tokens from './tokens.js';
import type { AppInfo, ConnectionInfo, DropkeyOptions, GetTokenOptions, PendingLogin, TokenInfo } from './types.js';

export type { AddAppInput } from './apps.js';
export type { ConnectResult } from './connect.js';
export type { ImportInput, ImportResult } from './import.js';
export type { FinishLoginInput, StartLoginInput } from './login.js';
export type { RevokeResult } from './revoke.js';
export type { CheckAccessOptions, ClientOptions } from './tokens.js';

export class Dropkey {
  readonly urls: DropboxUrls;
  readonly store: Store;
  /** Tokens are refreshed this long before they expire (the refreshMarginSeconds option, default 300). */
  readonly refreshMarginSeconds: number;
  readonly #ownsStore: boolean;
  readonly #ctx: ConnectionsContext;

  private constructor(store: Store, ownsStore: boolean, options: DropkeyOptions) {
    this.store = store;
    this.#ownsStore = ownsStore;
    this.urls = { ...(options.urls ?? DROPBOX_URLS) };
    this.#ctx = createContext(store, this.urls, options);
    this.refreshMarginSeconds = this.#ctx.marginMs / 1000;
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
   * For library users who configure dropkey like the CLI: the environment is read and checked by the same
   * readConfig as the CLI's (src/config.ts: DROPKEY_HOME, DROPKEY_MASTER_KEY, DROPKEY_DATABASE_URL, the Dropbox
   * URL variables...), every bad value reported at once. Pass the process's environment or your own map; `overrides` set
   * everything else (fetch, logger, clock...).
   */
  static async fromEnv(
    env: Record<string, string | undefined>,
    overrides: Omit<DropkeyOptions, 'home' | 'masterKey' | 'urls' | 'databaseUrl'> = {},
  ): Promise<Dropkey> {
    const { readConfig } = await import('../config.js');
    const config = await readConfig(env);
    return Dropkey.open({
      ...overrides,
      home: config.home,
      ...(config.masterKey ? { masterKey: config.masterKey } : {}),
      ...(config.databaseUrl ? { databaseUrl: config.databaseUrl } : {}),
      urls: config.urls,
    });
  }

  async close(): Promise<void> {
    if (this.#ownsStore) await this.store.close();
  }

  // ---------------------------------------------------------------- apps (apps.ts)

  addApp(input: apps.AddAppInput): Promise<AppInfo> {
    return apps.addApp(this.#ctx, input);
  }

  /**
   * Changes an app, with addApp's checks. `secret: null` makes it a PKCE-only app. Connections keep working
   * only if the key stays the one that issued their tokens; a corrected secret fixes invalid_client at once.
   */
  updateApp(name: string, patch: Partial<Omit<apps.AddAppInput, 'name'>>): Promise<AppInfo> {
    return apps.updateApp(this.#ctx, name, patch);
  }

  listApps(): Promise<AppInfo[]> {
    return apps.listApps(this.#ctx);
  }

  getApp(name: string): Promise<AppInfo> {
    return apps.getApp(this.#ctx, name);
  }

  /** Refused while a connection still uses the app. */
  removeApp(name: string): Promise<void> {
    return apps.removeApp(this.#ctx, name);
  }

  // ---------------------------------------------------------------- login and import (login.ts, import.ts)

  /**
   * Begins an authorization-code login: PKCE (S256), `token_access_type=offline` and a fresh `state`, always.
   * The result holds the verifier: keep it in memory until finishLogin, never log it.
   */
  startLogin(input: login.StartLoginInput = {}): Promise<PendingLogin> {
    return login.startLogin(this.#ctx, input);
  }

  /** Exchanges the code, validates the new connection at once, and stores it (new, or reconnecting the name). */
  finishLogin(input: login.FinishLoginInput): Promise<ConnectResult> {
    return login.finishLogin(this.#ctx, input);
  }

  /**
   * Imports an existing credential. A refresh token is checked by one refresh; a pasted access token is accepted
   * with a warning: it cannot be renewed.
   */
  import(input: ImportInput): Promise<ImportResult> {
    return importCredential(this.#ctx, input);
  }

  // ---------------------------------------------------------------- tokens (tokens.ts)

  /** A valid access token for the connection, refreshed first when it expires within the margin. */
  getAccessToken(name: string = DEFAULT_CONNECTION, options: GetTokenOptions = {}): Promise<string> {
    return tokens.getAccessToken(this.#ctx, name, options);
  }

  /** The access token with its expiry, scopes and account. Never the refresh token. */
  getToken(name: string = DEFAULT_CONNECTION, options: GetTokenOptions = {}): Promise<TokenInfo> {
    return tokens.getToken(this.#ctx, name, options);
  }

  /**
   * Refreshes now when needed (or always with `force`), and returns the connection. A refresh that fails throws,
   * even when the current access token still works (token readers keep using it; whoever asked for a refresh
   * must learn it did not happen): the error keeps the cause's code and says until when the old token works.
   */
  refresh(name: string = DEFAULT_CONNECTION, options: { force?: boolean; signal?: AbortSignal } = {}): Promise<ConnectionInfo> {
    return tokens.refresh(this.#ctx, name, options);
  }

  list(): Promise<ConnectionInfo[]> {
    return tokens.listConnections(this.#ctx);
  }

  /** One page of connections in name order, searched and filtered (ConnectionPageQuery); no token is decrypted. */
  listPage(query: ConnectionPageQuery): Promise<{ connections: ConnectionInfo[]; next: string | null }> {
    return tokens.listConnectionPage(this.#ctx, query);
  }

  get(name: string = DEFAULT_CONNECTION): Promise<ConnectionInfo> {
    return tokens.getConnection(this.#ctx, name);
  }

  /**
   * A Dropbox API client (rpc / upload / download) whose token always comes from this connection: refreshed
   * before it expires, and once more when Dropbox answers 401 expired_access_token; 429 and 5xx are retried.
   */
  client(name: string = DEFAULT_CONNECTION, options: tokens.ClientOptions = {}): DropboxClient {
    return tokens.client(this.#ctx, name, options);
  }

  /**
   * Resolves when Dropbox accepts the connection's token (check/user, or team/get_info for a team app); throws
   * Dropbox's refusal otherwise. With `accessToken`, exactly that token is checked, without refresh or retry.
   */
  async checkAccess(name: string = DEFAULT_CONNECTION, options: Partial<tokens.CheckAccessOptions> = {}): Promise<void> {
    const team = options.team ?? (await this.getApp((await this.get(name)).app)).team;
    return tokens.checkAccess(this.#ctx, name, { ...options, team });
  }

  // ---------------------------------------------------------------- revoke (revoke.ts)

  /**
   * Revokes the connection's token at Dropbox (which also disables its refresh token), then deletes it locally.
   * If Dropbox says the token is already invalid, it is deleted locally all the same, and the result says so.
   * If Dropbox cannot be reached, nothing is deleted unless `force` is set.
   */
  revoke(name: string = DEFAULT_CONNECTION, options: { force?: boolean; signal?: AbortSignal } = {}): Promise<RevokeResult> {
    return revoke(this.#ctx, name, options);
  }

  // ---------------------------------------------------------------- adapters (sdk-auth.ts, doctor.ts)

  /**
   * An `auth` object for the official `dropbox` SDK: `new Dropbox({ auth: await dk.sdkAuth('default') })`.
   * Before each request the SDK asks it for a token, which dropkey refreshes as needed; it never holds the
   * refresh token or the app secret. See sdk-auth.ts for exactly what the SDK calls.
   */
  sdkAuth(name: string = DEFAULT_CONNECTION, options: SdkAuthOptions = {}): Promise<DropkeySdkAuth> {
    return sdkAuth(this.#ctx, name, options);
  }

  /** Diagnoses a connection or a pasted token; see doctor.ts. */
  async doctor(input: DoctorInput = {}): Promise<DoctorReport> {
    // Loaded on demand: `dropkey token` (a start-up-time target) never needs it.
    const { runDoctor } = await import('./doctor.js');
    return runDoctor(this.#ctx, input);
  }
}

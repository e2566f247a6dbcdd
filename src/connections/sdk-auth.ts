/**
 * An `auth` object for the official `dropbox` SDK (`new Dropbox({ auth })`) backed by dropkey, so the SDK never
 * holds a stale token and never sees the refresh token or the app secret.
 *
 * What the SDK touches on `auth` (dropbox@10.34.0, cjs/src/dropbox.js; the same in 10.4x, https://github.com/dropbox/dropbox-sdk-js):
 * - `checkAndRefreshAccessToken()` (a promise), awaited before *every* rpc, upload and download request;
 * - `getAccessToken()` (synchronous) right after, for the Bearer header of user/team routes;
 * - the properties `fetch`, `domain`, `domainDelimiter`, `customHeaders` in its constructor (as defaults);
 * - `clientId` and `clientSecret` for app-auth routes (Basic). The secret is never exposed, so app-auth routes
 *   (check/app) are not available through this object; every user and team route is.
 * checkAndRefreshAccessToken asks dropkey for a token (refreshing through the shared, locked refresher when
 * needed) and caches it for the getAccessToken call that follows.
 */
import type { ConnectionsContext } from './context.js';
import { validateName } from './names.js';
import { notFound } from './refresher.js';
import { getToken } from './tokens.js';

export interface SdkAuthOptions {
  /**
   * The fetch the SDK will use (the SDK reads `auth.fetch` when `new Dropbox()` gets none). dropbox@10.34 on
   * Node needs node-fetch responses for downloads (`res.buffer()`), so pass `require('node-fetch')` there.
   */
  fetch?: unknown;
  /** Passed to getAccessToken: each request starts with a token valid at least this long. */
  minValidSeconds?: number;
}

export interface DropkeySdkAuth {
  readonly fetch: unknown;
  readonly clientId: string | undefined;
  readonly clientSecret: undefined;
  readonly domain: undefined;
  readonly domainDelimiter: undefined;
  readonly customHeaders: undefined;
  checkAndRefreshAccessToken(): Promise<void>;
  getAccessToken(): string | undefined;
  getAccessTokenExpiresAt(): Date | undefined;
  getClientId(): string | undefined;
  getClientSecret(): undefined;
  getRefreshToken(): undefined;
  refreshAccessToken(): Promise<void>;
}

/** The SDK auth object of a stored connection (Dropkey.sdkAuth). */
export async function sdkAuth(ctx: ConnectionsContext, name: string, options: SdkAuthOptions = {}): Promise<DropkeySdkAuth> {
  validateName('connection', name);
  const rec = await ctx.store.getConnection(name);
  if (!rec) throw notFound(name);
  const app = await ctx.store.getApp(rec.app);
  return createSdkAuth(ctx, name, app?.key, { fetch: ctx.fetch, ...options });
}

function createSdkAuth(ctx: ConnectionsContext, connection: string, appKey: string | undefined, options: SdkAuthOptions = {}): DropkeySdkAuth {
  let token: string | undefined;
  let expiresAt: number | null = null;
  const load = async (force: boolean): Promise<void> => {
    const t = await getToken(ctx, connection, {
      ...(options.minValidSeconds === undefined ? {} : { minValidSeconds: options.minValidSeconds }),
      ...(force ? { forceRefresh: true } : {}),
    });
    token = t.accessToken;
    expiresAt = t.expiresAt;
  };
  const auth: DropkeySdkAuth = {
    fetch: options.fetch ?? globalThis.fetch,
    clientId: appKey,
    clientSecret: undefined,
    domain: undefined,
    domainDelimiter: undefined,
    customHeaders: undefined,
    checkAndRefreshAccessToken: () => load(false),
    getAccessToken: () => token,
    getAccessTokenExpiresAt: () => (expiresAt === null ? undefined : new Date(expiresAt)),
    getClientId: () => appKey,
    getClientSecret: () => undefined,
    getRefreshToken: () => undefined,
    refreshAccessToken: () => load(true),
  };
  // Secrets never travel in logs: serializing the object shows no token.
  Object.defineProperty(auth, 'toJSON', { value: () => ({ connection, clientId: appKey }), enumerable: false });
  return auth;
}

/**
 * Tokens for the token API, from memory while they are fresh enough: the hot path of `dropkey serve`
 * (bench/serve-token.mjs). A miss asks the facade, which reads the store and refreshes when due.
 */
import { tokenJson } from '../../connections/json.js';
import type { TokenInfo } from '../../connections/types.js';
import { DropkeyError, ErrorCodes } from '../../errors.js';
import type { ServerDeps } from '../deps.js';
import { reportRefreshFailure } from '../jobs/events.js';
import type { ServerPaths } from './paths.js';

export interface CachedToken {
  info: TokenInfo;
  /** The token API's JSON body, serialized once per token. */
  body: string;
}

export function tokenBody(t: TokenInfo, now: number): string {
  // The CLI's `dropkey token --json` shape (connections/json.ts). The body is made once per cached token, so its
  // expires_in may be up to tokenCacheMs (5 s) old when served: expires_at is the exact time.
  return JSON.stringify(tokenJson(t, now));
}

/**
 * Valid tokens from memory. An entry is served while it is younger than tokenCacheMs AND the token keeps at
 * least the facade's refresh margin; otherwise the facade is asked (a store read, and a refresh when due).
 * Concurrent misses for one connection share one facade call.
 */
export class TokenService {
  readonly #cache = new Map<string, { token: CachedToken; until: number }>();
  readonly #inflight = new Map<string, Promise<CachedToken>>();

  constructor(private readonly deps: ServerDeps, private readonly paths: ServerPaths) {}

  /**
   * `minValidSeconds` (the token API's min_valid): a cached token that would not last that long is not served;
   * the facade is asked for one that does (refreshing under its lock when needed).
   */
  get(name: string, minValidSeconds?: number): Promise<CachedToken> {
    const hit = this.cached(name);
    const now = this.deps.clock();
    const lastsLongEnough = (t: CachedToken): boolean =>
      minValidSeconds === undefined || t.info.expiresAt === null || t.info.expiresAt - now >= minValidSeconds * 1000;
    if (hit && lastsLongEnough(hit)) return Promise.resolve(hit);
    if (minValidSeconds !== undefined) {
      // Rare (an agent once per token lifetime): not shared with the plain misses, whose answer may be shorter.
      return this.#load(name, minValidSeconds);
    }
    let p = this.#inflight.get(name);
    if (!p) {
      p = this.#load(name).finally(() => this.#inflight.delete(name));
      this.#inflight.set(name, p);
    }
    return p;
  }

  /** The token get() would answer from memory without a store read, or undefined. */
  cached(name: string): CachedToken | undefined {
    const hit = this.#cache.get(name);
    return hit && this.deps.clock() < hit.until ? hit.token : undefined;
  }

  async #load(name: string, minValidSeconds?: number): Promise<CachedToken> {
    const { dropkey, clock, config } = this.deps;
    let info: TokenInfo;
    try {
      info = await dropkey.getToken(name, minValidSeconds === undefined ? {} : { minValidSeconds });
    } catch (err) {
      this.#cache.delete(name);
      // Connection events for a refresh that failed here (needs_reauth once per transition, refresh_failed throttled).
      reportRefreshFailure(this.deps, name, err, { detected_by: 'token_request' });
      throw withReconnectUrl(this.paths, name, err);
    }
    const now = clock();
    const token = { info, body: tokenBody(info, now) };
    const marginMs = dropkey.refreshMarginSeconds * 1000;
    const until = Math.min(now + config.tokenCacheMs, info.expiresAt === null ? Infinity : info.expiresAt - marginMs);
    if (until > now) this.#cache.set(name, { token, until });
    return token;
  }

  invalidate(name: string): void {
    this.#cache.delete(name);
  }
}

/** A REAUTH_REQUIRED error gets the page where an admin reconnects (docs/api.md: 409 with the reconnect URL). */
export function withReconnectUrl(paths: { reconnect(name: string): string }, name: string, err: unknown): unknown {
  if (!(err instanceof DropkeyError && err.code === ErrorCodes.REAUTH_REQUIRED)) return err;
  const url = paths.reconnect(name);
  return new DropkeyError(ErrorCodes.REAUTH_REQUIRED, err.message, {
    cause: err,
    hint: `An admin must connect it again: ${url}`,
    ...(err.fix ? { fix: err.fix } : {}),
    details: { connection: name, reconnect_url: url },
  });
}

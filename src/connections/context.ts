/**
 * The one context every facade module takes (apps, login, import, revoke, tokens, doctor, sdk-auth): the store,
 * the Dropbox URLs and every injected side effect, plus the refresher built on them. `Dropkey` builds it once;
 * the modules are plain functions of it, so none of them needs the class (and nothing imports dropkey.ts back).
 */
import type { DropboxUrls } from '../dropbox/hosts.js';
import { defaultSleep, type Sleep } from '../sleep.js';
import { type ResolvedRetry, resolveRetry } from '../dropbox/retry.js';
import { DropkeyError, ErrorCodes } from '../errors.js';
import type { FetchLike } from '../oauth/token.js';
import type { Store } from '../store/types.js';
import { makeRefreshGrant } from './protocol.js';
import { type Logger, safeLogger } from './redact.js';
import { Refresher } from './refresher.js';
import type { Activity, ActivitySink, ConnectionEventType, DropkeyOptions } from './types.js';

export type { Activity, ActivitySink, ConnectionEventType };

export interface ConnectionsContext {
  readonly store: Store;
  readonly urls: DropboxUrls;
  readonly fetch: FetchLike;
  /** Epoch ms. */
  readonly now: () => number;
  readonly sleep: Sleep;
  /** Redacting: whatever it is handed never reaches the sink with a secret in it. */
  readonly log: Logger;
  readonly retry: ResolvedRetry;
  /** Tokens are refreshed this long before they expire. */
  readonly marginMs: number;
  /** How long to wait for another process's refresh of the same connection (the store lock `refresh:<name>`). */
  readonly lockWaitMs: number;
  readonly refresher: Refresher;
  /** Where audited actions go; a no-op unless DropkeyOptions.onActivity is set. */
  readonly onActivity: ActivitySink | undefined;
}

/** Hands the activity to the sink. Never throws: the action it reports already happened. */
export async function report(ctx: Pick<ConnectionsContext, 'onActivity' | 'log'>, activity: Activity): Promise<void> {
  if (!ctx.onActivity) return;
  try {
    await ctx.onActivity(activity);
  } catch (err) {
    ctx.log.warn({ err, action: activity.action, target: activity.target }, 'could not record the action in the audit log');
  }
}

export function createContext(store: Store, urls: DropboxUrls, options: DropkeyOptions): ConnectionsContext {
  const f = options.fetch ?? globalThis.fetch;
  const fetch: FetchLike = (input, init) => f(input, init);
  const now = options.now ?? Date.now;
  const sleep = options.sleep ?? defaultSleep;
  const log = safeLogger(options.logger);
  const retry = resolveRetry(options.retry);
  const margin = options.refreshMarginSeconds ?? 300;
  if (!Number.isFinite(margin) || margin < 0) {
    throw new DropkeyError(ErrorCodes.BAD_INPUT, `refreshMarginSeconds must be a number of seconds >= 0, got ${String(margin)}.`);
  }
  const marginMs = margin * 1000;
  // Waiting for another process's refresh may take as long as that refresh with all its retries.
  const lockWaitMs = options.lockWaitMs ?? retry.attempts * retry.attemptTimeoutMs + retry.maxTotalWaitMs + 10_000;
  const refresher = new Refresher({
    store,
    grant: makeRefreshGrant({ urls, fetch, now, timeoutMs: retry.attemptTimeoutMs }),
    now,
    sleep,
    logger: log,
    marginMs,
    retry,
    lockWaitMs,
  });
  return { store, urls, fetch, now, sleep, log, retry, marginMs, lockWaitMs, refresher, onActivity: options.onActivity };
}

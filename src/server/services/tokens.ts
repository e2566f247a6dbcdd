/**
 * Tokens for the token API, from memory for as long as they stay valid: the hot path of `dropkey serve`
 * (bench/serve-token.mjs, bench/token-many.mjs). A miss asks the facade, which reads the store and refreshes when
 * due. Decrypting a token is the cost of a miss, so each token is decrypted about once per lifetime per process.
 *
 * Entries live until the token has only the refresh margin left (then the facade refreshes it), however many
 * connections there are: memory is one entry per connection in use (about 1 KB each, measured by
 * bench/token-many.mjs; docs/scale.md).
 *
 * What ends an entry early:
 * - this process's own changes (a refresh, a revoke, a failed refresh, a new login) call invalidate();
 * - changes made by other processes and instances reach it through the store's change log
 *   (ServerStore.connectionChanges: deletes, state changes, new credentials, written by triggers), read at most
 *   every tokenCacheMs / 2 while requests come in. An entry is only served while the log was read successfully
 *   within the last tokenCacheMs: a connection revoked elsewhere gets no token from here after that long.
 *   A refresh made by another instance is not in the log on purpose: the token it replaced stays valid at Dropbox
 *   until it expires, so serving it is correct (this process moves to the new one at its own margin).
 * - while the store cannot be read at all, entries the log confirmed within storeOutageGraceMs keep being served
 *   (cached tokens flow through a database restart); no revoke can be recorded in the store meanwhile, except by an
 *   instance that can still reach it, whose revoke then goes unseen here for at most that long.
 */
import { tokenJson } from '../../connections/json.js';
import type { TokenInfo } from '../../connections/types.js';
import { DropkeyError, ErrorCodes } from '../../errors.js';
import type { ServerDeps } from '../deps.js';
import { reportRefreshFailure } from '../jobs/events.js';
import type { ServerPaths } from './paths.js';
import type { HandoutSlot } from './usage.js';

/**
 * A token as the token API hands it out. One object per cache entry for the entry's life; it keeps the hand-out
 * counter's record (HandoutSlot). The body changes each second (expires_in): answer() builds it per request from
 * parts serialized once per token, and nothing built per request is kept on this long-lived object (a body kept
 * here for a second outlives the young generation: with thousands of tokens in use, every one of them would be
 * copied and promoted by the collector each second; bench/token-many.mjs).
 */
export interface CachedToken extends HandoutSlot {
  readonly info: TokenInfo;
  /** The body split around expires_in; undefined without an expiry (then `fixed` is the answer) or when it cannot be split. */
  readonly parts: BodyParts | undefined;
  /** The answer of a token without expiry (it never changes); undefined when it has one. */
  readonly fixed: Answer | undefined;
}

/** A token API answer: the JSON body and its length in bytes (Content-Length). */
export interface Answer {
  body: string;
  bytes: number;
}

/** The token API's answer for a cached token at `now` (its expires_in counted down). */
export function answer(t: CachedToken, now: number): Answer {
  const p = t.parts;
  if (p === undefined) return t.fixed ?? fixedAnswer(t.info, now);
  const digits = String(Math.max(0, Math.floor((p.expiresAt - now) / 1000)));
  return { body: p.head + digits + p.tail, bytes: p.bytes + digits.length };
}

function fixedAnswer(info: TokenInfo, now: number): Answer {
  const body = tokenBody(info, now);
  return { body, bytes: Buffer.byteLength(body) };
}

export function tokenBody(t: TokenInfo, now: number): string {
  // The CLI's `dropkey token --json` shape (connections/json.ts).
  return JSON.stringify(tokenJson(t, now));
}

/** Stands for expires_in while a body is split around it (no other field of the shape is an unquoted number). */
const LEFT_MARK = -987_654_321;

/**
 * A cached token's body in two parts around expires_in, so that a hand-out gives the seconds left at that moment
 * with a string concatenation instead of a JSON serialization (the body is made once per token).
 */
export interface BodyParts {
  head: string;
  tail: string;
  /** Bytes of head and tail (the number's digits are ASCII: one byte each). */
  bytes: number;
  /** The token's expiry (epoch ms), which expires_in counts down to. */
  expiresAt: number;
}

function bodyParts(info: TokenInfo): BodyParts | undefined {
  if (info.expiresAt === null) return undefined;
  const text = JSON.stringify({ ...tokenJson(info, 0), expires_in: LEFT_MARK });
  const at = text.indexOf(`:${LEFT_MARK}`);
  if (at < 0 || text.indexOf(`:${LEFT_MARK}`, at + 1) >= 0) return undefined;
  const head = text.slice(0, at + 1);
  const tail = text.slice(at + 1 + String(LEFT_MARK).length);
  return { head, tail, bytes: Buffer.byteLength(head) + Buffer.byteLength(tail), expiresAt: info.expiresAt };
}

function cachedToken(info: TokenInfo, now: number, parts: BodyParts | undefined): CachedToken {
  const fixed = info.expiresAt === null ? fixedAnswer(info, now) : undefined;
  return { info, parts, fixed, handout: undefined };
}

/**
 * A write is recorded in the change log (its time taken) a little before it commits: each read of the log looks this
 * far back from the previous read's time, so a change committed late, or read by a load that finished after the
 * previous poll, is seen by a later poll. Idle-in-transaction sessions are cut after 60 s (postgres/db.ts).
 */
export const CHANGE_OVERLAP_MS = 60_000;
/** Change records are kept this long (any instance prunes them, at most every PRUNE_EVERY_MS). */
export const CHANGE_KEEP_MS = 3600_000;
const PRUNE_EVERY_MS = 600_000;

interface Entry {
  readonly token: CachedToken;
  /** Served until then (clock ms): the token's expiry minus the refresh margin. */
  until: number;
}

/**
 * Valid tokens from memory (see the file comment for when they stop being served). Concurrent misses for one
 * connection share one facade call.
 */
export class TokenService {
  readonly #cache = new Map<string, Entry>();
  readonly #inflight = new Map<string, Promise<CachedToken>>();
  /** Where the next read of the change log starts (database clock), null before the first read. */
  #since: number | null = null;
  /** deps.clock() when the last successful read of the change log started. */
  #verifiedAt = -Infinity;
  #sync: Promise<void> | undefined;
  #syncFailing = false;
  #prunedAt = -Infinity;

  constructor(private readonly deps: ServerDeps, private readonly paths: ServerPaths) {}

  get #boundMs(): number {
    return this.deps.config.tokenCacheMs;
  }

  /** Entries in memory (for the metrics and bench/token-many.mjs). */
  get size(): number {
    return this.#cache.size;
  }

  /**
   * `minValidSeconds` (the token API's min_valid): a cached token that would not last that long is not served;
   * the facade is asked for one that does (refreshing under its lock when needed).
   */
  async get(name: string, minValidSeconds?: number): Promise<CachedToken> {
    const lastsLongEnough = (t: CachedToken): boolean =>
      minValidSeconds === undefined || t.info.expiresAt === null || t.info.expiresAt - this.deps.clock() >= minValidSeconds * 1000;
    let hit = this.cached(name);
    if (hit && lastsLongEnough(hit)) return hit;
    if (!this.#verified()) {
      // The change log first: a load must start from a known point of it (and the entry may be good after all).
      await this.sync().catch(() => {});
      hit = this.cached(name);
      if (hit && lastsLongEnough(hit)) return hit;
    }
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

  /** The token get() would answer from memory without a store read, or undefined. Synchronous (the fast path). */
  cached(name: string): CachedToken | undefined {
    const now = this.deps.clock();
    const age = now - this.#verifiedAt;
    // (A clock that went back makes the last read's age unknown: read again.)
    if ((age >= this.#boundMs / 2 || age < 0) && this.#sync === undefined) void this.sync().catch(() => {});
    const hit = this.#cache.get(name);
    if (hit === undefined || now >= hit.until || !this.#verified(now)) return undefined;
    return hit.token;
  }

  /** Whether entries may be served: the change log was read within the bound (or, while it cannot be read, the grace). */
  #verified(now = this.deps.clock()): boolean {
    const age = now - this.#verifiedAt;
    if (age < 0) return false;
    return age < this.#boundMs || (this.#syncFailing && age < this.deps.config.storeOutageGraceMs);
  }

  /** Reads the change log once (shared by concurrent callers) and drops the entries it names. */
  sync(): Promise<void> {
    this.#sync ??= this.#readChanges().finally(() => {
      this.#sync = undefined;
    });
    return this.#sync;
  }

  async #readChanges(): Promise<void> {
    const { serverStore, clock, logger } = this.deps;
    const startedAt = clock();
    let changes: { now: number; names: string[] };
    try {
      changes = await serverStore.connectionChanges(this.#since);
    } catch (err) {
      if (!this.#syncFailing) logger.warn({ err }, 'cannot read the connection change log; cached tokens are served for a while, then not at all');
      this.#syncFailing = true;
      throw err;
    }
    this.#syncFailing = false;
    // Records older than CHANGE_KEEP_MS are pruned: after a longer gap some may be gone, so nothing cached is trusted.
    if (this.#since !== null && changes.now - this.#since > CHANGE_KEEP_MS - CHANGE_OVERLAP_MS) this.#cache.clear();
    for (const name of changes.names) this.#cache.delete(name);
    this.#since = changes.now - CHANGE_OVERLAP_MS;
    this.#verifiedAt = startedAt;
    if (startedAt - this.#prunedAt >= PRUNE_EVERY_MS) {
      this.#prunedAt = startedAt;
      serverStore.pruneConnectionChanges(CHANGE_KEEP_MS).catch((err: unknown) => logger.warn({ err }, 'cannot prune the connection change log'));
    }
  }

  async #load(name: string, minValidSeconds?: number): Promise<CachedToken> {
    const { dropkey, clock } = this.deps;
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
    const token = cachedToken(info, now, bodyParts(info));
    const until = info.expiresAt === null ? Infinity : info.expiresAt - dropkey.refreshMarginSeconds * 1000;
    if (until > now && this.#since !== null) this.#cache.set(name, { token, until });
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

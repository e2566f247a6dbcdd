/**
 * Upload sessions (files.stone upload_session/*; https://www.dropbox.com/developers/documentation/http/documentation "Upload size", "Concurrent sessions").
 *
 * Sequential sessions take data in order and hash it as it arrives. Concurrent sessions take 4 MiB-aligned pieces
 * in any order, written at their offsets; the closing append fixes the size and finish checks every byte arrived.
 * Sessions expire 7 days (emulator clock) after start. They live in memory (their bytes in the blob store's
 * staging area, on disk with a data directory) and do not survive a restart: Dropbox gives no guarantee either
 * way, and a client recovers from `not_found` by uploading again.
 */
import { randomBytes } from 'node:crypto';
import { ContentHasher, CONTENT_HASH_BLOCK_SIZE } from '../../dropbox/content-hash.js';
import type { RouteContext } from '../route-module.js';
import { BatchedWriter, type BlobStore, type Staging } from './blobs.js';
import type { Stone } from './fs.js';

/** "A single request should not upload more than 150 MiB" (files.stone upload routes). */
export const MAX_REQUEST_BYTES = 150 * 1024 * 1024;
/** 2^41 − 2^22: the most a session can hold (UploadSessionLookupError.too_large). */
export const MAX_SESSION_BYTES = 2 ** 41 - 2 ** 22;
/** Upload sessions "can be used for a maximum of 7 days" (files.stone upload_session/start). */
export const SESSION_LIFETIME_MS = 7 * 24 * 60 * 60 * 1000;

/**
 * A session failure. `lookup` members belong to UploadSessionLookupError (wrapped as `lookup_failed` by finish);
 * the others are members of the route's own union (payload_too_large, content_hash_mismatch, concurrent_...).
 */
export class SessionFailure extends Error {
  constructor(
    readonly error: Stone,
    readonly lookup: boolean,
  ) {
    super(`upload session: ${String(error['.tag'])}`);
  }
}

const lookupFail = (t: string, extra: Stone = {}) => new SessionFailure({ '.tag': t, ...extra }, true);
const fail = (t: string) => new SessionFailure({ '.tag': t }, false);

export interface Session {
  id: string;
  namespaceId: string;
  concurrent: boolean;
  created: number;
  /** Sequential: bytes received so far. Concurrent: the final size, known once closed. */
  size: number;
  closed: boolean;
  /** Finished: the data became a file. */
  committed: boolean;
  staging: Staging;
  /** Sequential sessions: content hash state of bytes [0, size). */
  hasher: ContentHasher;
  /** Concurrent sessions: piece offset → length. */
  pieces: Map<number, number>;
  /** A request is writing into this (sequential) session, or a finish is committing it. */
  busy: boolean;
}

/** Reads a request body chunk by chunk, enforcing the 150 MiB limit on both the declared and the actual length. */
export async function receive(ctx: RouteContext, onChunk: (chunk: Uint8Array) => Promise<void>): Promise<number> {
  if (ctx.contentLength !== undefined && ctx.contentLength > MAX_REQUEST_BYTES) {
    await ctx.body?.cancel().catch(() => {});
    throw fail('payload_too_large');
  }
  if (!ctx.body) return 0;
  const reader = ctx.body.getReader();
  let total = 0;
  try {
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      if (value.length === 0) continue;
      total += value.length;
      if (total > MAX_REQUEST_BYTES) throw fail('payload_too_large');
      await onChunk(value);
    }
  } catch (e) {
    await reader.cancel().catch(() => {});
    throw e;
  }
  return total;
}

export class UploadSessions {
  readonly #sessions = new Map<string, Session>();
  /** Per session id: the tail of the queue of finishes (see exclusive()). */
  readonly #finishing = new Map<string, Promise<void>>();

  constructor(
    readonly blobs: BlobStore,
    readonly now: () => number,
  ) {}

  /** Creates a session (no data yet). */
  async create(namespaceId: string, concurrent: boolean): Promise<Session> {
    this.#sweep();
    const session: Session = {
      id: `pid_upload_session:${randomBytes(36).toString('base64url')}`,
      namespaceId,
      concurrent,
      created: this.now(),
      size: 0,
      closed: false,
      committed: false,
      staging: await this.blobs.stage(),
      hasher: new ContentHasher(),
      pieces: new Map(),
      busy: false,
    };
    this.#sessions.set(session.id, session);
    return session;
  }

  /** upload_session/start: data (sequential only) and optionally close. */
  async start(namespaceId: string, opts: { concurrent: boolean; close: boolean; contentHash: string | undefined }, ctx: RouteContext): Promise<string> {
    if (opts.concurrent) {
      if (opts.close) throw fail('concurrent_session_close_not_allowed');
      if ((ctx.contentLength ?? 0) > 0) throw fail('concurrent_session_data_not_allowed');
    }
    const session = await this.create(namespaceId, opts.concurrent);
    try {
      if (opts.concurrent) await this.#refuseData(ctx, 'concurrent_session_data_not_allowed', opts.contentHash);
      else await this.#appendSequential(session, 0, ctx, opts.contentHash);
    } catch (e) {
      this.#sessions.delete(session.id);
      await session.staging.discard();
      throw e;
    }
    session.closed = opts.close;
    return session.id;
  }

  /** The session `id` of this namespace, or not_found (unknown, expired, or another user's). */
  get(namespaceId: string, id: string): Session {
    const session = this.#sessions.get(id);
    if (!session || session.namespaceId !== namespaceId) throw lookupFail('not_found');
    if (this.now() - session.created > SESSION_LIFETIME_MS) {
      this.#drop(session);
      throw lookupFail('not_found');
    }
    return session;
  }

  /** upload_session/append_v2 (and v1, with close = false). */
  async append(namespaceId: string, cursor: { sessionId: string; offset: number }, close: boolean, contentHash: string | undefined, ctx: RouteContext): Promise<void> {
    const session = this.get(namespaceId, cursor.sessionId);
    // A closed concurrent session still takes the pieces before its end: appends run in parallel, and the closing
    // one may arrive before the others.
    if (session.committed || (session.closed && (!session.concurrent || close))) throw lookupFail('closed');
    if (!session.concurrent) {
      await this.#appendSequential(session, cursor.offset, ctx, contentHash);
      if (close) session.closed = true;
      return;
    }
    // A finish is committing this session's bytes: they are complete, nothing more may be written.
    if (session.busy) throw lookupFail('closed');
    // Concurrent: offsets and (except when closing) lengths are multiples of 4 MiB.
    if (cursor.offset % CONTENT_HASH_BLOCK_SIZE !== 0) throw lookupFail('concurrent_session_invalid_offset');
    if (!close && ctx.contentLength !== undefined && ctx.contentLength % CONTENT_HASH_BLOCK_SIZE !== 0) {
      throw lookupFail('concurrent_session_invalid_data_size');
    }
    const request = contentHash === undefined ? undefined : new ContentHasher();
    let pos = cursor.offset;
    const writer = new BatchedWriter(session.staging, pos);
    const n = await receive(ctx, async (chunk) => {
      if (pos + chunk.length > MAX_SESSION_BYTES) throw lookupFail('too_large');
      await writer.write(chunk);
      request?.update(chunk);
      pos += chunk.length;
    });
    await writer.flush();
    if (!close && n % CONTENT_HASH_BLOCK_SIZE !== 0) throw lookupFail('concurrent_session_invalid_data_size');
    if (request && request.digest() !== contentHash) throw fail('content_hash_mismatch');
    if (session.closed && cursor.offset + n > session.size) throw lookupFail('closed');
    if (n > 0) session.pieces.set(cursor.offset, n);
    if (close) {
      session.closed = true;
      session.size = cursor.offset + n;
    }
  }

  /**
   * upload_session/finish's data part: appends the body (sequential) or checks there is none (concurrent),
   * then returns the session's full size and content hash. The session stays usable until complete().
   */
  async finishData(namespaceId: string, cursor: { sessionId: string; offset: number }, contentHash: string | undefined, ctx: RouteContext): Promise<{ session: Session; size: number; hash: string }> {
    const session = this.get(namespaceId, cursor.sessionId);
    if (session.committed) throw lookupFail('not_found');
    if (!session.concurrent) {
      if (session.closed) {
        if ((ctx.contentLength ?? 0) > 0) throw lookupFail('closed');
        if (cursor.offset !== session.size) throw lookupFail('incorrect_offset', { correct_offset: session.size });
        await this.#refuseData(ctx, 'closed', contentHash, 'closed');
      } else {
        await this.#appendSequential(session, cursor.offset, ctx, contentHash);
      }
      return { session, size: session.size, hash: session.hasher.copy().digest() };
    }
    if ((ctx.contentLength ?? 0) > 0) throw fail('concurrent_session_data_not_allowed');
    await this.#refuseData(ctx, 'concurrent_session_data_not_allowed', contentHash);
    if (!session.closed) throw fail('concurrent_session_not_closed');
    let covered = 0;
    for (const [offset, length] of [...session.pieces].sort((a, b) => a[0] - b[0])) {
      if (offset > covered) break;
      covered = Math.max(covered, offset + length);
    }
    if (covered < session.size) throw fail('concurrent_session_missing_data');
    if (cursor.offset !== session.size) throw lookupFail('incorrect_offset', { correct_offset: session.size });
    const hasher = new ContentHasher();
    for await (const chunk of session.staging.read(session.size)) hasher.update(chunk);
    return { session, size: session.size, hash: hasher.digest() };
  }

  /**
   * Runs a finish alone for this session id: concurrent finishes of one session queue up, so its staged bytes
   * are committed once and the later finishes see `not_found` (or retry after a failed commit), never a half
   * consumed staging area.
   */
  async exclusive<T>(sessionId: string, fn: () => Promise<T>): Promise<T> {
    const before = this.#finishing.get(sessionId) ?? Promise.resolve();
    let release!: () => void;
    const tail = before.then(() => new Promise<void>((resolve) => (release = resolve)));
    this.#finishing.set(sessionId, tail);
    await before;
    try {
      return await fn();
    } finally {
      release();
      if (this.#finishing.get(sessionId) === tail) this.#finishing.delete(sessionId);
    }
  }

  /** The session's data became a file (its staging area was consumed by the blob store). */
  complete(session: Session): void {
    session.committed = true;
    session.closed = true;
  }

  /** A sequential session holding data that already arrived (files/upload keeps it for UploadWriteFailed). */
  async adopt(namespaceId: string, staging: Staging, size: number, hasher: ContentHasher): Promise<string> {
    const session = await this.create(namespaceId, false);
    await session.staging.discard();
    Object.assign(session, { staging, size, hasher });
    return session.id;
  }

  async clear(): Promise<void> {
    for (const session of this.#sessions.values()) await session.staging.discard();
    this.#sessions.clear();
  }

  async #appendSequential(session: Session, offset: number, ctx: RouteContext, contentHash: string | undefined): Promise<void> {
    // A second request racing on the same session sees the offset the first one has not yet moved.
    if (session.busy || offset !== session.size) throw lookupFail('incorrect_offset', { correct_offset: session.size });
    session.busy = true;
    const hasher = session.hasher.copy();
    const request = contentHash === undefined ? undefined : new ContentHasher();
    let pos = session.size;
    const writer = new BatchedWriter(session.staging, pos);
    try {
      await receive(ctx, async (chunk) => {
        if (pos + chunk.length > MAX_SESSION_BYTES) throw lookupFail('too_large');
        await writer.write(chunk);
        hasher.update(chunk);
        request?.update(chunk);
        pos += chunk.length;
      });
      await writer.flush();
      if (request && request.digest() !== contentHash) throw fail('content_hash_mismatch');
    } catch (e) {
      await session.staging.truncate(session.size);
      throw e;
    } finally {
      session.busy = false;
    }
    session.hasher = hasher;
    session.size = pos;
  }

  /** Reads a body that must be empty; a non-empty one fails with `tag`. */
  async #refuseData(ctx: RouteContext, tag: string, contentHash: string | undefined, lookupTag?: string): Promise<void> {
    const n = await receive(ctx, async () => {});
    if (n > 0) throw lookupTag ? lookupFail(lookupTag) : fail(tag);
    if (contentHash !== undefined && contentHash !== new ContentHasher().digest()) throw fail('content_hash_mismatch');
  }

  #drop(session: Session): void {
    this.#sessions.delete(session.id);
    if (!session.committed) void session.staging.discard();
  }

  /** Forgets expired sessions (and their staged bytes). */
  #sweep(): void {
    const now = this.now();
    for (const session of this.#sessions.values()) if (now - session.created > SESSION_LIFETIME_MS) this.#drop(session);
  }
}

/**
 * A small Dropbox API client: the three route styles (rpc, upload, download) on the right hosts, and one policy
 * for failures:
 * - 401 expired_access_token → ask for a fresh token (forceRefresh) and retry once;
 * - 429 → wait Retry-After (bounded) and retry; 5xx and network errors → exponential backoff with jitter;
 * - a streamed upload body cannot be sent twice, so those requests are never retried.
 * Sources: https://www.dropbox.com/developers/documentation/http/documentation (hosts), Dropbox HTTP docs: request styles and headers (styles and headers), Dropbox docs: errors, Dropbox data ingress guide: rate limits (errors), dropbox-sdk-js (the JS SDK's request
 * construction), dropbox-sdk-python (Python's refresh-once on expired_access_token).
 */
import { Readable } from 'node:stream';
import { DropboxApiError, DropkeyError, ErrorCodes } from '../errors.js';
import type { DropboxUrls } from './hosts.js';
import { errorTag, isRetryable, networkError, readDropboxError } from './errors.js';
import { httpHeaderSafeJson } from './header-json.js';
import type { Sleep } from '../sleep.js';
import { retryDelay, retryPolicy, type RetryPolicy } from './retry.js';

export type FetchLike = (input: string | URL | Request, init?: RequestInit) => Promise<Response>;

/** Dropbox-API-Path-Root values (Dropbox HTTP docs: request styles and headers), or a string sent verbatim (as the JS SDK's pathRoot option). */
export type PathRoot =
  | { '.tag': 'home' }
  | { '.tag': 'root'; root: string }
  | { '.tag': 'namespace_id'; namespace_id: string }
  | string;

export interface DropboxClientOptions {
  urls: Pick<DropboxUrls, 'api' | 'content' | 'notify'>;
  fetch: FetchLike;
  /**
   * Returns a valid access token; with forceRefresh, a new one even if the current one looks valid.
   * `rejectedToken` is the token Dropbox just called expired: a provider that already replaced it (another call
   * refreshed meanwhile) can hand out the newer one instead of refreshing again.
   */
  getAccessToken: (opts: { forceRefresh?: boolean; rejectedToken?: string }) => Promise<string>;
  /** team_member_id for Dropbox-API-Select-User (team token acting as a member). */
  selectUser?: string;
  /** team_member_id of an admin for Dropbox-API-Select-Admin. */
  selectAdmin?: string;
  pathRoot?: PathRoot;
  sleep?: Sleep;
  /** Retries after the first attempt for 5xx/429/network failures (default 3). */
  maxRetries?: number;
  /** Longest Retry-After (seconds) that is waited out (default 60). */
  maxRetryAfterSeconds?: number;
  /** First backoff step (ms, default 500). */
  baseDelayMs?: number;
  random?: () => number;
  userAgent?: string;
  /**
   * Per-attempt deadline (ms) for Dropbox to start answering (status and headers); a timed-out attempt counts as
   * a network failure and is retried like one. Default: none (uploads of large bodies take as long as they take).
   */
  timeoutMs?: number;
}

export interface CallOptions {
  signal?: AbortSignal;
  /** Overrides the client's selectUser / selectAdmin / pathRoot for this call (null removes it). */
  selectUser?: string | null;
  selectAdmin?: string | null;
  pathRoot?: PathRoot | null;
}

export type UploadBody = Uint8Array | ReadableStream<Uint8Array> | Readable;

export interface DownloadResult<T> {
  /** Parsed Dropbox-API-Result. */
  result: T;
  /** The file bytes; read or cancel it. */
  body: ReadableStream<Uint8Array>;
  headers: Headers;
  /** 200, or 206 for a range. */
  status: number;
}

/** Routes served by the notify host without authentication (Dropbox HTTP docs: hosts). */
const NOTIFY_NOAUTH = new Set(['files/list_folder/longpoll']);

function normalizeRoute(route: string): string {
  return route.replace(/^\/+/, '').replace(/^2\//, '');
}

function invalidResponse(route: string, what: string, res: Response): DropboxApiError {
  return new DropboxApiError(res.status, 'invalid_response', null, `Dropbox's answer to ${route} was unreadable: ${what}`, {
    details: { route },
    response: res,
  });
}

function parseJsonBody(route: string, text: string, res: Response): unknown {
  if (text.trim() === '') return null;
  try {
    return JSON.parse(text);
  } catch {
    throw invalidResponse(route, 'the body is not JSON', res);
  }
}

interface Prepared {
  url: string;
  headers: Record<string, string>;
  body?: BodyInit;
  /** Whether the body can be sent again. */
  replayable: boolean;
  auth: boolean;
}

export class DropboxClient {
  readonly #o: DropboxClientOptions;
  readonly #policy: RetryPolicy;

  constructor(options: DropboxClientOptions) {
    this.#o = options;
    this.#policy = retryPolicy({
      ...(options.maxRetries === undefined ? {} : { maxRetries: options.maxRetries }),
      ...(options.maxRetryAfterSeconds === undefined ? {} : { maxRetryAfterSeconds: options.maxRetryAfterSeconds }),
      ...(options.baseDelayMs === undefined ? {} : { baseDelayMs: options.baseDelayMs }),
      ...(options.random === undefined ? {} : { random: options.random }),
      ...(options.sleep === undefined ? {} : { sleep: options.sleep }),
    });
  }

  /** An RPC route (`users/get_current_account`); `arg` undefined = Void (no body, no Content-Type, as the JS SDK). */
  async rpc<T = unknown>(route: string, arg?: unknown, options: CallOptions = {}): Promise<T> {
    const r = normalizeRoute(route);
    const notify = NOTIFY_NOAUTH.has(r);
    const headers: Record<string, string> = {};
    let body: string | undefined;
    if (arg !== undefined) {
      headers['content-type'] = 'application/json';
      body = JSON.stringify(arg);
    }
    const res = await this.#send(
      r,
      {
        url: `${notify ? this.#o.urls.notify : this.#o.urls.api}/2/${r}`,
        headers,
        ...(body === undefined ? {} : { body }),
        replayable: true,
        auth: !notify,
      },
      options,
    );
    const text = await res.text();
    return parseJsonBody(r, text, res) as T;
  }

  /**
   * An upload-style route (`files/upload`, `files/upload_session/append_v2`...): argument in Dropbox-API-Arg,
   * bytes in the body. Only a Uint8Array body is retried; a stream is sent once.
   */
  async upload<T = unknown>(route: string, arg: unknown, body: UploadBody, options: CallOptions = {}): Promise<T> {
    const r = normalizeRoute(route);
    let payload: BodyInit;
    let replayable = false;
    if (body instanceof Uint8Array) {
      // TS 5.9's BodyInit wants an ArrayBuffer-backed view; a SharedArrayBuffer-backed one is copied first.
      payload = (body.buffer instanceof ArrayBuffer ? body : new Uint8Array(body)) as Uint8Array<ArrayBuffer>;
      replayable = true;
    } else if (body instanceof Readable) {
      payload = Readable.toWeb(body) as unknown as ReadableStream<Uint8Array>;
    } else {
      payload = body;
    }
    const res = await this.#send(
      r,
      {
        url: `${this.#o.urls.content}/2/${r}`,
        headers: { 'content-type': 'application/octet-stream', 'dropbox-api-arg': httpHeaderSafeJson(arg ?? null) },
        body: payload,
        replayable,
        auth: true,
      },
      options,
    );
    return parseJsonBody(r, await res.text(), res) as T;
  }

  /**
   * A download-style route (`files/download`): argument in Dropbox-API-Arg, result in the Dropbox-API-Result
   * header, bytes in the body. `range` asks for bytes start..end inclusive (HTTP Range, answered with 206).
   */
  async download<T = unknown>(
    route: string,
    arg: unknown,
    options: CallOptions & { range?: { start: number; end?: number } } = {},
  ): Promise<DownloadResult<T>> {
    const r = normalizeRoute(route);
    const headers: Record<string, string> = { 'dropbox-api-arg': httpHeaderSafeJson(arg ?? null) };
    if (options.range) {
      const { start, end } = options.range;
      if (!Number.isInteger(start) || start < 0 || (end !== undefined && (!Number.isInteger(end) || end < start))) {
        throw new DropkeyError(ErrorCodes.BAD_INPUT, 'a download range needs integers 0 <= start <= end');
      }
      headers['range'] = `bytes=${start}-${end ?? ''}`;
    }
    const res = await this.#send(r, { url: `${this.#o.urls.content}/2/${r}`, headers, replayable: true, auth: true }, options);
    const raw = res.headers.get('dropbox-api-result');
    let result: T;
    try {
      if (raw === null) throw new Error('missing');
      result = JSON.parse(raw) as T;
    } catch {
      await res.body?.cancel();
      throw invalidResponse(r, 'no readable Dropbox-API-Result header', res);
    }
    return { result, body: res.body ?? new Response(new Uint8Array(0)).body!, headers: res.headers, status: res.status };
  }

  #commonHeaders(options: CallOptions): Record<string, string> {
    const h: Record<string, string> = {};
    const selectUser = options.selectUser === undefined ? this.#o.selectUser : options.selectUser;
    const selectAdmin = options.selectAdmin === undefined ? this.#o.selectAdmin : options.selectAdmin;
    const pathRoot = options.pathRoot === undefined ? this.#o.pathRoot : options.pathRoot;
    if (selectUser) h['dropbox-api-select-user'] = selectUser;
    if (selectAdmin) h['dropbox-api-select-admin'] = selectAdmin;
    if (pathRoot) h['dropbox-api-path-root'] = typeof pathRoot === 'string' ? pathRoot : httpHeaderSafeJson(pathRoot);
    if (this.#o.userAgent) h['user-agent'] = this.#o.userAgent;
    return h;
  }

  async #send(route: string, p: Prepared, options: CallOptions): Promise<Response> {
    const { signal } = options;
    const common = this.#commonHeaders(options);
    let refreshed = false;
    let rejected: string | undefined;
    let retries = 0;
    for (;;) {
      if (signal?.aborted) throw new DropkeyError(ErrorCodes.CANCELLED, `the call to ${route} was cancelled`, { cause: signal.reason });
      const headers: Record<string, string> = { ...common, ...p.headers };
      let token: string | undefined;
      if (p.auth) {
        token = await this.#o.getAccessToken(rejected === undefined ? {} : { forceRefresh: true, rejectedToken: rejected });
        headers['authorization'] = `Bearer ${token}`;
      }
      rejected = undefined;
      const init: RequestInit & { duplex?: 'half' } = { method: 'POST', headers };
      if (p.body !== undefined) init.body = p.body;
      if (p.body instanceof ReadableStream) init.duplex = 'half';
      const attempt = this.#attemptSignal(signal);
      if (attempt.signal) init.signal = attempt.signal;

      let res: Response;
      try {
        res = await this.#o.fetch(p.url, init);
      } catch (cause) {
        if (signal?.aborted) {
          throw new DropkeyError(ErrorCodes.CANCELLED, `the call to ${route} was cancelled`, { cause });
        }
        const err = networkError(attempt.timedOut() ? new DOMException('timed out', 'TimeoutError') : cause, `the call to ${route}`);
        if (await this.#backoff(err, undefined, retries, p.replayable, signal)) {
          retries++;
          continue;
        }
        throw this.#final(err, retries);
      } finally {
        attempt.done();
      }
      if (res.ok) return res;

      const err = await readDropboxError(res, route, { secrets: [token] });
      if (
        res.status === 401 &&
        errorTag(err) === 'expired_access_token' &&
        p.auth &&
        !refreshed &&
        p.replayable
      ) {
        refreshed = true;
        rejected = token;
        continue;
      }
      if (isRetryable(err) && (await this.#backoff(err, res.status, retries, p.replayable, signal))) {
        retries++;
        continue;
      }
      throw this.#final(err, retries);
    }
  }

  /**
   * The signal for one attempt: the caller's, plus the per-attempt deadline when one is set. `done()` stops the
   * deadline once headers arrived, so reading a long body is never cut.
   */
  #attemptSignal(signal: AbortSignal | undefined): { signal: AbortSignal | undefined; timedOut(): boolean; done(): void } {
    const ms = this.#o.timeoutMs;
    if (ms === undefined) return { signal, timedOut: () => false, done: () => {} };
    const ac = new AbortController();
    let fired = false;
    const timer = setTimeout(() => {
      fired = true;
      ac.abort(new DOMException(`no answer within ${ms} ms`, 'TimeoutError'));
    }, ms);
    const onAbort = () => ac.abort(signal?.reason);
    if (signal?.aborted) onAbort();
    else signal?.addEventListener('abort', onAbort, { once: true });
    return {
      signal: ac.signal,
      timedOut: () => fired,
      // The caller's signal stays linked: aborting it must still stop a body being read.
      done: () => clearTimeout(timer),
    };
  }

  /** Sleeps before a retry and returns true, or returns false when the error must surface. */
  async #backoff(err: unknown, status: number | undefined, retries: number, replayable: boolean, signal?: AbortSignal): Promise<boolean> {
    if (!replayable || retries >= this.#policy.maxRetries) return false;
    const delay = retryDelay(err, retries, status, this.#policy);
    if (delay === undefined) return false;
    try {
      await this.#policy.sleep(delay, signal);
    } catch (cause) {
      throw new DropkeyError(ErrorCodes.CANCELLED, 'the call was cancelled while waiting to retry', { cause });
    }
    return true;
  }

  #final(err: DropkeyError, retries: number): DropkeyError {
    if (retries > 0 && err.details) err.details['attempts'] = retries + 1;
    return err;
  }
}

/**
 * How the proxy moves bytes. Two transports with one interface:
 *
 * - NodeTransport, under the Node listener (node.ts): node:http(s) to Dropbox, the caller's body fed into the
 *   upstream request with a 1 MiB window (feedBody) and the upstream response piped into the caller's socket. No
 *   web streams on the data path: measured on 2 vCPUs (bench/serve-proxy.mjs), fetch + web streams delivered
 *   about half the direct download rate. Backpressure bounds memory both ways whatever the file size.
 * - WebTransport, when the app is called without a socket (app.fetch / app.request in tests and embedders): the
 *   injected fetch, with request and response bodies passed on as streams.
 *
 * Both send to the URL the proxy built (configured host + validated route) and never follow redirects.
 */
import { request as httpRequest, Agent as HttpAgent, type ClientRequest, type IncomingMessage, type ServerResponse } from 'node:http';
import { request as httpsRequest, Agent as HttpsAgent } from 'node:https';
import { DropkeyError, ErrorCodes } from '../../errors.js';
import { readBounded } from '../../body.js';
import { HttpError, ServerErrorCodes } from '../errors.js';
import { countBytes } from './forward.js';

export interface UpstreamAnswer {
  status: number;
  headers: Headers;
  /** Reads the whole body (only for small answers the proxy inspects: 401, 429). */
  text(): Promise<string>;
  /**
   * Answers the caller: the status, the given headers and the upstream body streamed (or `text` when it was
   * already read). Returns the Response for the app (a placeholder when the bytes went straight to the socket).
   */
  deliver(headers: Headers, text?: string): Response;
}

export interface Transport {
  /** Aborted when the caller goes away. */
  readonly signal: AbortSignal;
  /** The caller's body whole, if it has at most `limit` bytes; null when larger. */
  readBody(limit: number): Promise<Uint8Array | null>;
  /**
   * Sends the request. `body`: bytes, 'stream' (the caller's body, streamed once), or null. `timeoutMs` bounds the
   * wait for Dropbox's answer to start (its status and headers), not the streaming of its body.
   */
  send(url: string, method: string, headers: Headers, body: Uint8Array | 'stream' | null, options?: SendOptions): Promise<UpstreamAnswer>;
}

export interface SendOptions {
  timeoutMs?: number;
}

/** Dropbox did not start answering within the proxy's upstream timeout: a 504, never retried (it may have acted). */
function upstreamTimeout(url: string, timeoutMs: number): HttpError {
  const route = new URL(url).pathname.replace(/^\/2\//, '');
  return new HttpError(ServerErrorCodes.UPSTREAM_TIMEOUT, `Dropbox did not answer ${route} within ${timeoutMs / 1000} s, so the proxy gave up waiting.`, {
    hint: 'Try again (check first whether the call took effect); if Dropbox is slow for a while, raise DROPKEY_PROXY_UPSTREAM_TIMEOUT (seconds).',
  });
}

export interface ByteCounters {
  upload(n: number): void;
  download(n: number): void;
}

function unreachable(err: unknown, what: string): DropkeyError {
  return new DropkeyError(ErrorCodes.DROPBOX_UNAVAILABLE, `Could not reach Dropbox for ${what}.`, {
    cause: err,
    hint: "Check the server's network access to the Dropbox hosts, then try again.",
  });
}

// ---------------------------------------------------------------- node:http

export class UpstreamAgents {
  readonly http = new HttpAgent({ keepAlive: true, maxFreeSockets: 64 });
  readonly https = new HttpsAgent({ keepAlive: true, maxFreeSockets: 64 });
  destroy(): void {
    this.http.destroy();
    this.https.destroy();
  }
}

/** Placeholder Response for the app: @hono/node-server writes nothing for it (the socket already has the answer). */
function alreadySent(status: number): Response {
  return new Response(null, { status, headers: { 'x-hono-already-sent': 'true' } });
}

function toHeaders(raw: IncomingMessage['headers']): Headers {
  const h = new Headers();
  for (const [k, v] of Object.entries(raw)) {
    if (v === undefined) continue;
    if (Array.isArray(v)) for (const x of v) h.append(k, x);
    else h.set(k, v);
  }
  return h;
}

export class NodeTransport implements Transport {
  #consumed = false;
  readonly #abort = new AbortController();

  /**
   * Never touch the web Request's `body` or `signal` on this path: @hono/node-server then builds a web stream over
   * the socket, which starts reading the body before the pipe below gets it.
   */
  constructor(
    private readonly incoming: IncomingMessage,
    private readonly outgoing: ServerResponse,
    private readonly agents: UpstreamAgents,
    private readonly counters: ByteCounters,
    /** Headers every response of the app carries (security headers), written here since the app cannot add them. */
    private readonly extraHeaders: readonly [string, string][],
  ) {
    outgoing.once('close', () => {
      if (!outgoing.writableFinished) this.#abort.abort(new Error('the caller went away'));
    });
  }

  get signal(): AbortSignal {
    return this.#abort.signal;
  }

  readBody(limit: number): Promise<Uint8Array | null> {
    this.#consumed = true;
    const incoming = this.incoming;
    const chunks: Buffer[] = [];
    let size = 0;
    return new Promise((resolve, reject) => {
      const done = () => {
        incoming.off('data', onData);
        incoming.off('end', onEnd);
        incoming.off('error', onError);
      };
      const onData = (chunk: Buffer) => {
        size += chunk.length;
        if (size <= limit) return void chunks.push(chunk);
        // Stop reading but keep the socket: the caller gets a 413, and @hono/node-server drops the rest after it.
        done();
        incoming.pause();
        resolve(null);
      };
      const onEnd = () => {
        done();
        resolve(Buffer.concat(chunks, size));
      };
      const onError = (err: Error) => {
        done();
        reject(err);
      };
      incoming.on('data', onData);
      incoming.once('end', onEnd);
      incoming.once('error', onError);
    });
  }

  send(url: string, method: string, headers: Headers, body: Uint8Array | 'stream' | null, options: SendOptions = {}): Promise<UpstreamAnswer> {
    const u = new URL(url);
    const https = u.protocol === 'https:';
    const outHeaders: Record<string, string> = {};
    for (const [k, v] of headers) outHeaders[k] = v;
    if (body === 'stream' && this.#consumed) throw new Error('the request body was already read');
    return new Promise<UpstreamAnswer>((resolve, reject) => {
      const req = (https ? httpsRequest : httpRequest)(u, { method, headers: outHeaders, agent: https ? this.agents.https : this.agents.http });
      const onCallerGone = () => {
        if (!this.outgoing.writableFinished) req.destroy(new Error('the caller went away'));
      };
      this.outgoing.once('close', onCallerGone);
      let timedOut = false;
      const timer = options.timeoutMs === undefined ? undefined : setTimeout(() => {
        timedOut = true;
        req.destroy(new Error('upstream timeout'));
      }, options.timeoutMs);
      req.on('error', (err) => {
        clearTimeout(timer);
        this.outgoing.off('close', onCallerGone);
        if (this.outgoing.destroyed) reject(new DropkeyError(ErrorCodes.CANCELLED, 'The caller went away before Dropbox answered.', { cause: err }));
        else if (timedOut) reject(upstreamTimeout(url, options.timeoutMs!));
        else reject(unreachable(err, u.pathname));
      });
      req.once('response', (res) => {
        clearTimeout(timer);
        resolve(this.#answer(res, method, onCallerGone));
      });
      if (body === 'stream') {
        this.#consumed = true;
        feedBody(this.incoming, req, this.counters);
      } else {
        req.end(body ?? undefined);
      }
    });
  }

  #answer(res: IncomingMessage, method: string, onCallerGone: () => void): UpstreamAnswer {
    const { incoming, outgoing, counters, extraHeaders } = this;
    const status = res.statusCode ?? 502;
    return {
      status,
      headers: toHeaders(res.headers),
      async text() {
        const chunks: Buffer[] = [];
        for await (const c of res as AsyncIterable<Buffer>) chunks.push(c);
        return Buffer.concat(chunks).toString('utf8');
      },
      deliver(headers, text) {
        const head: Record<string, string> = {};
        for (const [k, v] of extraHeaders) head[k] = v;
        for (const [k, v] of headers) head[k] = v;
        // Dropbox answered before taking the whole body (an early 401, a 400): the caller may still be sending it,
        // so this connection cannot carry another request; say so, or a client reusing it races our close.
        if (!incoming.complete) head['connection'] = 'close';
        if (text !== undefined) {
          head['content-length'] = String(Buffer.byteLength(text));
          outgoing.writeHead(status, head);
          outgoing.end(method === 'HEAD' ? undefined : text);
          outgoing.off('close', onCallerGone);
          return alreadySent(status);
        }
        outgoing.writeHead(status, head);
        res.on('data', (chunk: Buffer) => counters.download(chunk.length));
        // Dropbox dropping the connection mid-body: cut the caller's connection too, so it sees a truncated answer.
        res.once('aborted', () => outgoing.destroy());
        res.on('error', () => outgoing.destroy());
        outgoing.once('close', () => {
          if (!res.complete) res.destroy();
        });
        res.pipe(outgoing);
        return alreadySent(status);
      },
    };
  }
}

/**
 * How much of the caller's body may wait in the upstream request (its own buffer plus its socket's) before the
 * caller's socket is paused. `pipe()` pauses at the writable's 16 KiB high-water mark, that is after nearly every
 * 64 KiB socket read once Dropbox's side is momentarily full, and every pause and resume is a round trip through
 * the event loop (and, on a busy machine, through the scheduler) before the next read. A window of a few reads
 * lets the proxy keep reading while the upstream socket drains, and bounds the memory of an upload to this much
 * whatever its size.
 */
export const FEED_WINDOW_BYTES = 1024 * 1024;
/** Byte counters are updated about once per this many bytes (and at the end), not once per socket read. */
const COUNT_BATCH_BYTES = 1024 * 1024;

/**
 * Streams the caller's body into the upstream request: each chunk is written as it arrives, the caller's socket
 * pauses only when FEED_WINDOW_BYTES are waiting upstream and resumes on the upstream's 'drain'. The body is
 * never replayed: a failure after the first byte ends the request (the upstream request is destroyed, and its
 * error answers the caller).
 */
export function feedBody(incoming: IncomingMessage, req: ClientRequest, counters: ByteCounters): void {
  let pending = 0;
  const flush = (): void => {
    if (pending > 0) counters.upload(pending);
    pending = 0;
  };
  const resume = (): void => {
    if (!req.destroyed) incoming.resume();
  };
  const onData = (chunk: Buffer): void => {
    pending += chunk.length;
    if (pending >= COUNT_BATCH_BYTES) flush();
    // A false return is not acted on until the window is full: the bytes are queued, and counted in writableLength.
    req.write(chunk);
    if (req.writableLength >= FEED_WINDOW_BYTES) {
      incoming.pause();
      req.once('drain', resume);
    }
  };
  const onEnd = (): void => {
    done();
    req.end();
  };
  const onError = (err: Error): void => {
    done();
    req.destroy(err);
  };
  const done = (): void => {
    flush();
    incoming.off('data', onData);
    incoming.off('end', onEnd);
    incoming.off('error', onError);
    req.off('drain', resume);
    req.off('close', done);
  };
  incoming.on('data', onData);
  incoming.once('end', onEnd);
  incoming.once('error', onError);
  // The upstream request ended early (Dropbox answered before reading it all, a timeout, the caller went away):
  // stop feeding; what is left of the body is the listener's to drop.
  req.once('close', done);
}

// ---------------------------------------------------------------- fetch

export class WebTransport implements Transport {
  constructor(
    private readonly request: Request,
    private readonly fetch: typeof globalThis.fetch,
    private readonly counters: ByteCounters,
  ) {}

  get signal(): AbortSignal {
    return this.request.signal;
  }

  async readBody(limit: number): Promise<Uint8Array | null> {
    return this.request.body ? readBounded(this.request.body, limit) : new Uint8Array(0);
  }

  async send(url: string, method: string, headers: Headers, body: Uint8Array | 'stream' | null, options: SendOptions = {}): Promise<UpstreamAnswer> {
    const callerSignal = this.request.signal;
    // Our own controller: the timeout covers the wait for the answer's head only, so it must not abort its body.
    const ac = new AbortController();
    const onCallerGone = () => ac.abort(callerSignal.reason);
    if (callerSignal.aborted) onCallerGone();
    else callerSignal.addEventListener('abort', onCallerGone, { once: true });
    let timedOut = false;
    const timer = options.timeoutMs === undefined ? undefined : setTimeout(() => {
      timedOut = true;
      ac.abort(new DOMException('upstream timeout', 'TimeoutError'));
    }, options.timeoutMs);
    const streamed = body === 'stream' && this.request.body ? countBytes(this.request.body, (n) => this.counters.upload(n)) : null;
    let res: Response;
    try {
      res = await this.fetch(url, {
        method,
        headers,
        body: body === 'stream' ? streamed : body,
        redirect: 'manual',
        signal: ac.signal,
        ...(streamed ? { duplex: 'half' } : {}),
      } as RequestInit);
    } catch (err) {
      if (callerSignal.aborted) throw new DropkeyError(ErrorCodes.CANCELLED, 'The caller went away before Dropbox answered.', { cause: err });
      if (timedOut) throw upstreamTimeout(url, options.timeoutMs!);
      throw unreachable(err, new URL(url).pathname);
    } finally {
      clearTimeout(timer);
    }
    const counters = this.counters;
    return {
      status: res.status,
      headers: res.headers,
      text: () => res.text(),
      deliver(out, text) {
        if (text !== undefined) return new Response(method === 'HEAD' ? null : text, { status: res.status, headers: out });
        const resBody = res.body && method !== 'HEAD' ? countBytes(res.body, (n) => counters.download(n)) : null;
        return new Response(resBody, { status: res.status, headers: out });
      },
    };
  }
}

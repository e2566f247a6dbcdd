/**
 * The Dropbox proxy (docs/proxy.md): `/proxy/{connection}/2/<route>` forwards to the Dropbox host the route lives on,
 * with the connection's access token, so a service calls Dropbox without ever holding a token.
 *
 * - Caller authentication: an API key with the `proxy` permission, scoped to the connection (401 / 403 otherwise).
 * - Upstream URL: the configured api / content / notify base + `/2/` + a validated route name (routes.ts). Nothing
 *   from the request (Host, X-Forwarded-Host, an absolute request target, dots or escapes in the path) reaches
 *   the URL, and redirects are never followed.
 * - Headers: an allow-list each way (forward.ts); the caller's Authorization, cookies and hop-by-hop headers stop here.
 * - Bodies stream both ways without buffering, except small request bodies (RPC arguments, empty upload-session
 *   calls), which are kept so the request can be sent again.
 * - 401 expired_access_token: one forced refresh shared by concurrent callers (facade: forceRefresh +
 *   rejectedToken), then one retry, when the body can be sent again. A streamed upload cannot: it goes out with a
 *   token that has at least the facade's refresh margin left (default 5 minutes), and a 401 is passed back as is.
 * - 429 too_many_requests: the connection is blocked until Retry-After for every caller (backoff.ts); requests wait
 *   out blocks up to maxWaitMs and replayable requests are retried after them; longer waits get a 429 at once.
 * Sources: https://www.dropbox.com/developers/documentation/http/documentation (hosts), Dropbox HTTP docs: request styles and headers (headers), Dropbox docs: errors (401/429 bodies), Dropbox data ingress guide: rate limits (rate limits), dropbox-sdk-js.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import { Hono } from 'hono';
import { validateName } from '../../connections/names.js';
import { defaultSleep, type Sleep } from '../../sleep.js';
import { parseRetryAfter } from '../../dropbox/errors.js';
import { DropkeyError, ErrorCodes } from '../../errors.js';
import type { AppContext, AppEnv, ServerModule } from '../context.js';
import { CLIENT_CLOSED_REQUEST, clientWentAway, HttpError, mapError, ServerErrorCodes } from '../errors.js';
import { reportRefreshFailure } from '../jobs/events.js';
import { securityHeaders } from '../security/headers.js';
import { authorize, type ServerServices } from '../services.js';
import { backoffKey, MemoryBackoffStore, type BackoffState, type BackoffStore, type RateLimitReason } from './backoff.js';
import { requestHeaders, responseHeaders, upstreamQuery } from './forward.js';
import { NodeTransport, WebTransport, type ByteCounters, type Transport, type UpstreamAnswer } from './transport.js';
import { isRouteName, routeInfo, type RouteInfo } from './routes.js';

export interface ProxyOptions {
  /** Where 429 blocks are kept (default: in memory, one per app). */
  backoff?: BackoffStore;
  /** The longest Retry-After a request waits out before going upstream (default 30 s); longer → 429 now. */
  maxWaitMs?: number;
  /** Request bodies up to this size are kept so the request can be retried (default 1 MiB). */
  replayLimitBytes?: number;
  /** Overrides config.proxyUpstreamTimeoutMs: how long an RPC call waits for Dropbox to start answering. */
  upstreamTimeoutMs?: number;
  sleep?: Sleep;
}

const DEFAULT_MAX_WAIT_MS = 30_000;
const DEFAULT_REPLAY_LIMIT = 1024 * 1024;
/** Status for "the connection is blocked by a Dropbox rate limit", Dropbox's own (Dropbox docs: errors). */
const TOO_MANY_REQUESTS = 429;
const MAX_429_RETRIES = 3;

/** What a request told about its connection, for the metric label: the validated name, and whether it exists. */
interface Seen {
  name: string;
  exists: boolean;
}

export function proxyRoutes(s: ServerServices, options: ProxyOptions = {}): Hono<AppEnv> {
  const backoff = options.backoff ?? new MemoryBackoffStore();
  const maxWaitMs = options.maxWaitMs ?? DEFAULT_MAX_WAIT_MS;
  const replayLimit = options.replayLimitBytes ?? DEFAULT_REPLAY_LIMIT;
  const sleep = options.sleep ?? defaultSleep;
  const { urls } = s.dropkey;
  const bases: Record<RouteInfo['host'], string> = { api: urls.api, content: urls.content, notify: urls.notify };

  const counters: ByteCounters = {
    upload: (n) => s.metrics.proxyBytes.inc({ direction: 'upload' }, n),
    download: (n) => s.metrics.proxyBytes.inc({ direction: 'download' }, n),
  };
  const extraHeaders = securityHeaders({ authorizeUrl: urls.authorize, https: s.config.publicUrl.startsWith('https:') });
  const agents = s.upstreamAgents;
  /** Node pipes under the Node listener; fetch and web streams when the app is called without a socket. */
  const transportFor = (c: AppContext): Transport => {
    const { incoming, outgoing } = (c.env ?? {}) as { incoming?: IncomingMessage; outgoing?: ServerResponse };
    return incoming && outgoing
      ? new NodeTransport(incoming, outgoing, agents, counters, extraHeaders)
      : new WebTransport(c.req.raw, s.fetch, counters);
  };

  const r = new Hono<AppEnv>();

  /**
   * The connection label of a request: its name only once the caller may use it and the connection exists, since
   * names from the URL (a key for every connection may ask for any) would make unbounded series.
   */
  const labelOf = async (seen: Seen): Promise<string> => {
    if (seen.exists || seen.name === '') return seen.name;
    try {
      return (await s.dropkey.store.getConnection(seen.name)) ? seen.name : '';
    } catch {
      return '';
    }
  };

  r.all('/:name/*', async (c) => {
    const seen: Seen = { name: '', exists: false };
    try {
      const res = await forward(c, seen);
      s.metrics.proxyRequests.inc({ connection: await labelOf(seen), status: String(res.status) });
      return res;
    } catch (err) {
      s.metrics.proxyRequests.inc({ connection: await labelOf(seen), status: String(clientWentAway(err, c) ? CLIENT_CLOSED_REQUEST : mapError(err).status) });
      throw err;
    }
  });

  async function forward(c: AppContext, seen: Seen): Promise<Response> {
    const key = await s.apiKeys.authenticate(c.req.header('authorization'));
    const rawName = c.req.param('name') ?? '';
    authorize(key, 'proxy', rawName);
    const name = validateName('connection', rawName);
    seen.name = name;
    s.usage.used(key);

    const route = routeOf(c, rawName);
    const info = routeInfo(route);
    const method = c.req.method;
    const allowed = info.style === 'download' ? ['POST', 'GET', 'HEAD'] : ['POST'];
    if (!allowed.includes(method)) {
      throw new HttpError(ServerErrorCodes.METHOD_NOT_ALLOWED, `Dropbox route ${route} takes ${allowed.join(' or ')}, not ${method}.`, {
        headers: { Allow: allowed.join(', ') },
      });
    }

    const incoming = c.req.raw;
    const headers = requestHeaders(incoming.headers);
    const params = new URL(incoming.url).searchParams;
    const url = `${bases[info.host]}/2/${route}${upstreamQuery(params)}`;
    const limitKey = backoffKey(name, incoming.headers.get('dropbox-api-select-user') ?? params.get('select_user') ?? undefined);
    const transport = transportFor(c);

    // Keep the body when it is small enough to send twice; stream it otherwise.
    let body: Uint8Array | 'stream' | null = null;
    // HTTP/1.1: a request with neither Content-Length nor Transfer-Encoding has no body (RFC 9112 §6.3).
    const declared = incoming.headers.get('content-length');
    if (method === 'POST' && (declared !== null || incoming.headers.has('transfer-encoding'))) {
      const length = declared === null ? undefined : Number(declared);
      if (info.style === 'rpc' || (length !== undefined && length <= replayLimit)) {
        const buffered = await transport.readBody(replayLimit);
        if (buffered === null) {
          throw new HttpError(ServerErrorCodes.PAYLOAD_TOO_LARGE, `The body of ${route} is larger than ${replayLimit} bytes.`, {
            hint: 'RPC arguments are small JSON documents; send file contents to an upload route (files/upload, files/upload_session/*).',
            // The rest of the body is not read: the connection cannot carry another request.
            headers: { Connection: 'close' },
          });
        }
        body = buffered;
        if (buffered.byteLength > 0 || declared !== null) headers.set('content-length', String(buffered.byteLength));
        counters.upload(buffered.byteLength);
      } else {
        body = 'stream';
      }
    }
    const replayable = body !== 'stream';
    const signal = transport.signal;
    // RPC calls answer at once; uploads and downloads stream for as long as they need, and longpoll (notify host)
    // holds the request for up to its own timeout (480 s plus jitter) by design.
    const upstreamTimeout = info.style === 'rpc' && info.host !== 'notify' ? (options.upstreamTimeoutMs ?? s.config.proxyUpstreamTimeoutMs) : undefined;

    let waited = 0;
    /** Waits out the connection's block; returns it when it lasts longer than what is left of maxWaitMs. */
    const waitForBlock = async (): Promise<BackoffState | undefined> => {
      for (;;) {
        const now = s.clock();
        const block = await backoff.get(limitKey, now);
        if (!block) return undefined;
        const remaining = block.until - now;
        if (waited + remaining > maxWaitMs) return block;
        await sleep(remaining, signal);
        waited += remaining;
      }
    };

    const send = async (token: string | null): Promise<UpstreamAnswer> => {
      if (token !== null) headers.set('authorization', `Bearer ${token}`);
      const started = performance.now();
      const answer = await transport.send(url, method, headers, body, upstreamTimeout === undefined ? {} : { timeoutMs: upstreamTimeout });
      s.metrics.upstreamLatency.observe({ host: info.host }, (performance.now() - started) / 1000);
      if (answer.status === TOO_MANY_REQUESTS) s.metrics.upstream429.inc({ host: info.host });
      return answer;
    };

    let refreshed = false;
    let limited = 0;
    for (;;) {
      const block = await waitForBlock();
      if (block) return rateLimited(block, s.clock());
      // noauth routes (longpoll) carry their rights in the cursor; the connection must still exist and be usable.
      const token = (await s.tokens.get(name)).info.accessToken;
      seen.exists = true;
      const res = await send(info.noauth ? null : token);
      const out = responseHeaders(res.headers);

      if (res.status === 401) {
        s.tokens.invalidate(name);
        if (!replayable || refreshed) return res.deliver(out);
        const text = await res.text();
        if (authErrorTag(text) !== 'expired_access_token') return res.deliver(out, text);
        refreshed = true;
        // Concurrent callers that met the same expired token share one refresh (the facade's rejectedToken).
        try {
          await s.dropkey.getToken(name, { forceRefresh: true, rejectedToken: token });
        } catch (err) {
          // connection.needs_reauth / refresh_failed events, as for token requests (jobs/events.ts).
          reportRefreshFailure(s, name, err, { detected_by: 'proxy' });
          // The token service words "needs re-auth" with the reconnect URL; ask it (the stored state now says so).
          if (err instanceof DropkeyError && err.code === ErrorCodes.REAUTH_REQUIRED) {
            s.tokens.invalidate(name);
            await s.tokens.get(name);
          }
          throw err;
        }
        s.tokens.invalidate(name);
        continue;
      }

      if (res.status === TOO_MANY_REQUESTS) {
        const text = await res.text();
        let json: unknown;
        try {
          json = JSON.parse(text);
        } catch {
          json = undefined; // plain-text 429 ⇒ too_many_requests (Dropbox docs: errors)
        }
        const seconds = parseRetryAfter(res.headers, json, s.clock) ?? 1;
        const tag = (json as { error?: { reason?: { '.tag'?: unknown } } } | undefined)?.error?.reason?.['.tag'];
        const reason: RateLimitReason = tag === 'too_many_write_operations' ? tag : 'too_many_requests';
        if (reason === 'too_many_requests') await backoff.block(limitKey, { until: s.clock() + seconds * 1000, reason });
        // Bounded twice: by the total wait, and by a count in case Dropbox keeps answering Retry-After: 0.
        if (replayable && ++limited <= MAX_429_RETRIES && waited + seconds * 1000 <= maxWaitMs) {
          if (reason === 'too_many_write_operations') {
            await sleep(seconds * 1000, signal);
            waited += seconds * 1000;
          }
          continue;
        }
        return res.deliver(out, text);
      }

      return res.deliver(out);
    }
  }

  return r;
}

/** The route after `/proxy/{name}/2/`, from the raw (still percent-encoded) path, or a 404 saying what is served. */
function routeOf(c: AppContext, rawName: string): string {
  const path = new URL(c.req.url).pathname;
  const prefix = `/proxy/${encodeURIComponent(rawName)}/2/`;
  const route = path.startsWith(prefix) ? path.slice(prefix.length) : '';
  if (!isRouteName(route)) {
    throw new HttpError(ServerErrorCodes.ROUTE_NOT_FOUND, 'The proxy serves Dropbox API routes only: /proxy/{connection}/2/{route}, e.g. /proxy/default/2/files/list_folder.', {
      hint: 'Route names are lowercase words joined by "/" (https://www.dropbox.com/developers/documentation/http/documentation); other paths and hosts are refused.',
    });
  }
  return route;
}

/** The AuthError tag of a 401 body (Dropbox docs: errors), or undefined. */
function authErrorTag(text: string): string | undefined {
  try {
    const tag = (JSON.parse(text) as { error?: { '.tag'?: unknown } }).error?.['.tag'];
    return typeof tag === 'string' ? tag : undefined;
  } catch {
    return undefined;
  }
}

/**
 * The 429 the proxy answers itself while a connection is blocked for longer than it waits. The body satisfies
 * both readers: dropkey's `{"error": {"code", "message"}}` and Dropbox's RateLimitError (`error.reason`,
 * `error.retry_after`, Dropbox docs: errors), which the SDKs decode; the Retry-After header is an integer as Java requires.
 */
function rateLimited(block: { until: number; reason: RateLimitReason }, now: number): Response {
  const seconds = Math.max(1, Math.ceil((block.until - now) / 1000));
  const body = {
    error_summary: `${block.reason}/`,
    error: {
      code: ServerErrorCodes.RATE_LIMITED,
      message: `Dropbox rate-limited this connection; try again in ${seconds} s.`,
      reason: { '.tag': block.reason },
      retry_after: seconds,
    },
  };
  return new Response(JSON.stringify(body), {
    status: TOO_MANY_REQUESTS,
    headers: { 'Content-Type': 'application/json', 'Retry-After': String(seconds), 'Cache-Control': 'no-store' },
  });
}

export function createProxyModule(options: ProxyOptions = {}): ServerModule {
  return {
    name: 'proxy',
    mount: '/proxy',
    // No start(): the upstream pools are the app's (services.upstreamAgents), closed by app.stop().
    routes: (s) => proxyRoutes(s, options),
  };
}

export const proxyModule: ServerModule = createProxyModule();

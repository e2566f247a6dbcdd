/**
 * What crosses the proxy: allow-lists of headers each way, the query string, and body helpers.
 * Allow-lists rather than deny-lists: the caller's Authorization and cookies, hop-by-hop headers (RFC 9110
 * §7.6.1: Connection, Keep-Alive, TE, Transfer-Encoding, Upgrade, Proxy-*), Host and X-Forwarded-* never reach
 * Dropbox, and nothing Dropbox sets beyond these reaches the caller.
 * Sources: https://www.dropbox.com/developers/documentation/http/documentation (request headers), Dropbox docs: errors (Retry-After, X-Dropbox-Request-Id), Dropbox HTTP docs: hosts (Range, ETag).
 */

const REQUEST_HEADERS = [
  'dropbox-api-arg',
  'dropbox-api-select-user',
  'dropbox-api-select-admin',
  'dropbox-api-path-root',
  'content-type',
  'content-length',
  'range',
  'if-none-match',
] as const;

const RESPONSE_HEADERS = [
  'content-type',
  'content-length',
  'content-range',
  'accept-ranges',
  'content-disposition',
  'dropbox-api-result',
  'etag',
  'last-modified',
  'retry-after',
  'x-dropbox-request-id',
] as const;

export function requestHeaders(incoming: Headers): Headers {
  const out = new Headers();
  for (const name of REQUEST_HEADERS) {
    const v = incoming.get(name);
    if (v !== null) out.set(name, v);
  }
  // fetch would otherwise ask for gzip and decode it, leaving a Content-Length that no longer matches the body.
  out.set('accept-encoding', 'identity');
  return out;
}

export function responseHeaders(upstream: Headers): Headers {
  const out = new Headers();
  for (const name of RESPONSE_HEADERS) {
    const v = upstream.get(name);
    if (v !== null) out.set(name, v);
  }
  return out;
}

/**
 * The query string for Dropbox: `arg`, `select_user` and the other URL forms of the headers pass (Dropbox HTTP docs: request styles and headers "CORS
 * simple request" mode), except `authorization`, the URL form of a credential: the proxy supplies its own.
 */
export function upstreamQuery(params: URLSearchParams): string {
  const out = new URLSearchParams();
  for (const [k, v] of params) if (k.toLowerCase() !== 'authorization') out.append(k, v);
  const s = out.toString();
  return s ? `?${s}` : '';
}

/**
 * Passes a stream through unchanged, reporting byte counts in batches (a metric update per ~1 MiB, and the rest
 * at the end) so large transfers do not pay a counter update per chunk. Backpressure is preserved: a chunk is
 * read from the source only when the consumer pulls.
 */
export function countBytes(source: ReadableStream<Uint8Array>, report: (n: number) => void): ReadableStream<Uint8Array> {
  const reader = source.getReader();
  let pending = 0;
  const flush = () => {
    if (pending > 0) report(pending);
    pending = 0;
  };
  return new ReadableStream<Uint8Array>(
    {
      async pull(controller) {
        try {
          const { done, value } = await reader.read();
          if (done) {
            flush();
            controller.close();
            return;
          }
          pending += value.byteLength;
          if (pending >= 1 << 20) flush();
          controller.enqueue(value);
        } catch (err) {
          flush();
          controller.error(err);
        }
      },
      async cancel(reason) {
        flush();
        await reader.cancel(reason).catch(() => undefined);
      },
    },
    { highWaterMark: 0 },
  );
}

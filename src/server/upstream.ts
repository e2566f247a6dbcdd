/**
 * The fetch every upstream (Dropbox) call of the server goes through: the facade's refreshes and identity
 * checks, and later the proxy. It records latency by host kind, 429s, and refresh-grant outcomes in the metrics,
 * without reading or logging any body beyond the `grant_type` of token requests.
 */
import type { DropboxUrls } from '../dropbox/hosts.js';
import type { ServerMetrics } from './metrics.js';

export type HostKind = 'token' | 'api' | 'content' | 'notify' | 'other';

export function hostKindOf(urls: DropboxUrls, url: string): HostKind {
  // The token URL first: with one emulator base, api and token share a prefix.
  if (url.startsWith(urls.token)) return 'token';
  // With one base URL for every host (the emulator), api wins: the hosts cannot be told apart by URL.
  if (url.startsWith(`${urls.api}/`)) return 'api';
  if (url.startsWith(`${urls.content}/`)) return 'content';
  if (url.startsWith(`${urls.notify}/`)) return 'notify';
  return 'other';
}

function isRefreshGrant(body: unknown): boolean {
  if (typeof body === 'string') return /(?:^|&)grant_type=refresh_token(?:&|$)/.test(body);
  if (body instanceof URLSearchParams) return body.get('grant_type') === 'refresh_token';
  return false;
}

export function instrumentFetch(inner: typeof fetch, urls: DropboxUrls, metrics: ServerMetrics, now: () => number = performance.now.bind(performance)): typeof fetch {
  const wrapped = async (input: string | URL | Request, init?: RequestInit): Promise<Response> => {
    const url = typeof input === 'string' ? input : input instanceof URL ? input.href : input.url;
    const host = hostKindOf(urls, url);
    const refresh = host === 'token' && isRefreshGrant(init?.body);
    const started = now();
    let res: Response;
    try {
      res = await inner(input, init);
    } catch (err) {
      if (refresh) metrics.refreshes.inc({ outcome: 'network' });
      throw err;
    }
    metrics.upstreamLatency.observe({ host }, (now() - started) / 1000);
    if (res.status === 429) metrics.upstream429.inc({ host });
    if (refresh) {
      let outcome = res.ok ? 'ok' : 'error';
      if (res.status === 400) {
        // Peek at the OAuth error code on a clone; the caller still reads the original body.
        const body = (await res.clone().json().catch(() => null)) as { error?: unknown } | null;
        if (body?.error === 'invalid_grant') outcome = 'invalid_grant';
      }
      metrics.refreshes.inc({ outcome });
    }
    return res;
  };
  return wrapped as typeof fetch;
}

/**
 * `GET /api/v1/connections/{name}/token` answered straight from the node listener, in front of hono, so that a
 * hand-out costs about what a bare node:http server doing the same bearer check costs (bench/serve-token.mjs).
 *
 * Why: through hono and @hono/node-server a hand-out costs a web Request (headers copied into undici's Headers
 * to read Authorization), the router, two middleware closures and a Response object, about twice the CPU a bare
 * node:http server spends for the same answer (profiles in bench/README.md, "serve-token").
 *
 * It only answers what it can answer completely from memory with the SAME checks as the route in api/index.ts:
 * the key from ApiKeyService.cached() (the code authenticate() runs, on a fresh cache entry), the permission and
 * connection scope with hasPermission/mayUseConnection (what authorize() checks), the token from
 * TokenService.cached() (what get() serves without a store read), the hand-out counted by UsageRecorder.handout
 * (so audit rows and key counters are the same), and the request counted and logged by app.ts's `served`.
 * Anything else (no key, unknown or stale key, missing permission, a token not in memory, HEAD, a query, an
 * encoded name, a repeated Authorization header) returns false before any side effect, and hono answers it:
 * errors keep their one boundary, and the first request for a key or a token fills the caches the usual way.
 */
import type { IncomingMessage, OutgoingHttpHeaders, ServerResponse } from 'node:http';
import { NAME_PATTERN } from '../../connections/names.js';
import { answer, hasPermission, mayUseConnection, type ServerServices } from '../services.js';

/** Answers the request and returns true, or does nothing and returns false. */
export type NodeFastPath = (req: IncomingMessage, res: ServerResponse) => boolean;

/** Counts and logs an answered request (app.ts); `started` is performance.now() when handling began. */
export type RequestDone = (method: string, path: string, status: number, started: number) => void;

/** True when the raw headers hold more than one Authorization line (hono would see them joined, and refuse). */
function repeatedAuthorization(raw: string[]): boolean {
  let seen = 0;
  for (let i = 0; i < raw.length; i += 2) {
    const name = raw[i]!;
    if (name.length === 13 && name.toLowerCase() === 'authorization' && ++seen > 1) return true;
  }
  return false;
}

export function tokenFastPath(s: ServerServices, served: RequestDone, mount: string): NodeFastPath {
  const prefix = `${mount}/connections/`;
  // The name must pass validateName() as is: NAME_PATTERN's alphabet has no "%" and no "/", so hono would see
  // the same decoded name in the same route.
  const path = new RegExp(`^${prefix.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}(${NAME_PATTERN.source.slice(1, -1)})/token$`);
  // The route's headers (api/index.ts) plus Content-Length, built once per body length: bodies of one deployment
  // come in a handful of lengths, so this stays a few entries at any number of connections (one per token would cost
  // a headers object per connection).
  const headersFor = new Map<number, OutgoingHttpHeaders>();
  return (req, res) => {
    const url = req.url;
    if (req.method !== 'GET' || url === undefined || !url.startsWith(prefix)) return false;
    const started = performance.now();
    const name = path.exec(url)?.[1];
    if (name === undefined) return false;
    const key = s.apiKeys.cached(req.headers.authorization);
    if (key === undefined || !hasPermission(key, 'token:read') || !mayUseConnection(key, name)) return false;
    const token = s.tokens.cached(name);
    if (token === undefined || repeatedAuthorization(req.rawHeaders)) return false;
    s.usage.handout(key, name, token);
    const { body, bytes: length } = answer(token, s.clock());
    let headers = headersFor.get(length);
    if (headers === undefined) {
      headers = { ...s.securityHeaders, 'Content-Type': 'application/json', 'Cache-Control': 'no-store', 'Content-Length': length };
      if (headersFor.size >= 64) headersFor.clear();
      headersFor.set(length, headers);
    }
    res.writeHead(200, headers);
    res.end(body);
    served('GET', url, 200, started);
    return true;
  };
}

/**
 * Injected faults (POST /_emulator/faults) and the request log (GET /_emulator/requests).
 * The log never holds a secret: Authorization values, tokens, codes and secrets in query strings are replaced by
 * a fingerprint (a truncated SHA-256), which is enough to tell two tokens apart in a test.
 */
import { fingerprint } from './ids.js';
import { InputError } from './state.js';
import { basicCredentials, jsonResponse, rateLimitResponse, textResponse } from './wire.js';

export interface Fault {
  id: number;
  route: string;
  status?: number;
  retry_after?: number;
  /** Requests still to be hit. */
  count: number;
  delay_ms?: number;
  body?: unknown;
  reset_connection?: boolean;
}

/** Thrown by the handler to make the listener drop the connection without an answer. */
export class ResetConnection extends Error {
  constructor() {
    super('connection reset by an injected fault');
    this.name = 'ResetConnection';
  }
}

export class Faults {
  private list: Fault[] = [];
  private nextId = 1;

  add(input: unknown): Fault {
    if (typeof input !== 'object' || input === null || Array.isArray(input)) throw new InputError(400, 'bad_request', 'body must be a JSON object');
    const o = input as Record<string, unknown>;
    const known = ['route', 'status', 'retry_after', 'count', 'delay_ms', 'body', 'reset_connection'];
    for (const k of Object.keys(o)) if (!known.includes(k)) throw new InputError(400, 'bad_request', `unknown field "${k}"`);
    const route = o['route'];
    if (typeof route !== 'string' || !/^(\*|[a-z0-9_]+(\/[a-z0-9_]+)*)$/.test(route)) {
      throw new InputError(400, 'bad_request', 'route must be a route name such as "files/upload" or "oauth2/token", or "*"');
    }
    const int = (k: string, min: number, max: number): number | undefined => {
      const v = o[k];
      if (v === undefined) return undefined;
      if (typeof v !== 'number' || !Number.isInteger(v) || v < min || v > max) throw new InputError(400, 'bad_request', `${k} must be an integer from ${min} to ${max}`);
      return v;
    };
    const status = int('status', 100, 599);
    const reset = o['reset_connection'];
    if (reset !== undefined && typeof reset !== 'boolean') throw new InputError(400, 'bad_request', 'reset_connection must be a boolean');
    const delay = int('delay_ms', 0, 600_000);
    if (status === undefined && !reset && delay === undefined) throw new InputError(400, 'bad_request', 'give status, delay_ms or reset_connection');
    const fault: Fault = { id: this.nextId++, route, count: int('count', 1, 1_000_000) ?? 1 };
    if (status !== undefined) fault.status = status;
    const retryAfter = int('retry_after', 0, 86_400);
    if (retryAfter !== undefined) fault.retry_after = retryAfter;
    if (delay !== undefined) fault.delay_ms = delay;
    if (o['body'] !== undefined) fault.body = o['body'];
    if (reset) fault.reset_connection = true;
    this.list.push(fault);
    return fault;
  }

  /** Takes the first pending fault for a route (or "*"), counting it down. */
  take(route: string): Fault | undefined {
    const f = this.list.find((x) => x.route === route || x.route === '*');
    if (!f) return undefined;
    f.count -= 1;
    if (f.count <= 0) this.list.splice(this.list.indexOf(f), 1);
    return f;
  }

  pending(): Fault[] {
    return this.list.map((f) => ({ ...f }));
  }

  clear(): number {
    const n = this.list.length;
    this.list = [];
    return n;
  }
}

/** The answer a fault replaces the real one with; undefined when it only delays (status below 400 or none). */
export function faultResponse(f: Fault, route: string, salt: number): Response | undefined {
  if (f.status === undefined || f.status < 400) return undefined;
  const headers: Record<string, string> = {};
  const retryAfter = f.retry_after ?? (f.status === 429 ? 1 : undefined);
  if (retryAfter !== undefined) headers['Retry-After'] = String(retryAfter);
  if (f.body !== undefined) {
    return typeof f.body === 'string' ? textResponse(f.body, f.status, headers) : jsonResponse(f.body, f.status, headers);
  }
  const dots = '.'.repeat(salt % 4);
  if (route.startsWith('oauth2/')) {
    // Observed token-endpoint hiccup body (https://www.dropbox.com/developers/documentation/http/documentation#oauth2-token).
    if (f.status >= 500) return jsonResponse({ error: 'The server has either erred or is incapable of performing the requested operation.' }, f.status, headers);
    return jsonResponse({ error: 'invalid_request', error_description: 'injected fault' }, f.status, headers);
  }
  switch (f.status) {
    case 429:
      return rateLimitResponse('too_many_requests', retryAfter ?? 1, salt);
    case 401:
      return jsonResponse({ error_summary: `invalid_access_token/${dots}`, error: { '.tag': 'invalid_access_token' } }, 401, headers);
    case 409:
      return jsonResponse({ error_summary: `other/${dots}`, error: { '.tag': 'other' } }, 409, headers);
    case 400:
      return textResponse(`Error in call to API function "${route}": injected fault`, 400, headers);
    default:
      return textResponse(f.status >= 500 ? 'Internal Server Error (injected fault)' : `HTTP ${f.status} (injected fault)`, f.status, headers);
  }
}

// ---- request log ------------------------------------------------------------------------------------------------

export interface LogEntry {
  id: number;
  time: string;
  method: string;
  path: string;
  query?: Record<string, string>;
  route?: string;
  headers: Record<string, string>;
  /** "Bearer sha256:…", "Basic <app key>" or absent: never the credential itself. */
  authorization?: string;
  status: number;
  duration_ms: number;
  request_id: string;
  fault?: number;
}

const LOGGED_HEADERS = [
  'content-type',
  'content-length',
  'user-agent',
  'dropbox-api-arg',
  'dropbox-api-select-user',
  'dropbox-api-select-admin',
  'dropbox-api-path-root',
  'range',
  'if-none-match',
];
const SECRET_PARAMS = new Set(['authorization', 'client_secret', 'code', 'code_verifier', 'refresh_token', 'access_token']);
const MAX_LOG = 10_000;

export function describeAuthorization(value: string | null): string | undefined {
  if (value === null) return undefined;
  const bearer = /^Bearer\s+(\S+)$/i.exec(value);
  if (bearer) return `Bearer ${fingerprint(bearer[1]!)}`;
  const basic = basicCredentials(value);
  if (basic) return `Basic ${/^[A-Za-z0-9_-]{1,64}$/.test(basic.user) ? basic.user : fingerprint(basic.user)}`;
  return `other ${fingerprint(value)}`;
}

export class RequestLog {
  private entries: LogEntry[] = [];
  private nextId = 1;

  record(e: Omit<LogEntry, 'id' | 'headers' | 'authorization' | 'query'>, req: Request, url: URL): void {
    const headers: Record<string, string> = {};
    for (const h of LOGGED_HEADERS) {
      const v = req.headers.get(h);
      if (v !== null) headers[h] = v.length > 1000 ? `${v.slice(0, 1000)}…` : v;
    }
    const entry: LogEntry = { id: this.nextId++, ...e, headers };
    const auth = describeAuthorization(req.headers.get('authorization') ?? url.searchParams.get('authorization'));
    if (auth !== undefined) entry.authorization = auth;
    if (url.search) {
      const q: Record<string, string> = {};
      for (const [k, v] of url.searchParams) q[k] = SECRET_PARAMS.has(k) ? fingerprint(v) : v;
      entry.query = q;
    }
    this.entries.push(entry);
    if (this.entries.length > MAX_LOG) this.entries.splice(0, this.entries.length - MAX_LOG);
  }

  list(): LogEntry[] {
    return this.entries;
  }

  clear(): number {
    const n = this.entries.length;
    this.entries = [];
    return n;
  }
}

/**
 * The Hono environment every server sub-app shares, and small request helpers.
 */
import type { Context, Hono } from 'hono';
import { DropkeyError, ErrorCodes } from '../errors.js';
import { readBounded } from '../body.js';
import { HttpError, ServerErrorCodes } from './errors.js';
import type { ApiKeyRecord } from '../store/server-types.js';
import type { ServerServices } from './services.js';

export interface AppEnv {
  Bindings: { incoming?: { socket?: { remoteAddress?: string } } };
  Variables: {
    /** Set by the API's key authentication. */
    apiKey: ApiKeyRecord;
    /** Set by the OAuth callback in popup mode so the error boundary answers with the popup result page. */
    popupResult: boolean;
    /** Set on the pages a connect-link owner sees: error pages then give no links to the admin pages. */
    ownerPage: boolean;
  };
}

export type AppContext = Context<AppEnv>;

/**
 * A server module: a sub-app mounted under a path, plus optional background work started by the listener
 * (node.ts) and stopped on shutdown. See the list in app.ts.
 */
export interface ServerModule {
  name: string;
  /** Where to mount: '/api/v1', '/proxy', '/'. Mount order is the list order; the UI goes last at '/'. */
  mount: string;
  routes(services: ServerServices): Hono<AppEnv>;
  start?(services: ServerServices): { stop(): Promise<void> };
}

/** The client's IP for rate limits: the socket's address, or X-Forwarded-For's first hop behind a trusted proxy. */
export function clientIp(c: AppContext, trustProxy: boolean): string {
  if (trustProxy) {
    const xff = c.req.header('x-forwarded-for');
    const first = xff?.split(',')[0]?.trim();
    if (first) return first;
  }
  return c.env?.incoming?.socket?.remoteAddress ?? 'unknown';
}

/** The request body, at most maxBytes (./body.ts), or DROPKEY_PAYLOAD_TOO_LARGE. */
export async function readBody(c: AppContext, maxBytes: number, what = 'The request body'): Promise<Buffer> {
  const tooLarge = () => new HttpError(ServerErrorCodes.PAYLOAD_TOO_LARGE, `${what} is larger than ${maxBytes} bytes.`);
  if (Number(c.req.header('content-length') ?? '0') > maxBytes) throw tooLarge();
  const body = c.req.raw.body;
  if (!body) return Buffer.alloc(0);
  const read = await readBounded(body, maxBytes);
  if (read === null) throw tooLarge();
  return read;
}

/** Reads a JSON object body (at most maxBytes), or throws DROPKEY_BAD_INPUT saying what was wrong. */
export async function readJsonObject(c: AppContext, maxBytes = 64 * 1024): Promise<Record<string, unknown>> {
  const type = c.req.header('content-type') ?? '';
  if (!/^application\/json\b/i.test(type)) {
    throw new DropkeyError(ErrorCodes.BAD_INPUT, 'The request body must be JSON.', { hint: 'Send "Content-Type: application/json".' });
  }
  const text = (await readBody(c, maxBytes)).toString('utf8');
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    throw new DropkeyError(ErrorCodes.BAD_INPUT, 'The request body is not valid JSON.');
  }
  if (value === null || typeof value !== 'object' || Array.isArray(value)) {
    throw new DropkeyError(ErrorCodes.BAD_INPUT, 'The request body must be a JSON object.');
  }
  return value as Record<string, unknown>;
}

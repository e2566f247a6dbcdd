/**
 * The server's error vocabulary and the ONE place errors become HTTP responses (as hono's app.onError, https://hono.dev/docs/api/hono#error-handling).
 * Domain errors (DropkeyError, from src/errors.ts) carry no HTTP status; `statusFor` maps their codes here.
 * Server-only conditions (no credentials, forbidden, rate limited, CSRF) are HttpErrors with their own codes.
 *
 * Every API error body is `{"error": {"code", "message"}}` (plus `hint`, `fix` and safe `details` when known): the
 * API's rendering of a Fix is the Fix itself, as JSON. Browser pages (connect links, the OAuth callback, the UI)
 * get a page in the UI's layout with the same facts instead (ui/layout.ts problemPage).
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import { DropkeyError, ErrorCodes, type ErrorCode, type Fix } from '../errors.js';
import { redactText } from '../connections/redact.js';

export const ServerErrorCodes = {
  /** No credentials, or an unknown / revoked API key, or no session. */
  UNAUTHORIZED: 'DROPKEY_UNAUTHORIZED',
  /** Authenticated, but the key or user may not do this (permission or connection scope). */
  FORBIDDEN: 'DROPKEY_FORBIDDEN',
  /** Too many attempts (sign-in, connect links); Retry-After says when to try again. */
  RATE_LIMITED: 'DROPKEY_RATE_LIMITED',
  /** A state-changing browser request without a valid CSRF token. */
  CSRF: 'DROPKEY_CSRF',
  /** No such route or page. */
  ROUTE_NOT_FOUND: 'DROPKEY_ROUTE_NOT_FOUND',
  /** The route exists but not for this method. */
  METHOD_NOT_ALLOWED: 'DROPKEY_METHOD_NOT_ALLOWED',
  /** A connect link or pending login that expired or was already used. */
  LINK_EXPIRED: 'DROPKEY_LINK_EXPIRED',
  /** The request body is too large. */
  PAYLOAD_TOO_LARGE: 'DROPKEY_PAYLOAD_TOO_LARGE',
  /** Dropbox did not answer a proxied call in time. */
  UPSTREAM_TIMEOUT: 'DROPKEY_UPSTREAM_TIMEOUT',
} as const;

export type ServerErrorCode = (typeof ServerErrorCodes)[keyof typeof ServerErrorCodes];

const SERVER_STATUS: Record<ServerErrorCode, number> = {
  DROPKEY_UNAUTHORIZED: 401,
  DROPKEY_FORBIDDEN: 403,
  DROPKEY_RATE_LIMITED: 429,
  DROPKEY_CSRF: 403,
  DROPKEY_ROUTE_NOT_FOUND: 404,
  DROPKEY_METHOD_NOT_ALLOWED: 405,
  DROPKEY_LINK_EXPIRED: 410,
  DROPKEY_PAYLOAD_TOO_LARGE: 413,
  DROPKEY_UPSTREAM_TIMEOUT: 504,
};

const DOMAIN_STATUS: Record<ErrorCode, number> = {
  DROPKEY_BAD_INPUT: 400,
  DROPKEY_NOT_FOUND: 404,
  DROPKEY_ALREADY_EXISTS: 409,
  DROPKEY_REAUTH_REQUIRED: 409,
  DROPKEY_TOKEN_EXPIRED: 409,
  DROPKEY_INVALID_CLIENT: 502,
  DROPKEY_OAUTH_FAILED: 400,
  DROPKEY_DROPBOX_API: 502,
  DROPKEY_DROPBOX_UNAVAILABLE: 503,
  DROPKEY_KEY_ERROR: 500,
  DROPKEY_STORE: 503,
  DROPKEY_LOCK_TIMEOUT: 503,
  DROPKEY_CANCELLED: 503,
  DROPKEY_INTERNAL: 500,
};

/** A server-surface error: the code decides the status. Messages are shown to clients: never put secrets in them. */
export class HttpError extends Error {
  readonly code: ServerErrorCode;
  readonly hint: string | undefined;
  readonly fix: Fix | undefined;
  readonly details: Record<string, unknown> | undefined;
  readonly headers: Record<string, string> | undefined;

  constructor(
    code: ServerErrorCode,
    message: string,
    options: { hint?: string; fix?: Fix; details?: Record<string, unknown>; headers?: Record<string, string>; cause?: unknown } = {},
  ) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'HttpError';
    this.code = code;
    this.hint = options.hint;
    this.fix = options.fix;
    this.details = options.details;
    this.headers = options.headers;
  }
}

export interface ErrorBody {
  code: string;
  message: string;
  hint?: string;
  fix?: Fix;
  details?: Record<string, unknown>;
}

export interface MappedError {
  status: number;
  body: ErrorBody;
  headers: Record<string, string>;
  /** Unexpected (5xx from a bug or an outage): log it at error level. */
  unexpected: boolean;
}

/** Error → status and body. Unknown errors become a generic 500 whose message reveals nothing. */
export function mapError(err: unknown): MappedError {
  if (err instanceof HttpError) {
    return {
      status: SERVER_STATUS[err.code],
      body: {
        code: err.code,
        message: err.message,
        ...(err.hint ? { hint: err.hint } : {}),
        ...(err.fix ? { fix: err.fix } : {}),
        ...(err.details ? { details: err.details } : {}),
      },
      headers: err.headers ?? {},
      unexpected: false,
    };
  }
  if (err instanceof DropkeyError) {
    const status = DOMAIN_STATUS[err.code] ?? 500;
    return {
      status,
      body: {
        code: err.code,
        // Domain messages never hold secrets by contract; redactText is a second net for quoted upstream text.
        message: redactText(err.message),
        ...(err.hint ? { hint: redactText(err.hint) } : {}),
        ...(err.fix ? { fix: err.fix } : {}),
        ...(err.details ? { details: err.details } : {}),
      },
      headers: {},
      unexpected: status >= 500 && err.code !== ErrorCodes.DROPBOX_UNAVAILABLE,
    };
  }
  return {
    status: 500,
    body: { code: ErrorCodes.INTERNAL, message: 'Internal server error.', hint: 'This is a bug in dropkey; the server log has the details.' },
    headers: {},
    unexpected: true,
  };
}

/** Status recorded for a request whose client left before the answer (nginx's 499; never sent to anyone). */
export const CLIENT_CLOSED_REQUEST = 499;

/**
 * A request the client abandoned (closed the socket mid-body, cancelled its fetch): the request's abort signal, or
 * under the Node listener its socket gone before the answer. Judged from the caller's side only, so an upstream
 * (Dropbox) connection that breaks is still a failure of ours.
 */
export function clientWentAway(_err: unknown, c: { req: { raw: Request }; env?: unknown }): boolean {
  if (c.req.raw.signal?.aborted) return true;
  const { incoming, outgoing } = (c.env ?? {}) as { incoming?: IncomingMessage; outgoing?: ServerResponse };
  return !!incoming && !!outgoing && !outgoing.headersSent && ((incoming.destroyed && !incoming.complete) || outgoing.destroyed);
}

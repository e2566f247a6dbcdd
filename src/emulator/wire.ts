/**
 * Dropbox's wire format, in one place: JSON and text responses, error bodies, `error_summary`, header-safe JSON.
 * Sources: https://www.dropbox.com/developers/documentation/http/documentation (Stone JSON), Dropbox HTTP docs: request styles and headers (headers), Dropbox docs: errors (status codes and bodies).
 */

import { readBounded } from '../body.js';

/** Exactly `application/json`, no charset: the Python SDK asserts it (https://www.dropbox.com/developers/documentation/http/documentation). */
export const JSON_TYPE = 'application/json';
const TEXT_TYPE = 'text/plain; charset=utf-8';

export function jsonResponse(value: unknown, status = 200, headers: Record<string, string> = {}): Response {
  return new Response(JSON.stringify(value), { status, headers: { 'Content-Type': JSON_TYPE, ...headers } });
}

export function textResponse(text: string, status = 400, headers: Record<string, string> = {}): Response {
  return new Response(text, { status, headers: { 'Content-Type': TEXT_TYPE, ...headers } });
}

/** The answer to a request whose client hung up (its signal aborted): nobody reads it; the request log shows 499. */
export function clientGone(): Response {
  return textResponse('The client closed the request before it was complete.', 499);
}

/** An unexpected error: a bug of the emulator, reported through `onError`, answered 500. */
export function bugResponse(err: unknown, onError: (err: unknown) => void): Response {
  onError(err);
  return textResponse('Internal Server Error: the emulator hit a bug. See its standard error output.', 500);
}

/** A 400 for bad input to an API route, worded like Dropbox's (https://www.dropbox.com/developers/documentation/http/documentation#error-handling). */
export function badInput(route: string, reason: string): Response {
  return textResponse(`Error in call to API function "${route}": ${reason}`, 400);
}

/**
 * `error_summary`: the chain of union tags joined by "/", then "/" and a few dots so that nobody parses it
 * (https://www.dropbox.com/developers/documentation/http/documentation#error-handling: "path/not_found/..", "missing_scope/"). The dots vary with `salt`.
 * A member carrying a flattened struct continues through the struct's union-valued field, as Dropbox does for
 * UploadWriteFailed: `{".tag": "path", "reason": {".tag": "insufficient_space"}, "upload_session_id": ...}` is
 * summarised "path/insufficient_space/" (a real files/upload answer quoted in ShareX/ShareX#8415).
 */
export function errorSummary(error: unknown, salt = 0): string {
  const tags: string[] = [];
  let node: unknown = error;
  while (isTagged(node)) {
    const tag = node['.tag'];
    tags.push(tag);
    const value = node[tag];
    node = value !== undefined ? value : Object.entries(node).find(([k, v]) => k !== '.tag' && isTagged(v))?.[1];
  }
  return `${tags.join('/')}/${'.'.repeat(Math.abs(salt) % 4)}`;
}

function isTagged(v: unknown): v is Record<string, unknown> & { '.tag': string } {
  return typeof v === 'object' && v !== null && typeof (v as Record<string, unknown>)['.tag'] === 'string';
}

export function routeErrorBody(error: unknown, salt: number, userMessage?: string): Record<string, unknown> {
  const body: Record<string, unknown> = { error_summary: errorSummary(error, salt), error };
  if (userMessage !== undefined) body['user_message'] = { text: userMessage, locale: 'en' };
  return body;
}

/**
 * 429 with a RateLimitError body and the same wait, in whole seconds, in an integer `Retry-After` header: the Java
 * SDK requires the header to be an integer, Python reads `error.retry_after` (https://www.dropbox.com/developers/documentation/http/documentation#error-handling, https://www.dropbox.com/developers/reference/data-ingress-guide).
 */
export function rateLimitResponse(reason: 'too_many_requests' | 'too_many_write_operations', retryAfter: number, salt: number): Response {
  const seconds = Number.isFinite(retryAfter) ? Math.max(0, Math.ceil(retryAfter)) : 1;
  const error = { reason: { '.tag': reason }, retry_after: seconds };
  return jsonResponse({ error_summary: errorSummary(error.reason, salt), error }, 429, { 'Retry-After': String(seconds) });
}

/** 401 with an AuthError (https://www.dropbox.com/developers/documentation/http/documentation#error-handling). */
export function authError(error: Record<string, unknown>, salt: number): Response {
  return jsonResponse({ error_summary: errorSummary(error, salt), error }, 401);
}

/**
 * JSON made safe for an HTTP header: 0x7F and every non-ASCII code unit escaped as \uXXXX, exactly as the
 * SDKs do for Dropbox-API-Arg and as Dropbox does for Dropbox-API-Result (https://www.dropbox.com/developers/documentation/http/documentation).
 */
export function headerSafeJson(value: unknown): string {
  return JSON.stringify(value).replace(/[\u007f-\uffff]/g, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`);
}

const utf8 = new TextDecoder('utf-8', { fatal: true });

/**
 * Decodes a header value that arrived as bytes (Node hands them over as latin1) into text. Clients should
 * escape non-ASCII as \uXXXX, but raw UTF-8 is accepted when it is valid; anything else is `undefined`.
 */
export function headerText(value: string): string | undefined {
  // eslint-disable-next-line no-control-regex
  if (/^[\x00-\x7f]*$/.test(value)) return value;
  if (/[^\x00-\xff]/.test(value)) return value; // already decoded text (an in-process Request)
  try {
    return utf8.decode(Buffer.from(value, 'latin1'));
  } catch {
    return undefined;
  }
}

/** HTTP Basic credentials (RFC 7617) from an Authorization value; `undefined` when it is not Basic user:password. */
export function basicCredentials(value: string): { user: string; password: string } | undefined {
  const m = /^Basic\s+([A-Za-z0-9+/=]+)\s*$/i.exec(value);
  if (!m) return undefined;
  const decoded = Buffer.from(m[1]!, 'base64').toString('utf8');
  const colon = decoded.indexOf(':');
  return colon < 0 ? undefined : { user: decoded.slice(0, colon), password: decoded.slice(colon + 1) };
}

/** Parses JSON from UTF-8 bytes; `undefined` when the bytes are not UTF-8 or not JSON. */
export function parseJsonBytes(bytes: Uint8Array): { value: unknown } | undefined {
  try {
    return { value: JSON.parse(utf8.decode(bytes)) };
  } catch {
    return undefined;
  }
}

export function parseJsonText(text: string): { value: unknown } | undefined {
  try {
    return { value: JSON.parse(text) };
  } catch {
    return undefined;
  }
}

/** Reads a request body up to `limit` bytes; `undefined` when it is larger (the rest is not read). */
export async function readBody(body: ReadableStream<Uint8Array> | null, limit: number): Promise<Uint8Array | undefined> {
  if (!body) return new Uint8Array(0);
  return (await readBounded(body, limit)) ?? undefined;
}

/** Media type without parameters, lower-cased: "application/json; charset=utf-8" → "application/json". */
export function mediaType(contentType: string | null): string {
  return (contentType ?? '').split(';')[0]!.trim().toLowerCase();
}

export function isoSeconds(ms: number): string {
  return new Date(ms).toISOString().replace(/\.\d{3}Z$/, 'Z');
}

export function escapeHtml(s: string): string {
  return s.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}

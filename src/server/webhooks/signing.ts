/**
 * Webhook signatures (docs/webhooks.md), in the scheme Stripe made familiar so receivers know what to do:
 *
 *   Dropkey-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>.<raw body>")>
 *
 * The timestamp is inside the signed text, so a captured delivery cannot be replayed later than the receiver's
 * tolerance; each attempt is signed afresh. The key is the secret string's UTF-8 bytes (`whsec_...` as shown
 * once at creation), so any language's HMAC works without decoding. Several v1 entries may appear (verifiers
 * accept any one) to leave room for secret rotation. docs/webhooks.md shows receivers how to verify.
 */
import { createHmac, timingSafeEqual } from 'node:crypto';

export const SIGNATURE_HEADER = 'Dropkey-Signature';
export const EVENT_ID_HEADER = 'Dropkey-Event-Id';
export const EVENT_TYPE_HEADER = 'Dropkey-Event-Type';
export const DELIVERY_ID_HEADER = 'Dropkey-Delivery-Id';
export const ATTEMPT_HEADER = 'Dropkey-Delivery-Attempt';

/** Default tolerance between the signature's timestamp and the receiver's clock. */
export const DEFAULT_TOLERANCE_SECONDS = 300;

const SECRET_PREFIX = 'whsec_';

/** A new signing secret: 32 random bytes, base64url, with a recognizable prefix (secret scanners know it). */
export function generateWebhookSecret(randomBytes: (n: number) => Buffer): string {
  return `${SECRET_PREFIX}${randomBytes(32).toString('base64url')}`;
}

function hmacHex(secret: string, timestamp: number, body: string | Uint8Array): string {
  const h = createHmac('sha256', Buffer.from(secret, 'utf8'));
  h.update(`${timestamp}.`, 'utf8');
  h.update(typeof body === 'string' ? Buffer.from(body, 'utf8') : body);
  return h.digest('hex');
}

/** The header value for `body` sent at `timestampSeconds`. */
export function signWebhook(secret: string, body: string | Uint8Array, timestampSeconds: number): string {
  const t = Math.floor(timestampSeconds);
  return `t=${t},v1=${hmacHex(secret, t, body)}`;
}

export type SignatureProblem = 'missing_header' | 'malformed_header' | 'timestamp_out_of_tolerance' | 'signature_mismatch';

/**
 * Why a signature does not verify, or null when it does. `now` is epoch milliseconds (Date.now()). The body must
 * be the raw bytes received, before any JSON parsing.
 */
export function webhookSignatureProblem(
  secret: string,
  header: string | null | undefined,
  body: string | Uint8Array,
  now: number,
  toleranceSeconds: number = DEFAULT_TOLERANCE_SECONDS,
): SignatureProblem | null {
  if (header === null || header === undefined || header.trim() === '') return 'missing_header';
  let t: number | undefined;
  const candidates: string[] = [];
  for (const part of header.split(',')) {
    const eq = part.indexOf('=');
    if (eq <= 0) continue;
    const k = part.slice(0, eq).trim();
    const v = part.slice(eq + 1).trim();
    if (k === 't' && /^\d{1,15}$/.test(v)) t = Number(v);
    else if (k === 'v1' && /^[0-9a-f]{64}$/i.test(v)) candidates.push(v.toLowerCase());
  }
  if (t === undefined || candidates.length === 0) return 'malformed_header';
  if (!(toleranceSeconds >= 0) || Math.abs(now / 1000 - t) > toleranceSeconds) return 'timestamp_out_of_tolerance';
  const expected = Buffer.from(hmacHex(secret, t, body), 'hex');
  let ok = false;
  // Compare against every candidate (no early exit), each in constant time.
  for (const c of candidates) ok = timingSafeEqual(expected, Buffer.from(c, 'hex')) || ok;
  return ok ? null : 'signature_mismatch';
}

/**
 * True when `header` (the Dropkey-Signature value) signs `body` with `secret` and its timestamp is within
 * `toleranceSeconds` of `now` (epoch ms). For receivers written with dropkey as a library:
 *
 *   if (!verifyWebhookSignature(secret, req.headers['dropkey-signature'], rawBody, Date.now())) return 400;
 */
export function verifyWebhookSignature(
  secret: string,
  header: string | null | undefined,
  body: string | Uint8Array,
  now: number = Date.now(),
  toleranceSeconds: number = DEFAULT_TOLERANCE_SECONDS,
): boolean {
  return webhookSignatureProblem(secret, header, body, now, toleranceSeconds) === null;
}

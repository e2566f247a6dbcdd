/**
 * PKCE (RFC 7636) and OAuth `state` helpers. Randomness is injectable so tests are deterministic.
 * Dropbox accepts the S256 method only as far as anyone has confirmed (https://www.dropbox.com/developers/documentation/http/documentation#oauth2-authorize, https://developers.dropbox.com/oauth-guide), so there is
 * no `plain` variant here.
 */
import { createHash, randomBytes as nodeRandomBytes, timingSafeEqual } from 'node:crypto';
import { DropkeyError, ErrorCodes } from '../errors.js';

/** Returns `n` cryptographically random bytes. */
export type RandomBytes = (n: number) => Uint8Array;

export const defaultRandomBytes: RandomBytes = (n) => nodeRandomBytes(n);

/** RFC 7636 §4.1: 43 to 128 characters of [A-Z] / [a-z] / [0-9] / "-" / "." / "_" / "~". */
const VERIFIER_RE = /^[A-Za-z0-9\-._~]{43,128}$/;

export function base64url(bytes: Uint8Array): string {
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('base64url');
}

/**
 * A code verifier of `length` characters (default 128, as every official Dropbox SDK uses, Dropbox OAuth guide: PKCE).
 * base64url of random bytes only uses [A-Za-z0-9_-], a subset of the unreserved set, and each character carries
 * 6 uniformly random bits, so there is no modulo bias.
 */
export function generateCodeVerifier(options: { length?: number; randomBytes?: RandomBytes } = {}): string {
  const length = options.length ?? 128;
  if (!Number.isInteger(length) || length < 43 || length > 128) {
    throw new DropkeyError(ErrorCodes.INTERNAL, `PKCE code verifier length must be 43..128, got ${length}`);
  }
  const random = options.randomBytes ?? defaultRandomBytes;
  const bytes = random(Math.ceil((length * 3) / 4));
  const verifier = base64url(bytes).slice(0, length);
  if (verifier.length !== length) {
    throw new DropkeyError(ErrorCodes.INTERNAL, 'random source returned too few bytes for the PKCE verifier');
  }
  return verifier;
}

export function isValidCodeVerifier(verifier: string): boolean {
  return VERIFIER_RE.test(verifier);
}

/** BASE64URL(SHA256(ASCII(code_verifier))), no padding (RFC 7636 §4.2). */
export function codeChallengeS256(verifier: string): string {
  if (!isValidCodeVerifier(verifier)) {
    throw new DropkeyError(
      ErrorCodes.BAD_INPUT,
      'the PKCE code verifier must be 43 to 128 characters of A-Z, a-z, 0-9, "-", ".", "_" or "~"',
    );
  }
  return createHash('sha256').update(verifier, 'ascii').digest('base64url');
}

/**
 * A fresh `state` value: `bytes` random bytes (default 32 = 256 bits, at least 16 = 128 bits), base64url.
 * Dropbox echoes up to 500 bytes of state (Dropbox docs: oauth2/authorize); 32 bytes give 43 characters.
 */
export function generateState(options: { bytes?: number; randomBytes?: RandomBytes } = {}): string {
  const n = options.bytes ?? 32;
  if (!Number.isInteger(n) || n < 16 || n > 256) {
    throw new DropkeyError(ErrorCodes.INTERNAL, `state must use 16..256 random bytes, got ${n}`);
  }
  const bytes = (options.randomBytes ?? defaultRandomBytes)(n);
  if (bytes.byteLength < n) {
    throw new DropkeyError(ErrorCodes.INTERNAL, 'random source returned too few bytes for the state');
  }
  return base64url(bytes.subarray(0, n));
}

/**
 * Constant-time string equality. Both sides are hashed first so that neither the content nor the length of the
 * expected value leaks through timing (timingSafeEqual itself throws on unequal lengths).
 */
export function constantTimeEqual(a: string, b: string): boolean {
  const ha = createHash('sha256').update(a, 'utf8').digest();
  const hb = createHash('sha256').update(b, 'utf8').digest();
  return timingSafeEqual(ha, hb) && a.length === b.length;
}

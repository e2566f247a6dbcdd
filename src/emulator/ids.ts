/**
 * Identifiers, secrets and their hashes. Ids derived from a name (an email, a team name) are deterministic so
 * the default seed gives the same account ids on every run; secrets (tokens, codes) are random and the emulator
 * keeps only their SHA-256 (tokens are looked up by hash, so no secret is ever compared byte by byte).
 */
import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';

export function sha256(text: string): Buffer {
  return createHash('sha256').update(text, 'utf8').digest();
}

export function hashSecret(secret: string): string {
  return sha256(secret).toString('hex');
}

/** Constant-time equality of two secrets of any length (compares their digests). */
export function secretEquals(a: string, b: string): boolean {
  return timingSafeEqual(sha256(a), sha256(b));
}

/** A short, non-reversible label for a secret, safe for logs: "sha256:1a2b3c4d". */
export function fingerprint(secret: string): string {
  return `sha256:${hashSecret(secret).slice(0, 12)}`;
}

export function randomToken(bytes: number): string {
  return randomBytes(bytes).toString('base64url');
}

function derived(kind: string, name: string, chars: number): string {
  return sha256(`${kind}:${name.toLowerCase()}`).toString('base64url').slice(0, chars);
}

/** `dbid:` + 35 characters: exactly 40, as Account.account_id requires (https://www.dropbox.com/developers/documentation/http/documentation#users-get_current_account). */
export function accountIdFor(email: string): string {
  return `dbid:AA${derived('account', email, 33)}`;
}

export function teamIdFor(name: string): string {
  return `dbtid:AA${derived('team', name, 33)}`;
}

export function teamMemberIdFor(email: string): string {
  return `dbmid:AA${derived('member', email, 33)}`;
}

/** A decimal id (namespace ids, the legacy `uid`) derived from a name: 9 to 10 digits. */
export function numericIdFor(kind: string, name: string): string {
  const n = sha256(`${kind}:${name.toLowerCase()}`).readUInt32BE(0);
  return String(1_000_000_000 + (n % 3_000_000_000));
}

/** RFC 6750 token68 characters; anything else in a Bearer value is "malformed" (https://www.dropbox.com/developers/documentation/http/documentation#error-handling). */
export function isWellFormedToken(token: string): boolean {
  return token.length >= 8 && token.length <= 4096 && /^[A-Za-z0-9._~+/=-]+$/.test(token);
}

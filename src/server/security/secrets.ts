/**
 * Credential primitives for the server: random tokens, SHA-256 lookup hashes, scrypt password hashes and
 * constant-time comparison. The stores only ever see the hashes made here.
 *
 * Why SHA-256 (unsalted) for API keys, session ids, link tokens and OAuth states: they are 256-bit random values,
 * so a fast hash is enough (nothing to brute-force) and it allows lookup by hash. Passwords are low-entropy, so
 * they get scrypt with a per-user salt (RFC 7914; N=2^15, r=8, p=1 as OWASP's password storage cheat sheet lists).
 */
import { createHash, randomBytes, scrypt as scryptCb, timingSafeEqual } from 'node:crypto';

export type RandomBytes = (n: number) => Buffer;

/** A URL-safe random token of `bytes` bytes of entropy (base64url, no padding). */
export function randomToken(bytes = 32, random: RandomBytes = randomBytes): string {
  return random(bytes).toString('base64url');
}

export function sha256Hex(value: string): string {
  return createHash('sha256').update(value, 'utf8').digest('hex');
}

/** Constant-time equality of two hex digests (false, never an exception, when lengths differ). */
export function hexEqual(a: string, b: string): boolean {
  if (a.length !== b.length || a.length % 2 !== 0) return false;
  return timingSafeEqual(Buffer.from(a, 'hex'), Buffer.from(b, 'hex'));
}

// ---- API keys: `dk_` + 32 random bytes (base64url). The prefix makes them easy to spot in code and secret scanners.

export const API_KEY_PREFIX = 'dk_';
const API_KEY_RE = /^dk_[A-Za-z0-9_-]{43}$/;

export function generateApiKey(random: RandomBytes = randomBytes): { key: string; prefix: string; hash: string } {
  const key = API_KEY_PREFIX + randomToken(32, random);
  return { key, prefix: key.slice(0, 11), hash: sha256Hex(key) };
}

export function looksLikeApiKey(value: string): boolean {
  return API_KEY_RE.test(value);
}

// ---- passwords

const SCRYPT = { N: 1 << 15, r: 8, p: 1, keyLen: 32 } as const;
/** Node's default maxmem (32 MiB) is exactly 128*N*r for N=2^15; give headroom. */
const MAXMEM = 64 * 1024 * 1024;

function scrypt(password: string, salt: Buffer, N: number, r: number, p: number, keyLen: number): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    scryptCb(password.normalize('NFC'), salt, keyLen, { N, r, p, maxmem: MAXMEM }, (err, key) => (err ? reject(err) : resolve(key)));
  });
}

/** `scrypt$N$r$p$salt$hash` (base64url parts), parameters kept so they can be raised later. */
export async function hashPassword(password: string, random: RandomBytes = randomBytes): Promise<string> {
  const salt = random(16);
  const key = await scrypt(password, salt, SCRYPT.N, SCRYPT.r, SCRYPT.p, SCRYPT.keyLen);
  return ['scrypt', SCRYPT.N, SCRYPT.r, SCRYPT.p, salt.toString('base64url'), key.toString('base64url')].join('$');
}

export async function verifyPassword(password: string, stored: string): Promise<boolean> {
  const parts = stored.split('$');
  if (parts.length !== 6 || parts[0] !== 'scrypt') return false;
  const [N, r, p] = [Number(parts[1]), Number(parts[2]), Number(parts[3])];
  if (![N, r, p].every((n) => Number.isInteger(n) && n > 0) || N > 1 << 20) return false;
  const salt = Buffer.from(parts[4]!, 'base64url');
  const expected = Buffer.from(parts[5]!, 'base64url');
  if (expected.length < 16) return false;
  const actual = await scrypt(password, salt, N, r, p, expected.length);
  return timingSafeEqual(actual, expected);
}

/**
 * A hash to verify against when the email is unknown, so "no such user" and "wrong password" take the same time
 * (no user enumeration through timing).
 */
let dummyHash: Promise<string> | undefined;
export function dummyPasswordHash(): Promise<string> {
  dummyHash ??= hashPassword('dropkey-dummy-password');
  return dummyHash;
}

/** Minimum password rules for admins: long enough to resist online guessing with the sign-in rate limit. */
export function passwordProblem(password: string): string | undefined {
  if (password.length < 12) return 'The password must be at least 12 characters long.';
  if (password.length > 1024) return 'The password must be at most 1024 characters long.';
  return undefined;
}

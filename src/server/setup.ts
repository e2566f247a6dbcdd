/**
 * First-run admin creation. When no admin exists, `dropkey serve` stores the hash of a fresh one-time setup token
 * and prints `${publicUrl}/setup?token=...` on stdout (only the person with the terminal sees it). Every instance
 * (and every restart) adds its own token, so each printed URL works, on any instance of a cluster, until it expires
 * or the first admin exists. The setup page (UI module) or any client then calls POST /api/v1/setup
 * {token, email, password}; the first admin is created and every setup token consumed in one transaction, so two
 * racing requests cannot both create one.
 */
import { DropkeyError, ErrorCodes } from '../errors.js';
import type { AdminUser } from '../store/server-types.js';
import { HttpError, ServerErrorCodes } from './errors.js';
import { hashPassword, passwordProblem, randomToken, sha256Hex } from './security/secrets.js';
import type { ServerServices } from './services.js';

export const SETUP_TOKEN_TTL_MS = 24 * 3600_000;

/** Returns the setup URL when no admin exists yet (a new token each call), else undefined. */
export async function ensureSetupToken(s: ServerServices): Promise<string | undefined> {
  if ((await s.serverStore.countAdmins()) > 0) return undefined;
  const token = randomToken(32, s.randomBytes);
  const now = s.clock();
  await s.serverStore.addSetupToken(sha256Hex(token), now + SETUP_TOKEN_TTL_MS, now);
  return s.paths.setup(token);
}

export function validateEmail(email: unknown): string {
  const e = typeof email === 'string' ? email.trim() : '';
  if (!/^[^\s@]{1,64}@[^\s@]{1,255}$/.test(e)) {
    throw new DropkeyError(ErrorCodes.BAD_INPUT, 'Give a valid email address for the admin.');
  }
  return e;
}

export async function createFirstAdmin(s: ServerServices, body: Record<string, unknown>): Promise<AdminUser> {
  const token = typeof body['token'] === 'string' ? body['token'] : '';
  const email = validateEmail(body['email']);
  const password = typeof body['password'] === 'string' ? body['password'] : '';
  const problem = passwordProblem(password);
  if (problem) throw new DropkeyError(ErrorCodes.BAD_INPUT, problem);
  if (token === '') throw new HttpError(ServerErrorCodes.UNAUTHORIZED, 'The setup token is missing.', { hint: 'Open the setup link the server printed when it started.' });
  const passwordHash = await hashPassword(password, s.randomBytes);
  const admin = await s.serverStore.createFirstAdmin({ email, passwordHash, setupTokenHash: sha256Hex(token) }, s.clock());
  if (!admin) {
    if ((await s.serverStore.countAdmins()) > 0) {
      throw new DropkeyError(ErrorCodes.ALREADY_EXISTS, 'The first admin was already created.', { hint: 'Sign in instead.' });
    }
    throw new HttpError(ServerErrorCodes.UNAUTHORIZED, 'The setup token is wrong or expired.', {
      hint: 'Restart the server: while no admin exists it prints a new setup link.',
    });
  }
  await s.audit.write(`admin:${admin.email}`, 'admin.created', admin.email, { first: true });
  s.logger.info({ admin: admin.email }, 'first admin created');
  return admin;
}

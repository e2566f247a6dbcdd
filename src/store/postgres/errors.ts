/**
 * Turns node-postgres errors into DROPKEY_STORE errors that name the operation and the server (never the
 * password, never query parameters: they may be secrets), with the driver error kept as `cause`.
 * SQLSTATE codes: https://www.postgresql.org/docs/current/errcodes-appendix.html
 */
import { DropkeyError, ErrorCodes } from '../../errors.js';

export type ErrorMapper = (operation: string, cause: unknown) => DropkeyError;

const NET_CODES = new Set(['ECONNREFUSED', 'ECONNRESET', 'ENOTFOUND', 'EAI_AGAIN', 'ETIMEDOUT', 'EPIPE', 'EHOSTUNREACH', 'ENETUNREACH', 'ECONNABORTED']);

/** Messages node-postgres uses for a connection that closed or could not be opened (it sets no code on these). */
const NET_MESSAGES = /Connection terminated|timeout exceeded when trying to connect|connection timeout|Client has encountered a connection error|Client was closed|Connection ended unexpectedly/i;

function codeOf(err: unknown): string {
  return String((err as { code?: unknown } | null)?.code ?? '');
}

/**
 * True when the session itself is gone or could not be set up: the server closed it (restart, pg_terminate_backend:
 * 57P01/57P02, class 08), the socket failed, or the server is starting (57P03). The statement was not executed
 * unless it was already being committed; callers decide whether a retry is safe.
 */
export function isConnectionError(err: unknown): boolean {
  if (err instanceof DropkeyError) return false;
  const code = codeOf(err);
  if (NET_CODES.has(code) || code.startsWith('08') || code === '57P01' || code === '57P02' || code === '57P03') return true;
  return err instanceof Error && NET_MESSAGES.test(err.message);
}

/** `host:port/database` from a connection string, for messages (no user, no password, no query parameters). */
export function describeServer(connectionString: string): string {
  try {
    const u = new URL(connectionString);
    const db = decodeURIComponent(u.pathname.replace(/^\//, '')) || '(default database)';
    return `${u.hostname || 'localhost'}:${u.port || '5432'}/${db}`;
  } catch {
    return 'the configured PostgreSQL server';
  }
}

export function errorMapper(server: string): ErrorMapper {
  return (operation, cause) => {
    if (cause instanceof DropkeyError) return cause;
    const code = codeOf(cause);
    const base = `store: cannot ${operation}`;
    const details = { operation, ...(code ? { pgCode: code } : {}) };
    if (isConnectionError(cause) || code === '53300') {
      return new DropkeyError(ErrorCodes.STORE, `${base}: PostgreSQL at ${server} is unreachable, restarting or out of connections${code ? ` (${code})` : ''}`, {
        cause,
        details: { ...details, retryable: true, unavailable: true },
        hint: 'check that PostgreSQL is running and reachable (DROPKEY_DATABASE_URL); dropkey reconnects by itself as soon as it is back',
      });
    }
    if (code === '28P01' || code === '28000') {
      return new DropkeyError(ErrorCodes.STORE, `${base}: PostgreSQL at ${server} refused the login (${code})`, {
        cause,
        details,
        hint: 'check the user and password in DROPKEY_DATABASE_URL, and pg_hba.conf on the server',
      });
    }
    if (code === '3D000') {
      return new DropkeyError(ErrorCodes.STORE, `${base}: the database in DROPKEY_DATABASE_URL does not exist on ${server}`, {
        cause,
        details,
        hint: 'create it (createdb NAME) or fix the database name in DROPKEY_DATABASE_URL',
      });
    }
    if (code === '42501') {
      return new DropkeyError(ErrorCodes.STORE, `${base}: the PostgreSQL user lacks a privilege on ${server} (${code})`, {
        cause,
        details,
        hint: 'grant the dropkey user USAGE and CREATE on its schema (or CREATE on the database so dropkey can create the schema)',
      });
    }
    if (code === '57014' || code === '40001' || code === '40P01' || code === '55P03') {
      return new DropkeyError(ErrorCodes.STORE, `${base}: PostgreSQL cancelled the statement (${code}: timeout, deadlock or lock conflict)`, {
        cause,
        details: { ...details, retryable: true },
        hint: 'try again; if it keeps happening, look for long transactions on the server (pg_stat_activity)',
      });
    }
    return new DropkeyError(ErrorCodes.STORE, `${base}${code ? ` (PostgreSQL ${code})` : ''}`, { cause, details });
  };
}

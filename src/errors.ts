/**
 * dropkey's error classes. Few classes, many stable string codes (DROPKEY_*), `cause` always kept.
 * Domain errors carry no HTTP status: each surface (CLI, server) maps codes to exit codes or responses in one place.
 *
 * Messages never contain secrets. `hint` says what to do next in plain words (never a command line), and `fix`
 * says the same as data, which each surface renders its own way: the CLI as a command line (src/cli/fix.ts), the
 * web UI as a link (src/server/ui/fix.ts), the API as the `fix` field of the error body (src/server/errors.ts).
 */

export const ErrorCodes = {
  /** Input given by the user is invalid (a flag, a name, a pasted token). */
  BAD_INPUT: 'DROPKEY_BAD_INPUT',
  /** A named app or connection does not exist. */
  NOT_FOUND: 'DROPKEY_NOT_FOUND',
  /** Something with that name already exists. */
  ALREADY_EXISTS: 'DROPKEY_ALREADY_EXISTS',
  /** The connection's refresh token was rejected (invalid_grant): only a new login fixes it. */
  REAUTH_REQUIRED: 'DROPKEY_REAUTH_REQUIRED',
  /** The connection has no refresh token and its access token expired. */
  TOKEN_EXPIRED: 'DROPKEY_TOKEN_EXPIRED',
  /** Dropbox rejected the app key or secret (invalid_client). */
  INVALID_CLIENT: 'DROPKEY_INVALID_CLIENT',
  /** The OAuth flow failed (state mismatch, access_denied, bad code...). */
  OAUTH_FAILED: 'DROPKEY_OAUTH_FAILED',
  /** Dropbox answered with an error for an API route. */
  DROPBOX_API: 'DROPKEY_DROPBOX_API',
  /** Dropbox could not be reached, or kept failing (5xx, 429) after retries. */
  DROPBOX_UNAVAILABLE: 'DROPKEY_DROPBOX_UNAVAILABLE',
  /** The master key is missing, corrupt, or does not match the stored data. */
  KEY_ERROR: 'DROPKEY_KEY_ERROR',
  /** The store (database) failed or is in an unexpected state. */
  STORE: 'DROPKEY_STORE',
  /** Waiting for a lock held by another process or instance took too long. */
  LOCK_TIMEOUT: 'DROPKEY_LOCK_TIMEOUT',
  /** The operation was cancelled (Ctrl-C, an aborted signal). */
  CANCELLED: 'DROPKEY_CANCELLED',
  /** A bug: something that should not happen. */
  INTERNAL: 'DROPKEY_INTERNAL',
} as const;

export type ErrorCode = (typeof ErrorCodes)[keyof typeof ErrorCodes];

/**
 * What fixes a problem, as data. Each action names something a person can do with dropkey on any surface; a name
 * left out means "the one you pick" (the CLI shows a placeholder, the UI the page where it is picked).
 */
export type Fix =
  /**
   * Authorize (again) with a browser login; `addScopes` are scopes to add to the connection: the login asks for
   * them and keeps the scopes already granted.
   */
  | { action: 'login'; connection?: string; app?: string; addScopes?: string[] }
  /** Store a token the user already holds. */
  | { action: 'import'; connection?: string; app?: string; token: 'refresh' | 'access' }
  /** Get a valid access token of a stored connection. */
  | { action: 'token'; connection?: string }
  /** Let dropkey diagnose a stored connection, or (`token: true`) a pasted token. */
  | { action: 'doctor'; connection?: string; token?: boolean }
  /** See the stored connections. */
  | { action: 'list-connections' }
  /** Revoke and delete these connections; `force` deletes them locally when Dropbox cannot be reached. */
  | { action: 'revoke'; connections: string[]; force?: boolean }
  /** Register a Dropbox app (optionally as a team app). */
  | { action: 'app-add'; app?: string; team?: boolean }
  /** Change one setting of a registered app: its secret, its key, or whether it is a team app. */
  | { action: 'app-update'; app: string; field: 'secret' | 'key' | 'team' | 'user' }
  | { action: 'app-remove'; app: string }
  | { action: 'list-apps' }
  /** Create an API key, with a permission and a connection when known. */
  | { action: 'apikey-create'; permission?: string; connection?: string }
  | { action: 'apikey-revoke'; name: string }
  | { action: 'list-apikeys' };

export type FixAction = Fix['action'];

/** Every action, for surfaces that enumerate them (the OpenAPI document); the check below keeps it complete. */
export const FIX_ACTIONS = [
  'login',
  'import',
  'token',
  'doctor',
  'list-connections',
  'revoke',
  'app-add',
  'app-update',
  'app-remove',
  'list-apps',
  'apikey-create',
  'apikey-revoke',
  'list-apikeys',
] as const satisfies readonly FixAction[];
// A compile error here names an action missing from FIX_ACTIONS.
const _allActionsListed: Exclude<FixAction, (typeof FIX_ACTIONS)[number]> extends never ? true : never = true;
void _allActionsListed;

export interface DropkeyErrorOptions {
  cause?: unknown;
  /** What to do next, in plain words with no command line, e.g. "Sign in to Dropbox again to reconnect it." */
  hint?: string;
  /** The same advice as data, rendered by each surface (see Fix). */
  fix?: Fix;
  /** Extra machine-readable facts (never secrets). */
  details?: Record<string, unknown>;
}

export class DropkeyError extends Error {
  readonly code: ErrorCode;
  readonly hint: string | undefined;
  readonly fix: Fix | undefined;
  readonly details: Record<string, unknown> | undefined;

  constructor(code: ErrorCode, message: string, options: DropkeyErrorOptions = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'DropkeyError';
    this.code = code;
    this.hint = options.hint;
    this.fix = options.fix;
    this.details = options.details;
  }

  toJSON(): Record<string, unknown> {
    return {
      code: this.code,
      message: this.message,
      ...(this.hint === undefined ? {} : { hint: this.hint }),
      ...(this.fix === undefined ? {} : { fix: this.fix }),
      ...(this.details === undefined ? {} : { details: this.details }),
    };
  }
}

/**
 * An error returned by Dropbox itself (API route error, auth error, token endpoint error).
 * `status` is Dropbox's HTTP status, kept as a fact about the upstream answer, not a status for our own responses.
 * The raw response is non-enumerable so that logging the error never dumps headers.
 */
export class DropboxApiError extends DropkeyError {
  readonly status: number;
  /** Dropbox's `error_summary`, or the OAuth `error` code (e.g. `invalid_grant`). */
  readonly summary: string;
  /** The decoded `error` union or OAuth error body. */
  readonly error: unknown;
  declare readonly response: Response | undefined;

  constructor(
    status: number,
    summary: string,
    error: unknown,
    message: string,
    options: DropkeyErrorOptions & { response?: Response; code?: ErrorCode } = {},
  ) {
    super(options.code ?? ErrorCodes.DROPBOX_API, message, options);
    this.name = 'DropboxApiError';
    this.status = status;
    this.summary = summary;
    this.error = error;
    Object.defineProperty(this, 'response', { value: options.response, enumerable: false });
  }

  override toJSON(): Record<string, unknown> {
    return { ...super.toJSON(), status: this.status, summary: this.summary, error: this.error };
  }
}

export function isDropkeyError(e: unknown): e is DropkeyError {
  return e instanceof DropkeyError;
}

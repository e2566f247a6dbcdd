/**
 * The contract between `dropkey agent` (which fetches tokens and schedules writes) and each output format
 * (which turns a token into a file's text). Renderers are pure: no I/O, no clock; the agent does the atomic write.
 */

/**
 * One connection's current access token and what is known about it, as an output is written from it.
 * It never holds the refresh token or the app secret unless an output asked for long-lived credentials and the
 * source can give them (the local store; a remote `dropkey serve` never hands them out).
 */
export interface TokenSnapshot {
  connection: string;
  accessToken: string;
  /** When Dropbox stops accepting the token; null when the expiry is unknown. */
  expiresAt: Date | null;
  scopes: readonly string[];
  account: { id: string | null; email: string | null; name: string | null };
  team: { id: string | null; name: string | null } | null;
  appKey: string | null;
  /** Only for outputs that asked for long-lived credentials (an `rclone mount` that refreshes on its own). */
  longLived?: { refreshToken: string; appSecret: string | null };
}

/**
 * Turns a file's current text (null when the file does not exist yet) and a snapshot into the file's new full text.
 * A renderer keeps everything in `previous` that it does not own (other remotes, other connections, comments), and
 * throws a DropkeyError (code DROPKEY_BAD_INPUT, naming the file's problem) when `previous` cannot be parsed, so a
 * damaged or foreign file is never overwritten.
 */
export type RenderOutput<Options> = (previous: string | null, snapshot: TokenSnapshot, options: Options) => string;

/** `rclone`: the `token` of one remote in an rclone.conf. */
export interface RcloneOutputOptions {
  remote: string;
  /** Also write the refresh token, app key and secret (for a long-lived `rclone mount` that refreshes itself). */
  includeRefreshToken: boolean;
}

/** `airflow`: one connection in an Airflow LocalFilesystemBackend connections file. */
export interface AirflowOutputOptions {
  connId: string;
  form: 'json' | 'yaml' | 'env';
  /** The connection field that holds the access token (`login` for tools that read `conn.login`). */
  field: 'password' | 'login';
}

/**
 * The contract between the emulator's HTTP core (auth, argument decoding, error encoding, faults, log)
 * and its route modules (users, check, files, team...). A route module declares routes as data, the way the
 * Stone spec does (host, style, auth, scope), and handlers that take decoded arguments and return results
 * or throw RouteError / BadInputError. The core owns every wire-format decision, so each module stays
 * a plain model of Dropbox's behaviour.
 *
 * The emulator depends on nothing else of dropkey's (except the pure content-hash function).
 */

export type RouteHost = 'api' | 'content' | 'notify';
export type RouteStyle = 'rpc' | 'upload' | 'download';
/** As in the spec's `auth` attribute. */
export type RouteAuth = 'user' | 'team' | 'app' | 'noauth' | 'app, user';

/** Who is calling, after the core checked the token, Select-User/Select-Admin and scopes. */
export interface Caller {
  kind: 'user' | 'team' | 'app' | 'none';
  appKey?: string;
  /** The acting account: the token's user, or the member chosen with Dropbox-API-Select-User / -Select-Admin. */
  accountId?: string;
  teamId?: string;
  teamMemberId?: string;
  /** Scopes granted to the token. */
  scopes: string[];
  /**
   * Where file paths resolve: the acting account's home namespace and, for app-folder apps, the folder
   * inside it (e.g. "/Apps/My App") that the app sees as its root.
   */
  root?: { namespaceId: string; appFolder?: string };
}

export interface RouteContext {
  /** e.g. "files/list_folder" */
  route: string;
  /** Decoded argument: the JSON body (rpc) or Dropbox-API-Arg / ?arg= (upload, download). `null` for Void. */
  arg: any;
  /** Request body for upload-style routes; null otherwise. Stream it: bodies can be 150 MiB. */
  body: ReadableStream<Uint8Array> | null;
  /** Declared Content-Length of the body, when the client sent one. */
  contentLength: number | undefined;
  headers: Headers;
  caller: Caller;
  /** The emulator clock in epoch milliseconds (moved by POST /_emulator/clock). */
  now(): number;
  signal: AbortSignal;
}

export type RouteResult =
  | { kind: 'json'; value: unknown }
  | {
      kind: 'download';
      /** Goes to the Dropbox-API-Result header (the core escapes it header-safe). */
      result: unknown;
      size: number;
      /** Opens bytes [start, end] inclusive. The core handles Range and 206. */
      open(start: number, end: number): ReadableStream<Uint8Array>;
      etag?: string;
    };

export interface RouteDef {
  /** Without the "/2/" prefix and with the version suffix, e.g. "files/create_folder_v2". */
  name: string;
  host: RouteHost;
  style: RouteStyle;
  auth: RouteAuth;
  scope?: string;
  /** Spec attribute; routes without it refuse app-folder apps. */
  allowAppFolder?: boolean;
  selectAdminMode?: 'whole_team' | 'team_admin';
  /**
   * The argument type is Void (added by the core's author): an rpc call may then have no body at all (the JS SDK
   * sends none) or `null` (Python). Without it an empty rpc body is "could not decode input as JSON".
   */
  voidArg?: boolean;
  handler(ctx: RouteContext): Promise<RouteResult> | RouteResult;
}

/**
 * A route error: HTTP 409 with `{error_summary, error}`. `error` is the route's error union in Stone JSON
 * (`{".tag": "path", "path": {".tag": "not_found"}}`); the core derives `error_summary` from its tags.
 */
export class RouteError extends Error {
  constructor(
    readonly error: Record<string, unknown>,
    readonly userMessage?: string,
  ) {
    super(`route error ${JSON.stringify(error)}`);
    this.name = 'RouteError';
  }
}

/**
 * Bad input: HTTP 400, text/plain, `Error in call to API function "<route>": <reason>` (the core adds the prefix).
 * `reason` follows Dropbox's wording, e.g. `request body: path: The root folder is unsupported.`
 */
export class BadInputError extends Error {
  constructor(readonly reason: string) {
    super(reason);
    this.name = 'BadInputError';
  }
}

/** HTTP 429 with a RateLimitError body and an integer Retry-After header. */
export class RateLimitError extends Error {
  constructor(
    readonly reason: 'too_many_requests' | 'too_many_write_operations',
    readonly retryAfter = 1,
  ) {
    super(reason);
    this.name = 'RateLimitError';
  }
}

/** A module that contributes routes and owns some state (e.g. the file system). */
export interface EmulatorModule {
  routes: RouteDef[];
  /** Drops all state (POST /_emulator/reset). */
  reset(): Promise<void> | void;
  /** Releases file handles and timers. */
  close?(): Promise<void> | void;
}

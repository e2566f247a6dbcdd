/**
 * Where the agent gets tokens:
 *   - the local store, through the Dropkey facade: refreshes are single-flight in the process and run under the
 *     store's `refresh:<name>` lock with a re-read after it (connections/refresher.ts), so agents, CLIs and
 *     `dropkey serve` on one store never refresh one connection twice;
 *   - a remote `dropkey serve`, through its token API (docs/api.md) with an API key read from a file: the agent's
 *     machine then holds no refresh token and no app secret.
 */
import { readFile } from 'node:fs/promises';
import type { Dropkey } from '../connections/dropkey.js';
import { DropkeyError, ErrorCodes, FIX_ACTIONS, type ErrorCode, type Fix } from '../errors.js';
import type { TokenSnapshot } from './outputs/types.js';

export interface FetchTokenOptions {
  /** The token must stay valid at least this long; the source refreshes first when it would not. */
  minValidSeconds: number;
  /** Also hand out the refresh token and app secret (rclone's include_refresh_token). Local store only. */
  longLived: boolean;
  signal?: AbortSignal;
}

export interface TokenSource {
  /** For logs and --check: where tokens come from (never a secret). */
  readonly description: string;
  fetch(connection: string, options: FetchTokenOptions): Promise<TokenSnapshot>;
  /** What --check can tell about a connection without a refresh or a network call (null: nothing to say). */
  inspect(connection: string): Promise<string | null>;
  close(): Promise<void>;
}

/** Failures that only a person can fix: retrying cannot help until someone acts, so they are logged once. */
const NEEDS_A_PERSON: ReadonlySet<ErrorCode> = new Set([
  ErrorCodes.REAUTH_REQUIRED,
  ErrorCodes.TOKEN_EXPIRED,
  ErrorCodes.NOT_FOUND,
  ErrorCodes.INVALID_CLIENT,
  ErrorCodes.BAD_INPUT,
  ErrorCodes.KEY_ERROR,
]);

export function needsAPerson(err: unknown): boolean {
  return err instanceof DropkeyError && NEEDS_A_PERSON.has(err.code);
}

// ---------------------------------------------------------------- the local store

export class StoreSource implements TokenSource {
  readonly description: string;

  constructor(
    private readonly dk: Dropkey,
    where: string,
    private readonly onClose: () => Promise<void> = async () => {},
  ) {
    this.description = `the local store (${where})`;
  }

  async fetch(connection: string, o: FetchTokenOptions): Promise<TokenSnapshot> {
    const t = await this.dk.getToken(connection, { minValidSeconds: o.minValidSeconds, ...(o.signal ? { signal: o.signal } : {}) });
    const info = await this.dk.get(connection);
    const app = await this.dk.store.getApp(info.app);
    const snapshot: TokenSnapshot = {
      connection,
      accessToken: t.accessToken,
      expiresAt: t.expiresAt === null ? null : new Date(t.expiresAt),
      scopes: [...t.scopes],
      account: { id: t.accountId, email: info.email, name: info.displayName },
      team: t.teamId === null ? null : { id: t.teamId, name: info.teamName },
      appKey: app?.key ?? null,
    };
    if (o.longLived) {
      // Read straight from the store, like `dropkey export`: the facade itself never hands these out.
      const rec = await this.dk.store.getConnection(connection);
      if (!rec?.refreshToken) {
        throw new DropkeyError(ErrorCodes.TOKEN_EXPIRED, `Connection "${connection}" has no refresh token to write (it was imported from an access token).`, {
          hint: 'connect it for good with a browser login, or drop include_refresh_token from the output',
          fix: { action: 'login', connection },
          details: { connection },
        });
      }
      snapshot.longLived = { refreshToken: rec.refreshToken, appSecret: app?.secret ?? null };
    }
    return snapshot;
  }

  async inspect(connection: string): Promise<string | null> {
    try {
      const c = await this.dk.get(connection);
      const until = c.expiresAt === null ? 'no known expiry' : `token valid until ${new Date(c.expiresAt).toISOString()}`;
      return `${c.state}${c.refreshable ? '' : ', NOT refreshable'}, ${until}${c.email ? `, ${c.email}` : ''}`;
    } catch (err) {
      if (err instanceof DropkeyError) return `problem: ${err.message}${err.hint ? ` (${err.hint})` : ''}`;
      throw err;
    }
  }

  close(): Promise<void> {
    return this.onClose();
  }
}

// ---------------------------------------------------------------- a remote dropkey serve

export interface ServeSourceOptions {
  url: string;
  apiKeyFile: string;
  fetch?: typeof fetch;
  /** Per request (default 30 s). */
  timeoutMs?: number;
}

interface ServeTokenBody {
  access_token?: unknown;
  expires_at?: unknown;
  scope?: unknown;
  account_id?: unknown;
  team_id?: unknown;
}

const KNOWN_CODES = new Set<string>(Object.values(ErrorCodes));

/**
 * A `fix` from a server's error body (src/server/errors.ts writes Fix as is), checked field by field: anything that
 * is not a known action with well-typed fields is dropped (undefined), never passed on half-understood.
 */
export function fixFromJson(v: unknown): Fix | undefined {
  if (!v || typeof v !== 'object' || Array.isArray(v)) return undefined;
  const o = v as Record<string, unknown>;
  const action = o['action'];
  if (typeof action !== 'string' || !(FIX_ACTIONS as readonly string[]).includes(action)) return undefined;
  const NAME = /^[\x21-\x7e]{1,200}$/;
  const str = (k: string): boolean => o[k] === undefined || (typeof o[k] === 'string' && NAME.test(o[k] as string));
  const bool = (k: string): boolean => o[k] === undefined || typeof o[k] === 'boolean';
  const names = (k: string): boolean => Array.isArray(o[k]) && (o[k] as unknown[]).every((x) => typeof x === 'string' && NAME.test(x));
  const keep = (...keys: string[]): Fix => {
    const out: Record<string, unknown> = { action };
    for (const k of keys) if (o[k] !== undefined) out[k] = o[k];
    return out as unknown as Fix;
  };
  switch (action as Fix['action']) {
    case 'login':
      return str('connection') && str('app') && (o['addScopes'] === undefined || names('addScopes')) ? keep('connection', 'app', 'addScopes') : undefined;
    case 'import':
      return str('connection') && str('app') && (o['token'] === 'refresh' || o['token'] === 'access') ? keep('connection', 'app', 'token') : undefined;
    case 'token':
      return str('connection') ? keep('connection') : undefined;
    case 'doctor':
      return str('connection') && bool('token') ? keep('connection', 'token') : undefined;
    case 'revoke':
      return names('connections') && bool('force') ? keep('connections', 'force') : undefined;
    case 'app-add':
      return str('app') && bool('team') ? keep('app', 'team') : undefined;
    case 'app-update':
      return o['app'] !== undefined && str('app') && ['secret', 'key', 'team', 'user'].includes(o['field'] as string) ? keep('app', 'field') : undefined;
    case 'app-remove':
    case 'apikey-revoke': {
      const k = action === 'app-remove' ? 'app' : 'name';
      return o[k] !== undefined && str(k) ? keep(k) : undefined;
    }
    case 'apikey-create':
      return str('permission') && str('connection') ? keep('permission', 'connection') : undefined;
    case 'list-connections':
    case 'list-apps':
    case 'list-apikeys':
      return keep();
  }
}

export class ServeSource implements TokenSource {
  readonly description: string;
  readonly #url: string;
  readonly #keyFile: string;
  readonly #fetch: typeof fetch;
  readonly #timeoutMs: number;

  constructor(o: ServeSourceOptions) {
    this.#url = o.url.replace(/\/+$/, '');
    this.#keyFile = o.apiKeyFile;
    this.#fetch = o.fetch ?? globalThis.fetch;
    this.#timeoutMs = o.timeoutMs ?? 30_000;
    this.description = `dropkey serve at ${this.#url} (API key from ${o.apiKeyFile})`;
  }

  /** Read at every request: a rotated key (a Kubernetes Secret update) is picked up without a restart. */
  async #key(): Promise<string> {
    let key: string;
    try {
      key = (await readFile(this.#keyFile, 'utf8')).trim();
    } catch (err) {
      throw new DropkeyError(ErrorCodes.BAD_INPUT, `cannot read the API key file ${this.#keyFile} (${(err as NodeJS.ErrnoException).code ?? String(err)}).`, {
        hint: 'create a token:read API key on the server and put it in that file',
        fix: { action: 'apikey-create', permission: 'token:read' },
      });
    }
    if (!/^[\x21-\x7e]+$/.test(key)) {
      throw new DropkeyError(ErrorCodes.BAD_INPUT, `the API key file ${this.#keyFile} does not hold one API key on one line.`, {
        hint: 'the file should contain only the API key the server printed when it was created (dk_...)',
      });
    }
    return key;
  }

  async #get(path: string, signal: AbortSignal | undefined): Promise<unknown> {
    const key = await this.#key();
    const timeout = AbortSignal.timeout(this.#timeoutMs);
    let res: Response;
    try {
      res = await this.#fetch(`${this.#url}${path}`, {
        headers: { Authorization: `Bearer ${key}`, Accept: 'application/json' },
        signal: signal ? AbortSignal.any([signal, timeout]) : timeout,
      });
    } catch (err) {
      if (signal?.aborted) throw new DropkeyError(ErrorCodes.CANCELLED, 'Stopped while asking dropkey serve for a token.', { cause: err });
      throw new DropkeyError(ErrorCodes.DROPBOX_UNAVAILABLE, `dropkey serve at ${this.#url} did not answer (${(err as Error).message}).`, {
        cause: err,
        hint: 'Check that the server runs and that this machine reaches it; the agent keeps retrying.',
      });
    }
    const text = await res.text();
    let body: unknown;
    try {
      body = JSON.parse(text);
    } catch {
      body = undefined;
    }
    if (res.ok && body && typeof body === 'object') return body;
    throw this.#error(res, body);
  }

  #error(res: Response, body: unknown): DropkeyError {
    const e = (body as { error?: { code?: unknown; message?: unknown; hint?: unknown; fix?: unknown; details?: unknown } } | undefined)?.error;
    const message = typeof e?.message === 'string' ? e.message : `dropkey serve answered HTTP ${res.status}.`;
    const hint = typeof e?.hint === 'string' ? e.hint : undefined;
    // The server's own fix (for example "log in again" for a connection needing re-authorisation) is passed on, so
    // the agent's log shows the same next step as the server's API and UI.
    const fix = fixFromJson(e?.fix);
    const details = { status: res.status, ...(e?.details && typeof e.details === 'object' ? (e.details as Record<string, unknown>) : {}) };
    if (res.status === 401 || res.status === 403) {
      return new DropkeyError(ErrorCodes.BAD_INPUT, `dropkey serve refused the API key from ${this.#keyFile}: ${message}`, {
        hint: hint ?? 'put a valid API key with the token:read permission for this connection in that file',
        ...(fix ? { fix } : hint ? {} : { fix: { action: 'apikey-create', permission: 'token:read' } as const }),
        details,
      });
    }
    const code = typeof e?.code === 'string' && KNOWN_CODES.has(e.code) ? (e.code as ErrorCode) : res.status >= 500 || res.status === 429 ? ErrorCodes.DROPBOX_UNAVAILABLE : ErrorCodes.INTERNAL;
    return new DropkeyError(code, message, { ...(hint ? { hint } : {}), ...(fix ? { fix } : {}), details });
  }

  async fetch(connection: string, o: FetchTokenOptions): Promise<TokenSnapshot> {
    if (o.longLived) {
      throw new DropkeyError(ErrorCodes.BAD_INPUT, 'a dropkey serve never hands out refresh tokens.', { hint: 'Drop include_refresh_token from the output, or use the local store.' });
    }
    const name = encodeURIComponent(connection);
    const body = (await this.#get(`/api/v1/connections/${name}/token?min_valid=${o.minValidSeconds}`, o.signal)) as ServeTokenBody;
    const token = body.access_token;
    // The token is written into files of several formats: refuse anything that is not one printable word.
    if (typeof token !== 'string' || !/^[\x21-\x7e]+$/.test(token)) {
      throw new DropkeyError(ErrorCodes.INTERNAL, `dropkey serve at ${this.#url} answered without a usable access token.`, { hint: 'Check that the URL points at dropkey serve.' });
    }
    const expires = typeof body.expires_at === 'string' ? new Date(body.expires_at) : null;
    // Metadata (email, names) is a nicety for the json output: a failure to get it does not fail the token.
    const meta = (await this.#get(`/api/v1/connections/${name}`, o.signal).catch(() => undefined)) as
      | { connection?: { email?: unknown; display_name?: unknown; team_name?: unknown } }
      | undefined;
    const str = (v: unknown): string | null => (typeof v === 'string' ? v : null);
    const teamId = str(body.team_id);
    return {
      connection,
      accessToken: token,
      expiresAt: expires && !Number.isNaN(expires.getTime()) ? expires : null,
      scopes: typeof body.scope === 'string' ? body.scope.split(' ').filter(Boolean) : [],
      account: { id: str(body.account_id), email: str(meta?.connection?.email), name: str(meta?.connection?.display_name) },
      team: teamId === null ? null : { id: teamId, name: str(meta?.connection?.team_name) },
      appKey: null,
    };
  }

  async inspect(): Promise<string | null> {
    return null;
  }

  async close(): Promise<void> {}
}

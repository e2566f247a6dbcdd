/**
 * The server's shared services, built once per app from ServerDeps and handed to every sub-app (api, ui, proxy,
 * webhooks). They hold the in-memory state that keeps the token hot path lean: the API key cache, the token
 * cache, hand-out counters, and the buffered audit writes they turn into.
 */
import { randomBytes } from 'node:crypto';
import { validateName } from '../connections/names.js';
import type { TokenInfo } from '../connections/types.js';
import { DropkeyError, ErrorCodes } from '../errors.js';
import { API_PERMISSIONS, type ApiKeyRecord, type ApiPermission, type NewAuditEntry } from '../store/server-types.js';
import type { ServerDeps } from './deps.js';
import { HttpError, ServerErrorCodes } from './errors.js';
import { securityHeaders } from './security/headers.js';
import { reportRefreshFailure } from './jobs/events.js';
import { RateLimiter } from './security/rate-limit.js';
import { generateApiKey, hexEqual, looksLikeApiKey, sha256Hex } from './security/secrets.js';

/** URLs of the server's own pages, built from the public URL. */
export class ServerPaths {
  static readonly OAUTH_CALLBACK = '/oauth/callback';
  constructor(readonly publicUrl: string) {}
  get redirectUri(): string {
    return `${this.publicUrl}${ServerPaths.OAUTH_CALLBACK}`;
  }
  connectLink(token: string): string {
    return `${this.publicUrl}/connect/${token}`;
  }
  /** The UI page where a signed-in admin reconnects a connection (served by the UI module). */
  reconnect(name: string): string {
    return `${this.publicUrl}/connections/${encodeURIComponent(name)}/reconnect`;
  }
  setup(token: string): string {
    return `${this.publicUrl}/setup?token=${token}`;
  }
}

// ---------------------------------------------------------------- audit

export class AuditLog {
  constructor(private readonly deps: ServerDeps) {}

  /** Writes one entry now. An audit failure is logged, never thrown: the action it records already happened. */
  async write(actor: string, action: string, target: string | null, details: Record<string, unknown> = {}): Promise<void> {
    const entry: NewAuditEntry = { at: this.deps.clock(), actor, action, target, details };
    try {
      await this.deps.serverStore.appendAudit([entry]);
    } catch (err) {
      this.deps.logger.error({ err, action, target }, 'could not write the audit log');
    }
  }
}

// ---------------------------------------------------------------- usage counters

/**
 * Token hand-outs and key use, counted in memory and written every flush interval as one `token.handout` audit
 * entry per (key, connection) plus the keys' counters, so the hot path never writes to the database.
 */
export class UsageRecorder {
  #handouts = new Map<string, { keyId: string; keyName: string; connection: string; count: number }>();
  #lastUsed = new Map<string, number>();
  #flushing: Promise<void> | undefined;

  constructor(private readonly deps: ServerDeps) {}

  used(key: ApiKeyRecord): void {
    this.#lastUsed.set(key.id, this.deps.clock());
  }

  handout(key: ApiKeyRecord, connection: string): void {
    this.#lastUsed.set(key.id, this.deps.clock());
    const k = `${key.id}\u0000${connection}`;
    const cur = this.#handouts.get(k);
    if (cur) cur.count++;
    else this.#handouts.set(k, { keyId: key.id, keyName: key.name, connection, count: 1 });
    this.deps.metrics.tokenHandouts.inc({ connection });
  }

  /** Writes what was counted since the last flush. Concurrent calls share one write. */
  flush(): Promise<void> {
    this.#flushing ??= this.#flush().finally(() => {
      this.#flushing = undefined;
    });
    return this.#flushing;
  }

  async #flush(): Promise<void> {
    if (this.#handouts.size === 0 && this.#lastUsed.size === 0) return;
    const handouts = this.#handouts;
    const lastUsed = this.#lastUsed;
    this.#handouts = new Map();
    this.#lastUsed = new Map();
    const perKey = new Map<string, number>();
    for (const h of handouts.values()) perKey.set(h.keyId, (perKey.get(h.keyId) ?? 0) + h.count);
    const now = this.deps.clock();
    try {
      await this.deps.serverStore.recordApiKeyUsage(
        [...lastUsed].map(([id, at]) => ({ id, lastUsedAt: at, tokenHandouts: perKey.get(id) ?? 0 })),
      );
      await this.deps.serverStore.appendAudit(
        [...handouts.values()].map((h) => ({
          at: now,
          actor: `apikey:${h.keyName}`,
          action: 'token.handout',
          target: h.connection,
          details: { count: h.count },
        })),
      );
    } catch (err) {
      // Put the counts back so the next flush retries them; counters are facts worth keeping.
      for (const [k, h] of handouts) {
        const cur = this.#handouts.get(k);
        if (cur) cur.count += h.count;
        else this.#handouts.set(k, h);
      }
      for (const [id, at] of lastUsed) if (!this.#lastUsed.has(id)) this.#lastUsed.set(id, at);
      this.deps.logger.error({ err }, 'could not record token hand-outs; will retry');
    }
  }
}

// ---------------------------------------------------------------- API keys

export interface CreateApiKeyInput {
  name: string;
  permissions: string[];
  connections: string[] | '*';
  actor: string;
}

export function validateKeyName(name: unknown): string {
  if (typeof name !== 'string' || !/^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$/.test(name)) {
    throw new DropkeyError(ErrorCodes.BAD_INPUT, `Invalid API key name ${JSON.stringify(String(name).slice(0, 80))}.`, {
      hint: 'Use 1-64 letters, digits, "_", "-" or "." (starting with a letter or digit).',
    });
  }
  return name;
}

export function validatePermissions(perms: unknown): ApiPermission[] {
  const list = Array.isArray(perms) ? perms.flatMap((p) => String(p).split(/[\s,|]+/)).filter(Boolean) : [];
  if (list.length === 0) {
    throw new DropkeyError(ErrorCodes.BAD_INPUT, 'An API key needs at least one permission.', { hint: `Choose from: ${API_PERMISSIONS.join(', ')}.` });
  }
  const out: ApiPermission[] = [];
  for (const p of list) {
    if (!(API_PERMISSIONS as readonly string[]).includes(p)) {
      throw new DropkeyError(ErrorCodes.BAD_INPUT, `Unknown permission "${p.slice(0, 40)}".`, { hint: `Choose from: ${API_PERMISSIONS.join(', ')}.` });
    }
    if (!out.includes(p as ApiPermission)) out.push(p as ApiPermission);
  }
  return out;
}

export class ApiKeyService {
  readonly #cache = new Map<string, { rec: ApiKeyRecord; at: number }>();

  constructor(private readonly deps: ServerDeps, private readonly audit: AuditLog) {}

  /** Creates a key and returns it in full: the only time it is ever visible. */
  async create(input: CreateApiKeyInput): Promise<{ key: string; record: ApiKeyRecord }> {
    const name = validateKeyName(input.name);
    const permissions = validatePermissions(input.permissions);
    let connections: string[] | '*';
    if (input.connections === '*') connections = '*';
    else {
      if (!Array.isArray(input.connections) || input.connections.length === 0) {
        throw new DropkeyError(ErrorCodes.BAD_INPUT, 'Say which connections the key may use.', {
          hint: 'List connection names, or "*" for all connections.',
        });
      }
      connections = [...new Set(input.connections.map((c) => validateName('connection', String(c))))];
    }
    const { key, prefix, hash } = generateApiKey(this.deps.randomBytes ?? randomBytes);
    const record = await this.deps.serverStore.createApiKey({ name, prefix, hash, permissions, connections, createdBy: input.actor }, this.deps.clock());
    await this.audit.write(input.actor, 'apikey.created', name, { permissions, connections, prefix });
    return { key, record };
  }

  async revoke(name: string, actor: string): Promise<ApiKeyRecord> {
    const rec = await this.deps.serverStore.revokeApiKey(name, this.deps.clock());
    this.#cache.delete(rec.hash);
    await this.audit.write(actor, 'apikey.revoked', name, { prefix: rec.prefix });
    return rec;
  }

  list(): Promise<ApiKeyRecord[]> {
    return this.deps.serverStore.listApiKeys();
  }

  /**
   * The live key named by an `Authorization: Bearer dk_...` header, or DROPKEY_UNAUTHORIZED. The lookup is by
   * SHA-256 of the presented key (so no secret-dependent comparison happens in the database), then the stored
   * hash is compared with timingSafeEqual. Lookups are cached for apiKeyCacheMs.
   */
  async authenticate(header: string | undefined): Promise<ApiKeyRecord> {
    const m = header === undefined ? null : /^Bearer[ ]+(\S+)\s*$/i.exec(header);
    if (!m) {
      throw new HttpError(ServerErrorCodes.UNAUTHORIZED, 'This API needs an API key: send "Authorization: Bearer dk_...".', {
        hint: 'Create a key with: dropkey apikey create --name NAME --connection NAME --permission token:read',
        headers: { 'WWW-Authenticate': 'Bearer realm="dropkey"' },
      });
    }
    const presented = m[1]!;
    const invalid = () =>
      new HttpError(ServerErrorCodes.UNAUTHORIZED, 'The API key is unknown or revoked.', {
        hint: 'Check the key, or create a new one with: dropkey apikey create',
        headers: { 'WWW-Authenticate': 'Bearer realm="dropkey", error="invalid_token"' },
      });
    if (!looksLikeApiKey(presented)) throw invalid();
    const hash = sha256Hex(presented);
    const now = this.deps.clock();
    let hit = this.#cache.get(hash);
    if (!hit || now - hit.at > this.deps.config.apiKeyCacheMs) {
      const rec = await this.deps.serverStore.getApiKeyByHash(hash);
      if (!rec) {
        this.#cache.delete(hash);
        throw invalid();
      }
      hit = { rec, at: now };
      if (this.#cache.size > 10_000) this.#cache.clear();
      this.#cache.set(hash, hit);
    }
    if (!hexEqual(hit.rec.hash, hash) || hit.rec.revokedAt !== null) throw invalid();
    return hit.rec;
  }

  invalidateAll(): void {
    this.#cache.clear();
  }
}

export function hasPermission(key: ApiKeyRecord, permission: ApiPermission): boolean {
  return key.permissions.includes(permission);
}

export function mayUseConnection(key: ApiKeyRecord, connection: string): boolean {
  return key.connections === '*' || key.connections.includes(connection);
}

/** Throws 403 unless the key has the permission (and, given a connection, is scoped to it). */
export function authorize(key: ApiKeyRecord, permission: ApiPermission | ApiPermission[], connection?: string): void {
  const perms = Array.isArray(permission) ? permission : [permission];
  if (!perms.some((p) => hasPermission(key, p))) {
    throw new HttpError(ServerErrorCodes.FORBIDDEN, `This API key lacks the ${perms.map((p) => `"${p}"`).join(' or ')} permission.`, {
      hint: `Create a key with it: dropkey apikey create --name NAME --permission ${perms[0]} --connection ...`,
    });
  }
  if (connection !== undefined && !mayUseConnection(key, connection)) {
    throw new HttpError(ServerErrorCodes.FORBIDDEN, `This API key may not use connection "${connection}".`, {
      hint: 'Use a key scoped to this connection (dropkey apikey create --connection NAME ...).',
    });
  }
}

// ---------------------------------------------------------------- tokens

export interface CachedToken {
  info: TokenInfo;
  /** The token API's JSON body, serialized once per token. */
  body: string;
}

export function tokenBody(t: TokenInfo): string {
  return JSON.stringify({
    access_token: t.accessToken,
    token_type: 'bearer',
    expires_at: t.expiresAt === null ? null : new Date(t.expiresAt).toISOString(),
    scope: t.scopes.join(' '),
    account_id: t.accountId,
    team_id: t.teamId,
  });
}

/**
 * Valid tokens from memory. An entry is served while it is younger than tokenCacheMs AND the token keeps at
 * least the facade's refresh margin; otherwise the facade is asked (a store read, and a refresh when due).
 * Concurrent misses for one connection share one facade call.
 */
export class TokenService {
  readonly #cache = new Map<string, { token: CachedToken; until: number }>();
  readonly #inflight = new Map<string, Promise<CachedToken>>();

  constructor(private readonly deps: ServerDeps, private readonly paths: ServerPaths) {}

  get(name: string): Promise<CachedToken> {
    const hit = this.#cache.get(name);
    if (hit && this.deps.clock() < hit.until) return Promise.resolve(hit.token);
    let p = this.#inflight.get(name);
    if (!p) {
      p = this.#load(name).finally(() => this.#inflight.delete(name));
      this.#inflight.set(name, p);
    }
    return p;
  }

  async #load(name: string): Promise<CachedToken> {
    const { dropkey, clock, config } = this.deps;
    let info: TokenInfo;
    try {
      info = await dropkey.getToken(name);
    } catch (err) {
      this.#cache.delete(name);
      // Connection events for a refresh that failed here (needs_reauth once per transition, refresh_failed throttled).
      reportRefreshFailure(this.deps, name, err, { detected_by: 'token_request' });
      throw withReconnectUrl(this.paths, name, err);
    }
    const token = { info, body: tokenBody(info) };
    const now = clock();
    const marginMs = dropkey.refreshMarginSeconds * 1000;
    const until = Math.min(now + config.tokenCacheMs, info.expiresAt === null ? Infinity : info.expiresAt - marginMs);
    if (until > now) this.#cache.set(name, { token, until });
    return token;
  }

  invalidate(name: string): void {
    this.#cache.delete(name);
  }
}

/** A REAUTH_REQUIRED error gets the page where an admin reconnects (issue 4 §3: 409 with the reconnect URL). */
export function withReconnectUrl(paths: { reconnect(name: string): string }, name: string, err: unknown): unknown {
  if (!(err instanceof DropkeyError && err.code === ErrorCodes.REAUTH_REQUIRED)) return err;
  const url = paths.reconnect(name);
  return new DropkeyError(ErrorCodes.REAUTH_REQUIRED, err.message, {
    cause: err,
    hint: `An admin must connect it again: ${url}`,
    details: { connection: name, reconnect_url: url },
  });
}

// ---------------------------------------------------------------- all services

export interface ServerServices extends ServerDeps {
  paths: ServerPaths;
  /** The security headers as a record (security/headers.ts), for responses built by hand on hot paths. */
  securityHeaders: Readonly<Record<string, string>>;
  /**
   * Responses that already carry the security headers (built with securityHeaders): app.ts's middleware skips
   * them, so @hono/node-server can write their plain header object without converting it to Headers.
   */
  preSecured: WeakSet<Response>;
  audit: AuditLog;
  usage: UsageRecorder;
  apiKeys: ApiKeyService;
  tokens: TokenService;
  limits: RateLimiter;
  randomBytes: NonNullable<ServerDeps['randomBytes']>;
}

export function createServices(deps: ServerDeps): ServerServices {
  const paths = new ServerPaths(deps.config.publicUrl);
  const audit = new AuditLog(deps);
  const headers = securityHeaders({ authorizeUrl: deps.dropkey.urls.authorize, https: deps.config.publicUrl.startsWith('https:') });
  return {
    ...deps,
    securityHeaders: Object.freeze(Object.fromEntries(headers)),
    preSecured: new WeakSet(),
    randomBytes: deps.randomBytes ?? randomBytes,
    paths,
    audit,
    usage: new UsageRecorder(deps),
    apiKeys: new ApiKeyService(deps, audit),
    tokens: new TokenService(deps, paths),
    limits: new RateLimiter(deps.clock),
  };
}

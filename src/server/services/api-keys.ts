/**
 * API keys: created (shown once, stored hashed), listed, revoked, and checked on every API request; plus the
 * permission checks the routes make. The server and `dropkey apikey` both go through ApiKeyService, so both
 * validate the same way and write the same audit entries.
 */
import { randomBytes } from 'node:crypto';
import { validateName } from '../../connections/names.js';
import { DropkeyError, ErrorCodes } from '../../errors.js';
import { API_PERMISSIONS, type ApiKeyRecord, type ApiPermission, type ServerStore } from '../../store/server-types.js';
import type { ServerConfig } from '../deps.js';
import { HttpError, ServerErrorCodes } from '../errors.js';
import { generateApiKey, hexEqual, looksLikeApiKey, type RandomBytes, sha256Hex } from '../security/secrets.js';
import type { AuditLog } from './audit.js';

export interface ApiKeyDeps {
  serverStore: ServerStore;
  /** Epoch ms. */
  clock: () => number;
  /** Read on every lookup: how long a key found in the store is trusted from memory. */
  config: Pick<ServerConfig, 'apiKeyCacheMs'> & Partial<Pick<ServerConfig, 'storeOutageGraceMs'>>;
  /** Randomness for new keys (default crypto.randomBytes). */
  randomBytes?: RandomBytes;
}

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
  /** `at`: when the store last confirmed the key; `retryAt`: while the store is down, when to ask it again. */
  readonly #cache = new Map<string, { rec: ApiKeyRecord; at: number; retryAt?: number }>();

  constructor(private readonly deps: ApiKeyDeps, private readonly audit: AuditLog) {}

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
    const rec = await this.deps.serverStore.revokeApiKey(validateKeyName(name), this.deps.clock());
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
    const presented = bearerCredential(header);
    if (presented === undefined) {
      throw new HttpError(ServerErrorCodes.UNAUTHORIZED, 'This API needs an API key: send "Authorization: Bearer dk_...".', {
        hint: 'Send an API key; an admin creates one.',
        fix: { action: 'apikey-create', permission: 'token:read' },
        headers: { 'WWW-Authenticate': 'Bearer realm="dropkey"' },
      });
    }
    const invalid = () =>
      new HttpError(ServerErrorCodes.UNAUTHORIZED, 'The API key is unknown or revoked.', {
        hint: 'Check the key, or ask an admin for a new one.',
        fix: { action: 'apikey-create' },
        headers: { 'WWW-Authenticate': 'Bearer realm="dropkey", error="invalid_token"' },
      });
    if (!looksLikeApiKey(presented)) throw invalid();
    const hash = sha256Hex(presented);
    const now = this.deps.clock();
    let hit = this.#cache.get(hash);
    if (!hit || (now - hit.at > this.deps.config.apiKeyCacheMs && !(hit.retryAt !== undefined && now < hit.retryAt))) {
      let rec: ApiKeyRecord | undefined;
      try {
        rec = await this.deps.serverStore.getApiKeyByHash(hash);
      } catch (err) {
        // The store is down (a restart, a failover): a key it confirmed recently is still trusted for a while,
        // asking the store again at most once a second; anything else is the store's error.
        if (!hit || !storeUnavailable(err) || now - hit.at > (this.deps.config.storeOutageGraceMs ?? 0)) throw err;
        hit.retryAt = now + 1_000;
        if (!isLive(hit.rec, hash)) throw invalid();
        return hit.rec;
      }
      if (!rec) {
        this.#cache.delete(hash);
        throw invalid();
      }
      hit = { rec, at: now };
      if (this.#cache.size > 10_000) this.#cache.clear();
      this.#cache.set(hash, hit);
    }
    if (!isLive(hit.rec, hash)) throw invalid();
    return hit.rec;
  }

  /**
   * authenticate() from memory only, for the token fast path (api/token-fast-path.ts): the key when the same
   * checks pass on a fresh cache entry, undefined in every other case (no or bad header, not cached, stale,
   * revoked), where the caller must go through authenticate() to get the answer or the error.
   */
  cached(header: string | undefined): ApiKeyRecord | undefined {
    const presented = bearerCredential(header);
    if (presented === undefined || !looksLikeApiKey(presented)) return undefined;
    const hash = sha256Hex(presented);
    const hit = this.#cache.get(hash);
    if (!hit || this.deps.clock() - hit.at > this.deps.config.apiKeyCacheMs) return undefined;
    return isLive(hit.rec, hash) ? hit.rec : undefined;
  }

  invalidateAll(): void {
    this.#cache.clear();
  }
}

/** A store error that says the database cannot be reached right now (it reconnects by itself). */
function storeUnavailable(err: unknown): boolean {
  return err instanceof DropkeyError && err.code === ErrorCodes.STORE && err.details?.unavailable === true;
}

/** The credential of an `Authorization: Bearer X` header, or undefined. */
function bearerCredential(header: string | undefined): string | undefined {
  return header === undefined ? undefined : /^Bearer[ ]+(\S+)\s*$/i.exec(header)?.[1];
}

/** The stored key matches the presented key's hash (constant time) and is not revoked. */
function isLive(rec: ApiKeyRecord, presentedHash: string): boolean {
  return hexEqual(rec.hash, presentedHash) && rec.revokedAt === null;
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
      hint: 'Use a key with that permission; an admin creates one.',
      fix: { action: 'apikey-create', permission: perms[0]! },
    });
  }
  if (connection !== undefined && !mayUseConnection(key, connection)) {
    throw new HttpError(ServerErrorCodes.FORBIDDEN, `This API key may not use connection "${connection}".`, {
      hint: 'Use a key allowed to use this connection; an admin creates one.',
      fix: { action: 'apikey-create', connection },
    });
  }
}

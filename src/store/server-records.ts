/**
 * What both ServerStore drivers (./sqlite/server-store.ts, ./postgres/server-store.ts) share: row shapes, row →
 * record mapping, the code verifier's encryption context and the errors, so the drivers answer alike. Only column
 * encodings differ (SQLite keeps lists as JSON text, PostgreSQL as text[]).
 */
import { DropkeyError, ErrorCodes } from '../errors.js';
import { API_PERMISSIONS, type AdminUser, type NewApiKey, type NewPendingOAuth, type ApiKeyRecord, type ApiPermission, type AuditEntry, type ConnectLinkRecord, type PendingOAuthRecord, type ReturnMode, type SessionRecord } from './server-types.js';

export interface AdminRow {
  id: string;
  email: string;
  /** Lower-cased email: the unique lookup key (emails compare case-insensitively). */
  email_key: string;
  password_hash: string;
  created_at: number;
  last_login_at: number | null;
}

export interface LinkRow {
  id: string;
  token_hash: string;
  connection: string;
  app: string;
  created_at: number;
  created_by: string;
  expires_at: number;
  used_at: number | null;
}

export interface PendingRowOf<Scopes> {
  id: string;
  state_hash: string;
  binding_hash: string;
  session_id_hash: string | null;
  link_id: string | null;
  connection: string;
  app: string;
  code_verifier_enc: string;
  redirect_uri: string;
  scopes: Scopes;
  return_mode: string;
  return_to: string | null;
  actor: string;
  created_at: number;
  expires_at: number;
}

export interface SessionRow {
  id_hash: string;
  user_id: string;
  csrf_token: string;
  created_at: number;
  expires_at: number;
}

export interface ApiKeyRowOf<List, Connections> {
  id: string;
  name: string;
  prefix: string;
  hash: string;
  permissions: List;
  connections: Connections;
  created_at: number;
  created_by: string;
  last_used_at: number | null;
  revoked_at: number | null;
  token_handouts: number;
}

export interface AuditRowOf<Details> {
  id: number;
  at: number;
  actor: string;
  action: string;
  target: string | null;
  details: Details;
}

/** AAD of a pending login's encrypted PKCE verifier: the ciphertext only opens in its own row. */
export function verifierContext(id: string): string {
  return JSON.stringify(['server_pending_oauth', id, 'code_verifier']);
}

export function toAdmin(r: AdminRow): AdminUser {
  return { id: r.id, email: r.email, createdAt: r.created_at, lastLoginAt: r.last_login_at };
}

export function toSession(r: SessionRow): SessionRecord {
  return { idHash: r.id_hash, userId: r.user_id, csrfToken: r.csrf_token, createdAt: r.created_at, expiresAt: r.expires_at };
}

/** `permissions` and `connections` decoded by the driver ('*' for every connection); unknown permissions dropped. */
export function toApiKey(r: ApiKeyRowOf<unknown, unknown>, permissions: string[], connections: string[] | '*'): ApiKeyRecord {
  return {
    id: r.id,
    name: r.name,
    prefix: r.prefix,
    hash: r.hash,
    permissions: permissions.filter((p): p is ApiPermission => (API_PERMISSIONS as readonly string[]).includes(p)),
    connections,
    createdAt: r.created_at,
    createdBy: r.created_by,
    lastUsedAt: r.last_used_at,
    revokedAt: r.revoked_at,
    tokenHandouts: r.token_handouts,
  };
}

/** `details` decoded by the driver; anything but a JSON object becomes {} (a damaged column must not hide the entry). */
export function toAudit(r: AuditRowOf<unknown>, details: unknown): AuditEntry {
  const d = details && typeof details === 'object' && !Array.isArray(details) ? (details as Record<string, unknown>) : {};
  return { id: Number(r.id), at: r.at, actor: r.actor, action: r.action, target: r.target, details: d };
}

/** The audit query's page size: 100 by default, 1 to 1000. */
export function auditLimit(limit: number | undefined): number {
  return Math.min(Math.max(1, Math.floor(limit ?? 100)), 1000);
}

/** The row of a new connect link (unused). */
export function newLinkRow(l: Omit<ConnectLinkRecord, 'id' | 'usedAt' | 'createdAt'>, now: number, id: string): LinkRow {
  return { id, token_hash: l.tokenHash, connection: l.connection, app: l.app, created_at: now, created_by: l.createdBy, expires_at: l.expiresAt, used_at: null };
}

/** The row of a new API key (no use yet), its lists in the driver's encoding. */
export function newApiKeyRow<L, C>(k: NewApiKey, now: number, id: string, encode: { list: (items: string[]) => L; connections: (c: string[] | '*') => C }): ApiKeyRowOf<L, C> {
  return {
    id,
    name: k.name,
    prefix: k.prefix,
    hash: k.hash,
    permissions: encode.list([...k.permissions]),
    connections: encode.connections(k.connections),
    created_at: now,
    created_by: k.createdBy,
    last_used_at: null,
    revoked_at: null,
    token_handouts: 0,
  };
}

/** The row of a new pending login: its code verifier already sealed (verifierContext(id)), scopes encoded. */
export function newPendingRow<S>(p: NewPendingOAuth, now: number, id: string, codeVerifierEnc: string, scopes: S): PendingRowOf<S> {
  return {
    id,
    state_hash: p.stateHash,
    binding_hash: p.bindingHash,
    session_id_hash: p.sessionIdHash,
    link_id: p.linkId,
    connection: p.connection,
    app: p.app,
    code_verifier_enc: codeVerifierEnc,
    redirect_uri: p.redirectUri,
    scopes,
    return_mode: p.returnMode,
    return_to: p.returnTo,
    actor: p.actor,
    created_at: now,
    expires_at: p.expiresAt,
  };
}

export function toLink(r: LinkRow): ConnectLinkRecord {
  return {
    id: r.id,
    tokenHash: r.token_hash,
    connection: r.connection,
    app: r.app,
    createdAt: r.created_at,
    createdBy: r.created_by,
    expiresAt: r.expires_at,
    usedAt: r.used_at,
  };
}

export function toPending(r: PendingRowOf<unknown>, scopes: string[], codeVerifier: string): PendingOAuthRecord {
  return {
    id: r.id,
    stateHash: r.state_hash,
    bindingHash: r.binding_hash,
    sessionIdHash: r.session_id_hash,
    linkId: r.link_id,
    connection: r.connection,
    app: r.app,
    codeVerifier,
    redirectUri: r.redirect_uri,
    scopes,
    returnMode: r.return_mode as ReturnMode,
    returnTo: r.return_to,
    actor: r.actor,
    createdAt: r.created_at,
    expiresAt: r.expires_at,
  };
}

export function adminExists(email: string): DropkeyError {
  return new DropkeyError(ErrorCodes.ALREADY_EXISTS, `An admin with the email ${email} already exists.`);
}

export function noSuchAdmin(): DropkeyError {
  return new DropkeyError(ErrorCodes.NOT_FOUND, 'No such admin.');
}

export function apiKeyExists(name: string): DropkeyError {
  return new DropkeyError(ErrorCodes.ALREADY_EXISTS, `An API key named "${name}" already exists.`, {
    hint: 'Pick another name, or revoke it first.',
    fix: { action: 'apikey-revoke', name },
  });
}

export function noLiveApiKey(name: string): DropkeyError {
  return new DropkeyError(ErrorCodes.NOT_FOUND, `No live API key named "${name}".`, { hint: 'See which keys exist.', fix: { action: 'list-apikeys' } });
}

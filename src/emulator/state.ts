/**
 * The emulator's identity state: apps, teams, accounts, grants, tokens and the team audit log. File contents
 * belong to the files module. With a data directory the state is saved as JSON after every change (temp file +
 * rename, so a crash never leaves half a file) and loaded at start.
 *
 * Tokens and refresh tokens are stored as SHA-256 hashes only. Authorization codes and pending consents live in
 * memory: they last minutes, and a restart invalidating them is what a real server restart would do too.
 */
import { existsSync, mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import {
  accountIdFor,
  hashSecret,
  numericIdFor,
  randomToken,
  teamIdFor,
  teamMemberIdFor,
} from './ids.js';

export type Access = 'full' | 'app_folder';
export type TokenAccessType = 'online' | 'offline' | 'legacy';

export interface AppRecord {
  key: string;
  secret: string;
  name: string;
  redirect_uris: string[];
  scopes: string[];
  access: Access;
  team: boolean;
}

export interface TeamRecord {
  team_id: string;
  name: string;
  created: number;
}

export interface AccountRecord {
  account_id: string;
  uid: string;
  email: string;
  given_name: string;
  surname: string;
  namespace_id: string;
  country: string;
  locale: string;
  created: number;
  team_id?: string;
  team_member_id?: string;
  team_admin?: boolean;
}

export interface GrantRecord {
  id: string;
  app_key: string;
  /** The account that approved: the user, or for a team-linked app the admin who linked it. */
  account_id: string;
  /** Set for team-linked apps: the token acts for the whole team. */
  team_id?: string;
  scopes: string[];
  token_access_type: TokenAccessType;
  /** The grant came from a PKCE flow with no secret: a refresh with `client_id` alone is then allowed. */
  pkce: boolean;
  refresh_hash?: string;
  created: number;
}

export interface TokenRecord {
  hash: string;
  grant_id: string;
  scopes: string[];
  /** Epoch ms on the emulator clock; null for legacy (long-lived) tokens. */
  expires_at: number | null;
}

export interface EventRecord {
  team_id: string;
  seq: number;
  /** Epoch ms, for filtering; the event itself carries the ISO timestamp. */
  at: number;
  account_ids: string[];
  category: string;
  event_type: string;
  event: Record<string, unknown>;
}

export interface AppInput {
  key: string;
  secret?: string;
  name: string;
  redirect_uris?: string[];
  scopes?: string[];
  access?: Access;
  team?: boolean;
}

export interface AccountInput {
  email: string;
  given_name?: string;
  surname?: string;
  team?: { name: string };
  team_admin?: boolean;
  country?: string;
  locale?: string;
}

export interface Seed {
  apps?: AppInput[];
  accounts?: AccountInput[];
}

/** A control-API input problem; becomes a 4xx JSON answer. */
export class InputError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
  ) {
    super(message);
    this.name = 'InputError';
  }
}

interface Snapshot {
  version: 1;
  apps: AppRecord[];
  teams: TeamRecord[];
  accounts: AccountRecord[];
  grants: GrantRecord[];
  tokens: TokenRecord[];
  events: EventRecord[];
  clock_offset_ms: number;
  event_seq: number;
}

/** Access tokens that expired longer ago than this are forgotten (they then read as invalid, not expired). */
const EXPIRED_TOKEN_RETENTION_MS = 30 * 24 * 3600 * 1000;
const MAX_EVENTS_PER_TEAM = 10_000;

export class State {
  apps = new Map<string, AppRecord>();
  teams = new Map<string, TeamRecord>();
  accounts = new Map<string, AccountRecord>();
  grants = new Map<string, GrantRecord>();
  tokens = new Map<string, TokenRecord>();
  /** refresh-token hash → grant id */
  refresh = new Map<string, string>();
  events: EventRecord[] = [];
  clockOffsetMs = 0;
  private eventSeq = 0;
  private readonly file: string | undefined;

  constructor(dataDir: string | undefined) {
    this.file = dataDir ? join(dataDir, 'state.json') : undefined;
  }

  /** Loads the saved state; false when there is none yet. A corrupt file is an error, never silently replaced. */
  load(): boolean {
    if (!this.file || !existsSync(this.file)) return false;
    let snap: Snapshot;
    try {
      snap = JSON.parse(readFileSync(this.file, 'utf8')) as Snapshot;
    } catch (err) {
      throw new Error(`emulator state file ${this.file} is not valid JSON; move it away to start fresh`, { cause: err });
    }
    if (snap.version !== 1) throw new Error(`emulator state file ${this.file} has unknown version ${String(snap.version)}`);
    this.clear();
    for (const a of snap.apps) this.apps.set(a.key, a);
    for (const t of snap.teams) this.teams.set(t.team_id, t);
    for (const a of snap.accounts) this.accounts.set(a.account_id, a);
    for (const g of snap.grants) {
      this.grants.set(g.id, g);
      if (g.refresh_hash) this.refresh.set(g.refresh_hash, g.id);
    }
    for (const t of snap.tokens) this.tokens.set(t.hash, t);
    this.events = snap.events;
    this.clockOffsetMs = snap.clock_offset_ms;
    this.eventSeq = snap.event_seq;
    return true;
  }

  save(now: number): void {
    if (!this.file) return;
    for (const [hash, t] of this.tokens) {
      if (t.expires_at !== null && t.expires_at + EXPIRED_TOKEN_RETENTION_MS < now) this.tokens.delete(hash);
    }
    const snap: Snapshot = {
      version: 1,
      apps: [...this.apps.values()],
      teams: [...this.teams.values()],
      accounts: [...this.accounts.values()],
      grants: [...this.grants.values()],
      tokens: [...this.tokens.values()],
      events: this.events,
      clock_offset_ms: this.clockOffsetMs,
      event_seq: this.eventSeq,
    };
    mkdirSync(join(this.file, '..'), { recursive: true });
    const tmp = `${this.file}.${process.pid}.tmp`;
    writeFileSync(tmp, JSON.stringify(snap), { mode: 0o600 });
    renameSync(tmp, this.file);
  }

  clear(): void {
    this.apps.clear();
    this.teams.clear();
    this.accounts.clear();
    this.grants.clear();
    this.tokens.clear();
    this.refresh.clear();
    this.events = [];
    this.clockOffsetMs = 0;
    this.eventSeq = 0;
  }

  // ---- apps -------------------------------------------------------------------------------------------------

  /** Creates or replaces an app; returns whether it was new. */
  upsertApp(input: AppInput): { app: AppRecord; created: boolean } {
    const app = validateApp(input);
    const created = !this.apps.has(app.key);
    this.apps.set(app.key, app);
    return { app, created };
  }

  // ---- accounts and teams -------------------------------------------------------------------------------------

  accountByRef(ref: string): AccountRecord | undefined {
    const byId = this.accounts.get(ref);
    if (byId) return byId;
    const email = ref.toLowerCase();
    for (const a of this.accounts.values()) if (a.email.toLowerCase() === email) return a;
    return undefined;
  }

  teamByName(name: string): TeamRecord | undefined {
    for (const t of this.teams.values()) if (t.name.toLowerCase() === name.toLowerCase()) return t;
    return undefined;
  }

  teamMembers(teamId: string): AccountRecord[] {
    return [...this.accounts.values()].filter((a) => a.team_id === teamId).sort((a, b) => a.created - b.created);
  }

  memberById(teamId: string, teamMemberId: string): AccountRecord | undefined {
    for (const a of this.accounts.values()) if (a.team_id === teamId && a.team_member_id === teamMemberId) return a;
    return undefined;
  }

  upsertAccount(input: AccountInput, now: number): { account: AccountRecord; created: boolean } {
    const email = validateEmail(input.email);
    const existing = this.accountByRef(email);
    const local = email.split('@')[0]!;
    const given = optionalName(input.given_name, 'given_name') ?? existing?.given_name ?? capitalize(local.split(/[._+-]/)[0] ?? local);
    const surname = optionalName(input.surname, 'surname') ?? existing?.surname ?? 'Example';
    const account: AccountRecord = {
      account_id: existing?.account_id ?? accountIdFor(email),
      uid: existing?.uid ?? numericIdFor('uid', email),
      email,
      given_name: given,
      surname,
      namespace_id: existing?.namespace_id ?? numericIdFor('namespace', email),
      country: optionalCode(input.country, 'country', /^[A-Z]{2}$/) ?? existing?.country ?? 'US',
      locale: optionalCode(input.locale, 'locale', /^[A-Za-z]{2,8}(-[A-Za-z0-9]{1,8})*$/) ?? existing?.locale ?? 'en',
      created: existing?.created ?? now,
    };
    if (input.team !== undefined) {
      if (typeof input.team !== 'object' || input.team === null || typeof input.team.name !== 'string' || !input.team.name.trim()) {
        throw new InputError(400, 'bad_request', 'team must be an object {"name": "<team name>"}');
      }
      let team = this.teamByName(input.team.name.trim());
      if (!team) {
        team = { team_id: teamIdFor(input.team.name.trim()), name: input.team.name.trim(), created: now };
        this.teams.set(team.team_id, team);
      }
      account.team_id = team.team_id;
      account.team_member_id = teamMemberIdFor(email);
      account.team_admin = input.team_admin === true;
    } else if (existing?.team_id) {
      account.team_id = existing.team_id;
      account.team_member_id = existing.team_member_id!;
      account.team_admin = input.team_admin ?? existing.team_admin ?? false;
    } else if (input.team_admin) {
      throw new InputError(400, 'bad_request', 'team_admin needs team: {"name": ...}');
    }
    this.accounts.set(account.account_id, account);
    return { account, created: !existing };
  }

  // ---- grants and tokens --------------------------------------------------------------------------------------

  /** Creates a grant and its first access token (and refresh token for offline access). */
  createGrant(
    args: { app: AppRecord; account: AccountRecord; scopes: string[]; tokenAccessType: TokenAccessType; pkce: boolean },
    now: number,
    lifetimeSeconds: number,
  ): { grant: GrantRecord; accessToken: string; refreshToken?: string } {
    const grant: GrantRecord = {
      id: randomToken(12),
      app_key: args.app.key,
      account_id: args.account.account_id,
      scopes: args.scopes,
      token_access_type: args.tokenAccessType,
      pkce: args.pkce,
      created: now,
    };
    if (args.app.team && args.account.team_id) grant.team_id = args.account.team_id;
    let refreshToken: string | undefined;
    if (args.tokenAccessType === 'offline') {
      refreshToken = randomToken(48); // 64 characters, like Dropbox's (https://www.dropbox.com/developers/documentation/http/documentation#oauth2-token example)
      grant.refresh_hash = hashSecret(refreshToken);
      this.refresh.set(grant.refresh_hash, grant.id);
    }
    this.grants.set(grant.id, grant);
    const accessToken = this.mintAccessToken(grant, args.scopes, now, lifetimeSeconds);
    return refreshToken === undefined ? { grant, accessToken } : { grant, accessToken, refreshToken };
  }

  mintAccessToken(grant: GrantRecord, scopes: string[], now: number, lifetimeSeconds: number): string {
    // Short-lived tokens start with "sl." (https://developers.dropbox.com/oauth-guide); legacy long-lived ones had no prefix.
    const token =
      grant.token_access_type === 'legacy'
        ? randomToken(48)
        : `sl.${grant.team_id ? 't' : 'u'}.${randomToken(105)}`;
    this.tokens.set(hashSecret(token), {
      hash: hashSecret(token),
      grant_id: grant.id,
      scopes,
      expires_at: grant.token_access_type === 'legacy' ? null : now + lifetimeSeconds * 1000,
    });
    return token;
  }

  /** Drops a grant with its refresh token and every access token minted from it. */
  revokeGrant(grantId: string): void {
    const grant = this.grants.get(grantId);
    if (!grant) return;
    if (grant.refresh_hash) this.refresh.delete(grant.refresh_hash);
    this.grants.delete(grantId);
    for (const [hash, t] of this.tokens) if (t.grant_id === grantId) this.tokens.delete(hash);
  }

  // ---- team audit log -----------------------------------------------------------------------------------------

  recordEvent(e: Omit<EventRecord, 'seq'>): void {
    this.events.push({ ...e, seq: ++this.eventSeq });
    const mine = this.events.filter((x) => x.team_id === e.team_id);
    if (mine.length > MAX_EVENTS_PER_TEAM) {
      const drop = mine[0]!;
      this.events.splice(this.events.indexOf(drop), 1);
    }
  }
}

// ---- validation -------------------------------------------------------------------------------------------------

const SCOPE_RE = /^[a-z_]+(\.[a-z_]+)*$|^openid$|^profile$|^email$/;

function validateApp(input: AppInput): AppRecord {
  if (typeof input !== 'object' || input === null) throw new InputError(400, 'bad_request', 'body must be a JSON object');
  const { key, name } = input;
  if (typeof key !== 'string' || !/^[A-Za-z0-9_-]{1,64}$/.test(key)) {
    throw new InputError(400, 'bad_request', 'key must be 1-64 characters of A-Z a-z 0-9 _ -');
  }
  if (typeof name !== 'string' || !name.trim() || name.length > 100 || /[/\\]/.test(name)) {
    throw new InputError(400, 'bad_request', 'name must be a non-empty string of at most 100 characters without slashes');
  }
  const secret = input.secret ?? randomToken(11);
  if (typeof secret !== 'string' || !/^[\x21-\x7e]{1,128}$/.test(secret)) {
    throw new InputError(400, 'bad_request', 'secret must be 1-128 printable ASCII characters without spaces');
  }
  const team = input.team ?? false;
  if (typeof team !== 'boolean') throw new InputError(400, 'bad_request', 'team must be a boolean');
  const access = input.access ?? 'full';
  if (access !== 'full' && access !== 'app_folder') throw new InputError(400, 'bad_request', 'access must be "full" or "app_folder"');
  if (team && access === 'app_folder') throw new InputError(400, 'bad_request', 'a team app cannot be an app_folder app');
  const scopes = input.scopes ?? (team ? DEFAULT_TEAM_SCOPES : DEFAULT_USER_SCOPES);
  if (!Array.isArray(scopes) || scopes.some((s) => typeof s !== 'string' || !SCOPE_RE.test(s))) {
    throw new InputError(400, 'bad_request', 'scopes must be an array of scope names such as "files.content.read"');
  }
  const redirect = input.redirect_uris ?? [];
  if (!Array.isArray(redirect)) throw new InputError(400, 'bad_request', 'redirect_uris must be an array of URIs');
  for (const uri of redirect) {
    const problem = typeof uri === 'string' ? redirectUriProblem(uri) : 'not a string';
    if (problem) throw new InputError(400, 'bad_request', `redirect_uris: ${JSON.stringify(uri)}: ${problem}`);
  }
  return { key, secret, name: name.trim(), redirect_uris: [...redirect], scopes: [...new Set(scopes)], access, team };
}

export function isLoopbackHost(hostname: string): boolean {
  return hostname === '127.0.0.1' || hostname === 'localhost' || hostname === '[::1]';
}

/** Registered redirect URIs: https, or http on a loopback host (https://www.dropbox.com/developers/documentation/http/documentation#oauth2-authorize). */
function redirectUriProblem(uri: string): string | undefined {
  let u: URL;
  try {
    u = new URL(uri.replace(/\*$/, ''));
  } catch {
    return 'not an absolute URI';
  }
  if (u.hash) return 'must not contain a fragment';
  if (u.protocol === 'https:') return undefined;
  if (u.protocol === 'http:' && isLoopbackHost(u.hostname)) return undefined;
  return 'must use https (http is allowed only for localhost and 127.0.0.1)';
}

function validateEmail(email: unknown): string {
  if (typeof email !== 'string' || !/^[^\s@]{1,64}@[^\s@]+\.[^\s@]{2,}$/.test(email) || email.length > 254) {
    throw new InputError(400, 'bad_request', 'email must be an email address such as "ana@example.com"');
  }
  return email;
}

function optionalName(v: unknown, field: string): string | undefined {
  if (v === undefined) return undefined;
  if (typeof v !== 'string' || !v.trim() || v.length > 100) throw new InputError(400, 'bad_request', `${field} must be a non-empty string`);
  return v.trim();
}

function optionalCode(v: unknown, field: string, re: RegExp): string | undefined {
  if (v === undefined) return undefined;
  if (typeof v !== 'string' || !re.test(v)) throw new InputError(400, 'bad_request', `${field} is not valid`);
  return v;
}

function capitalize(s: string): string {
  return s ? s[0]!.toUpperCase() + s.slice(1) : 'User';
}

/** The common user scopes (https://developers.dropbox.com/oauth-guide#dropbox-api-permissions), given to apps created without `scopes`. */
export const DEFAULT_USER_SCOPES = [
  'account_info.read',
  'files.metadata.read',
  'files.metadata.write',
  'files.content.read',
  'files.content.write',
  'sharing.read',
];

/** Team scopes for a Business admin connector (Dropbox Business API docs, Dropbox OAuth guide: scopes), plus the user scopes for member file access. */
export const DEFAULT_TEAM_SCOPES = [
  'team_info.read',
  'members.read',
  'sessions.list',
  'events.read',
  'groups.read',
  'team_data.member',
  ...DEFAULT_USER_SCOPES,
];

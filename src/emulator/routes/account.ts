/**
 * check/user, check/app, users/get_current_account, users/get_space_usage, auth/token/revoke
 * (https://www.dropbox.com/developers/documentation/http/documentation#auth-token-revoke, https://www.dropbox.com/developers/documentation/http/documentation#users-get_current_account; check.stone, users.stone, auth.stone).
 */
import { BadInputError, RouteError, type Caller, type EmulatorModule, type RouteDef } from '../route-module.js';
import type { Core } from '../core.js';
import type { AccountRecord, TeamRecord } from '../state.js';
import { objectArg, optString } from './args.js';

/** The token behind a caller, set by the core when it authenticates (kept out of the public Caller type). */
export const callerTokens = new WeakMap<Caller, string>();

/** 2 GiB, a Basic account's quota; team members share a team allocation. */
const BASIC_ALLOCATION = 2 * 1024 ** 3;
const TEAM_ALLOCATION = 5 * 1024 ** 4;

export function sharingPolicies(): Record<string, unknown> {
  return {
    shared_folder_member_policy: { '.tag': 'anyone' },
    shared_folder_join_policy: { '.tag': 'from_anyone' },
    shared_link_create_policy: { '.tag': 'default_public' },
    group_creation_policy: { '.tag': 'admins_only' },
    shared_folder_link_restriction_policy: { '.tag': 'anyone' },
    enforce_link_password_policy: { '.tag': 'optional' },
    default_link_expiration_days_policy: { '.tag': 'none' },
    shared_link_default_permissions_policy: { '.tag': 'default' },
  };
}

export function nameOf(a: AccountRecord): Record<string, string> {
  return {
    given_name: a.given_name,
    surname: a.surname,
    familiar_name: a.given_name,
    display_name: `${a.given_name} ${a.surname}`,
    abbreviated_name: `${a.given_name[0] ?? ''}${a.surname[0] ?? ''}`.toUpperCase(),
  };
}

/** FullAccount, field for field (https://www.dropbox.com/developers/documentation/http/documentation#users-get_current_account). Team members keep a `user` root (their home is their root). */
export function fullAccount(a: AccountRecord, team: TeamRecord | undefined): Record<string, unknown> {
  const out: Record<string, unknown> = {
    account_id: a.account_id,
    name: nameOf(a),
    email: a.email,
    email_verified: true,
    disabled: false,
    country: a.country,
    locale: a.locale,
    referral_link: `https://db.tt/${a.account_id.slice(7, 15)}`,
  };
  if (team) {
    out['team'] = {
      id: team.team_id,
      name: team.name,
      sharing_policies: sharingPolicies(),
      office_addin_policy: { '.tag': 'disabled' },
      top_level_content_policy: { '.tag': 'admin_only' },
    };
    out['team_member_id'] = a.team_member_id;
  }
  out['is_paired'] = false;
  out['account_type'] = { '.tag': team ? 'business' : 'basic' };
  out['root_info'] = { '.tag': 'user', root_namespace_id: a.namespace_id, home_namespace_id: a.namespace_id };
  return out;
}

function accountIdArg(v: unknown, field: string): string {
  if (typeof v !== 'string') throw new BadInputError(`request body: ${field}: expected string, got ${v === undefined ? 'nothing' : typeof v}`);
  if (v.length !== 40) throw new BadInputError(`request body: ${field}: '${v.slice(0, 40)}' must be at least 40 characters, got ${v.length}`);
  return v;
}

/** BasicAccount (users.stone): what one account may see of another. */
function basicAccount(a: AccountRecord, viewer: AccountRecord): Record<string, unknown> {
  const teammate = a.team_id !== undefined && a.team_id === viewer.team_id;
  const out: Record<string, unknown> = { account_id: a.account_id, name: nameOf(a), email: a.email, email_verified: true, disabled: false, is_teammate: teammate };
  if (teammate) out['team_member_id'] = a.team_member_id;
  return out;
}

function echo(arg: unknown): { kind: 'json'; value: unknown } {
  const o = objectArg(arg, ['query']);
  const query = optString(o, 'query', 500) ?? '';
  // EchoError.user_requested exists so clients can test their 409 handling (check.stone).
  if (query === 'user_requested') throw new RouteError({ '.tag': 'user_requested' });
  return { kind: 'json', value: { result: query } };
}

export function accountModule(core: Core): EmulatorModule {
  const acting = (caller: Caller): AccountRecord => {
    const a = caller.accountId ? core.state.accounts.get(caller.accountId) : undefined;
    if (!a) throw new Error('authenticated caller without an account'); // the core guarantees one
    return a;
  };
  const routes: RouteDef[] = [
    { name: 'check/user', host: 'api', style: 'rpc', auth: 'user', scope: 'account_info.read', allowAppFolder: true, handler: (c) => echo(c.arg) },
    { name: 'check/app', host: 'api', style: 'rpc', auth: 'app', allowAppFolder: true, handler: (c) => echo(c.arg) },
    {
      name: 'users/get_current_account',
      host: 'api',
      style: 'rpc',
      auth: 'user',
      scope: 'account_info.read',
      allowAppFolder: true,
      selectAdminMode: 'whole_team',
      voidArg: true,
      handler: ({ caller }) => {
        const a = acting(caller);
        return { kind: 'json', value: fullAccount(a, a.team_id ? core.state.teams.get(a.team_id) : undefined) };
      },
    },
    {
      name: 'users/get_space_usage',
      host: 'api',
      style: 'rpc',
      auth: 'user',
      scope: 'account_info.read',
      allowAppFolder: true,
      voidArg: true,
      handler: ({ caller }) => {
        const a = acting(caller);
        const used = core.usedBytes(a.namespace_id);
        if (!a.team_id) return { kind: 'json', value: { used, allocation: { '.tag': 'individual', allocated: BASIC_ALLOCATION } } };
        const teamUsed = core.state.teamMembers(a.team_id).reduce((n, m) => n + core.usedBytes(m.namespace_id), 0);
        return {
          kind: 'json',
          value: {
            used,
            allocation: {
              '.tag': 'team',
              used: teamUsed,
              allocated: TEAM_ALLOCATION,
              user_within_team_space_allocated: 0,
              user_within_team_space_limit_type: { '.tag': 'off' },
              user_within_team_space_used_cached: used,
            },
          },
        };
      },
    },
    {
      name: 'users/get_account',
      host: 'api',
      style: 'rpc',
      auth: 'user',
      scope: 'sharing.read',
      allowAppFolder: true,
      handler: ({ arg, caller }) => {
        const o = objectArg(arg, ['account_id']);
        const id = accountIdArg(o['account_id'], 'account_id');
        const a = core.state.accounts.get(id);
        if (!a) throw new RouteError({ '.tag': 'no_account' });
        return { kind: 'json', value: basicAccount(a, acting(caller)) };
      },
    },
    {
      name: 'users/get_account_batch',
      host: 'api',
      style: 'rpc',
      auth: 'user',
      scope: 'sharing.read',
      allowAppFolder: true,
      handler: ({ arg, caller }) => {
        const o = objectArg(arg, ['account_ids']);
        const ids = o['account_ids'];
        if (!Array.isArray(ids)) throw new BadInputError('request body: account_ids: expected list, got ' + typeof ids);
        if (ids.length < 1) throw new BadInputError('request body: account_ids: list should have at least 1 items, got 0');
        if (ids.length > 300) throw new BadInputError(`request body: account_ids: list should have at most 300 items, got ${ids.length}`);
        const me = acting(caller);
        const out = ids.map((raw, i) => {
          const id = accountIdArg(raw, `account_ids[${i}]`);
          const a = core.state.accounts.get(id);
          if (!a) throw new RouteError({ '.tag': 'no_account', no_account: id });
          return basicAccount(a, me);
        });
        return { kind: 'json', value: out };
      },
    },
    {
      name: 'auth/token/revoke',
      host: 'api',
      style: 'rpc',
      auth: 'user',
      allowAppFolder: true,
      voidArg: true,
      handler: ({ caller }) => {
        const hash = callerTokens.get(caller);
        const token = hash === undefined ? undefined : core.state.tokens.get(hash);
        if (hash !== undefined && token) {
          const grant = core.state.grants.get(token.grant_id);
          // With a refresh token, everything minted from it goes too (auth.stone token/revoke).
          if (grant?.refresh_hash) core.state.revokeGrant(grant.id);
          else {
            core.state.tokens.delete(hash);
            if (grant && ![...core.state.tokens.values()].some((t) => t.grant_id === grant.id)) core.state.revokeGrant(grant.id);
          }
          core.save();
        }
        return { kind: 'json', value: null };
      },
    },
  ];
  return { routes, reset() {} };
}

/**
 * Team audit-log events (team_log.stone TeamEvent), built from what happens in the emulator: members signing in
 * on the consent page and apps being linked. Shapes per https://www.dropbox.com/developers/documentation/http/teams and team_log.stone: struct members
 * are flattened next to their ".tag", void members are {".tag": ...}.
 */
import type { AccountRecord, AppRecord, State, TeamRecord } from './state.js';
import { isoSeconds } from './wire.js';
import { sha256 } from './ids.js';

function displayName(a: AccountRecord): string {
  return `${a.given_name} ${a.surname}`;
}

function teamMemberInfo(a: AccountRecord): Record<string, unknown> {
  return { account_id: a.account_id, display_name: displayName(a), email: a.email, team_member_id: a.team_member_id };
}

/** A web session id like the spec's example ("dbwsid:" + 39 digits), derived so it is stable per member. */
export function webSessionId(a: AccountRecord, salt = ''): string {
  const digits = [...sha256(`web:${a.email}:${salt}`)].map((b) => String(b % 10)).join('');
  return `dbwsid:${digits.padEnd(39, '0').slice(0, 39)}`;
}

function origin(a: AccountRecord): Record<string, unknown> {
  return {
    geo_location: { city: 'San Francisco', region: 'California', country: a.country, ip_address: '127.0.0.1' },
    access_method: { '.tag': 'end_user', end_user: { '.tag': 'web', session_id: webSessionId(a) } },
  };
}

export function recordLogin(state: State, account: AccountRecord, at: number): void {
  if (!account.team_id) return;
  state.recordEvent({
    team_id: account.team_id,
    at,
    account_ids: [account.account_id],
    category: 'logins',
    event_type: 'login_success',
    event: {
      timestamp: isoSeconds(at),
      event_category: { '.tag': 'logins' },
      actor: { '.tag': 'user', user: { '.tag': 'team_member', ...teamMemberInfo(account) } },
      origin: origin(account),
      involve_non_team_member: false,
      context: { '.tag': 'team_member', ...teamMemberInfo(account) },
      participants: [],
      assets: [],
      event_type: { '.tag': 'login_success', description: '(logins) Signed in' },
      details: { '.tag': 'login_success_details', is_emm_managed: false, login_method: { '.tag': 'password' } },
    },
  });
}

export function recordAppLink(state: State, app: AppRecord, account: AccountRecord, at: number): void {
  if (!account.team_id) return;
  const team = app.team;
  const appInfo = { '.tag': team ? 'team_linked_app' : 'user_linked_app', app_id: `dbaid:${app.key}`, display_name: app.name };
  state.recordEvent({
    team_id: account.team_id,
    at,
    account_ids: [account.account_id],
    category: 'apps',
    event_type: team ? 'app_link_team' : 'app_link_user',
    event: {
      timestamp: isoSeconds(at),
      event_category: { '.tag': 'apps' },
      actor: { '.tag': team ? 'admin' : 'user', [team ? 'admin' : 'user']: { '.tag': 'team_member', ...teamMemberInfo(account) } },
      origin: origin(account),
      involve_non_team_member: false,
      context: team ? { '.tag': 'team' } : { '.tag': 'team_member', ...teamMemberInfo(account) },
      participants: [],
      assets: [],
      event_type: team
        ? { '.tag': 'app_link_team', description: '(apps) Linked app for team' }
        : { '.tag': 'app_link_user', description: '(apps) Linked app for member' },
      details: { '.tag': team ? 'app_link_team_details' : 'app_link_user_details', app_info: appInfo },
    },
  });
}

/** Seeded history so the audit log is not empty on a fresh team: each member joined and signed in. */
export function recordMemberJoined(state: State, account: AccountRecord, team: TeamRecord, at: number): void {
  state.recordEvent({
    team_id: team.team_id,
    at,
    account_ids: [account.account_id],
    category: 'members',
    event_type: 'member_add_name',
    event: {
      timestamp: isoSeconds(at),
      event_category: { '.tag': 'members' },
      actor: { '.tag': 'dropbox' },
      involve_non_team_member: false,
      context: { '.tag': 'team_member', ...teamMemberInfo(account) },
      participants: [],
      assets: [],
      event_type: { '.tag': 'member_add_name', description: '(members) Added team member name' },
      details: {
        '.tag': 'member_add_name_details',
        new_value: { given_name: account.given_name, surname: account.surname },
      },
    },
  });
  recordLogin(state, account, at);
}

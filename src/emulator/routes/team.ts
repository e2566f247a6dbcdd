/**
 * Team routes for a Business admin connector (https://www.dropbox.com/developers/documentation/http/teams; team.stone, team_log.stone): team/get_info,
 * team/members/list_v2 (+ continue_v2), team/devices/list_members_devices, team_log/get_events (+ continue).
 * Devices are generated from each member (stable across runs); events come from the state's audit log.
 */
import { BadInputError, RouteError, type Caller, type EmulatorModule, type RouteDef } from '../route-module.js';
import type { Core } from '../core.js';
import { webSessionId } from '../events.js';
import { sha256 } from '../ids.js';
import type { AccountRecord, EventRecord } from '../state.js';
import { isoSeconds } from '../wire.js';
import { callerTokens, nameOf, sharingPolicies } from './account.js';
import { decodeCursor, encodeCursor, objectArg, optBool, optInt, optString, optTag } from './args.js';

const ADMIN_ROLE = { role_id: 'pid_dbtmr:AAAAAIkBkrhb2JUsXQ7gqI2T0_9GkR59cQ9nHJ1vsVc', name: 'Team', description: 'Full admin access' };
const DEVICES_PAGE = 50;

function memberProfile(a: AccountRecord): Record<string, unknown> {
  return {
    team_member_id: a.team_member_id,
    account_id: a.account_id,
    email: a.email,
    email_verified: true,
    secondary_emails: [],
    status: { '.tag': 'active' },
    name: nameOf(a),
    membership_type: { '.tag': 'full' },
    invited_on: isoSeconds(a.created),
    joined_on: isoSeconds(a.created),
    groups: [],
    member_folder_id: a.namespace_id,
    root_folder_id: a.namespace_id,
  };
}

function memberInfo(a: AccountRecord): Record<string, unknown> {
  return { profile: memberProfile(a), roles: a.team_admin ? [ADMIN_ROLE] : [] };
}

function teamOf(caller: Caller): string {
  if (!caller.teamId) throw new Error('team route without a team caller'); // the core guarantees one
  return caller.teamId;
}

/** A member's sessions, derived from their email so they are the same on every run. */
function devicesOf(a: AccountRecord, web: boolean, desktop: boolean, mobile: boolean): Record<string, unknown> {
  const h = sha256(`devices:${a.email}`);
  const created = isoSeconds(a.created);
  const ip = `203.0.113.${(h[0]! % 250) + 1}`;
  const id = (prefix: string, salt: number) => `${prefix}:${sha256(`${a.email}:${salt}`).toString('hex').slice(0, 39)}`;
  const out: Record<string, unknown> = { team_member_id: a.team_member_id };
  if (web) {
    out['web_sessions'] = [
      {
        session_id: webSessionId(a),
        ip_address: ip,
        country: 'United States',
        created,
        updated: created,
        user_agent: 'Mozilla/5.0 (Macintosh; Intel Mac OS X 14_5) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.5 Safari/605.1.15',
        os: 'Mac OS X',
        browser: 'Safari',
      },
    ];
  }
  if (desktop) {
    const mac = h[1]! % 2 === 0;
    out['desktop_clients'] = [
      {
        session_id: id('dbdsid', 1),
        ip_address: ip,
        country: 'United States',
        created,
        updated: created,
        host_name: `${a.given_name.toLowerCase()}-${mac ? 'macbook' : 'pc'}`,
        client_type: { '.tag': mac ? 'mac' : 'windows' },
        client_version: '203.4.5656',
        platform: mac ? 'Mac OS X 14.5' : 'Windows 11',
        is_delete_on_unlink_supported: true,
      },
    ];
  }
  if (mobile) {
    out['mobile_clients'] = [
      {
        session_id: id('dbmsid', 2),
        ip_address: ip,
        country: 'United States',
        created,
        updated: created,
        device_name: `${a.given_name}'s iPhone`,
        client_type: { '.tag': 'iphone' },
        client_version: '380.2.2',
        os_version: '17.5',
        last_carrier: 'Example Mobile',
      },
    ];
  }
  return out;
}

interface MembersCursor {
  t: string;
  o: number;
  l: number;
}

interface DevicesCursor {
  t: string;
  o: number;
  w: boolean;
  d: boolean;
  m: boolean;
}

interface EventsCursor {
  t: string;
  /** Last seq returned. */
  s: number;
  l: number;
  a?: string;
  st?: number;
  en?: number;
  c?: string;
  e?: string;
}

function parseTime(v: unknown, field: string): number | undefined {
  if (v === undefined || v === null) return undefined;
  if (typeof v !== 'string' || !/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$/.test(v) || Number.isNaN(Date.parse(v))) {
    throw new BadInputError(`request body: time.${field}: expected timestamp in format "%Y-%m-%dT%H:%M:%SZ"`);
  }
  return Date.parse(v);
}

export function teamModule(core: Core): EmulatorModule {
  const members = (teamId: string) => core.state.teamMembers(teamId);

  /** members/list (v1: `role`, an AdminTier) and members/list_v2 (`roles`): same paging, cursors kept apart. */
  const memberLists = [
    { suffix: '', cursorPrefix: 'ml0.', entry: (a: AccountRecord) => ({ profile: memberProfile(a), role: { '.tag': a.team_admin ? 'team_admin' : 'member_only' } }) },
    { suffix: '_v2', cursorPrefix: 'ml1.', entry: memberInfo },
  ];
  const listPage = (list: (typeof memberLists)[number], c: MembersCursor) => {
    const all = members(c.t);
    const page = all.slice(c.o, c.o + c.l);
    const next = c.o + page.length;
    return {
      kind: 'json' as const,
      value: { members: page.map(list.entry), cursor: encodeCursor(list.cursorPrefix, { ...c, o: next }), has_more: next < all.length },
    };
  };

  const devicesPage = (c: DevicesCursor) => {
    const all = members(c.t);
    const page = all.slice(c.o, c.o + DEVICES_PAGE);
    const next = c.o + page.length;
    const value: Record<string, unknown> = { devices: page.map((a) => devicesOf(a, c.w, c.d, c.m)), has_more: next < all.length };
    if (next < all.length) value['cursor'] = encodeCursor('dv1.', { ...c, o: next });
    return { kind: 'json' as const, value };
  };

  const eventsPage = (c: EventsCursor) => {
    const matching = core.state.events.filter(
      (e: EventRecord) =>
        e.team_id === c.t &&
        e.seq > c.s &&
        (c.a === undefined || e.account_ids.includes(c.a)) &&
        (c.st === undefined || e.at >= c.st) &&
        (c.en === undefined || e.at < c.en) &&
        (c.c === undefined || e.category === c.c) &&
        (c.e === undefined || e.event_type === c.e),
    );
    const page = matching.slice(0, c.l);
    const last = page.length ? page[page.length - 1]!.seq : c.s;
    return {
      kind: 'json' as const,
      value: { events: page.map((e) => e.event), cursor: encodeCursor('ev1.', { ...c, s: last }), has_more: matching.length > page.length },
    };
  };

  const routes: RouteDef[] = [
    {
      name: 'team/get_info',
      host: 'api',
      style: 'rpc',
      auth: 'team',
      scope: 'team_info.read',
      voidArg: true,
      handler: ({ caller }) => {
        const team = core.state.teams.get(teamOf(caller))!;
        const n = members(team.team_id).length;
        return {
          kind: 'json',
          value: {
            name: team.name,
            team_id: team.team_id,
            num_licensed_users: Math.max(5, n),
            num_provisioned_users: n,
            num_used_licenses: n,
            policies: {
              sharing: sharingPolicies(),
              emm_state: { '.tag': 'disabled' },
              office_addin: { '.tag': 'disabled' },
              suggest_members_policy: { '.tag': 'enabled' },
              top_level_content_policy: { '.tag': 'admin_only' },
            },
          },
        };
      },
    },
    {
      name: 'team/token/get_authenticated_admin',
      host: 'api',
      style: 'rpc',
      auth: 'team',
      scope: 'team_info.read',
      voidArg: true,
      handler: ({ caller }) => {
        const hash = callerTokens.get(caller);
        const grantId = hash === undefined ? undefined : core.state.tokens.get(hash)?.grant_id;
        const grant = grantId === undefined ? undefined : core.state.grants.get(grantId);
        if (!grant) throw new RouteError({ '.tag': 'mapping_not_found' });
        const admin = core.state.accounts.get(grant.account_id);
        if (!admin || admin.team_id !== teamOf(caller) || !admin.team_admin) throw new RouteError({ '.tag': 'admin_not_active' });
        return { kind: 'json', value: { admin_profile: memberProfile(admin) } };
      },
    },
    ...memberLists.flatMap((list): RouteDef[] => [
      {
        name: `team/members/list${list.suffix}`,
        host: 'api',
        style: 'rpc',
        auth: 'team',
        scope: 'members.read',
        handler: ({ arg, caller }) => {
          const o = objectArg(arg, ['limit', 'include_removed']);
          const limit = optInt(o, 'limit', 1000, 1, 1000);
          optBool(o, 'include_removed', false); // nobody is ever removed in the emulator
          return listPage(list, { t: teamOf(caller), o: 0, l: limit });
        },
      },
      {
        name: `team/members/list/continue${list.suffix}`,
        host: 'api',
        style: 'rpc',
        auth: 'team',
        scope: 'members.read',
        handler: ({ arg, caller }) => {
          const o = objectArg(arg, ['cursor']);
          const c = decodeCursor<MembersCursor>(list.cursorPrefix, optString(o, 'cursor'));
          if (!c || c.t !== teamOf(caller) || !Number.isInteger(c.o) || !Number.isInteger(c.l)) throw new RouteError({ '.tag': 'invalid_cursor' });
          return listPage(list, c);
        },
      },
    ]),
    {
      name: 'team/devices/list_members_devices',
      host: 'api',
      style: 'rpc',
      auth: 'team',
      scope: 'sessions.list',
      handler: ({ arg, caller }) => {
        const o = objectArg(arg, ['cursor', 'include_web_sessions', 'include_desktop_clients', 'include_mobile_clients']);
        const flags = {
          w: optBool(o, 'include_web_sessions', true),
          d: optBool(o, 'include_desktop_clients', true),
          m: optBool(o, 'include_mobile_clients', true),
        };
        const cursor = optString(o, 'cursor');
        if (cursor === undefined) return devicesPage({ t: teamOf(caller), o: 0, ...flags });
        const c = decodeCursor<DevicesCursor>('dv1.', cursor);
        if (!c || c.t !== teamOf(caller) || !Number.isInteger(c.o)) throw new RouteError({ '.tag': 'reset' });
        return devicesPage(c);
      },
    },
    {
      name: 'team_log/get_events',
      host: 'api',
      style: 'rpc',
      auth: 'team',
      scope: 'events.read',
      handler: ({ arg, caller }) => {
        const o = objectArg(arg, ['limit', 'account_id', 'time', 'category', 'event_type']);
        const teamId = teamOf(caller);
        const c: EventsCursor = { t: teamId, s: 0, l: optInt(o, 'limit', 1000, 1, 1000) };
        const accountId = optString(o, 'account_id');
        if (accountId !== undefined) {
          if (accountId.length !== 40) throw new BadInputError(`request body: account_id: '${accountId}' must be 40 characters long`);
          if (!members(teamId).some((m) => m.account_id === accountId)) throw new RouteError({ '.tag': 'account_id_not_found' });
          c.a = accountId;
        }
        const time = o['time'];
        if (time !== undefined && time !== null) {
          const t = objectArg(time, ['start_time', 'end_time']);
          const st = parseTime(t['start_time'], 'start_time');
          const en = parseTime(t['end_time'], 'end_time');
          if (st !== undefined && en !== undefined && st > en) throw new RouteError({ '.tag': 'invalid_time_range' });
          if (st !== undefined) c.st = st;
          if (en !== undefined) c.en = en;
        }
        const category = optTag(o, 'category');
        const eventType = optTag(o, 'event_type');
        if (category !== undefined && eventType !== undefined) throw new RouteError({ '.tag': 'invalid_filters' });
        if (category !== undefined) c.c = category;
        if (eventType !== undefined) c.e = eventType;
        return eventsPage(c);
      },
    },
    {
      name: 'team_log/get_events/continue',
      host: 'api',
      style: 'rpc',
      auth: 'team',
      scope: 'events.read',
      handler: ({ arg, caller }) => {
        const o = objectArg(arg, ['cursor']);
        const c = decodeCursor<EventsCursor>('ev1.', optString(o, 'cursor'));
        if (!c || c.t !== teamOf(caller) || !Number.isInteger(c.s) || !Number.isInteger(c.l)) throw new RouteError({ '.tag': 'bad_cursor' });
        return eventsPage(c);
      },
    },
  ];
  return { routes, reset() {} };
}

/**
 * Team (Business) routes with a team app grant: https://www.dropbox.com/developers/documentation/http/teams (shapes), Dropbox HTTP docs: request styles and headers (Dropbox-API-Select-User),
 * Dropbox docs: errors (auth errors). Every call uses auth "team" except the user routes reached through Select-User.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startEmulator, type StartedEmulator, type CreatedAccount } from '../helpers/emulator.js';

let emu: StartedEmulator;
let teamToken: string;
let teamId: string;
let admin: CreatedAccount;
let members: CreatedAccount[];

before(async () => {
  emu = await startEmulator();
  const app = await emu.control.createApp({
    name: 'Team Admin Tool',
    team: true,
    scopes: ['team_info.read', 'members.read', 'sessions.list', 'events.read', 'team_data.member', 'account_info.read', 'files.metadata.read', 'files.content.read', 'files.content.write'],
  });
  admin = await emu.control.createAccount({ email: 'admin@teamco.example', given_name: 'Ada', surname: 'Admin', team: { name: 'Team Co' }, team_admin: true });
  members = [admin];
  for (const who of ['bob', 'carol', 'dave']) {
    members.push(await emu.control.createAccount({ email: `${who}@teamco.example`, given_name: who, surname: 'Member', team: { name: 'Team Co' } }));
  }
  const grant = await emu.control.grant({ app: app.key, account: admin.account_id, token_access_type: 'offline' });
  assert.ok(grant.team_id, 'team app grants are team-linked');
  teamToken = grant.access_token;
  teamId = grant.team_id;
});
after(async () => {
  await emu?.close();
});

test('team/get_info', async () => {
  const r = await emu.rpc('team/get_info', undefined, teamToken);
  assert.equal(r.status, 200, r.text);
  assert.equal(r.headers.get('content-type'), 'application/json');
  assert.equal(r.json.name, 'Team Co');
  assert.equal(r.json.team_id, teamId);
  assert.equal(r.json.team_id, admin.team_id);
  assert.equal(r.json.num_provisioned_users, members.length);
  assert.equal(typeof r.json.num_licensed_users, 'number');
  assert.ok(r.json.num_licensed_users >= r.json.num_provisioned_users);
  assert.equal(typeof r.json.num_used_licenses, 'number');
  const p = r.json.policies;
  assert.ok(p && p.sharing && p.emm_state && p.office_addin && p.suggest_members_policy && p.top_level_content_policy, `TeamMemberPolicies: ${JSON.stringify(p)}`);
  assert.equal(typeof p.sharing.shared_folder_member_policy['.tag'], 'string');
});

test('team/members/list_v2 + continue_v2 page through every member exactly once', async () => {
  const seen: any[] = [];
  let r = await emu.rpc('team/members/list_v2', { limit: 1 }, teamToken);
  assert.equal(r.status, 200, r.text);
  let pages = 1;
  for (;;) {
    assert.ok(Array.isArray(r.json.members));
    assert.ok(r.json.members.length <= 1, 'limit is honoured');
    assert.equal(typeof r.json.cursor, 'string');
    assert.equal(typeof r.json.has_more, 'boolean');
    seen.push(...r.json.members);
    if (!r.json.has_more) break;
    assert.ok(pages++ < 20, 'paging terminates');
    r = await emu.rpc('team/members/list/continue_v2', { cursor: r.json.cursor }, teamToken);
    assert.equal(r.status, 200, r.text);
  }
  assert.ok(pages >= members.length, 'with limit 1 each member takes a page');
  const ids = seen.map((m) => m.profile.team_member_id).sort();
  assert.deepEqual(ids, members.map((m) => m.team_member_id).sort());
  for (const m of seen) {
    const prof = m.profile;
    assert.match(prof.team_member_id, /^dbmid:/);
    assert.match(prof.account_id, /^dbid:/);
    assert.equal(typeof prof.email, 'string');
    assert.equal(typeof prof.email_verified, 'boolean');
    assert.equal(prof.status['.tag'], 'active');
    assert.equal(typeof prof.name.display_name, 'string');
    assert.ok(['full', 'limited'].includes(prof.membership_type['.tag']));
    assert.ok(Array.isArray(prof.groups));
    assert.equal(typeof prof.member_folder_id, 'string');
    assert.equal(typeof prof.root_folder_id, 'string');
  }
  const bob = seen.find((m) => m.profile.email === 'bob@teamco.example');
  assert.equal(bob.profile.name.given_name, 'bob');

  const bad = await emu.rpc('team/members/list/continue_v2', { cursor: 'not-a-cursor' }, teamToken);
  assert.equal(bad.status, 409, bad.text);
  assert.equal(bad.headers.get('content-type'), 'application/json');
  assert.match(bad.json.error_summary, /^invalid_cursor\//);
  assert.equal(bad.json.error['.tag'], 'invalid_cursor');
});

test('team/devices/list_members_devices', async () => {
  const r = await emu.rpc('team/devices/list_members_devices', {}, teamToken);
  assert.equal(r.status, 200, r.text);
  assert.ok(Array.isArray(r.json.devices));
  assert.equal(typeof r.json.has_more, 'boolean');
  const memberIds = new Set(members.map((m) => m.team_member_id));
  for (const d of r.json.devices) {
    assert.ok(memberIds.has(d.team_member_id), `device entry for a team member: ${d.team_member_id}`);
    for (const s of [...(d.web_sessions ?? []), ...(d.desktop_clients ?? []), ...(d.mobile_clients ?? [])]) {
      assert.equal(typeof s.session_id, 'string');
    }
  }
  const noWeb = await emu.rpc('team/devices/list_members_devices', { include_web_sessions: false }, teamToken);
  assert.equal(noWeb.status, 200, noWeb.text);
  for (const d of noWeb.json.devices) assert.ok(!d.web_sessions || d.web_sessions.length === 0, 'web sessions excluded');
});

test('team_log/get_events + continue', async () => {
  const r = await emu.rpc('team_log/get_events', { limit: 1 }, teamToken);
  assert.equal(r.status, 200, r.text);
  let page = r.json;
  const events: any[] = [];
  for (let i = 0; ; i++) {
    assert.ok(Array.isArray(page.events));
    assert.ok(page.events.length <= 1, 'limit is honoured');
    assert.equal(typeof page.cursor, 'string');
    assert.equal(typeof page.has_more, 'boolean');
    events.push(...page.events);
    if (!page.has_more) break;
    assert.ok(i < 200, 'paging terminates');
    const next = await emu.rpc('team_log/get_events/continue', { cursor: page.cursor }, teamToken);
    assert.equal(next.status, 200, next.text);
    page = next.json;
  }
  for (const e of events) {
    assert.match(e.timestamp, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$/);
    assert.equal(typeof e.event_type['.tag'], 'string');
    assert.equal(typeof e.event_category['.tag'], 'string');
    assert.equal(typeof e.details['.tag'], 'string');
  }
  assert.ok(events.length > 0, 'a team whose members were just added has audit events');
  // Dropbox Business API docs: without end_time the cursor can be polled for new events.
  members.push(await emu.control.createAccount({ email: 'erin@teamco.example', given_name: 'erin', surname: 'Member', team: { name: 'Team Co' } }));
  const fresh: any[] = [];
  let cursor = page.cursor;
  for (let i = 0; i < 50; i++) {
    const next = await emu.rpc('team_log/get_events/continue', { cursor }, teamToken);
    assert.equal(next.status, 200, next.text);
    fresh.push(...next.json.events);
    cursor = next.json.cursor;
    if (!next.json.has_more) break;
  }
  assert.ok(fresh.length > 0, 'the polled cursor returns the events of the newly added member');
  assert.ok(fresh.every((e) => !events.some((old) => JSON.stringify(old) === JSON.stringify(e))), 'no event is returned twice');
  const bad = await emu.rpc('team_log/get_events/continue', { cursor: 'garbage' }, teamToken);
  assert.equal(bad.status, 409, bad.text);
  assert.match(bad.json.error_summary, /^bad_cursor\//);
  const badLimit = await emu.rpc('team_log/get_events', { limit: 0 }, teamToken);
  assert.equal(badLimit.status, 400, 'limit below 1 is bad input');
});

test('user routes with Dropbox-API-Select-User act as that member', async () => {
  const bob = members[1]!;
  const carol = members[2]!;
  const asBob = { 'Dropbox-API-Select-User': bob.team_member_id! };
  const me = await emu.rpc('users/get_current_account', undefined, teamToken, asBob);
  assert.equal(me.status, 200, me.text);
  assert.equal(me.json.account_id, bob.account_id);
  assert.equal(me.json.team_member_id, bob.team_member_id);
  assert.equal(me.json.team.id, teamId);

  const up = await emu.upload('files/upload', { path: '/bob-notes.txt' }, Buffer.from('bob only'), teamToken, asBob);
  assert.equal(up.status, 200, up.text);
  const bobList = await emu.rpc('files/list_folder', { path: '' }, teamToken, asBob);
  assert.equal(bobList.status, 200, bobList.text);
  assert.ok(bobList.json.entries.some((e: any) => e.name === 'bob-notes.txt'));
  const carolList = await emu.rpc('files/list_folder', { path: '' }, teamToken, { 'Dropbox-API-Select-User': carol.team_member_id! });
  assert.equal(carolList.status, 200, carolList.text);
  assert.ok(!carolList.json.entries.some((e: any) => e.name === 'bob-notes.txt'), "members' files are separate");

  const unknown = await emu.rpc('users/get_current_account', undefined, teamToken, { 'Dropbox-API-Select-User': 'dbmid:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA' });
  assert.equal(unknown.status, 401, unknown.text);
  assert.equal(unknown.json.error['.tag'], 'invalid_select_user');
});

test('a user token on a team route is a 400 text error', async () => {
  const app = await emu.control.createApp({ scopes: ['account_info.read', 'team_info.read'] });
  const solo = await emu.control.createAccount();
  const grant = await emu.control.grant({ app: app.key, account: solo.account_id });
  const r = await emu.rpc('team/get_info', undefined, grant.access_token);
  assert.equal(r.status, 400, r.text);
  assert.equal(r.headers.get('content-type'), 'text/plain; charset=utf-8');
  assert.ok(r.text.startsWith('Error in call to API function "team/get_info": '), r.text);
});

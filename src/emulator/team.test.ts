/** Team routes and account look-ups through `emulator.fetch` (https://www.dropbox.com/developers/documentation/http/documentation#users-get_current_account, https://www.dropbox.com/developers/documentation/http/teams). */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { createEmulator, DEMO_ACCOUNT_EMAIL, DEMO_APP_KEY, DEMO_TEAM_ADMIN_EMAIL, DEMO_TEAM_APP_KEY } from './index.js';

async function setup() {
  let now = Date.parse('2026-02-02T10:00:00Z');
  const emu = createEmulator({ clock: () => now });
  for (let i = 0; i < 5; i++) {
    now += 1000;
    await emu.control.createAccount({ email: `m${i}@team.example.com`, team: { name: 'Example Team' } });
  }
  const team: any = await emu.control.grant({ app: DEMO_TEAM_APP_KEY, account: DEMO_TEAM_ADMIN_EMAIL });
  const rpc = async (route: string, arg?: unknown, token = team.access_token) => {
    const res = await emu.fetch(
      new Request(`http://127.0.0.1:9/2/${route}`, {
        method: 'POST',
        headers: { Authorization: `Bearer ${token}`, ...(arg !== undefined ? { 'Content-Type': 'application/json' } : {}) },
        ...(arg !== undefined ? { body: JSON.stringify(arg) } : {}),
      }),
    );
    return { status: res.status, body: res.headers.get('content-type') === 'application/json' ? await res.json() : await res.text() };
  };
  return { emu, rpc, team, tick: (ms: number) => (now += ms) };
}

test('team/get_info and get_authenticated_admin', async () => {
  const { rpc } = await setup();
  const info = await rpc('team/get_info');
  assert.equal(info.status, 200);
  assert.equal(info.body.name, 'Example Team');
  assert.match(info.body.team_id, /^dbtid:/);
  assert.equal(info.body.num_provisioned_users, 8);
  assert.equal(info.body.policies.sharing.shared_folder_member_policy['.tag'], 'anyone');
  const admin = await rpc('team/token/get_authenticated_admin');
  assert.equal(admin.body.admin_profile.email, DEMO_TEAM_ADMIN_EMAIL);
});

test('members/list_v2 + continue_v2 page through every member once; v1 carries role', async () => {
  const { rpc } = await setup();
  const seen: string[] = [];
  let page = await rpc('team/members/list_v2', { limit: 3 });
  for (;;) {
    assert.equal(page.status, 200);
    for (const m of page.body.members) {
      seen.push(m.profile.email);
      assert.match(m.profile.team_member_id, /^dbmid:/);
      assert.equal(m.profile.status['.tag'], 'active');
    }
    if (!page.body.has_more) break;
    page = await rpc('team/members/list/continue_v2', { cursor: page.body.cursor });
  }
  assert.equal(seen.length, 8);
  assert.equal(new Set(seen).size, 8);
  assert.equal(seen[0], DEMO_TEAM_ADMIN_EMAIL);
  const bad = await rpc('team/members/list/continue_v2', { cursor: 'garbage' });
  assert.equal(bad.status, 409);
  assert.equal(bad.body.error['.tag'], 'invalid_cursor');
  assert.equal((await rpc('team/members/list_v2', { limit: 0 })).status, 400);
  assert.equal((await rpc('team/members/list_v2', { limit: 10, extra: 1 })).status, 400);
  const v1 = await rpc('team/members/list', { limit: 2 });
  assert.deepEqual(v1.body.members[0].role, { '.tag': 'team_admin' });
  const v1b = await rpc('team/members/list/continue', { cursor: v1.body.cursor });
  assert.deepEqual(v1b.body.members[0].role, { '.tag': 'member_only' });
  assert.equal((await rpc('team/members/list/continue', { cursor: page.body.cursor })).status, 409, 'a v2 cursor is not a v1 cursor');
});

test('devices/list_members_devices: stable sessions per member, include_* flags', async () => {
  const { rpc } = await setup();
  const all = await rpc('team/devices/list_members_devices', {});
  assert.equal(all.status, 200);
  assert.equal(all.body.devices.length, 8);
  assert.equal(all.body.has_more, false);
  const d = all.body.devices[0];
  assert.match(d.web_sessions[0].session_id, /^dbwsid:\d{39}$/);
  assert.ok(d.desktop_clients[0].client_type['.tag']);
  assert.equal(d.mobile_clients[0].client_type['.tag'], 'iphone');
  const again = await rpc('team/devices/list_members_devices', {});
  assert.deepEqual(again.body, all.body, 'the same on every call');
  const webOnly = await rpc('team/devices/list_members_devices', { include_desktop_clients: false, include_mobile_clients: false });
  assert.equal(webOnly.body.devices[0].desktop_clients, undefined);
  const bad = await rpc('team/devices/list_members_devices', { cursor: 'nope' });
  assert.equal(bad.body.error['.tag'], 'reset');
});

test('team_log/get_events: filters, paging, polling a cursor for new events, errors', async () => {
  const { rpc, emu, tick } = await setup();
  const first = await rpc('team_log/get_events', { limit: 4 });
  assert.equal(first.status, 200);
  assert.equal(first.body.events.length, 4);
  assert.equal(first.body.has_more, true);
  let cursor = first.body.cursor;
  let total = 4;
  for (;;) {
    const next = await rpc('team_log/get_events/continue', { cursor });
    total += next.body.events.length;
    cursor = next.body.cursor;
    if (!next.body.has_more) break;
  }
  assert.equal(total, 16, 'two events per member (added, signed in)');
  const logins = await rpc('team_log/get_events', { category: 'logins' });
  assert.ok(logins.body.events.every((e: any) => e.event_type['.tag'] === 'login_success'));
  const byType = await rpc('team_log/get_events', { event_type: { '.tag': 'member_add_name' } });
  assert.equal(byType.body.events.length, 8);
  const m0 = (await emu.control.accounts()).find((a) => a.email === 'm0@team.example.com')!;
  const mine = await rpc('team_log/get_events', { account_id: m0['account_id'] });
  assert.equal(mine.body.events.length, 2);
  // Poll the cursor: a new app link shows up.
  tick(60_000);
  await emu.control.grant({ app: DEMO_TEAM_APP_KEY, account: DEMO_TEAM_ADMIN_EMAIL });
  const caughtUp = await rpc('team_log/get_events/continue', { cursor });
  assert.equal(caughtUp.body.events.length, 0, 'grants through the control API are not consents');
  const window = await rpc('team_log/get_events', { time: { start_time: '2026-02-02T10:00:03Z', end_time: '2026-02-02T10:00:05Z' } });
  assert.equal(window.body.events.length, 4);
  assert.equal((await rpc('team_log/get_events', { category: 'logins', event_type: 'login_success' })).body.error['.tag'], 'invalid_filters');
  assert.equal((await rpc('team_log/get_events', { time: { start_time: '2026-02-03T00:00:00Z', end_time: '2026-02-02T00:00:00Z' } })).body.error['.tag'], 'invalid_time_range');
  assert.equal((await rpc('team_log/get_events', { account_id: `dbid:${'x'.repeat(35)}` })).body.error['.tag'], 'account_id_not_found');
  assert.equal((await rpc('team_log/get_events', { time: { start_time: 'yesterday' } })).status, 400);
  assert.equal((await rpc('team_log/get_events/continue', { cursor: 'x' })).body.error['.tag'], 'bad_cursor');
});

test('users/get_account and get_account_batch', async () => {
  const { emu, rpc } = await setup();
  const user: any = await emu.control.grant({ app: DEMO_APP_KEY, account: DEMO_ACCOUNT_EMAIL });
  const accounts = await emu.control.accounts();
  const ada = accounts.find((a) => a.email === DEMO_TEAM_ADMIN_EMAIL)!;
  const one = await rpc('users/get_account', { account_id: ada['account_id'] }, user.access_token);
  assert.equal(one.status, 200);
  assert.equal(one.body.email, DEMO_TEAM_ADMIN_EMAIL);
  assert.equal(one.body.is_teammate, false);
  assert.equal(one.body.team_member_id, undefined);
  const none = await rpc('users/get_account', { account_id: `dbid:${'A'.repeat(35)}` }, user.access_token);
  assert.equal(none.status, 409);
  assert.equal(none.body.error['.tag'], 'no_account');
  const batch = await rpc('users/get_account_batch', { account_ids: [ada['account_id'], `dbid:${'B'.repeat(35)}`] }, user.access_token);
  assert.deepEqual(batch.body.error, { '.tag': 'no_account', no_account: `dbid:${'B'.repeat(35)}` });
  assert.equal((await rpc('users/get_account_batch', { account_ids: [] }, user.access_token)).status, 400);
});

/**
 * Team apps record which admin linked them (Dropbox's team/token/get_authenticated_admin): stored at import (and
 * login, the same code), shown by `dropkey list` and its --json, the API's connection object and the UI's connection
 * page. A lookup Dropbox refuses leaves it unknown and never fails the connection.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { PassThrough } from 'node:stream';
import { run } from '../../src/cli/index.js';
import { makeRig, type Rig } from '../connections/setup.js';
import { hashPassword } from '../../src/server/security/secrets.js';
import { makeServerRig, type ServerRig } from './rig.js';
import { csrfOf, textOf, UiClient } from './ui-client.js';

const TEAM_SCOPES = ['team_info.read', 'members.read'];

async function teamApp(emu: Rig['emu'] | ServerRig['emu'], admin: boolean) {
  const app = await emu.control.createApp({ scopes: TEAM_SCOPES, team: true, redirect_uris: ['http://127.0.0.1/*'] });
  const account = await emu.control.createAccount({ email: `ada${Math.random().toString(36).slice(2, 8)}@acme.example`, given_name: 'Ada', surname: 'Admin', team: { name: 'Acme' }, team_admin: admin });
  const grant = await emu.control.grant({ app: app.key, account: account.account_id, token_access_type: 'offline' });
  return { app, account, grant };
}

describe('facade and CLI', () => {
  let rig: Rig;
  const debug: { obj: Record<string, unknown>; msg: string }[] = [];
  before(async () => {
    rig = await makeRig({ dropkey: { logger: { debug: (obj: object, msg?: string) => void debug.push({ obj: obj as Record<string, unknown>, msg: msg ?? '' }) } } });
  });
  after(() => rig.close());

  async function cli(args: string[]) {
    let out = '';
    const stdout = new PassThrough();
    stdout.on('data', (d) => (out += d));
    const code = await run(args, { env: { DROPKEY_HOME: rig.home, DROPKEY_MASTER_KEY: rig.masterKey }, cwd: rig.home, stdin: new PassThrough(), stdout, stderr: new PassThrough(), signal: new AbortController().signal });
    return { code, out };
  }

  test('an imported team connection says who linked it: the facade, dropkey list and list --json', async () => {
    const { app, account, grant } = await teamApp(rig.emu, true);
    await rig.dk.addApp({ name: 'teamapp', key: app.key, secret: String(app.secret), scopes: TEAM_SCOPES, team: true });
    const r = await rig.dk.import({ connection: 'acme', app: 'teamapp', refreshToken: grant.refresh_token! });
    assert.deepEqual(r.connection.linkedBy, { name: 'Ada Admin', email: account.email });
    assert.deepEqual((await rig.dk.get('acme')).linkedBy, { name: 'Ada Admin', email: account.email });

    const table = await cli(['list']);
    assert.equal(table.code, 0);
    assert.match(table.out, /LINKED BY/);
    assert.ok(table.out.includes(`Ada Admin <${account.email}>`), table.out);
    const json = JSON.parse((await cli(['list', '--json'])).out);
    assert.deepEqual(json.find((c: { name: string }) => c.name === 'acme').linked_by, { name: 'Ada Admin', email: account.email });
  });

  test('when Dropbox will not say (an admin no longer active, a failing route), the import succeeds with it unknown, and the debug log says why', async () => {
    const { app, grant } = await teamApp(rig.emu, false);
    await rig.dk.addApp({ name: 'teamapp2', key: app.key, secret: String(app.secret), scopes: TEAM_SCOPES, team: true });
    const r = await rig.dk.import({ connection: 'acme2', app: 'teamapp2', refreshToken: grant.refresh_token! });
    assert.equal(r.connection.linkedBy, null);
    assert.equal(r.connection.teamName, 'Acme', 'the rest of the identity is there');
    const why = debug.find((d) => /which admin linked/.test(d.msg));
    assert.equal(why?.obj['reason'], 'admin_not_active');
    assert.ok(r.warnings.some((w) => /did not say which admin linked the team app \(admin_not_active\)/.test(w)), r.warnings.join('\n'));

    await rig.emu.control.fault({ route: 'team/token/get_authenticated_admin', status: 500, count: 10 });
    try {
      const again = await rig.dk.import({ connection: 'acme2', app: 'teamapp2', refreshToken: grant.refresh_token! });
      assert.equal(again.connection.linkedBy, null);
    } finally {
      await rig.emu.control.clearFaults();
    }
    const json = JSON.parse((await cli(['list', '--json'])).out);
    assert.equal(json.find((c: { name: string }) => c.name === 'acme2').linked_by, null);
  });

  test('a user app never asks', async () => {
    const a = await rig.appWithAccount({ name: 'user' });
    await rig.emu.control.clearRequests();
    const r = await rig.dk.import({ connection: 'solo', app: 'user', refreshToken: (await a.grant()).refresh_token! });
    assert.equal(r.connection.linkedBy, null);
    assert.ok(!(await rig.emu.control.requests()).some((q) => q.path.includes('get_authenticated_admin')));
  });
});

describe('API and web UI', () => {
  let rig: ServerRig;
  before(async () => {
    rig = await makeServerRig({ listen: false });
  });
  after(() => rig.close());

  test('the API connection object and the connection page show who linked the team app', async () => {
    const { app, account, grant } = await teamApp(rig.emu, true);
    await rig.dk.addApp({ name: 'teamapp', key: app.key, secret: String(app.secret), scopes: TEAM_SCOPES, team: true });
    await rig.dk.import({ connection: 'acme', app: 'teamapp', refreshToken: grant.refresh_token! });
    const key = await rig.key(['admin'], '*');
    const res = await rig.call('GET', '/api/v1/connections/acme', { key });
    assert.equal(res.status, 200);
    assert.deepEqual(((await res.json()) as { connection: { linked_by: unknown } }).connection.linked_by, { name: 'Ada Admin', email: account.email });

    await rig.serverStore.createAdmin({ email: 'root@example.com', passwordHash: await hashPassword('correct horse battery staple') }, rig.clock.now);
    const ui = new UiClient(rig);
    const signin = await ui.page('/signin');
    assert.equal((await ui.post('/signin', { _csrf: csrfOf(signin), email: 'root@example.com', password: 'correct horse battery staple' })).status, 303);
    const page = textOf(await ui.page('/connections/acme'));
    assert.match(page, new RegExp(`Linked by\\s*Ada Admin <${account.email!.replace(/\./g, '\\.')}>`));
  });
});

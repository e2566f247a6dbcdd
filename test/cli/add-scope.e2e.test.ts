/**
 * Adding a scope to a connection keeps the ones it has: doctor's fix for a missing scope is `login --add-scope`,
 * which asks Dropbox only for the new scope with include_granted_scopes (team for a team app, user otherwise), and
 * the emulator answers with a token holding the old scopes and the new. The built CLI against the emulator.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { driveConsent } from '../helpers/consent.js';
import { CliEnv, collect, waitForOutput } from './cli-helpers.js';

let t: CliEnv;
before(async () => {
  t = await CliEnv.create();
});
after(async () => {
  await t?.close();
});

/** Runs a login command line (as printed by a fix) with a free port, approves as `email`; returns the authorize URL and the result. */
async function loginAs(args: string[], email: string) {
  const child = t.spawn([...args, '--port', '0', '--no-browser']);
  child.stdin.end();
  const done = collect(child);
  const [line] = await waitForOutput(child.stderr, /http:\/\/127\.0\.0\.1:\d+\/oauth2\/authorize\?\S+/);
  const consent = await driveConsent(line, { account: email });
  assert.ok(consent.location, consent.finalHtml.slice(0, 300));
  const page = await fetch(consent.location);
  await page.text();
  return { url: new URL(line), consentPage: consent.page, result: await done };
}

async function scopesOf(connection: string): Promise<string[]> {
  const r = await t.run(['token', '--connection', connection, '--json']);
  assert.equal(r.code, 0, r.stderr);
  return [...(JSON.parse(r.stdout) as { scopes: string[] }).scopes].sort();
}

test("doctor's fix for a missing scope on a team connector adds it and keeps team_info.read, members.read and sessions.list", async () => {
  const granted = ['members.read', 'sessions.list', 'team_info.read'];
  const app = await t.emu.control.createApp({ redirect_uris: ['http://127.0.0.1/*'], team: true, scopes: [...granted, 'events.read'] });
  const added = await t.run(['app', 'add', '--name', 'tapp', '--key', app.key, '--secret', '-', '--team'], { stdin: `${app.secret}\n` });
  assert.equal(added.code, 0, added.stderr);
  const admin = await t.emu.control.createAccount({ email: 'admin@team.example.com', team: { name: 'Team' }, team_admin: true });
  const g = await t.emu.control.grant({ app: app.key, account: admin.account_id, scopes: granted, token_access_type: 'offline' });
  const imported = await t.run(['import', '--connection', 'tc', '--app', 'tapp', '--refresh-token', '-'], { stdin: `${g.refresh_token}\n` });
  assert.equal(imported.code, 0, imported.stderr);

  const doctor = await t.run(['doctor', '--connection', 'tc', '--need', 'events.read']);
  assert.equal(doctor.code, 1, doctor.stdout);
  const fix = /Run: (dropkey login .*)$/m.exec(doctor.stdout)?.[1];
  assert.equal(fix, 'dropkey login --connection tc --app tapp --add-scope events.read', doctor.stdout);

  const { url, consentPage, result } = await loginAs(fix!.split(' ').slice(1), 'admin@team.example.com');
  assert.equal(url.searchParams.get('scope'), 'events.read', 'only the new scope is asked for');
  assert.equal(url.searchParams.get('include_granted_scopes'), 'team');
  assert.match(consentPage, /data-scope="events.read"/);
  assert.equal(result.code, 0, result.stderr);
  assert.deepEqual(await scopesOf('tc'), [...granted, 'events.read'].sort(), 'the old scopes are kept');
  const healthy = await t.run(['doctor', '--connection', 'tc', '--need', 'events.read', '--need', 'members.read', '--need', 'sessions.list']);
  assert.equal(healthy.code, 0, healthy.stdout);
});

test('login --add-scope on a user app: include_granted_scopes=user adds this user\'s earlier scopes, never another user\'s', async () => {
  const app = await t.emu.control.createApp({
    redirect_uris: ['http://127.0.0.1/*'],
    scopes: ['account_info.read', 'files.metadata.read', 'files.content.read', 'sharing.read'],
  });
  assert.equal((await t.run(['app', 'add', '--name', 'uapp', '--key', app.key, '--secret', '-'], { stdin: `${app.secret}\n` })).code, 0);
  const me = await t.emu.control.createAccount({ email: 'me@example.com' });
  const other = await t.emu.control.createAccount({ email: 'other@example.com' });
  await t.emu.control.grant({ app: app.key, account: other.account_id, scopes: ['sharing.read'], token_access_type: 'offline' });
  const g = await t.emu.control.grant({ app: app.key, account: me.account_id, scopes: ['account_info.read', 'files.metadata.read'], token_access_type: 'offline' });
  assert.equal((await t.run(['import', '--connection', 'uc', '--app', 'uapp', '--refresh-token', '-'], { stdin: `${g.refresh_token}\n` })).code, 0);

  const { url, result } = await loginAs(['login', '--connection', 'uc', '--add-scope', 'files.content.read'], 'me@example.com');
  assert.equal(url.searchParams.get('include_granted_scopes'), 'user');
  assert.equal(url.searchParams.get('scope'), 'files.content.read');
  assert.equal(result.code, 0, result.stderr);
  assert.deepEqual(await scopesOf('uc'), ['account_info.read', 'files.content.read', 'files.metadata.read']);

  // A plain --scope login asks for exactly what it names: the difference --add-scope makes.
  const narrow = await loginAs(['login', '--connection', 'uc', '--scope', 'files.content.read'], 'me@example.com');
  assert.equal(narrow.url.searchParams.get('include_granted_scopes'), null);
  assert.equal(narrow.result.code, 0, narrow.result.stderr);
  assert.deepEqual(await scopesOf('uc'), ['files.content.read']);
});

test('login --add-scope needs an existing connection and does not go with --scope', async () => {
  const none = await t.run(['login', '--connection', 'nobody', '--app', 'uapp', '--add-scope', 'files.content.read', '--port', '0', '--no-browser']);
  assert.equal(none.code, 2, none.stderr);
  assert.match(none.stderr, /no connection "nobody" to add scopes to/);
  assert.match(none.stderr, /Run: dropkey login --connection nobody --app uapp/);
  const both = await t.run(['login', '--connection', 'uc', '--scope', 'a.b', '--add-scope', 'c.d']);
  assert.equal(both.code, 2);
  assert.match(both.stderr, /--scope and --add-scope contradict/);
});

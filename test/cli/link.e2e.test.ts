/**
 * `dropkey link`: a connect link made from the command line on the data store of a running `dropkey serve`, sent
 * to an owner who opens it in a browser (driven over HTTP), approves on the emulator's consent page, and lands
 * on the server's callback: the connection is then there for the CLI. Also list, revoke, and the errors.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { PassThrough } from 'node:stream';
import { readConfig } from '../../src/config.js';
import { startServer } from '../../src/server/main.js';
import { driveConsent } from '../helpers/consent.js';
import { CliEnv } from './cli-helpers.js';

let t: CliEnv;
let server: Awaited<ReturnType<typeof startServer>>;
const stop = new AbortController();

before(async () => {
  t = await CliEnv.create();
  await t.addApp('backup');
  // dropkey serve on the same data directory and emulator, as `dropkey serve` would run next to the CLI.
  const config = await readConfig({ DROPKEY_HOME: t.home, DROPKEY_DROPBOX_URL: t.emu.url, DROPKEY_LOG_LEVEL: 'warn' });
  server = await startServer({ config, port: 0, host: '127.0.0.1', stdout: new PassThrough(), logStream: new PassThrough(), signal: stop.signal });
});
after(async () => {
  stop.abort();
  await server.done;
  await t.close();
});

/** The owner's browser: opens the link, clicks Connect, approves as `email`, follows Dropbox's redirect back. */
async function ownerConnects(url: string, email: string): Promise<{ status: number; html: string }> {
  const page = await fetch(url);
  assert.equal(page.status, 200, 'the link page opens');
  assert.match(await page.text(), /Connect your Dropbox/);
  const clicked = await fetch(url, { method: 'POST', redirect: 'manual' });
  assert.equal(clicked.status, 303);
  const cookie = clicked.headers.getSetCookie().find((c) => c.startsWith('dropkey_oauth='))!.split(';')[0]!;
  const consent = await driveConsent(clicked.headers.get('location')!, { account: email });
  assert.ok(consent.location?.startsWith(`${server.url}/oauth/callback?`), consent.location);
  const done = await fetch(consent.location!, { headers: { Cookie: cookie } });
  return { status: done.status, html: await done.text() };
}

test('link create → the owner consents → the connection exists for the CLI; the link works once', async () => {
  await t.emu.control.createAccount({ email: 'owner@example.com' });
  const made = await t.run(['link', 'create', '--app', 'backup', '--connection', 'owner', '--expires', '10m', '--public-url', server.url]);
  assert.equal(made.code, 0, made.stderr);
  const url = made.stdout.trim();
  assert.match(url, new RegExp(`^${server.url}/connect/[A-Za-z0-9_-]{43}$`));
  assert.match(made.stderr, /Connect link for "owner" \(app backup\)/);
  assert.match(made.stderr, /dropkey link revoke \S+/);

  const pending = await t.run(['link', 'list', '--json']);
  assert.equal(pending.code, 0, pending.stderr);
  const links = JSON.parse(pending.stdout) as Array<{ id: string; connection: string; app: string; expires_at: string; created_by: string }>;
  assert.equal(links.length, 1);
  assert.equal(links[0]!.connection, 'owner');
  assert.match(links[0]!.created_by, /^cli:\S+$/, 'the CLI actor names the OS user, as every CLI action does');
  const ttl = Date.parse(links[0]!.expires_at) - Date.now();
  assert.ok(ttl > 9 * 60_000 && ttl <= 10 * 60_000, `expires in 10 minutes (${ttl} ms)`);

  const done = await ownerConnects(url, 'owner@example.com');
  assert.equal(done.status, 200, done.html);
  assert.match(done.html, /Dropbox is connected as owner@example\.com/);

  const list = await t.run(['list', '--json']);
  assert.equal(list.code, 0, list.stderr);
  const owner = (JSON.parse(list.stdout) as Array<{ name: string; email: string; app: string }>).find((c) => c.name === 'owner');
  assert.ok(owner, list.stdout);
  assert.equal(owner.email, 'owner@example.com');
  assert.equal(owner.app, 'backup');
  const token = await t.run(['token', '--connection', 'owner']);
  assert.equal(token.code, 0, token.stderr);
  const me = await fetch(`${t.emu.url}/2/users/get_current_account`, { method: 'POST', headers: { Authorization: `Bearer ${token.stdout.trim()}` } });
  assert.equal(((await me.json()) as { email: string }).email, 'owner@example.com');

  assert.equal((await fetch(url)).status, 410, 'the link is used up');
  assert.match((await t.run(['link', 'list'])).stdout, /No pending connect links/);
});

test('link revoke: the link stops working at once; --json gives the API shape', async () => {
  const made = await t.run(['link', 'create', '--connection', 'later', '--app', 'backup', '--json'], { env: { DROPKEY_PUBLIC_URL: server.url } });
  assert.equal(made.code, 0, made.stderr);
  const link = JSON.parse(made.stdout) as { url: string; id: string; connection: string; app: string; expires_at: string };
  assert.deepEqual(Object.keys(link).sort(), ['app', 'connection', 'expires_at', 'id', 'url']);
  assert.equal(link.connection, 'later');
  const ttl = Date.parse(link.expires_at) - Date.now();
  assert.ok(ttl > 29 * 60_000 && ttl <= 30 * 60_000, 'the default lifetime is 30 minutes');
  assert.equal((await fetch(link.url)).status, 200);

  const revoked = await t.run(['link', 'revoke', link.id]);
  assert.equal(revoked.code, 0, revoked.stderr);
  assert.match(revoked.stdout, /Revoked connect link .* "later"/);
  assert.equal((await fetch(link.url)).status, 410);
  const again = await t.run(['link', 'revoke', link.id]);
  assert.equal(again.code, 0);
  assert.match(again.stdout, /no longer works/);
  const unknown = await t.run(['link', 'revoke', 'no-such-link']);
  assert.notEqual(unknown.code, 0);
  assert.match(unknown.stderr, /No connect link has the id "no-such-link"/);
});

test('link create errors: no public URL, a bad lifetime, an unknown app; nothing is created', async () => {
  const noUrl = await t.run(['link', 'create', '--connection', 'x', '--app', 'backup']);
  assert.notEqual(noUrl.code, 0);
  assert.match(noUrl.stderr, /public URL is not known/);
  assert.match(noUrl.stderr, /--public-url/);
  assert.match(noUrl.stderr, /DROPKEY_PUBLIC_URL/);
  for (const bad of ['5s', '8d', 'soon', '-1m']) {
    const r = await t.run(['link', 'create', '--connection', 'x', '--app', 'backup', `--expires=${bad}`, '--public-url', server.url]);
    assert.notEqual(r.code, 0, bad);
    assert.match(r.stderr, /--expires .*: give a time from 1m 0s to 7d 0h, such as 30m, 2h or 7d/, r.stderr);
  }
  const noApp = await t.run(['link', 'create', '--connection', 'x', '--app', 'nosuch', '--public-url', server.url]);
  assert.notEqual(noApp.code, 0);
  assert.match(noApp.stderr, /nosuch/);
  // Without --app: the only app is taken; with several, the command asks for --app by name.
  await t.addApp('second');
  const which = await t.run(['link', 'create', '--connection', 'x', '--public-url', server.url]);
  assert.notEqual(which.code, 0);
  assert.match(which.stderr, /several apps are registered \(backup, second\): say which one with --app NAME/);
  assert.equal(JSON.parse((await t.run(['link', 'list', '--json'])).stdout).length, 0);
});

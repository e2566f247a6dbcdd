/**
 * Hardening: hostile or careless input reaching the built CLI. Each test names the item of the hardening list it covers.
 */
import { after, before, test } from 'node:test';
import { createServer, type IncomingMessage } from 'node:http';
import type { AddressInfo } from 'node:net';
import { hostname } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import assert from 'node:assert/strict';
import { CliEnv, collect, waitForOutput } from './cli-helpers.js';
import { NO_TTY, spawnOnTerminal } from './tty.js';

let t: CliEnv;
before(async () => {
  t = await CliEnv.create();
});
after(async () => t.close());

/** ESC, BEL, C1 controls (CSI U+009B, OSC U+009D) and DEL: nothing that a terminal acts on. */
const TERMINAL_CONTROL = /[\u0000-\u0008\u000b-\u001f\u007f-\u009f]/;

test('item 4: Dropbox-supplied names holding terminal escapes are printed without their control characters', async () => {
  const app = await t.addApp('escapes', { team: false });
  const clipboard = '\u001b]52;c;ZWNobyBwd25lZA==\u0007';
  const title = '\u001b]0;pwned\u0007';
  const account = await t.emu.control.createAccount({
    email: 'esc@example.com',
    given_name: `Eve${title}\u009b2J`,
    surname: 'Escape\u007f',
    team: { name: `Team${clipboard}\u001b[2J\r\nfake line` },
  });
  const g = await t.emu.control.grant({ app: app.key, account: account.account_id, token_access_type: 'offline' });
  const imported = await t.run(['import', '--connection', 'esc', '--app', 'escapes', '--refresh-token', '-'], { stdin: `${g.refresh_token}\n` });
  assert.equal(imported.code, 0, imported.stderr);
  assert.match(imported.stdout, /Imported "esc": esc@example\.com \(team Team.*fake line\)/);
  assert.doesNotMatch(imported.stdout + imported.stderr, TERMINAL_CONTROL);

  const list = await t.run(['list']);
  assert.equal(list.code, 0, list.stderr);
  assert.match(list.stdout, /esc@example\.com/);
  assert.doesNotMatch(list.stdout + list.stderr, TERMINAL_CONTROL);
  assert.equal(list.stdout.trim().split('\n').length, 2, 'one header and one row: no line break smuggled into a cell');

  // JSON keeps the data (escaped, so no raw control reaches a terminal that shows it).
  const json = await t.run(['list', '--json']);
  assert.doesNotMatch(json.stdout, TERMINAL_CONTROL);
  const parsed = JSON.parse(json.stdout) as Array<{ name: string; team_name: string }>;
  assert.equal(parsed.find((c) => c.name === 'esc')?.team_name, `Team${clipboard}\u001b[2J\r\nfake line`);
});

/** A server that is not Dropbox: answers every request with what `answer` returns (a wrong DROPKEY_DROPBOX_URL, a portal). */
async function impostor(answer: (req: IncomingMessage) => { status: number; type?: string; body: string; headers?: Record<string, string> }): Promise<{ url: string; close(): Promise<void> }> {
  const server = createServer((req, res) => {
    req.resume();
    const a = answer(req);
    res.writeHead(a.status, { ...(a.type ? { 'content-type': a.type } : {}), ...a.headers });
    res.end(a.body);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const { port } = server.address() as AddressInfo;
  return { url: `http://127.0.0.1:${port}`, close: () => new Promise<void>((r) => { server.closeAllConnections(); server.close(() => r()); }) };
}

const PASTED = `sl.u.${'A'.repeat(150)}`;

test('item 12: doctor on a 200 that is not Dropbox\'s answer (HTML, empty, wrongly shaped JSON) reports a problem with its fix', async () => {
  const bodies = [
    { type: 'text/html', body: '<html>Sign in to the Wi-Fi</html>' },
    { type: 'application/json', body: '' },
    { type: 'application/json', body: '{}' },
    { type: 'application/json', body: '[1,2]' },
  ];
  for (const b of bodies) {
    const fake = await impostor(() => ({ status: 200, ...b }));
    try {
      const r = await t.run(['doctor', '--token', '-'], { stdin: `${PASTED}\n`, env: { DROPKEY_DROPBOX_URL: fake.url } });
      assert.equal(r.code, 1, `${b.body}: ${r.stdout}${r.stderr}`);
      assert.doesNotMatch(r.stdout, /Healthy/);
      assert.match(r.stdout, /\[x\] .*not Dropbox's answer/, r.stdout + r.stderr);
      assert.match(r.stdout, /Fix: .*DROPKEY_DROPBOX_URL/);
      // A report, not an abort: stderr holds at most the notice that Dropbox was slow to answer on a loaded machine.
      assert.deepEqual(r.stderr.split('\n').filter((l) => l && !/waiting for Dropbox to answer|Dropbox answered after/.test(l)), []);
    } finally {
      await fake.close();
    }
  }
});

test('item 12: doctor --token garbage names the length once, in plain words', async () => {
  const r = await t.run(['doctor', '--token', 'garbage']);
  assert.equal(r.code, 1, r.stdout + r.stderr);
  assert.doesNotMatch(r.stdout, /\(\(/);
  assert.match(r.stdout, /this value \(7 chars\)|7 characters/);
});

test('item 14: login --app nosuch says the app does not exist, even when the port is busy', async () => {
  const busy = await impostor(() => ({ status: 404, body: '' }));
  try {
    const port = new URL(busy.url).port;
    const r = await t.run(['login', '--app', 'nosuch', '--port', port, '--no-browser']);
    assert.notEqual(r.code, 0);
    assert.match(r.stderr, /nosuch/);
    assert.doesNotMatch(r.stderr, /already in use/);
  } finally {
    await busy.close();
  }
});

test('item 8: a wait for another process\'s lock that passes a second is announced on a terminal\'s stderr', { skip: NO_TTY }, async () => {
  await t.connect('locked');
  const db = new Database(join(t.home, 'dropkey.db'));
  // This test process is alive, so its lock is waited for, not taken over; it is released once the wait is announced.
  const now = Date.now();
  db.prepare('INSERT INTO locks (name, owner, expires_at, acquired_at) VALUES (?, ?, ?, ?)').run('refresh:locked', `${process.pid}@${hostname()}#test`, now + 60_000, now);
  const child = spawnOnTerminal(t, ['refresh', '--connection', 'locked']);
  child.stdin.end();
  const done = collect(child);
  await waitForOutput(child.stderr, /waiting for another dropkey process \(it holds the lock "refresh:locked"\)\.\.\. \d+ s/);
  db.prepare("DELETE FROM locks WHERE name = 'refresh:locked'").run();
  db.close();
  const r = await done;
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, /Refreshed "locked"/);
  // No lock held: nothing said about one (a slow machine may still say Dropbox is slow to answer).
  const quiet = await t.run(['refresh', '--connection', 'locked']);
  assert.equal(quiet.code, 0, quiet.stderr);
  assert.doesNotMatch(quiet.stderr, /waiting for another dropkey process/);
});

test('item 11: a token endpoint slow to answer is announced on a terminal\'s stderr while dropkey waits (not on stdout, not off a terminal)', { skip: NO_TTY }, async () => {
  await t.connect('slow');
  await t.emu.control.fault({ route: 'oauth2/token', status: 200, delay_ms: 1_800, count: 1 });
  try {
    const child = spawnOnTerminal(t, ['refresh', '--connection', 'slow']);
    child.stdin.end();
    const r = await collect(child);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stderr, /waiting for Dropbox to answer \(POST http:\/\/127\.0\.0\.1:\d+\/oauth2\/token\)\.\.\. 1 s/);
    assert.match(r.stderr, /Dropbox answered after \d+\.\d s/);
    assert.match(r.stdout, /Refreshed "slow"/);
    assert.doesNotMatch(r.stdout, /waiting|answered after/);
  } finally {
    await t.emu.control.clearFaults();
  }
  // The same wait with stderr not a terminal (a log, cron): nothing but the result.
  await t.emu.control.fault({ route: 'oauth2/token', status: 200, delay_ms: 1_800, count: 1 });
  try {
    const piped = await t.run(['refresh', '--connection', 'slow']);
    assert.equal(piped.code, 0, piped.stderr);
    assert.doesNotMatch(piped.stderr, /waiting for Dropbox|answered after/);
  } finally {
    await t.emu.control.clearFaults();
  }
});

test('item 7: one damaged secret fails only its connection, named with the field, in refresh, doctor and token (still listed)', async () => {
  await t.connect('healthy');
  await t.connect('damaged');
  const db = new Database(join(t.home, 'dropkey.db'));
  const row = db.prepare("SELECT refresh_token_enc FROM connections WHERE name = 'damaged'").get() as { refresh_token_enc: string };
  // Flip the end of the ciphertext (its authentication tag): what a disk error or a hand edit does.
  const v = row.refresh_token_enc;
  db.prepare("UPDATE connections SET refresh_token_enc = ? WHERE name = 'damaged'").run(`${v.slice(0, -4)}${v.endsWith('AAAA') ? 'BBBB' : 'AAAA'}`);
  db.close();

  // The list decrypts no token (it stays fast at any number of connections: docs/scale.md), so it cannot see the
  // damage; it must still list both. Every command that reads the secret names it.
  const list = await t.run(['list']);
  assert.equal(list.code, 0, list.stderr);
  assert.match(list.stdout, /^healthy .* active /m);
  assert.match(list.stdout, /^damaged /m);
  const json = JSON.parse((await t.run(['list', '--json'])).stdout) as Array<{ name: string; state: string }>;
  for (const name of ['damaged', 'healthy']) assert.ok(json.some((c) => c.name === name), `${name} is listed`);

  for (const args of [['refresh', '--connection', 'damaged'], ['doctor', '--connection', 'damaged'], ['token', '--connection', 'damaged']]) {
    const r = await t.run(args);
    assert.equal(r.code, 1, `${args.join(' ')}: ${r.stdout}${r.stderr}`);
    assert.match(r.stdout + r.stderr, /refresh_token of connection "damaged" cannot be decrypted/, args.join(' '));
    assert.match(r.stdout + r.stderr, /dropkey login --connection damaged/, args.join(' '));
  }
  for (const args of [['refresh', '--connection', 'healthy'], ['doctor', '--connection', 'healthy'], ['token', '--connection', 'healthy']]) {
    const r = await t.run(args);
    assert.equal(r.code, 0, `${args.join(' ')}: ${r.stdout}${r.stderr}`);
  }
});

/**
 * Bad input to the built CLI: each error says what went wrong and what to run next, exits non-zero, and prints
 * no secret. A corrupt key file is refused, never replaced.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { readFile, writeFile, readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { assertNoSecrets, CliEnv } from './cli-helpers.js';

let t: CliEnv;
before(async () => {
  t = await CliEnv.create();
});
after(async () => {
  await t?.close();
});

test('no command and --help print usage; an unknown command is a usage error', async () => {
  const none = await t.run([]);
  assert.equal(none.code, 2);
  assert.match(none.stdout, /Usage: dropkey <command>/);
  for (const name of ['token', 'login', 'import', 'exec', 'export', 'doctor', 'list', 'refresh', 'revoke', 'app', 'demo']) assert.match(none.stdout, new RegExp(`\\n  ${name} `));
  const help = await t.run(['token', '--help']);
  assert.equal(help.code, 0);
  assert.match(help.stdout, /--min-valid SECONDS/);
  const bad = await t.run(['tokn']);
  assert.equal(bad.code, 2);
  assert.match(bad.stderr, /unknown command "tokn"/);
});

test('unknown flags and missing values name the flag and point to --help', async () => {
  for (const [args, re] of [
    [['token', '--conection', 'x'], /unknown option "--conection"/],
    [['list', '-z'], /unknown option "-z"/],
    [['login', '--port'], /"--port" needs a value/],
    [['login', '--port', 'abc'], /--port must be a whole number/],
    [['app', 'add', '--name', 'x'], /missing --key KEY/],
    [['app', 'frobnicate'], /unknown subcommand "frobnicate"/],
    [['import', '--app', 'x'], /exactly one of --refresh-token/],
    [['token', '--connection', 'bad name!'], /Invalid connection name/],
    [['list', '--json=yes'], /option "--json" takes no value/],
    [['token', '--min-valid', '-5'], /"--min-valid" needs a value \(a value that starts with "-" must be written --min-valid=VALUE\)/],
  ] as const) {
    const r = await t.run([...args]);
    assert.equal(r.code, 2, `${args.join(' ')}: ${r.stderr}`);
    assert.match(r.stderr, re, args.join(' '));
    assert.match(r.stderr, /--help|Give one|letters, digits/, args.join(' '));
  }
});

test('a Dropbox URL that is not http(s) is refused at once, not retried as a network failure', async () => {
  const r = await t.run(['refresh', '--connection', 'any'], { env: { DROPKEY_DROPBOX_URL: 'notaurl' } });
  assert.equal(r.code, 2, r.stderr);
  assert.match(r.stderr, /not an http\(s\) URL: DROPKEY_DROPBOX_URL="notaurl"/);
  assert.match(r.stderr, /unset the variable/);
  assert.doesNotMatch(r.stderr, /attempts|temporary/);
});

test('did you mean: a mistyped command, flag or subcommand gets the closest one', async () => {
  const cmd = await t.run(['tokn']);
  assert.equal(cmd.code, 2);
  assert.match(cmd.stderr, /unknown command "tokn" \(did you mean "token"\?\)/);
  const flag = await t.run(['token', '--conection', 'x']);
  assert.equal(flag.code, 2);
  assert.match(flag.stderr, /unknown option "--conection" \(did you mean "--connection"\?\)/);
  const sub = await t.run(['keys', 'rotat']);
  assert.equal(sub.code, 2);
  assert.match(sub.stderr, /unknown subcommand "rotat" \(did you mean "rotate"\?\)/);
  const top = await t.run(['--hepl']);
  assert.equal(top.code, 2);
  assert.match(top.stderr, /unknown option "--hepl" \(did you mean "--help"\?\)/);
});

test('serve refuses a bad DROPKEY_JOBS and DROPKEY_LOG_LEVEL together, as configuration errors (not "a bug"), before binding', async () => {
  const r = await t.run(['serve', '--port', '0'], { env: { DROPKEY_JOBS: 'maybe', DROPKEY_LOG_LEVEL: 'loud', DROPKEY_DROPBOX_API_URL: 'api.example' } });
  assert.equal(r.code, 2, r.stderr);
  assert.match(r.stderr, /3 environment variables need fixing/);
  assert.match(r.stderr, /DROPKEY_JOBS="maybe" is neither on nor off\n\s+accepted: on, true, yes, 1 or off, false, no, 0/);
  assert.match(r.stderr, /DROPKEY_LOG_LEVEL="loud" is not a log level\n\s+accepted: trace, debug, info, warn, error, fatal, silent/);
  // serve makes the same URL checks as the other commands.
  assert.match(r.stderr, /not an http\(s\) URL: DROPKEY_DROPBOX_API_URL="api.example"/);
  assert.doesNotMatch(r.stderr, /bug in dropkey|listening/);
  assert.equal(r.stdout, '');
});

test('DROPKEY_HOME that is a file is named with the problem', async () => {
  const file = join(t.home, 'not-a-directory');
  await writeFile(file, 'x');
  for (const home of [file, join(file, 'sub')]) {
    const r = await t.run(['list'], { env: { DROPKEY_HOME: home } });
    assert.equal(r.code, 2, r.stderr);
    assert.match(r.stderr, new RegExp(`the data directory ${home.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&')} (is a file|is under ${file.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&')}, which is a file), not a directory`));
    assert.match(r.stderr, /Point DROPKEY_HOME at such a directory/);
  }
});

test('unknown connection and missing app say what to run next', async () => {
  const tok = await t.run(['token', '--connection', 'ghost']);
  assert.equal(tok.code, 1);
  assert.match(tok.stderr, /No connection named "ghost"/);
  assert.match(tok.stderr, /dropkey login --connection ghost/);
  const imp = await t.run(['import', '--app', 'ghost-app', '--refresh-token', 'abc']);
  assert.equal(imp.code, 1);
  assert.match(imp.stderr, /No app named "ghost-app"/);
  assert.match(imp.stderr, /dropkey app add/);
  const login = await t.run(['login', '--no-browser', '--port', '0']);
  assert.notEqual(login.code, 0);
  assert.match(login.stderr, /dropkey app add/);
});

test('error paths never print secrets', async () => {
  const app = await t.addApp('sec');
  const g = await t.grant(app.key);
  // A refresh token from another app: Dropbox refuses it.
  const other = await t.addApp('other');
  const r1 = await t.run(['import', '--connection', 'x1', '--app', 'other', '--refresh-token', '-'], { stdin: g.token.refresh_token! });
  assert.equal(r1.code === 0, false);
  assert.match(r1.stderr, /refresh token/);
  // A revoked access token pasted as an import.
  await t.emu.rpc('auth/token/revoke', undefined, g.token.access_token);
  const r2 = await t.run(['import', '--connection', 'x2', '--app', 'sec', '--access-token', '-'], { stdin: g.token.access_token });
  assert.equal(r2.code === 0, false);
  // An access token given as a refresh token.
  const r3 = await t.run(['import', '--connection', 'x3', '--app', 'sec', '--refresh-token', g.token.access_token]);
  assert.equal(r3.code === 0, false);
  assert.match(r3.stderr, /looks like an access token/);
  for (const r of [r1, r2, r3]) assertNoSecrets(r.stdout + r.stderr, [g.token.refresh_token, g.token.access_token, app.secret, other.secret], 'error output');
});

test('a corrupt key file is refused with a clear message and never replaced', async () => {
  const { token: g } = await t.connect('keep');
  const files = await readdir(t.home);
  const keyFile = files.find((f) => /key/i.test(f) && !f.endsWith('.db'));
  assert.ok(keyFile, `a key file exists in ${files.join(', ')}`);
  const path = join(t.home, keyFile);
  const original = await readFile(path);
  const garbage = 'this is not a key file\n';
  await writeFile(path, garbage);
  const r = await t.run(['token', '--connection', 'keep']);
  assert.notEqual(r.code, 0);
  assert.match(r.stderr, /key/i);
  assert.doesNotMatch(r.stderr, /unexpected error/);
  assert.equal(await readFile(path, 'utf8'), garbage, 'the corrupt key file was left alone');
  assertNoSecrets(r.stderr, [g.refresh_token]);
  // Restoring the key brings everything back: nothing was lost.
  await writeFile(path, original);
  const ok = await t.run(['token', '--connection', 'keep']);
  assert.equal(ok.code, 0, ok.stderr);
});

test('a wrong DROPKEY_MASTER_KEY does not unlock the data and says so', async () => {
  await t.connect('mk');
  const r = await t.run(['token', '--connection', 'mk'], { env: { DROPKEY_MASTER_KEY: Buffer.alloc(32, 7).toString('base64') } });
  assert.notEqual(r.code, 0);
  assert.match(r.stderr, /key/i);
  assert.doesNotMatch(r.stderr, /unexpected error/);
});

// Last: it leaves an app and a connection behind, which would change what the tests above see (e.g. login picks the only app).
test('app remove takes NAME or --name NAME (as add and update do), refuses two different names and an app in use', async () => {
  await t.addApp('rm-a');
  await t.addApp('rm-b');
  const both = await t.run(['app', 'remove', 'rm-a', '--name', 'rm-b']);
  assert.equal(both.code, 2);
  assert.match(both.stderr, /two different app names/);
  const byFlag = await t.run(['app', 'remove', '--name', 'rm-a']);
  assert.equal(byFlag.code, 0, byFlag.stderr);
  const bare = await t.run(['app', 'remove', 'rm-b']);
  assert.equal(bare.code, 0, bare.stderr);
  const gone = await t.run(['app', 'remove', '--name', 'rm-a']);
  assert.equal(gone.code, 1);
  assert.match(gone.stderr, /No app named "rm-a"[\s\S]*dropkey app list/);
  await t.connect('rm-conn', 'rm-used');
  const used = await t.run(['app', 'remove', '--name', 'rm-used']);
  assert.equal(used.code, 2);
  assert.match(used.stderr, /still used by connection "rm-conn"[\s\S]*dropkey revoke --connection rm-conn/);
});

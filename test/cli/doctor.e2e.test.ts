/**
 * `dropkey doctor` on each problem of docs/connecting-an-app.md ("When something goes wrong"), against the emulator: plain-words findings with a fix, exit 1
 * when a problem is found, 0 when healthy, and never a secret in the output.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { assertNoSecrets, CliEnv } from './cli-helpers.js';

interface Report {
  healthy: boolean;
  subject: string;
  findings: Array<{ id: string; severity: string; message: string; fix: string }>;
}

let t: CliEnv;
before(async () => {
  t = await CliEnv.create();
});
after(async () => {
  await t?.close();
});

async function doctor(args: string[], stdin?: string): Promise<{ code: number | null; report: Report; stderr: string }> {
  const r = await t.run(['doctor', ...args, '--json'], stdin === undefined ? {} : { stdin });
  assert.ok(r.stdout.trim().startsWith('{'), `doctor printed JSON (exit ${r.code}): ${r.stdout}${r.stderr}`);
  return { code: r.code, report: JSON.parse(r.stdout) as Report, stderr: r.stderr };
}

function ids(r: Report): string[] {
  return r.findings.map((f) => f.id);
}

test('a healthy connection: exit 0, and the plain-text report says so', async () => {
  await t.connect('fine');
  const r = await t.run(['doctor', '--connection', 'fine']);
  assert.equal(r.code, 0, r.stdout + r.stderr);
  assert.match(r.stdout, /Healthy/);
  const j = await doctor(['--connection', 'fine', '--need', 'files.content.read']);
  assert.equal(j.code, 0);
  assert.equal(j.report.healthy, true);
});

test('expired: an access-token-only connection after 4 hours', async () => {
  const app = await t.addApp('exp-app');
  const g = await t.grant(app.key, { offline: false });
  assert.equal((await t.run(['import', '--connection', 'old', '--app', 'exp-app', '--access-token', '-'], { stdin: g.token.access_token })).code, 0);
  await t.advanceClock(4 * 3600 + 60);
  const { code, report } = await doctor(['--connection', 'old']);
  assert.equal(code, 1);
  assert.ok(ids(report).includes('expired'), ids(report).join());
  assert.ok(ids(report).includes('no_refresh_token'), 'no refresh token: offline access was not requested');
  const f = report.findings.find((x) => x.id === 'expired')!;
  assert.match(f.fix, /dropkey login --connection old --app exp-app/);
  assertNoSecrets(JSON.stringify(report), [g.token.access_token, app.secret]);
});

test('revoked: the refresh token was revoked at Dropbox', async () => {
  const { token: g } = await t.connect('rev');
  const revoke = await t.emu.rpc('auth/token/revoke', undefined, g.access_token);
  assert.equal(revoke.status, 200);
  const { code, report } = await doctor(['--connection', 'rev']);
  assert.equal(code, 1);
  assert.ok(ids(report).includes('needs_reauth'), ids(report).join());
  assert.match(report.findings.find((x) => x.id === 'needs_reauth')!.fix, /dropkey login --connection rev/);
  // token now fails fast with the exact fix.
  const tok = await t.run(['token', '--connection', 'rev']);
  assert.equal(tok.code, 1);
  assert.match(tok.stderr, /dropkey login --connection rev/);
  assertNoSecrets(tok.stderr + JSON.stringify(report), [g.refresh_token, g.access_token]);
});

test('missing scope for what the job needs (--need)', async () => {
  await t.connect('ro', 'ro-app', { scopes: ['account_info.read'] });
  const { code, report } = await doctor(['--connection', 'ro', '--need', 'files.metadata.read']);
  assert.equal(code, 1);
  const f = report.findings.find((x) => x.id === 'missing_scope');
  assert.ok(f, ids(report).join());
  assert.match(f.message, /files\.metadata\.read/);
  assert.match(f.fix, /Permissions tab/);
});

test('a team token used without Select-User', async () => {
  const app = await t.addApp('team-app', { team: true, scopes: ['team_info.read', 'members.read', 'sessions.list', 'team_data.member', 'files.metadata.read'] });
  const g = await t.grant(app.key, { team: true });
  const { report } = await doctor(['--token', '-'], g.token.access_token);
  const f = report.findings.find((x) => /team/.test(x.id));
  assert.ok(f, ids(report).join());
  assert.match(`${f.message} ${f.fix}`, /Dropbox-API-Select-User/);
});

test('invalid_client: the stored app secret is wrong', async () => {
  const { app } = await t.connect('wrongsecret', 'ws-app');
  // The secret was mistyped (or regenerated in the App Console).
  // (--no-check: app update would refuse a secret Dropbox does not accept.)
  const upd = await t.run(['app', 'update', '--name', 'ws-app', '--secret', '-', '--no-check'], { stdin: 'definitely-not-the-secret\n' });
  assert.equal(upd.code, 0, upd.stderr);
  const { code, report } = await doctor(['--connection', 'wrongsecret']);
  assert.equal(code, 1);
  const f = report.findings.find((x) => x.id === 'invalid_client');
  assert.ok(f, ids(report).join());
  assertNoSecrets(JSON.stringify(report), ['definitely-not-the-secret', app.secret]);
  // The fix it names works: put the right secret back, and the connection is healthy again.
  assert.match(f.fix, /dropkey app update --name ws-app --secret -/);
  assert.equal((await t.run(['app', 'update', '--name', 'ws-app', '--secret', '-'], { stdin: `${app.secret}\n` })).code, 0);
  assert.equal((await doctor(['--connection', 'wrongsecret'])).code, 0);
});

test('no refresh token (offline access not requested): reported with the login fix', async () => {
  const app = await t.addApp('online-app');
  const g = await t.grant(app.key, { offline: false });
  assert.equal((await t.run(['import', '--connection', 'online', '--app', 'online-app', '--access-token', g.token.access_token])).code, 0);
  const { report } = await doctor(['--connection', 'online']);
  const f = report.findings.find((x) => x.id === 'no_refresh_token');
  assert.ok(f);
  assert.match(f.fix, /dropkey login --connection online/);
});

test('a pasted token with quotes and whitespace', async () => {
  const app = await t.addApp('paste-app');
  const g = await t.grant(app.key);
  const { code, report, stderr } = await doctor(['--token', '-'], `  "${g.token.access_token}" \n`);
  // The cleaned token itself works, so these are warnings (exit 0): the fix is in how the token is stored.
  assert.equal(code, report.healthy ? 0 : 1);
  const quotes = report.findings.find((f) => /quote/.test(f.id));
  const spaces = report.findings.find((f) => /whitespace/.test(f.id));
  assert.ok(quotes && spaces, ids(report).join());
  assert.match(quotes.fix, /without surrounding quotes/);
  const text = await t.run(['doctor', '--token', '-'], { stdin: `"${g.token.access_token}"` });
  assert.match(text.stdout, /quotes were pasted along/);
  assertNoSecrets(JSON.stringify(report) + stderr, [g.token.access_token]);
});

test('a refresh token pasted where an access token belongs', async () => {
  const app = await t.addApp('rt-app');
  const g = await t.grant(app.key);
  const { code, report } = await doctor(['--token', '-'], g.token.refresh_token);
  assert.equal(code, 1);
  const f = report.findings.find((x) => /refresh_as_access/.test(x.id));
  assert.ok(f, ids(report).join());
  assert.match(f.fix, /dropkey import/);
  assertNoSecrets(JSON.stringify(report), [g.token.refresh_token]);
});

test('an unknown connection, and --token with --connection, are explained', async () => {
  const { code, report } = await doctor(['--connection', 'nobody']);
  assert.equal(code, 1);
  assert.ok(ids(report).includes('not_found'));
  const both = await t.run(['doctor', '--connection', 'a', '--token', 'b']);
  assert.equal(both.code, 2);
  assert.match(both.stderr, /not both/);
});
